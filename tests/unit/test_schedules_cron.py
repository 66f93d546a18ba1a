"""Cron expressions: syntax, the messages for each kind of mistake, and a differential test against croniter."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from celeriac.cron import parse_cron
from celeriac.schedules import Cron, ScheduleError

UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)


def upcoming(expr: str, count: int, tz: str = "UTC", after: datetime = START) -> list[datetime]:
    schedule = Cron(expr, tz)
    found = []
    for _ in range(count):
        after = schedule.next_after(after)
        found.append(after)
    return found


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- syntax ---------------------------------------------------------------------------------------

def test_fields_accept_values_ranges_steps_and_lists() -> None:
    fields = parse_cron("0,30 8-18/2 1,15 */3 1-5")
    assert fields.minutes == (0, 30)
    assert fields.hours == (8, 10, 12, 14, 16, 18)
    assert fields.days == (1, 15)
    assert fields.months == (1, 4, 7, 10)
    assert fields.weekdays == (1, 2, 3, 4, 5)


def test_a_start_with_a_step_runs_to_the_end_of_the_field() -> None:
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)
    assert parse_cron("0 22/1 * * *").hours == (22, 23)


def test_month_and_weekday_names_are_case_insensitive_and_work_in_ranges() -> None:
    fields = parse_cron("0 0 * JAN-mar,Dec Mon-FRI/2")
    assert fields.months == (1, 2, 3, 12)
    assert fields.weekdays == (1, 3, 5)


def test_day_of_week_seven_is_sunday() -> None:
    assert parse_cron("0 0 * * 7").weekdays == (0,)
    assert parse_cron("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert parse_cron("0 0 * * 1/2").weekdays == (1, 3, 5)  # an open end stops at Saturday
    assert parse_cron("0 0 * * */2").weekdays == (0, 2, 4, 6)
    assert upcoming("0 0 * * 7", 1) == [at(2026, 1, 4)]  # the first Sunday of 2026


@pytest.mark.parametrize(("macro", "fields"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *"),
])
def test_macros_stand_for_their_fields(macro: str, fields: str) -> None:
    assert upcoming(macro, 5, "Europe/London") == upcoming(fields, 5, "Europe/London")


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2026-06-01 is a Monday; the 1st of the month or any Monday.
    assert upcoming("0 0 1 * mon", 4, after=at(2026, 5, 20)) == [
        at(2026, 5, 25), at(2026, 6, 1), at(2026, 6, 8), at(2026, 6, 15)]


def test_a_star_day_field_leaves_the_other_in_charge() -> None:
    assert upcoming("0 0 * * mon", 2, after=at(2026, 5, 20)) == [at(2026, 5, 25), at(2026, 6, 1)]
    assert upcoming("0 0 13 * *", 2, after=at(2026, 5, 20)) == [at(2026, 6, 13), at(2026, 7, 13)]
    assert upcoming("0 0 13 * */1", 1, after=at(2026, 5, 20)) == [at(2026, 6, 13)]


def test_both_days_required_when_day_or_is_off() -> None:
    # Friday the 13th: February, March and November in 2026.
    schedule = Cron("0 0 13 * fri", day_or=False)
    assert schedule.slots_between(START, at(2027, 1, 1)) == [at(2026, 2, 13), at(2026, 3, 13), at(2026, 11, 13)]


def test_february_29_fires_in_leap_years_only() -> None:
    assert upcoming("0 0 29 2 *", 3) == [at(2028, 2, 29), at(2032, 2, 29), at(2036, 2, 29)]


def test_next_after_is_strictly_after_even_on_a_slot() -> None:
    assert Cron("*/5 * * * *").next_after(at(2026, 1, 1, 0, 5)) == at(2026, 1, 1, 0, 10)
    assert Cron("*/5 * * * *").next_after(at(2026, 1, 1, 0, 4, 59)) == at(2026, 1, 1, 0, 5)


def test_slots_between_with_a_limit_keeps_the_latest() -> None:
    schedule = Cron("* * * * *")
    end = at(2026, 6, 1)
    assert schedule.slots_between(START, end, limit=3) == [end - timedelta(minutes=m) for m in (2, 1, 0)]
    assert schedule.slots_between(end - timedelta(minutes=2), end, limit=10) == [end - timedelta(minutes=1), end]
    assert schedule.slots_between(START, end, limit=0) == []
    yearly = Cron("@yearly")
    assert yearly.slots_between(at(2000, 6, 1), at(2026, 6, 1), limit=2) == [at(2025, 1, 1), at(2026, 1, 1)]


def test_a_far_slot_is_found_without_walking_every_minute() -> None:
    # A pattern that first matches decades away still answers at once: field skipping.
    schedule = Cron("0 0 29 2 mon", day_or=False)  # Feb 29 that is a Monday
    assert schedule.next_after(START) == at(2044, 2, 29)


def test_describe_and_equality() -> None:
    assert Cron("0  9 * *   1-5", "Europe/London").describe() == "cron '0 9 * * 1-5' in Europe/London"
    assert Cron("0 9 * * 1-5", "Europe/London") == Cron("0 9 * * mon-fri", ZoneInfo("Europe/London"))
    assert Cron("0 9 * * 1-5", "UTC") != Cron("0 9 * * 1-5", "Europe/London")
    assert len({Cron("@daily"), Cron("0 0 * * *")}) == 1
    assert Cron("@hourly").period_hint_s == 3600


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ScheduleError, match="timezone-aware"):
        Cron("@daily").next_after(datetime(2026, 1, 1))


# -- mistakes: one test per kind ------------------------------------------------------------------

def error_for(expr: str) -> str:
    with pytest.raises(ScheduleError) as caught:
        Cron(expr)
    return str(caught.value)


def test_a_value_out_of_range_names_the_field_and_range() -> None:
    assert error_for("0 25 * * *") == "cron '0 25 * * *': field 2 (hour) value 25 is out of range 0-23"
    assert "field 1 (minute) value 60 is out of range 0-59" in error_for("60 * * * *")
    assert "field 3 (day-of-month) value 0 is out of range 1-31" in error_for("0 0 0 * *")
    assert "field 4 (month) value 13 is out of range 1-12" in error_for("0 0 1 13 *")
    assert "field 5 (day-of-week) value 8 is out of range 0-7" in error_for("0 0 * * 8")


def test_a_wrong_field_count_says_five_are_needed() -> None:
    assert "expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily, got 4" in (
        error_for("0 9 * *"))
    assert "got 6" in error_for("0 0 9 * * *")
    assert "got 0" in error_for("   ")


def test_an_unknown_name_says_what_names_the_field_takes() -> None:
    assert "field 4 (month) 'foo' is not a number 1-12 or a month name (jan..dec)" in error_for("0 0 * foo *")
    assert "field 5 (day-of-week) 'funday' is not a number 0-7 or a weekday name (sun..sat)" in error_for(
        "0 0 * * funday")
    assert "field 2 (hour) 'noon' is not a number 0-23" in error_for("0 noon * * *")


def test_a_bad_step_names_it() -> None:
    assert "field 1 (minute) step '0' in '*/0' must be a positive whole number" in error_for("*/0 * * * *")
    assert "step 'x'" in error_for("*/x * * * *")
    assert "step ''" in error_for("0 */ * * *")


def test_an_empty_range_says_to_put_the_lower_bound_first() -> None:
    assert "field 2 (hour) range '5-1' is empty; write the lower bound first" in error_for("0 5-1 * * *")
    assert "field 5 (day-of-week) range 'fri-mon' is empty" in error_for("0 0 * * fri-mon")


def test_empty_list_items_and_missing_range_ends_are_refused() -> None:
    assert "field 1 (minute) '1,,2' has an empty list item" in error_for("1,,2 * * * *")
    assert "field 1 (minute) '-5' has a range or step with a missing value" in error_for("-5 * * * *")
    assert "field 2 (hour) '3-' has a range or step with a missing value" in error_for("0 3- * * *")


def test_an_unknown_macro_lists_the_known_ones() -> None:
    message = error_for("@fortnightly")
    assert "@fortnightly is not a known macro" in message
    assert "@hourly" in message


def test_a_date_no_calendar_has_is_refused_rather_than_searched_forever() -> None:
    assert error_for("0 0 30 2 *") == "cron '0 0 30 2 *' never fires: no month among 2 has day 30"
    assert "never fires" in error_for("0 0 31 4,6,9,11 *")
    Cron("0 0 31 4,5 *")  # May has a 31st
    Cron("0 0 30 2 mon")  # either rule: every Monday in February


def test_a_non_string_expression_is_refused() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        Cron(5)  # type: ignore[arg-type]


# -- differential against croniter ---------------------------------------------------------------

FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def random_item(rng: random.Random, index: int) -> str:
    low, high = FIELD_RANGES[index]
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else None

    def value(number: int) -> str:
        if names is not None and rng.random() < 0.4:
            return names[number - low]
        return str(number)

    a, b = sorted(rng.sample(range(low, high + 1), 2))
    step = rng.randint(2, max(2, (high - low) // 3))
    choice = rng.randrange(5)
    if choice == 0:
        return value(a)
    if choice == 1:
        return f"{value(a)}-{value(b)}"
    if choice == 2:
        return f"*/{step}"
    if choice == 3:
        return f"{value(a)}-{value(b)}/{step}"
    return f"{a}/{step}"


def random_field(rng: random.Random, index: int) -> str:
    if rng.random() < (0.5 if index >= 2 else 0.2):
        return "*"
    return ",".join(random_item(rng, index) for _ in range(rng.choice((1, 1, 2, 3))))


def random_expression(rng: random.Random, hours: tuple[int, int] | None = None) -> str:
    """A random five-field expression that can fire and whose day fields read the same in both libraries.

    croniter treats a day-of-week list covering the whole week as ``*``; Celeriac (like Kubernetes)
    only treats ``*`` so. Such expressions are redrawn rather than compared.
    """
    while True:
        fields = [random_field(rng, index) for index in range(5)]
        if hours is not None:
            first = rng.randint(hours[0], hours[1] - 1)
            fields[1] = f"{first}-{rng.randint(first + 1, hours[1])}"  # croniter reads "10-10" as "*"
        expr = " ".join(fields)
        try:
            parsed = parse_cron(expr)
        except ScheduleError:
            continue  # e.g. day 31 only in 30-day months
        if fields[4] != "*" and len(parsed.weekdays) == 7:
            continue
        if fields[2] != "*" and len(parsed.days) == 31:
            continue
        return expr


def croniter_upcoming(expr: str, count: int, after: datetime) -> list[datetime]:
    iterator = croniter(expr, after)
    return [iterator.get_next(datetime).astimezone(UTC) for _ in range(count)]


@pytest.mark.parametrize("seed", range(12))
def test_matches_croniter_in_utc(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        expr = random_expression(rng)
        after = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
        assert upcoming(expr, 50, after=after) == croniter_upcoming(expr, 50, after), expr


@pytest.mark.parametrize("seed", range(4))
def test_matches_croniter_in_a_fixed_offset_zone(seed: int) -> None:
    zone = ZoneInfo("Asia/Kolkata")  # +05:30, no daylight saving
    rng = random.Random(1000 + seed)
    for _ in range(25):
        expr = random_expression(rng)
        after = (START + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))).astimezone(zone)
        assert upcoming(expr, 50, "Asia/Kolkata", after) == croniter_upcoming(expr, 50, after), expr


@pytest.mark.parametrize("seed", range(4))
def test_matches_croniter_in_a_daylight_saving_zone_away_from_the_changes(seed: int) -> None:
    # Hours 4-23 never touch New York's gap (02:xx) or repeated hour (01:xx).
    zone = ZoneInfo("America/New_York")
    rng = random.Random(2000 + seed)
    for _ in range(25):
        expr = random_expression(rng, hours=(4, 23))
        after = (START + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))).astimezone(zone)
        assert upcoming(expr, 50, "America/New_York", after) == croniter_upcoming(expr, 50, after), expr

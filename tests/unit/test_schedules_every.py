"""Interval schedules, interval parsing and build_schedule (one of every/cron per entry)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from celeriac.schedules import Cron, Every, Schedule, ScheduleError, build_schedule, load_zone, parse_every

UTC = timezone.utc


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    (30, 30), (1.5, 1.5), ("90", 90), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (" 2h ", 7200),
    (timedelta(minutes=2), 120),
])
def test_intervals_parse_from_seconds_units_and_timedeltas(value: int | float | str | timedelta,
                                                          seconds: float) -> None:
    assert parse_every(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["500ms", "5 minutes", "1.5m", "-5", "", "m", "1w"])
def test_an_unreadable_interval_string_says_how_to_write_one(value: str) -> None:
    with pytest.raises(ScheduleError, match=r"whole seconds \(30\) or a whole number with a unit s, m, h or d"):
        parse_every(value)


@pytest.mark.parametrize("value", [0, 0.5, "0s", timedelta(milliseconds=999), -10])
def test_an_interval_under_one_second_is_refused(value: int | float | str | timedelta) -> None:
    with pytest.raises(ScheduleError, match="at least 1 second"):
        parse_every(value)


@pytest.mark.parametrize("value", [True, None, [30], float("inf"), float("nan")])
def test_an_interval_of_the_wrong_type_is_refused(value: object) -> None:
    with pytest.raises(ScheduleError, match="every"):
        parse_every(value)  # type: ignore[arg-type]


def test_every_slots_are_aligned_to_the_epoch_so_replicas_agree() -> None:
    five_minutes = Every(timedelta(minutes=5))
    assert five_minutes.next_after(at(2026, 1, 1, 10, 7, 13)) == at(2026, 1, 1, 10, 10)
    assert five_minutes.next_after(at(2026, 1, 1, 10, 10)) == at(2026, 1, 1, 10, 15)  # strictly after
    seven_seconds = Every(timedelta(seconds=7))
    slot = seven_seconds.next_after(at(2026, 1, 1))
    assert (slot - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % 7 == 0
    assert timedelta(0) < slot - at(2026, 1, 1) <= timedelta(seconds=7)
    assert Every(timedelta(days=1)).next_after(at(2026, 1, 1, 0, 0, 1)) == at(2026, 1, 2)


def test_every_ignores_the_zone_of_its_input_and_answers_in_utc() -> None:
    hourly = Every(timedelta(hours=1))
    after = datetime(2026, 3, 8, 1, 30, tzinfo=ZoneInfo("America/New_York"))  # 06:30 UTC
    slot = hourly.next_after(after)
    assert slot == at(2026, 3, 8, 7)
    assert slot.tzinfo is UTC


def test_every_slots_between_is_half_open_and_limit_keeps_the_latest() -> None:
    minute = Every(timedelta(minutes=1))
    assert minute.slots_between(at(2026, 1, 1, 0, 0), at(2026, 1, 1, 0, 3)) == [
        at(2026, 1, 1, 0, 1), at(2026, 1, 1, 0, 2), at(2026, 1, 1, 0, 3)]
    long_outage = minute.slots_between(at(2020, 1, 1), at(2026, 1, 1), limit=2)
    assert long_outage == [at(2025, 12, 31, 23, 59), at(2026, 1, 1)]
    assert minute.slots_between(at(2026, 1, 1), at(2026, 1, 1)) == []
    assert minute.slots_between(at(2026, 1, 1), at(2026, 1, 2), limit=0) == []


def test_every_describes_itself_in_the_largest_whole_unit() -> None:
    assert Every(timedelta(seconds=30)).describe() == "every 30s"
    assert Every(timedelta(seconds=90)).describe() == "every 90s"
    assert Every(timedelta(minutes=5)).describe() == "every 5m"
    assert Every(timedelta(hours=2)).describe() == "every 2h"
    assert Every(timedelta(days=1)).describe() == "every 1d"
    assert Every(timedelta(seconds=1.5)).describe() == "every 1.5s"
    assert Every(timedelta(minutes=5)).period_hint_s == 300


def test_every_compares_by_interval_and_refuses_bad_input() -> None:
    assert Every(timedelta(seconds=60)) == Every(timedelta(minutes=1))
    assert len({Every(timedelta(seconds=60)), Every(timedelta(minutes=1))}) == 1
    with pytest.raises(ScheduleError, match="takes a timedelta"):
        Every(30)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="at least 1 second"):
        Every(timedelta(milliseconds=10))
    with pytest.raises(ScheduleError, match="timezone-aware"):
        Every(timedelta(minutes=1)).next_after(datetime(2026, 1, 1))


def test_both_kinds_satisfy_the_schedule_protocol() -> None:
    assert isinstance(Every(timedelta(seconds=1)), Schedule)
    assert isinstance(Cron("@daily"), Schedule)


def test_build_schedule_takes_exactly_one_of_every_and_cron() -> None:
    assert build_schedule(every="30s") == Every(timedelta(seconds=30))
    assert build_schedule(every=45) == Every(timedelta(seconds=45))
    assert build_schedule(cron="0 9 * * 1-5", tz="Europe/London") == Cron("0 9 * * 1-5", "Europe/London")
    with pytest.raises(ScheduleError, match=r"set exactly one of 'every' and 'cron' \(both is set\)"):
        build_schedule(every=30, cron="@daily")
    with pytest.raises(ScheduleError, match=r"set exactly one of 'every' and 'cron' \(neither is set\)"):
        build_schedule()


def test_build_schedule_checks_the_zone_for_both_kinds() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        build_schedule(every=30, tz="Mars/Olympus")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        build_schedule(cron="@daily", tz="Mars/Olympus")


@pytest.mark.parametrize("name", ["Foo/Bar", "", "America", "../etc/passwd"])
def test_an_unknown_zone_says_to_use_an_iana_name(name: str) -> None:
    with pytest.raises(ScheduleError, match=r"unknown time zone .*: use an IANA name such as Europe/London"):
        Cron("@daily", name)


def test_zones_load_from_names_zoneinfo_and_utc() -> None:
    assert load_zone("Asia/Kathmandu").key == "Asia/Kathmandu"
    assert load_zone(ZoneInfo("Pacific/Chatham")).key == "Pacific/Chatham"
    assert load_zone(timezone.utc).key == "UTC"

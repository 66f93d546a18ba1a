"""Cron schedules across daylight-saving transitions, in zones with unusual rules.

The transition instants are found with zoneinfo here, not typed in. Expected fire instants come
from a brute-force oracle that states the rule directly: walk UTC minute by minute; a matching
local wall-clock minute fires at the first instant the local clock *reaches* it (so a wall time
skipped by a gap fires at the end of the gap, a repeated one at its first occurrence, and each
fires once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from celeriac.schedules import Cron

UTC = timezone.utc
ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham")
YEAR = 2026


@dataclass(frozen=True)
class Transition:
    zone: str
    instant: datetime  # first UTC instant with the new offset
    offset_before: timedelta
    offset_after: timedelta

    @property
    def is_gap(self) -> bool:
        return self.offset_after > self.offset_before

    @property
    def odd_walls(self) -> tuple[datetime, datetime]:
        """Naive local ``[start, end)`` of the skipped (gap) or repeated (overlap) wall times."""
        first = (self.instant + min(self.offset_before, self.offset_after)).replace(tzinfo=None)
        last = (self.instant + max(self.offset_before, self.offset_after)).replace(tzinfo=None)
        return first, last

    def __str__(self) -> str:
        return f"{self.zone}-{'gap' if self.is_gap else 'overlap'}"


def transitions(zone_name: str, year: int) -> list[Transition]:
    """Every offset change of ``zone_name`` in ``year``, to the second."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        following = moment + timedelta(hours=1)
        new_offset = following.astimezone(zone).utcoffset()
        if new_offset != offset:
            low, high = moment, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if middle.astimezone(zone).utcoffset() == offset else (low, middle)
            assert offset is not None
            assert new_offset is not None
            found.append(Transition(zone_name, high, offset, new_offset))
            offset = new_offset
        moment = following
    return found


ALL_TRANSITIONS = [t for zone in ZONES for t in transitions(zone, YEAR)]


def croniter_matcher(expr: str) -> Callable[[datetime], bool]:
    """Whether a naive wall minute matches ``expr``, by croniter's parser (these tests restrict no days)."""
    expanded = croniter.expand(expr)[0]
    assert expanded[2:] == [["*"], ["*"], ["*"]], expr
    minutes, hours = (set(range(60)) if f == ["*"] else set(f) for f in expanded[:2])
    return lambda wall: wall.minute in minutes and wall.hour in hours


def oracle(expr: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants in ``(start, end]`` (whole minutes) by the 'first instant the clock reaches it' rule."""
    zone = ZoneInfo(zone_name)
    matches = croniter_matcher(expr)
    fired = []
    moment = start
    reached = moment.astimezone(zone).replace(tzinfo=None)  # latest wall time the clock has shown
    while moment < end:
        moment += timedelta(minutes=1)
        wall = moment.astimezone(zone).replace(tzinfo=None)
        if wall <= reached:
            continue  # the clock is repeating wall times it already showed
        newly = reached + timedelta(minutes=1)
        hit = False
        while newly <= wall:  # every wall minute the clock reaches now (more than one after a gap)
            hit = hit or matches(newly)
            newly += timedelta(minutes=1)
        reached = wall
        if hit:
            fired.append(moment)
    return fired


def wall_expressions(transition: Transition) -> list[str]:
    """Daily, hourly and every-15-minute expressions in and around the odd wall times."""
    first, last = transition.odd_walls
    middle = first + (last - first) / 2
    walls = [first - timedelta(minutes=1), first, middle, last - timedelta(minutes=1), last]
    daily = [f"{wall.minute} {wall.hour} * * *" for wall in walls]
    hourly = [f"{minute} * * * *" for minute in sorted({0, 15, 30, 45, first.minute, middle.minute})]
    quarter = [f"*/15 {hour} * * *" for hour in sorted({first.hour, middle.hour, (last - timedelta(minutes=1)).hour})]
    return [*daily, *hourly, *quarter, "*/15 * * * *", "* * * * *"]


CASES = [(transition, expr) for transition in ALL_TRANSITIONS for expr in wall_expressions(transition)]


def test_each_zone_has_one_gap_and_one_overlap_in_the_year() -> None:
    for zone in ZONES:
        kinds = sorted(t.is_gap for t in transitions(zone, YEAR))
        assert kinds == [False, True], zone
    assert transitions("Asia/Kathmandu", YEAR) == []


def test_the_zones_shift_by_their_unusual_amounts() -> None:
    shifts = {str(t): abs(t.offset_after - t.offset_before) for t in ALL_TRANSITIONS}
    assert shifts["Australia/Lord_Howe-gap"] == timedelta(minutes=30)
    assert shifts["America/New_York-gap"] == timedelta(hours=1)
    chatham = next(t for t in ALL_TRANSITIONS if str(t) == "Pacific/Chatham-gap")
    assert (chatham.offset_before, chatham.offset_after) == (timedelta(hours=12, minutes=45),
                                                            timedelta(hours=13, minutes=45))


@pytest.mark.parametrize(("transition", "expr"), CASES, ids=[f"{t}-{e}" for t, e in CASES])
def test_slots_around_a_transition_follow_the_first_instant_the_clock_reaches_them(
    transition: Transition, expr: str
) -> None:
    start, end = transition.instant - timedelta(hours=14), transition.instant + timedelta(hours=14)
    schedule = Cron(expr, transition.zone)
    expected = oracle(expr, transition.zone, start, end)
    assert schedule.slots_between(start, end) == expected
    assert len(set(expected)) == len(expected)


@pytest.mark.parametrize("transition", ALL_TRANSITIONS, ids=str)
def test_next_after_agrees_with_the_oracle_from_any_minute_near_a_transition(transition: Transition) -> None:
    expr = "*/15 * * * *" if transition.zone != "Pacific/Chatham" else "*/15 2,3 * * *"
    start = transition.instant - timedelta(hours=3)
    expected = oracle(expr, transition.zone, start, transition.instant + timedelta(days=2))
    schedule = Cron(expr, transition.zone)
    moment = start
    while moment < transition.instant + timedelta(hours=3):
        assert schedule.next_after(moment) == next(slot for slot in expected if slot > moment), moment
        moment += timedelta(minutes=7, seconds=30)


@pytest.mark.parametrize("transition", [t for t in ALL_TRANSITIONS if t.is_gap], ids=str)
def test_a_wall_time_inside_the_gap_fires_once_at_the_end_of_the_gap(transition: Transition) -> None:
    first, last = transition.odd_walls
    for wall in (first, first + (last - first) / 2, last - timedelta(minutes=1)):
        schedule = Cron(f"{wall.minute} {wall.hour} * * *", transition.zone)
        day_before = transition.instant - timedelta(hours=20)
        assert schedule.next_after(day_before) == transition.instant
    every_quarter = Cron(f"*/15 {first.hour} * * *", transition.zone)
    on_the_day = [slot for slot in every_quarter.slots_between(transition.instant - timedelta(hours=4),
                                                              transition.instant + timedelta(hours=4))]
    assert on_the_day.count(transition.instant) == 1


@pytest.mark.parametrize("transition", [t for t in ALL_TRANSITIONS if not t.is_gap], ids=str)
def test_a_repeated_wall_time_fires_once_at_its_first_occurrence(transition: Transition) -> None:
    first, last = transition.odd_walls
    for wall in (first, first + (last - first) / 2, last - timedelta(minutes=1)):
        schedule = Cron(f"{wall.minute} {wall.hour} * * *", transition.zone)
        window = schedule.slots_between(transition.instant - timedelta(hours=12),
                                        transition.instant + timedelta(hours=12))
        first_occurrence = (wall - transition.offset_before).replace(tzinfo=UTC)
        assert window == [first_occurrence]
        assert first_occurrence < transition.instant


def test_new_york_examples_from_the_docs() -> None:
    spring, fall = transitions("America/New_York", YEAR)
    day_before = spring.instant - timedelta(days=1)
    assert Cron("30 2 * * *", "America/New_York").next_after(day_before + timedelta(hours=1)) == spring.instant
    assert spring.instant == datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT, as the docs say
    assert spring.instant.astimezone(ZoneInfo("America/New_York")).hour == 3
    around = (spring.instant - timedelta(hours=20), spring.instant + timedelta(hours=20))
    assert Cron("*/15 2 * * *", "America/New_York").slots_between(*around) == [spring.instant]
    repeated = Cron("30 1 * * *", "America/New_York").slots_between(fall.instant - timedelta(hours=6),
                                                                    fall.instant + timedelta(hours=6))
    assert repeated == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]
    quarter = Cron("*/15 * * * *", "America/New_York")
    assert quarter.next_after(datetime(2026, 11, 1, 5, 45, tzinfo=UTC)) == datetime(2026, 11, 1, 7, tzinfo=UTC)


def test_kathmandu_fires_at_its_quarter_hour_offset_all_year() -> None:
    daily = Cron("@daily", "Asia/Kathmandu")
    start = datetime(YEAR, 1, 1, tzinfo=UTC)
    slots = daily.slots_between(start, start + timedelta(days=365))
    assert len(slots) == 365
    assert {(slot.hour, slot.minute) for slot in slots} == {(18, 15)}
    hourly = Cron("0 * * * *", "Asia/Kathmandu")
    assert {slot.minute for slot in hourly.slots_between(start, start + timedelta(days=2))} == {15}


def test_fire_instants_are_aware_utc_whatever_zone_the_input_is_in() -> None:
    after = datetime(2026, 3, 7, 21, 0, tzinfo=ZoneInfo("Australia/Lord_Howe"))
    slot = Cron("0 * * * *", "Pacific/Chatham").next_after(after)
    assert slot.tzinfo is UTC
    assert slot > after

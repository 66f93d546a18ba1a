"""Celery-style schedules: crontab(...), schedule(...) and what a beat_schedule entry may hold."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import celery.schedules
import pytest

from celeriac.schedules import Cron, Every, ScheduleError, crontab, from_beat_entry, schedule

UTC = timezone.utc


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_crontab_takes_celerys_argument_names_and_order() -> None:
    assert crontab(0, 2) == crontab(minute=0, hour=2)
    every_quarter = crontab(minute="*/15")
    assert every_quarter.slots_between(at(2026, 1, 1), at(2026, 1, 1, 1)) == [
        at(2026, 1, 1, 0, 15), at(2026, 1, 1, 0, 30), at(2026, 1, 1, 0, 45), at(2026, 1, 1, 1)]
    weekdays = crontab(minute=30, hour=9, day_of_week="mon-fri")
    assert weekdays.next_after(at(2026, 5, 22, 10)) == at(2026, 5, 25, 9, 30)  # Friday -> Monday


def test_crontab_day_of_week_counts_from_sunday() -> None:
    assert crontab(0, 0, day_of_week=0).next_after(at(2026, 1, 1)) == at(2026, 1, 4)  # a Sunday
    assert crontab(0, 0, day_of_week="sun").next_after(at(2026, 1, 1)) == at(2026, 1, 4)


def test_crontab_accepts_collections_of_numbers() -> None:
    assert crontab(minute={30, 0}, hour=[9, 17]).slots_between(at(2026, 1, 1), at(2026, 1, 2)) == [
        at(2026, 1, 1, 9), at(2026, 1, 1, 9, 30), at(2026, 1, 1, 17), at(2026, 1, 1, 17, 30)]


def test_crontab_needs_day_of_month_and_day_of_week_both_like_celery() -> None:
    first_monday = crontab(0, 0, day_of_week="mon", day_of_month="1-7")
    assert first_monday.slots_between(at(2026, 1, 1), at(2026, 4, 1)) == [
        at(2026, 1, 5), at(2026, 2, 2), at(2026, 3, 2)]
    assert "both required" in first_monday.describe()
    assert "both required" not in crontab(0, 0).describe()


def test_crontab_without_a_zone_takes_the_schedulers_zone() -> None:
    nightly = crontab(minute=0, hour=2)
    assert nightly.tz == "UTC"
    assert not nightly.zone_given
    in_london = from_beat_entry(nightly, "Europe/London")
    assert isinstance(in_london, Cron)
    assert in_london.tz == "Europe/London"
    assert in_london.next_after(at(2026, 7, 1)) == at(2026, 7, 1, 1)  # 02:00 BST
    pinned = crontab(minute=0, hour=2, tz="America/New_York")
    assert from_beat_entry(pinned, "Europe/London") is pinned


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hour": 24}, r"field 2 \(hour\) value 24 is out of range 0-23"),
    ({"day_of_week": "funday"}, r"field 5 \(day-of-week\) 'funday' is not"),
    ({"minute": ""}, r"crontab minute='' is empty; use '\*' for every value"),
    ({"minute": set()}, r"a collection must hold one or more whole numbers"),
    ({"hour": True}, r"crontab hour=True: expected a number"),
    ({"hour": 2.5}, r"crontab hour=2.5: expected a number"),
])
def test_crontab_mistakes_name_the_argument_or_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        crontab(**kwargs)  # type: ignore[arg-type]


def test_schedule_is_an_interval() -> None:
    assert schedule(30) == Every(timedelta(seconds=30))
    assert schedule(run_every=timedelta(minutes=5)) == Every(timedelta(minutes=5))
    with pytest.raises(ScheduleError, match="at least 1 second"):
        schedule(0.1)


@pytest.mark.parametrize(("value", "expected"), [
    (30, Every(timedelta(seconds=30))),
    (30.0, Every(timedelta(seconds=30))),
    (timedelta(minutes=5), Every(timedelta(minutes=5))),
    (Every(timedelta(hours=1)), Every(timedelta(hours=1))),
    (schedule(10), Every(timedelta(seconds=10))),
    (Cron("@daily", "Asia/Kathmandu"), Cron("@daily", "Asia/Kathmandu")),
])
def test_beat_entry_schedules_read_like_celerys(value: object, expected: object) -> None:
    assert from_beat_entry(value, "Europe/London") == expected


def test_celerys_own_schedule_objects_port_unchanged() -> None:
    ported = from_beat_entry(celery.schedules.crontab(minute="*/10", hour="9-17", day_of_week="mon-fri"),
                             "Europe/London")
    assert ported == crontab(minute="*/10", hour="9-17", day_of_week="mon-fri", tz="Europe/London")
    both_days = from_beat_entry(celery.schedules.crontab(0, 0, day_of_month="1-7", day_of_week=1))
    assert isinstance(both_days, Cron)
    assert not both_days.day_or
    assert from_beat_entry(celery.schedules.schedule(timedelta(seconds=45))) == Every(timedelta(seconds=45))


def test_celery_solar_schedules_are_refused_with_a_reason() -> None:
    with pytest.raises(ScheduleError, match="Celery solar schedules are not supported"):
        # Built without __init__, which needs the optional ephem package; only its type matters here.
        from_beat_entry(celery.schedules.solar.__new__(celery.schedules.solar))


@pytest.mark.parametrize("value", ["*/5 * * * *", None, True, {"every": 30}, 0])
def test_anything_else_in_a_beat_entry_is_refused(value: object) -> None:
    with pytest.raises(ScheduleError):
        from_beat_entry(value)


def test_the_documented_beat_schedule_example_reads() -> None:
    beat_schedule = {
        "poll-feeds": {"task": "proj.poll_feeds", "schedule": 30.0},
        "rollup": {"task": "proj.rollup", "schedule": timedelta(minutes=5)},
        "nightly": {"task": "proj.nightly", "schedule": crontab(minute=0, hour=2)},
        "weekday-report": {"task": "proj.report", "schedule": crontab(minute=30, hour=9, day_of_week="mon-fri")},
        "us-open": {"task": "proj.open", "schedule": crontab(minute=30, hour=9, tz="America/New_York")},
        "heartbeat": {"task": "proj.ping", "schedule": schedule(run_every=60)},
    }
    described = {name: from_beat_entry(entry["schedule"], "Europe/London").describe()
                 for name, entry in beat_schedule.items()}
    assert described == {
        "poll-feeds": "every 30s",
        "rollup": "every 5m",
        "nightly": "cron '0 2 * * *' in Europe/London",
        "weekday-report": "cron '30 9 * * mon-fri' in Europe/London",
        "us-open": "cron '30 9 * * *' in America/New_York",
        "heartbeat": "every 1m",
    }

"""Entries from a BeatSchedule spec and from Celery's beat_schedule (pure parsing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from celeriac.beat import BeatConfigError
from celeriac.beat.entries import LeaseTimings, entry_from_beat_schedule, spec_from_beat_schedule, spec_from_resource
from celeriac.schedules import Cron, Every, crontab, schedule


def resource(*entries: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "bs"}, "spec": {"entries": list(entries), **spec}}


def item(**fields: Any) -> dict[str, Any]:
    return {"name": "report", "task": "app.report", "queue": "reports", "every": 30, **fields}


def test_resource_entry_with_defaults_applied_by_the_api_server() -> None:
    spec = spec_from_resource(resource(item(args=[1, "x"], kwargs={"k": 2})))
    (entry,) = spec.entries
    assert entry.name == "report"
    assert entry.task == "app.report"
    assert entry.queue == "reports"
    assert entry.schedule == Every(timedelta(seconds=30))
    assert entry.args == (1, "x")
    assert dict(entry.kwargs) == {"k": 2}
    assert (entry.missed_run_policy, entry.max_catch_up, entry.suspend) == ("runOnce", 10, False)
    assert spec.timings == LeaseTimings(15, 10, 2)
    assert spec.suspend is False


def test_resource_entry_cron_uses_its_own_time_zone_over_the_spec_zone() -> None:
    spec = spec_from_resource(resource(item(every=None, cron="0 9 * * 1-5", timeZone="Asia/Kathmandu"),
                                       timeZone="Europe/London"))
    assert spec.entries[0].schedule == Cron("0 9 * * 1-5", "Asia/Kathmandu")
    spec = spec_from_resource(resource(item(every=None, cron="@daily"), timeZone="Europe/London"))
    assert spec.entries[0].schedule == Cron("@daily", "Europe/London")


def test_resource_entry_options_policy_and_leader_election() -> None:
    spec = spec_from_resource(resource(
        item(options={"priority": 7, "expiresSeconds": 120, "headers": {"team": "ops"}},
             missedRunPolicy="runAll", maxCatchUp=3, suspend=True),
        suspend=True, leaderElection={"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1},
    ))
    entry = spec.entries[0]
    assert (entry.priority, entry.expires_s, dict(entry.headers)) == (7, 120.0, {"team": "ops"})
    assert (entry.missed_run_policy, entry.max_catch_up, entry.suspend) == ("runAll", 3, True)
    assert spec.suspend is True
    assert spec.timings == LeaseTimings(4, 3, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"every": 30, "cron": "* * * * *"}, "entry 'report'"),
        ({"every": None}, "entry 'report'"),
        ({"cron": "0 25 * * *", "every": None}, "hour"),
        ({"task": ""}, "task is required"),
        ({"queue": None}, "queue is required"),
        ({"missedRunPolicy": "sometimes"}, "missed-run policy 'sometimes'"),
        ({"maxCatchUp": 0}, "maxCatchUp"),
        ({"options": {"priority": 12}}, "options.priority"),
    ],
)
def test_bad_resource_entry_names_the_entry_and_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BeatConfigError, match=message):
        spec_from_resource(resource(item(**fields)))


def test_duplicate_entry_names_are_rejected() -> None:
    with pytest.raises(BeatConfigError, match="duplicate names"):
        spec_from_resource(resource(item(), item()))


def test_lease_timings_must_be_ordered() -> None:
    with pytest.raises(BeatConfigError, match="retry period"):
        spec_from_resource(resource(item(), leaderElection={"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}))


def test_beat_schedule_celery_format_with_crontab_schedule_and_seconds() -> None:
    spec = spec_from_beat_schedule({
        "every-minute": {"task": "proj.tick", "schedule": 60.0, "args": (1,), "options": {"queue": "fast"}},
        "mornings": {"task": "proj.report", "schedule": crontab(minute=0, hour=9), "kwargs": {"x": 1},
                     "options": {"expires": timedelta(minutes=5), "priority": 3}},
        "interval": {"task": "proj.tick", "schedule": schedule(timedelta(seconds=10)),
                     "missed_run_policy": "run_all", "max_catch_up": 5},
    }, tz="America/New_York")
    tick, report, interval = spec.entries
    assert (tick.name, tick.queue, tick.args) == ("every-minute", "fast", (1,))
    assert tick.schedule == Every(timedelta(seconds=60))
    assert report.queue is None  # routed like send_task
    assert report.schedule == crontab(minute=0, hour=9, tz="America/New_York")
    assert (report.expires_s, report.priority, dict(report.kwargs)) == (300.0, 3, {"x": 1})
    assert (interval.missed_run_policy, interval.max_catch_up) == ("runAll", 5)
    assert spec.timings is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"schedule": 10}, "'task' is required"),
        ({"task": "t"}, "'schedule' is required"),
        ({"task": "t", "schedule": "soon"}, r"beat_schedule\['x'\]"),
        ({"task": "t", "schedule": 10, "args": "a"}, "must be a list"),
        ({"task": "t", "schedule": 10, "options": {"expires": -1}}, "positive seconds"),
    ],
)
def test_bad_beat_schedule_entry_says_which_and_why(value: dict[str, Any], message: str) -> None:
    with pytest.raises(BeatConfigError, match=message):
        entry_from_beat_schedule("x", value)


def test_beat_schedule_must_be_a_dict() -> None:
    with pytest.raises(BeatConfigError, match="dict of name"):
        spec_from_beat_schedule([("a", {})])

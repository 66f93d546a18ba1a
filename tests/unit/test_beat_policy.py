"""Missed-run policies and deterministic ids (pure logic)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from celeriac.beat.entries import Entry
from celeriac.beat.policy import decide
from celeriac.beat.publisher import SCHEDULED_ID_NAMESPACE, guard_ttl_s, scheduled_task_id, slot_iso
from celeriac.schedules import Every, build_schedule

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def entry(policy: str = "runOnce", every_s: int = 60, cap: int = 10) -> Entry:
    return Entry(name="e", task="t", schedule=Every(timedelta(seconds=every_s)), missed_run_policy=policy,
                 max_catch_up=cap)


def minutes(*values: int) -> tuple[datetime, ...]:
    return tuple(T0 + timedelta(minutes=v) for v in values)


def test_on_time_slot_fires_under_every_policy() -> None:
    for policy in ("skip", "runOnce", "runAll"):
        decision = decide(entry(policy), T0 - timedelta(seconds=30), T0 + timedelta(seconds=1), grace_s=2)
        assert decision.fire == (T0,)
        assert decision.latest == T0


def test_skip_fires_none_of_the_missed_slots_but_moves_past_them() -> None:
    decision = decide(entry("skip"), T0, T0 + timedelta(minutes=5, seconds=30), grace_s=2)
    assert decision.fire == ()
    assert decision.latest == T0 + timedelta(minutes=5)
    assert decision.missed > 0  # counted among the slots looked at (a bounded window)


def test_run_once_fires_only_the_most_recent_missed_slot() -> None:
    decision = decide(entry("runOnce"), T0, T0 + timedelta(minutes=5, seconds=30), grace_s=2)
    assert decision.fire == minutes(5)
    assert decision.missed > 0


def test_run_all_fires_missed_slots_oldest_first() -> None:
    decision = decide(entry("runAll"), T0, T0 + timedelta(minutes=3, seconds=30), grace_s=2)
    assert decision.fire == minutes(1, 2, 3)


def test_run_all_is_capped_at_max_catch_up_keeping_the_most_recent() -> None:
    decision = decide(entry("runAll", cap=3), T0, T0 + timedelta(hours=5, seconds=30), grace_s=2)
    assert decision.fire == minutes(298, 299, 300)
    assert decision.latest == T0 + timedelta(minutes=300)


def test_run_all_with_a_slot_on_time_fires_missed_then_on_time() -> None:
    decision = decide(entry("runAll", every_s=1), T0, T0 + timedelta(seconds=5, milliseconds=500), grace_s=2)
    assert [d - T0 for d in decision.fire] == [timedelta(seconds=s) for s in (1, 2, 3, 4, 5)]


def test_nothing_due_before_the_next_slot() -> None:
    decision = decide(entry(), T0, T0 + timedelta(seconds=59), grace_s=2)
    assert decision == decide(entry(), T0, T0, grace_s=2)
    assert decision.fire == ()
    assert decision.latest is None


def test_cron_entry_catches_up_once_after_a_long_outage() -> None:
    cron = Entry(name="c", task="t", schedule=build_schedule(cron="0 9 * * *", tz="Europe/London"))
    decision = decide(cron, T0 - timedelta(days=30), T0, grace_s=2)
    assert decision.fire == (datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc),)


def test_scheduled_task_id_is_uuid5_of_schedule_entry_and_utc_slot() -> None:
    slot = datetime(2026, 3, 8, 3, 0, tzinfo=timezone(timedelta(hours=-4)))
    expected = uuid.uuid5(SCHEDULED_ID_NAMESPACE, "ns/nightly\nreport\n2026-03-08T07:00:00+00:00")
    assert scheduled_task_id("ns/nightly", "report", slot) == str(expected)
    assert slot_iso(slot) == "2026-03-08T07:00:00+00:00"


def test_scheduled_task_id_differs_per_schedule_entry_and_slot() -> None:
    ids = {
        scheduled_task_id("a/b", "e", T0),
        scheduled_task_id("a/c", "e", T0),
        scheduled_task_id("a/b", "f", T0),
        scheduled_task_id("a/b", "e", T0 + timedelta(seconds=1)),
    }
    assert len(ids) == 4
    assert scheduled_task_id("a/b", "e", T0) == scheduled_task_id("a/b", "e", T0.astimezone(timezone.utc))


@pytest.mark.parametrize(("period_s", "ttl_s"), [(1, 3600), (3600, 7200), (86400, 172800)])
def test_guard_ttl_is_at_least_an_hour_and_two_periods(period_s: float, ttl_s: int) -> None:
    assert guard_ttl_s(period_s) == ttl_s

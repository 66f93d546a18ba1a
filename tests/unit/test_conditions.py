"""Condition merging: transition times move only on status changes; every condition has observedGeneration."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celeriac_operator import conditions
from celeriac_operator.conditions import Condition

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_a_new_condition_gets_the_current_time_and_generation() -> None:
    merged = conditions.merge([], [Condition.of("Ready", True, "WorkersReady", "1/1")], generation=4, now=T0)
    assert merged == [{"type": "Ready", "status": "True", "reason": "WorkersReady", "message": "1/1",
                       "lastTransitionTime": "2026-01-01T12:00:00Z", "observedGeneration": 4}]


def test_same_status_keeps_the_transition_time_but_updates_reason_message_and_generation() -> None:
    first = conditions.merge([], [Condition.of("Ready", False, "A", "x")], generation=1, now=T0)
    later = conditions.merge(first, [Condition.of("Ready", False, "B", "y")], generation=2,
                             now=T0 + timedelta(minutes=5))
    assert later[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert (later[0]["reason"], later[0]["message"], later[0]["observedGeneration"]) == ("B", "y", 2)


def test_a_status_change_moves_the_transition_time() -> None:
    first = conditions.merge([], [Condition.of("Ready", False, "A")], generation=1, now=T0)
    later = conditions.merge(first, [Condition.of("Ready", True, "B")], generation=1, now=T0 + timedelta(hours=1))
    assert later[0]["lastTransitionTime"] == "2026-01-01T13:00:00Z"


def test_conditions_not_updated_are_kept_and_the_order_is_stable() -> None:
    first = conditions.merge([], [Condition.of("Ready", True, "A"), Condition.of("Autoscaling", True, "M")],
                             generation=1, now=T0)
    later = conditions.merge(first, [Condition.of("QueuesResolved", True, "Resolved")], generation=2, now=T0)
    assert [c["type"] for c in later] == ["Autoscaling", "QueuesResolved", "Ready"]
    assert later[2] == first[1]


def test_find_and_is_true() -> None:
    merged = conditions.merge([], [Condition.of("Ready", True, "A"), Condition.of("BrokerReachable", False, "B")],
                              generation=1, now=T0)
    assert conditions.is_true(merged, "Ready")
    assert not conditions.is_true(merged, "BrokerReachable")
    assert not conditions.is_true(merged, "Missing")
    assert conditions.find(merged, "Missing") is None

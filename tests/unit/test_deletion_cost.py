"""Pod deletion costs: idle workers go first, pods without heartbeats next, busy workers last."""

from __future__ import annotations

import pytest

from celeriac.worker.heartbeat import WorkerRecord
from celeriac_operator.autoscaler import PodInfo, deletion_costs, parse_cost
from celeriac_operator.autoscaler.deletion_cost import BUSY_COST, IDLE_COST, MAX_COST, UNKNOWN_COST


def worker(pod: str | None, active: int = 0, reserved: int = 0, prefetched: int = 0,
           worker_id: str | None = None) -> WorkerRecord:
    return WorkerRecord(worker_id=worker_id or f"celery@{pod}", hostname=f"celery@{pod}", pod_name=pod, pid=1,
                        queues=("q",), concurrency=2, active=active, reserved=reserved, prefetched=prefetched,
                        processed=0, last_seen_s=0.0, started_at_s=0.0, interval_s=5.0)


def test_idle_pods_cost_less_than_starting_pods_which_cost_less_than_busy_pods() -> None:
    pods = [PodInfo("idle", None), PodInfo("starting", None), PodInfo("busy", None)]
    costs = deletion_costs(pods, [worker("idle"), worker("busy", active=1)])
    assert costs == {"idle": IDLE_COST, "starting": UNKNOWN_COST, "busy": BUSY_COST + 1}
    assert costs["idle"] < costs["starting"] < costs["busy"]


@pytest.mark.parametrize(("record", "expected"), [
    (worker("p", active=2), BUSY_COST + 2),
    (worker("p", reserved=3), BUSY_COST + 3),
    (worker("p", prefetched=4, reserved=1), BUSY_COST + 4),       # prefetched includes the reserved ones
    (worker("p", active=2, reserved=5, prefetched=5), BUSY_COST + 7),
    (worker("p", active=MAX_COST), MAX_COST),                     # capped inside int32
])
def test_busy_pods_cost_more_the_more_tasks_they_hold(record: WorkerRecord, expected: int) -> None:
    assert deletion_costs([PodInfo("p", None)], [record]) == {"p": expected}


def test_only_pods_whose_annotation_changes_are_returned() -> None:
    pods = [PodInfo("a", IDLE_COST), PodInfo("b", BUSY_COST + 1), PodInfo("c", IDLE_COST), PodInfo("d", None)]
    workers = [worker("a"), worker("b", active=1), worker("c", active=2), worker("d")]
    assert deletion_costs(pods, workers) == {"c": BUSY_COST + 2, "d": IDLE_COST}


def test_a_pod_with_two_records_adds_them_up() -> None:
    # A worker restarted inside its pod before the old record expired.
    workers = [worker("p", active=1, worker_id="old@p"), worker("p", active=2, worker_id="new@p")]
    assert deletion_costs([PodInfo("p", None)], workers) == {"p": BUSY_COST + 3}


def test_workers_without_a_pod_or_of_other_pods_are_ignored() -> None:
    workers = [worker(None, active=5, worker_id="laptop"), worker("elsewhere", active=1)]
    assert deletion_costs([PodInfo("p", None)], workers) == {"p": UNKNOWN_COST}


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("0", 0), (" -5 ", -5), ("101", 101), ("abc", None), ("", None), ("1.5", None),
])
def test_annotation_values_parse_to_int_or_none(value: str | None, expected: int | None) -> None:
    assert parse_cost(value) == expected

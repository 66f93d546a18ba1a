"""Which worker pods a scale-down should remove first. Pure: pods and heartbeats in, annotations out.

A ReplicaSet that scales down deletes, among pods equally far along (scheduled, running, ready),
the ones with the lowest ``controller.kubernetes.io/pod-deletion-cost`` first. Before each
scale-down the operator sets that annotation from the workers' heartbeats:

==================== ============================== ==========================================
pod                  cost                           why
==================== ============================== ==========================================
idle worker          ``IDLE_COST`` (0)              nothing to lose: remove these first
no fresh heartbeat   ``UNKNOWN_COST`` (1)           starting, or a runtime without heartbeats
                                                    (``celery``): maybe busy, so after idle
busy worker          ``BUSY_COST`` + tasks in hand  keep; among busy ones, the fewest tasks go
                     (capped at ``MAX_COST``)       first (the least work to drain)
==================== ============================== ==========================================

Pods the ReplicaSet ranks earlier anyway (unscheduled, pending, not ready) are deleted before
any of these whatever their cost. Only changed annotations are returned, so an unchanged pool
costs no API calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from celeriac.worker.heartbeat import WorkerRecord

IDLE_COST = 0
UNKNOWN_COST = 1
BUSY_COST = 100
MAX_COST = 1_000_000
"""Well inside the annotation's int32 range."""


@dataclass(frozen=True)
class PodInfo:
    """A worker pod as the operator sees it."""

    name: str
    current_cost: int | None
    """The pod's ``controller.kubernetes.io/pod-deletion-cost`` now (None: absent or unparsable)."""


def pod_cost(records: Sequence[WorkerRecord]) -> int:
    """The cost of a pod given the (fresh) heartbeat records that name it."""
    if not records:
        return UNKNOWN_COST
    if not any(record.busy for record in records):
        return IDLE_COST
    # ``reserved`` and ``prefetched`` both count received-but-not-running tasks; take the larger.
    in_hand = sum(record.active + max(record.reserved, record.prefetched) for record in records)
    return min(BUSY_COST + in_hand, MAX_COST)


def deletion_costs(pods: Sequence[PodInfo], workers: Sequence[WorkerRecord]) -> dict[str, int]:
    """``{pod name: cost}`` for the pods whose annotation must be set or changed.

    ``workers`` are fresh heartbeat records (``read_workers``); they map to pods by
    ``pod_name`` (the worker's ``POD_NAME``). A pod with several records (a worker restarted
    inside it before the old record expired) takes their sum.
    """
    by_pod: dict[str, list[WorkerRecord]] = {}
    for record in workers:
        if record.pod_name:
            by_pod.setdefault(record.pod_name, []).append(record)
    changes = {}
    for pod in pods:
        cost = pod_cost(by_pod.get(pod.name, ()))
        if cost != pod.current_cost:
            changes[pod.name] = cost
    return changes


def parse_cost(value: str | None) -> int | None:
    """The annotation's value as an int, or None when absent or not an integer."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None

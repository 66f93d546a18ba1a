"""Prometheus collectors of one worker, on their own registry.

Each :class:`WorkerMetrics` owns a fresh ``CollectorRegistry`` instead of the process-global
one, so several workers (or several tests) in one process never collide on metric names.
The health server renders :meth:`WorkerMetrics.render` on ``/metrics``.

Metrics (``task`` is the registered task name):

* ``celeriac_tasks_received_total{task}``   counter, messages accepted for execution
* ``celeriac_tasks_succeeded_total{task}``  counter, executions that returned
* ``celeriac_tasks_failed_total{task}``     counter, executions that raised (final failure)
* ``celeriac_tasks_retried_total{task}``    counter, executions that asked for a retry
* ``celeriac_scheduled_duplicates_skipped_total{task}`` counter, scheduled messages acked unrun because
  their id was already SUCCESS (a scheduler failover duplicate)
* ``celeriac_task_runtime_seconds{task}``   histogram, execution wall time in seconds
* ``celeriac_tasks_prefetched``             gauge, messages held by the worker but not yet running
* ``celeriac_tasks_active``                 gauge, tasks running right now
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :meth:`WorkerMetrics.render`'s output (Prometheus text format)."""

RUNTIME_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)
"""Histogram buckets in seconds: from sub-millisecond tasks up to five-minute batch jobs."""


class WorkerMetrics:
    """The collectors of one worker; :class:`celeriac.worker.state.WorkerState` updates them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "celeriac_tasks_received", "Task messages received for execution.", ["task"],
            registry=self.registry,
        )
        self.succeeded = Counter(
            "celeriac_tasks_succeeded", "Task executions that succeeded.", ["task"], registry=self.registry
        )
        self.failed = Counter(
            "celeriac_tasks_failed", "Task executions that failed.", ["task"], registry=self.registry
        )
        self.retried = Counter(
            "celeriac_tasks_retried", "Task executions that asked for a retry.", ["task"],
            registry=self.registry,
        )
        self.scheduled_duplicates = Counter(
            "celeriac_scheduled_duplicates_skipped",
            "Scheduled messages acked without running: their id had already succeeded.", ["task"],
            registry=self.registry,
        )
        self.runtime = Histogram(
            "celeriac_task_runtime_seconds", "Task execution time in seconds.", ["task"],
            buckets=RUNTIME_BUCKETS_S, registry=self.registry,
        )
        self.prefetched = Gauge(
            "celeriac_tasks_prefetched", "Messages held by the worker and not yet running.",
            registry=self.registry,
        )
        self.active = Gauge("celeriac_tasks_active", "Tasks running now.", registry=self.registry)
        self._children: dict[tuple[MetricWrapperBase, str], Any] = {}

    def for_task(self, collector: MetricWrapperBase, task: str) -> Any:
        """``collector.labels(task=task)``, remembered: ``labels()`` costs about 1 µs, and the
        worker updates two or three collectors per message."""
        child = self._children.get((collector, task))
        if child is None:
            child = self._children[collector, task] = collector.labels(task=task)
        return child

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)

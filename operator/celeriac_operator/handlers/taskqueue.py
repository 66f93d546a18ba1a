"""TaskQueue handlers: a periodic broker check (status backlog, brokerHost, BrokerReachable, Ready), and
re-reconciling the WorkerPools and BeatSchedules of the namespace when a TaskQueue appears, changes or goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from celeriac_operator import autoscaler, conditions, names
from celeriac_operator.conditions import Condition
from celeriac_operator.errors import OperatorError, Unresolved
from celeriac_operator.handlers._common import changed_condition, now, on_change_and_every, post, write_status
from celeriac_operator.kube import Kube
from celeriac_operator.models import TaskQueue
from celeriac_operator.settings import Settings

RESOURCE = (names.GROUP, names.VERSION, names.TASKQUEUE_PLURAL)

Dependents = Callable[[str], None]
"""Re-reconcile every WorkerPool and BeatSchedule of a namespace."""


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube, dependents: Dependents) -> None:
    on_change_and_every(registry, RESOURCE, apply_id="taskqueue_apply", timer_id="taskqueue_check",
                        interval_s=settings.taskqueue_check_interval_s, retry_delay_s=settings.retry_delay_s,
                        reconcile=lambda body: check(kube, settings, body))

    @kopf.on.event(*RESOURCE, registry=registry, id="taskqueue_event")
    def taskqueue_event(type: str, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
        # ADDED/DELETED change what WorkerPools and BeatSchedules resolve to; MODIFIED may change the
        # queue name or broker Secret, but also fires on our own status writes, so the periodic
        # re-check covers it instead of re-reconciling on every status write.
        if type in ("ADDED", "DELETED") and namespace:
            try:
                dependents(namespace)
            except OperatorError as exc:
                logger.warning("re-reconciling dependents of a TaskQueue failed: %s", exc)


def check(kube: Kube, settings: Settings, body: Mapping[str, Any]) -> None:
    """Measure the queue on its broker and record reachability and backlog in status."""
    queue = TaskQueue.from_body(body)
    ref = queue.spec.broker.secret_ref
    fields: dict[str, Any] = {"observedGeneration": queue.generation, "lastCheckTime": conditions.timestamp(now())}
    try:
        url = kube.secret_value(queue.namespace, ref.name, ref.key)
        fields["brokerHost"] = autoscaler.broker_host(url)
        backlog = autoscaler.measure(url, [queue.queue_name], prefix=settings.redis_key_prefix)
    except Unresolved as problem:
        _unreachable(kube, queue, body, fields, reason=problem.reason, message=problem.message)
        return
    except autoscaler.BrokerUnreachable as exc:
        _unreachable(kube, queue, body, fields, reason="Unreachable", message=str(exc))
        return
    except ValueError as exc:
        _unreachable(kube, queue, body, fields, reason="UnsupportedScheme", message=str(exc))
        return
    fields["backlog"] = int(backlog.by_queue.get(queue.queue_name, backlog.queued))
    if changed_condition(body, conditions.BROKER_REACHABLE, conditions.TRUE, "Reachable"):
        post(body, reason="BrokerReachable", message=f"broker {fields['brokerHost']} reachable")
    message = f"queue {queue.queue_name} on {fields['brokerHost']}"
    write_status(kube, names.TASKQUEUE_KIND, queue.namespace, queue.name, generation=queue.generation,
                 fields=fields, updates=[Condition.of(conditions.BROKER_REACHABLE, True, "Reachable", message),
                                         Condition.of(conditions.READY, True, "Reachable", message)])


def _unreachable(kube: Kube, queue: TaskQueue, body: Mapping[str, Any], fields: dict[str, Any], *,
                 reason: str, message: str) -> None:
    if changed_condition(body, conditions.BROKER_REACHABLE, conditions.FALSE, reason):
        post(body, reason=reason, message=message, warning=True)
    write_status(kube, names.TASKQUEUE_KIND, queue.namespace, queue.name, generation=queue.generation,
                 fields=fields, updates=[Condition.of(conditions.BROKER_REACHABLE, False, reason, message),
                                         Condition.of(conditions.READY, False, reason, message)])

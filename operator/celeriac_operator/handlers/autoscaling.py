"""The autoscaler daemon: one thread per WorkerPool, polling every ``spec.autoscaling.pollIntervalSeconds``.

Each poll: resolve the TaskQueues -> broker URL from their Secret -> :func:`autoscaler.measure` ->
:func:`autoscaler.decide` -> before a scale-down, annotate pods with ``pod-deletion-cost`` so the ReplicaSet
removes idle workers first -> scale the Deployment (only ``spec.replicas``, autoscaler field manager) ->
status ``desiredReplicas``, ``backlog``, ``busyWorkers``, ``lastScaleTime`` and condition ``Autoscaling``
-> an Event per change. The :class:`ScaleState` lives in the daemon's memory; after an operator restart it
is rebuilt from the Deployment and ``status.lastScaleTime`` (:func:`autoscaler.restore_state`), which holds
scale-downs for one full window and never scales up late.

With autoscaling off, the daemon only keeps ``status.replicas`` / ``readyReplicas`` current.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import kopf

from celeriac_operator import autoscaler, conditions, names
from celeriac_operator.builders import common
from celeriac_operator.builders import workerpool as build
from celeriac_operator.conditions import Condition
from celeriac_operator.errors import OperatorError, Unresolved
from celeriac_operator.handlers._common import changed_condition, post, taskqueues, write_status
from celeriac_operator.kube import Kube
from celeriac_operator.models import WorkerPool
from celeriac_operator.queues import resolve
from celeriac_operator.settings import Settings

RESOURCE = (names.GROUP, names.VERSION, names.WORKERPOOL_PLURAL)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    @kopf.daemon(*RESOURCE, registry=registry, id="workerpool_autoscale", cancellation_timeout=10.0)
    def workerpool_autoscale(stopped: kopf.DaemonStopped, body: kopf.Body, logger: kopf.Logger,
                             **_: Any) -> None:
        state: autoscaler.ScaleState | None = None
        while not stopped:
            pool = WorkerPool.from_body(body)
            try:
                state = poll(kube, settings, pool, body, state)
            except (OperatorError, autoscaler.AutoscalerError, ValueError) as exc:
                logger.warning("autoscaler poll of %s/%s failed: %s", pool.namespace, pool.name, exc)
            stopped.wait(pool.autoscaling.poll_interval_seconds)


def policy_of(pool: WorkerPool) -> autoscaler.ScalePolicy:
    """The autoscaler's policy from ``spec.autoscaling``."""
    spec = pool.autoscaling
    return autoscaler.ScalePolicy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_backlog_per_replica=spec.target_backlog_per_replica,
        activation_backlog=spec.activation_backlog,
        scale_down_stabilization_s=float(spec.scale_down_stabilization_seconds),
        scale_down_max_step=spec.scale_down_max_step,
    )


def poll(kube: Kube, settings: Settings, pool: WorkerPool, body: Mapping[str, Any],
         state: autoscaler.ScaleState | None) -> autoscaler.ScaleState | None:
    """One autoscaler poll; returns the state for the next one (None when not autoscaling)."""
    deployment = kube.get("Deployment", pool.namespace, build.deployment_name(pool))
    if deployment is None:
        return None  # the reconcile creates it (or reports why it can't)
    current = int((deployment.get("spec") or {}).get("replicas") or 0)
    fields = _replica_fields(deployment)
    if not pool.autoscaling.enabled:
        _write_if_changed(kube, pool, body, fields, [])
        return None
    try:
        queues = resolve(pool.namespace, pool.spec.queues, taskqueues(kube, pool.namespace))
        broker_url = kube.secret_value(pool.namespace, queues.secret_name, queues.secret_key)
    except Unresolved:
        return state  # QueuesResolved=False already says why
    now_s = time.time()
    try:
        backlog = autoscaler.measure(broker_url, queues.broker_queues, now_s=now_s,
                                     prefix=settings.redis_key_prefix,
                                     stale_after_s=settings.heartbeat_stale_after_s)
    except autoscaler.BrokerUnreachable as exc:
        message = str(exc)
        if changed_condition(body, conditions.AUTOSCALING, conditions.FALSE, "BrokerUnreachable"):
            post(body, reason="BrokerUnreachable", message=message, warning=True)
        _write_if_changed(kube, pool, body, fields,
                          [Condition.of(conditions.AUTOSCALING, False, "BrokerUnreachable", message)])
        return state
    if state is None:
        state = autoscaler.restore_state(now_s=now_s, current_replicas=current,
                                         last_scale_time_s=_last_scale_time_s(body))
    decision = autoscaler.decide(policy_of(pool), state, now_s=now_s, backlog=backlog.total,
                                 busy_workers=backlog.busy_workers, current_replicas=current)
    fields.update({"desiredReplicas": decision.desired, "backlog": backlog.total,
                   "busyWorkers": backlog.busy_workers})
    if decision.desired < current:
        _mark_idle_pods(kube, settings, pool, broker_url, now_s)
    if decision.desired != current:
        kube.scale(pool.namespace, build.deployment_name(pool), decision.desired)
        fields["lastScaleTime"] = conditions.timestamp(datetime.fromtimestamp(now_s, timezone.utc))
        post(body, reason="Scaled", message=decision.reason)
    if changed_condition(body, conditions.AUTOSCALING, conditions.TRUE, "BacklogMeasured"):
        post(body, reason="BacklogMeasured", message=f"autoscaling on backlog {backlog.total}")
    _write_if_changed(kube, pool, body, fields, [
        Condition.of(conditions.AUTOSCALING, True, "BacklogMeasured",
                     f"backlog {backlog.total}, {backlog.busy_workers} busy worker(s), "
                     f"{decision.desired} replica(s) wanted"),
    ])
    return decision.state


def _replica_fields(deployment: Mapping[str, Any]) -> dict[str, Any]:
    status = deployment.get("status") or {}
    return {"replicas": int(status.get("replicas") or 0), "readyReplicas": int(status.get("readyReplicas") or 0)}


def _write_if_changed(kube: Kube, pool: WorkerPool, body: Mapping[str, Any], fields: dict[str, Any],
                      updates: list[Condition]) -> None:
    """Write status only when a field or a condition's status/reason differs (not every poll)."""
    status = body.get("status") or {}
    changed = {key: value for key, value in fields.items() if status.get(key) != value}
    stale = [u for u in updates if changed_condition(body, u.type, u.status, u.reason)]
    if changed or stale:
        write_status(kube, names.WORKERPOOL_KIND, pool.namespace, pool.name, generation=None,
                     fields=changed, updates=updates)


def _last_scale_time_s(body: Mapping[str, Any]) -> float | None:
    raw = (body.get("status") or {}).get("lastScaleTime")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _mark_idle_pods(kube: Kube, settings: Settings, pool: WorkerPool, broker_url: str, now_s: float) -> None:
    """Give idle workers' pods a low deletion cost (busy ones higher) before the ReplicaSet picks victims."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return  # heartbeats live in Redis; with an AMQP broker the ReplicaSet picks by its own rules
    import redis

    from celeriac.worker.heartbeat import read_workers

    pods = kube.list("Pod", pool.namespace, common.selector_string(build.selector(pool)))
    infos = [
        autoscaler.PodInfo(pod["metadata"]["name"], autoscaler.parse_cost(
            (pod["metadata"].get("annotations") or {}).get(names.POD_DELETION_COST)))
        for pod in pods
    ]
    client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        workers = read_workers(client, settings.redis_key_prefix, now_s, settings.heartbeat_stale_after_s)
    finally:
        client.close()
    for name, cost in autoscaler.deletion_costs(infos, workers).items():
        kube.annotate_pod(pool.namespace, name, {names.POD_DELETION_COST: str(cost)})



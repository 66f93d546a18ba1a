"""WorkerPool handlers: reconcile the Deployment and PodDisruptionBudget; status Ready / QueuesResolved.

Reconciles on create, update and resume, and every ``recheck_interval_s`` (so a TaskQueue or Secret created
after the WorkerPool is picked up on its own). The autoscaler daemon lives in :mod:`.autoscaling`.

``spec.replicas`` ownership: with autoscaling off the reconcile applies ``spec.replicas`` itself; with it on,
the reconcile leaves the field out and the autoscaler's field manager owns it. Before a reconcile drops the
field, the autoscaler's manager claims it (same value), or server-side apply would reset it to the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from celeriac_operator import conditions, names
from celeriac_operator.builders import common
from celeriac_operator.builders import workerpool as build
from celeriac_operator.conditions import Condition
from celeriac_operator.errors import Unresolved
from celeriac_operator.handlers._common import (
    on_change_and_every,
    post,
    post_queues_recovered,
    report_problem,
    taskqueues,
    write_status,
)
from celeriac_operator.kube import Kube
from celeriac_operator.models import WorkerPool
from celeriac_operator.queues import REASON_RESOLVED, ResolvedQueues, resolve
from celeriac_operator.settings import Settings

RESOURCE = (names.GROUP, names.VERSION, names.WORKERPOOL_PLURAL)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    on_change_and_every(registry, RESOURCE, apply_id="workerpool_apply", timer_id="workerpool_recheck",
                        interval_s=settings.recheck_interval_s, retry_delay_s=settings.retry_delay_s,
                        reconcile=lambda body: reconcile(kube, settings, body))


def reconcile(kube: Kube, settings: Settings, body: Mapping[str, Any]) -> None:
    """Bring the Deployment and PDB of one WorkerPool in line with its spec; record the outcome in status."""
    pool = WorkerPool.from_body(body)
    try:
        queues = resolve(pool.namespace, pool.spec.queues, taskqueues(kube, pool.namespace))
    except Unresolved as problem:
        report_problem(kube, pool, body, reason=problem.reason, message=problem.message,
                       condition_types=(conditions.QUEUES_RESOLVED, conditions.READY),
                       fields={"observedGeneration": pool.generation})
        return
    deployment_name = build.deployment_name(pool)
    existing = kube.get("Deployment", pool.namespace, deployment_name)
    applied = kube.apply(build.deployment(pool, queues, default_image=settings.worker_image,
                                          replicas=_replicas_to_apply(kube, pool, existing)))
    if existing is None and pool.autoscaling.enabled:
        # Created with minReplicas by the reconcile; hand spec.replicas to the autoscaler's field manager.
        applied = kube.scale(pool.namespace, deployment_name, pool.autoscaling.min_replicas)
    if build.wants_pdb(pool):
        kube.apply(build.pdb(pool))
    else:
        kube.delete("PodDisruptionBudget", pool.namespace, deployment_name)
    if existing is None:
        post(body, reason="Created", message=f"Created Deployment {deployment_name}")
    elif _template_changed(existing, applied):
        post(body, reason="Updated", message=f"Updated Deployment {deployment_name}")
    _resolved(kube, pool, body, queues, applied)


def _replicas_to_apply(kube: Kube, pool: WorkerPool, existing: Mapping[str, Any] | None) -> int | None:
    scaling = pool.autoscaling
    if not scaling.enabled:
        return pool.spec.replicas
    if existing is None:
        return scaling.min_replicas
    if _reconcile_owns_replicas(existing):
        current = int((existing.get("spec") or {}).get("replicas", scaling.min_replicas))
        kube.scale(pool.namespace, build.deployment_name(pool),
                   min(max(current, scaling.min_replicas), scaling.max_replicas))
    return None


def _reconcile_owns_replicas(deployment: Mapping[str, Any]) -> bool:
    for entry in (deployment.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == names.FIELD_MANAGER and entry.get("operation") == "Apply":
            return "f:replicas" in dict((entry.get("fieldsV1") or {}).get("f:spec") or {})
    return False


def _template_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    def template(obj: Mapping[str, Any]) -> Any:
        return (obj.get("spec") or {}).get("template")

    return bool(template(before) != template(after))


def _resolved(kube: Kube, pool: WorkerPool, body: Mapping[str, Any], queues: ResolvedQueues,
              deployment: Mapping[str, Any]) -> None:
    post_queues_recovered(body)
    status = deployment.get("status") or {}
    wanted = int((deployment.get("spec") or {}).get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    fields: dict[str, Any] = {
        "observedGeneration": pool.generation,
        "queues": ",".join(queues.broker_queues),
        "selector": common.selector_string(build.selector(pool)),
        "replicas": int(status.get("replicas") or 0),
        "readyReplicas": ready,
    }
    if not pool.autoscaling.enabled:
        fields["desiredReplicas"] = pool.spec.replicas
    if wanted == 0:
        ready_condition = Condition.of(conditions.READY, True, "ScaledToZero", "no replicas wanted")
    else:
        ready_condition = Condition.of(conditions.READY, ready >= wanted,
                                       "WorkersReady" if ready >= wanted else "WorkersNotReady",
                                       f"{ready}/{wanted} workers ready")
    queue_list = ", ".join(queues.queue_names)
    write_status(kube, names.WORKERPOOL_KIND, pool.namespace, pool.name, generation=pool.generation, fields=fields,
                 updates=[Condition.of(conditions.QUEUES_RESOLVED, True, REASON_RESOLVED,
                                       f"TaskQueues {queue_list} on Secret {queues.secret_name}"),
                          ready_condition])

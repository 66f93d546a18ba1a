"""BeatSchedule handlers: reconcile ServiceAccount, Role, RoleBinding and Deployment ``<name>-beat``.

The operator owns only ``observedGeneration``, ``entryCount`` and ``conditions`` (Ready, QueuesResolved) of
the status; the leading beat process writes the rest, so every status write here is a merge patch of just
those fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from celeriac_operator import conditions, names
from celeriac_operator.builders import beatschedule as build
from celeriac_operator.conditions import Condition
from celeriac_operator.errors import Unresolved
from celeriac_operator.handlers._common import changed_condition, kopf_errors, post, taskqueues, write_status
from celeriac_operator.kube import Kube
from celeriac_operator.models import BeatSchedule
from celeriac_operator.queues import REASON_RESOLVED, resolve
from celeriac_operator.settings import Settings

RESOURCE = (names.GROUP, names.VERSION, names.BEATSCHEDULE_PLURAL)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    @kopf.on.resume(*RESOURCE, registry=registry, id="beatschedule_apply")
    @kopf.on.create(*RESOURCE, registry=registry, id="beatschedule_apply")
    @kopf.on.update(*RESOURCE, registry=registry, id="beatschedule_apply")
    def beatschedule_apply(body: kopf.Body, **_: Any) -> None:
        with kopf_errors(settings.retry_delay_s):
            reconcile(kube, settings, body)

    @kopf.timer(*RESOURCE, interval=settings.recheck_interval_s, registry=registry, id="beatschedule_recheck")
    def beatschedule_recheck(body: kopf.Body, **_: Any) -> None:
        with kopf_errors(settings.retry_delay_s):
            reconcile(kube, settings, body)


def reconcile(kube: Kube, settings: Settings, body: Mapping[str, Any]) -> None:
    """Apply the beat's objects for one BeatSchedule and record Ready / QueuesResolved / entryCount."""
    schedule = BeatSchedule.from_body(body)
    fields = {"observedGeneration": schedule.generation, "entryCount": len(schedule.spec.entries)}
    try:
        queues = resolve(schedule.namespace, build.queue_references(schedule), taskqueues(kube, schedule.namespace))
    except Unresolved as problem:
        if changed_condition(body, conditions.QUEUES_RESOLVED, conditions.FALSE, problem.reason):
            post(body, reason=problem.reason, message=problem.message, warning=True)
        write_status(kube, names.BEATSCHEDULE_KIND, schedule.namespace, schedule.name,
                     generation=schedule.generation, fields=fields,
                     updates=[Condition.of(conditions.QUEUES_RESOLVED, False, problem.reason, problem.message),
                              Condition.of(conditions.READY, False, problem.reason, problem.message)])
        return
    problems = build.schedule_problems(schedule)
    if problems:
        message = "; ".join(problems)
        if changed_condition(body, conditions.READY, conditions.FALSE, "InvalidSchedule"):
            post(body, "InvalidSchedule", message, warning=True)
        write_status(kube, names.BEATSCHEDULE_KIND, schedule.namespace, schedule.name,
                     generation=schedule.generation, fields=fields,
                     updates=[Condition.of(conditions.READY, False, "InvalidSchedule", message)])
        return
    name = build.object_name(schedule)
    existed = kube.get("Deployment", schedule.namespace, name) is not None
    deployment: Mapping[str, Any] = {}
    for obj in build.objects(schedule, queues, default_image=settings.worker_image):
        deployment = kube.apply(obj)
    if not existed:
        post(body, reason="Created",
                  message=f"Created Deployment, ServiceAccount, Role and RoleBinding {name}")
    was_reported = conditions.find((body.get("status") or {}).get("conditions"), conditions.QUEUES_RESOLVED)
    if was_reported and changed_condition(body, conditions.QUEUES_RESOLVED, conditions.TRUE, REASON_RESOLVED):
        post(body, reason=REASON_RESOLVED, message="All TaskQueues resolved")
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    wanted = schedule.spec.replicas
    write_status(
        kube, names.BEATSCHEDULE_KIND, schedule.namespace, schedule.name, generation=schedule.generation,
        fields=fields,
        updates=[
            Condition.of(conditions.QUEUES_RESOLVED, True, REASON_RESOLVED,
                         f"TaskQueues {', '.join(queues.queue_names)} on Secret {queues.secret_name}"),
            Condition.of(conditions.READY, ready > 0, "BeatReady" if ready > 0 else "BeatNotReady",
                         f"{ready}/{wanted} beat replicas ready"),
        ],
    )

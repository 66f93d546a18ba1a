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
from celeriac_operator.handlers._common import (
    on_change_and_every,
    post,
    post_queues_recovered,
    report_problem,
    taskqueues,
    write_status,
)
from celeriac_operator.kube import Kube
from celeriac_operator.models import BeatSchedule
from celeriac_operator.queues import REASON_RESOLVED, resolve
from celeriac_operator.settings import Settings

RESOURCE = (names.GROUP, names.VERSION, names.BEATSCHEDULE_PLURAL)


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    on_change_and_every(registry, RESOURCE, apply_id="beatschedule_apply", timer_id="beatschedule_recheck",
                        interval_s=settings.recheck_interval_s, retry_delay_s=settings.retry_delay_s,
                        reconcile=lambda body: reconcile(kube, settings, body))


def reconcile(kube: Kube, settings: Settings, body: Mapping[str, Any]) -> None:
    """Apply the beat's objects for one BeatSchedule and record Ready / QueuesResolved / entryCount."""
    schedule = BeatSchedule.from_body(body)
    fields = {"observedGeneration": schedule.generation, "entryCount": len(schedule.spec.entries)}
    try:
        queues = resolve(schedule.namespace, build.queue_references(schedule), taskqueues(kube, schedule.namespace))
    except Unresolved as problem:
        report_problem(kube, schedule, body, reason=problem.reason, message=problem.message,
                       condition_types=(conditions.QUEUES_RESOLVED, conditions.READY), fields=fields)
        return
    problems = build.schedule_problems(schedule)
    if problems:
        report_problem(kube, schedule, body, reason="InvalidSchedule", message="; ".join(problems),
                       condition_types=(conditions.READY,), fields=fields)
        return
    name = build.object_name(schedule)
    existed = kube.get("Deployment", schedule.namespace, name) is not None
    deployment: Mapping[str, Any] = {}
    for obj in build.objects(schedule, queues, default_image=settings.worker_image):
        deployment = kube.apply(obj)
    if not existed:
        post(body, reason="Created",
                  message=f"Created Deployment, ServiceAccount, Role and RoleBinding {name}")
    post_queues_recovered(body)
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

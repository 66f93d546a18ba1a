"""BeatSchedule -> Deployment, ServiceAccount, Role and RoleBinding, all named ``<name>-beat``.

The beat process (``celeriac beat --from-resource ns/name``) reads its schedule from the BeatSchedule,
elects a leader through the Lease ``<name>-beat`` and records runs in the BeatSchedule's status. Its Role
grants exactly that and nothing else (least privilege):

* ``coordination.k8s.io`` leases: get/update on its own Lease by name; create cannot be restricted to a name
  (the name is not known to the authorizer before the object exists), so it has its own rule;
* ``celeriac.io`` beatschedules: get/list/watch. The beat watches with a ``metadata.name`` field selector;
  RBAC can't restrict list/watch by a field selector, so the rule names the object for get and is
  namespace-wide for list/watch (the Role is namespaced: it never sees other namespaces);
* beatschedules/status: get/patch/update on its own BeatSchedule only.

The beat posts no Events (it logs), so it gets no ``events`` permission.
"""

from __future__ import annotations

import json
from typing import Any

from celeriac.schedules import ScheduleError, build_schedule, load_zone
from celeriac_operator import names
from celeriac_operator.builders import common
from celeriac_operator.models import BeatSchedule
from celeriac_operator.queues import ResolvedQueues

Obj = dict[str, Any]

CONTAINER = "beat"


def object_name(schedule: BeatSchedule) -> str:
    """The one name of the Deployment, ServiceAccount, Role, RoleBinding and Lease."""
    return f"{schedule.name}-beat"


def selector(schedule: BeatSchedule) -> dict[str, str]:
    return common.selector_labels(names.LABEL_BEATSCHEDULE, schedule.name, names.COMPONENT_BEAT)


def labels(schedule: BeatSchedule) -> dict[str, str]:
    return common.labels(names.LABEL_BEATSCHEDULE, schedule.name, names.COMPONENT_BEAT)


def queue_references(schedule: BeatSchedule) -> list[str]:
    """The TaskQueue names the entries publish to, in entry order without duplicates."""
    return list(dict.fromkeys(entry.queue for entry in schedule.spec.entries))


def schedule_problems(schedule: BeatSchedule) -> list[str]:
    """What the API server could not check: time zones against the tz database, cron values and ranges.

    Parsed with the scheduler's own parser (:mod:`celeriac.schedules`), so the operator rejects exactly
    what ``celeriac beat`` would refuse, with the same message.
    """
    problems = []
    default_zone = schedule.spec.time_zone
    try:
        load_zone(default_zone)
    except ScheduleError as exc:
        problems.append(f"spec.timeZone: {exc}")
        default_zone = "UTC"  # reported once above, not again for every entry
    for entry in schedule.spec.entries:
        every = None if entry.every is None else str(entry.every)
        try:
            build_schedule(every=every, cron=entry.cron, tz=entry.time_zone or default_zone)
        except ScheduleError as exc:
            problems.append(f"entry {entry.name}: {exc}")
    return problems


def command(schedule: BeatSchedule) -> list[str]:
    return ["celeriac", "beat", "--from-resource", f"$(POD_NAMESPACE)/{schedule.name}"]


def env(schedule: BeatSchedule, queues: ResolvedQueues) -> list[Obj]:
    return [
        common.secret_env("CELERIAC_BROKER_URL", queues.secret_name, queues.secret_key),
        *common.downward_env(),
        {"name": "CELERIAC_BEAT_QUEUES", "value": json.dumps(dict(queues.queue_names), sort_keys=True)},
    ]


def deployment(schedule: BeatSchedule, queues: ResolvedQueues, *, default_image: str) -> Obj:
    spec = schedule.spec
    container: Obj = {
        "name": CONTAINER,
        "image": spec.image or default_image,
        "command": command(schedule),
        "env": env(schedule, queues),
        "securityContext": common.container_security_context(),
        "volumeMounts": [common.tmp_mount()],
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:
        container["resources"] = spec.resources.to_json()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(schedule, object_name(schedule), labels(schedule)),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(schedule)},
            "template": {
                "metadata": {"labels": labels(schedule)},
                "spec": {
                    "serviceAccountName": object_name(schedule),
                    "containers": [container],
                    "securityContext": common.pod_security_context(),
                    "volumes": [common.tmp_volume()],
                },
            },
        },
    }


def service_account(schedule: BeatSchedule) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": common.metadata(schedule, object_name(schedule), labels(schedule)),
    }


def role_rules(schedule: BeatSchedule) -> list[Obj]:
    """The beat's permissions (see the module docstring for why each rule is shaped so)."""
    lease = object_name(schedule)
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
         "resourceNames": [lease]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [names.GROUP], "resources": [names.BEATSCHEDULE_PLURAL], "verbs": ["get"],
         "resourceNames": [schedule.name]},
        {"apiGroups": [names.GROUP], "resources": [names.BEATSCHEDULE_PLURAL], "verbs": ["list", "watch"]},
        {"apiGroups": [names.GROUP], "resources": [f"{names.BEATSCHEDULE_PLURAL}/status"],
         "verbs": ["get", "patch", "update"], "resourceNames": [schedule.name]},
    ]


def role(schedule: BeatSchedule) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": common.metadata(schedule, object_name(schedule), labels(schedule)),
        "rules": role_rules(schedule),
    }


def role_binding(schedule: BeatSchedule) -> Obj:
    name = object_name(schedule)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": common.metadata(schedule, name, labels(schedule)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": schedule.namespace}],
    }


def objects(schedule: BeatSchedule, queues: ResolvedQueues, *, default_image: str) -> list[Obj]:
    """Everything a BeatSchedule needs, in apply order (identity and permissions before the pods)."""
    return [
        service_account(schedule),
        role(schedule),
        role_binding(schedule),
        deployment(schedule, queues, default_image=default_image),
    ]

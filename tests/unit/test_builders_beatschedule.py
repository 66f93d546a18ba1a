"""The BeatSchedule builder: the beat Deployment's command and env, and a least-privilege Role."""

from __future__ import annotations

import json
from typing import Any

from celeriac_operator import names
from celeriac_operator.builders import beatschedule as build
from celeriac_operator.models import BeatSchedule
from celeriac_operator.queues import ResolvedQueues

QUEUES = ResolvedQueues(queue_names={"emails": "emails", "reports": "reports.v1"},
                        secret_name="broker", secret_key="url")


def schedule(**spec: Any) -> BeatSchedule:
    entries = [
        {"name": "a", "task": "tasks.add", "queue": "emails", "every": 30},
        {"name": "b", "task": "tasks.report", "queue": "reports", "cron": "@daily"},
        {"name": "c", "task": "tasks.add", "queue": "emails", "every": "5m"},
    ]
    body = {"metadata": {"name": "house", "namespace": "ns", "uid": "u-9", "generation": 1},
            "spec": {"entries": entries, **spec}}
    return BeatSchedule.from_body(body)


def test_queue_references_are_the_entries_queues_once_each_in_order() -> None:
    assert build.queue_references(schedule()) == ["emails", "reports"]


def test_beat_deployment_runs_celeriac_beat_from_its_resource_with_broker_identity_and_queue_map() -> None:
    deployment = build.deployment(schedule(replicas=3, image="beat:1"), QUEUES, default_image="img:1")
    assert deployment["metadata"]["name"] == "house-beat"
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "house-beat"
    (beat,) = pod["containers"]
    assert beat["name"] == "beat"
    assert beat["image"] == "beat:1"
    assert beat["command"] == ["celeriac", "beat", "--from-resource", "$(POD_NAMESPACE)/house"]
    env = {var["name"]: var for var in beat["env"]}
    assert env["CELERIAC_BROKER_URL"]["valueFrom"] == {"secretKeyRef": {"name": "broker", "key": "url"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert json.loads(env["CELERIAC_BEAT_QUEUES"]["value"]) == {"emails": "emails", "reports": "reports.v1"}
    assert beat["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_default_replicas_and_image() -> None:
    deployment = build.deployment(schedule(), QUEUES, default_image="img:1")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"


def test_role_grants_only_its_lease_its_schedule_and_its_status() -> None:
    rules = build.role(schedule())["rules"]
    granted = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in rules for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert granted == {
        ("coordination.k8s.io", "leases", "get", ("house-beat",)),
        ("coordination.k8s.io", "leases", "update", ("house-beat",)),
        ("coordination.k8s.io", "leases", "create", ()),
        (names.GROUP, "beatschedules", "get", ("house",)),
        (names.GROUP, "beatschedules", "list", ()),
        (names.GROUP, "beatschedules", "watch", ()),
        (names.GROUP, "beatschedules/status", "get", ("house",)),
        (names.GROUP, "beatschedules/status", "patch", ("house",)),
        (names.GROUP, "beatschedules/status", "update", ("house",)),
    }
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in rules)


def test_role_binding_binds_the_role_to_the_beat_service_account_in_its_namespace() -> None:
    binding = build.role_binding(schedule())
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "house-beat"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "house-beat", "namespace": "ns"}]


def test_all_objects_share_one_name_and_are_owned_by_the_schedule_identity_first() -> None:
    objects = build.objects(schedule(), QUEUES, default_image="img:1")
    assert [obj["kind"] for obj in objects] == ["ServiceAccount", "Role", "RoleBinding", "Deployment"]
    for obj in objects:
        assert obj["metadata"]["name"] == "house-beat"
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "BeatSchedule"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "u-9"
        assert obj["metadata"]["labels"][names.LABEL_BEATSCHEDULE] == "house"


def test_unknown_time_zones_are_reported_once_with_where_they_are_and_what_to_use() -> None:
    assert build.schedule_problems(schedule(timeZone="Europe/Paris")) == []
    bad = schedule(timeZone="Mars/Olympus")
    assert build.schedule_problems(bad) == [
        "spec.timeZone: unknown time zone 'Mars/Olympus': use an IANA name such as Europe/London"]


def test_cron_values_the_api_server_cannot_check_are_reported_per_entry_with_the_field_at_fault() -> None:
    body = {"metadata": {"name": "house", "namespace": "ns", "uid": "u-9", "generation": 1},
            "spec": {"entries": [
                {"name": "late", "task": "tasks.add", "queue": "emails", "cron": "0 25 * * *"},
                {"name": "never", "task": "tasks.add", "queue": "emails", "cron": "0 0 30 2 *"},
                {"name": "fine", "task": "tasks.add", "queue": "emails", "cron": "0 9 * * mon-fri",
                 "timeZone": "Asia/Kathmandu"},
            ]}}
    problems = build.schedule_problems(BeatSchedule.from_body(body))
    assert problems == [
        "entry late: cron '0 25 * * *': field 2 (hour) value 25 is out of range 0-23",
        "entry never: cron '0 0 30 2 *' never fires: no month among 2 has day 30",
    ]

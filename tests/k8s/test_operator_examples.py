"""The example manifests, applied with kubectl, become the expected workloads; updates propagate; deletes cascade."""

from __future__ import annotations

from typing import Any

import pytest
from manifests_support import apply, broker_secret, condition, example_documents, get, items, wait_for, wait_gone
from operator_support import TEST_WORKER_IMAGE, OperatorProcess

from servers import RedisServer, wait_until

pytestmark = pytest.mark.k8s


def apply_examples(kubectl: Any, namespace: str, redis_url: str) -> None:
    apply(kubectl, namespace, broker_secret(redis_url), *example_documents("taskqueues.yaml"),
          *example_documents("workerpool.yaml"), *example_documents("beatschedule.yaml"))


def env_by_name(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var for var in container["env"]}


def test_examples_become_a_worker_deployment_with_pdb_and_a_beat_with_its_rbac(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    apply_examples(kubectl, namespace, redis_server.url)

    deployment = wait_for(kubectl, namespace, "deployment", "tasks-worker")
    assert deployment["spec"]["replicas"] == 0  # minReplicas 0, nothing queued
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "WorkerPool", "tasks", True, True)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "celeriac", "worker", "-A", "tasks", "-Q", "emails,reports.v1", "-c", "4", "-P", "prefork",
        "--prefetch-multiplier", "4", "--shutdown-timeout", "25", "--health-port", "9808",
    ]
    assert container["image"] == "ghcr.io/celeriac/examples:0.1.0"
    env = env_by_name(container)
    assert env["CELERIAC_BROKER_URL"]["valueFrom"]["secretKeyRef"] == {"name": "celeriac-broker", "key": "url"}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOG_LEVEL"]["value"] == "info"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "health", "containerPort": 9808, "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] == 40

    pdb = wait_for(kubectl, namespace, "poddisruptionbudget", "tasks-worker")
    assert pdb["spec"]["maxUnavailable"] == 1

    beat = wait_for(kubectl, namespace, "deployment", "housekeeping-beat")
    assert beat["spec"]["replicas"] == 2
    (beat_container,) = beat["spec"]["template"]["spec"]["containers"]
    assert beat_container["command"] == ["celeriac", "beat", "--from-resource", "$(POD_NAMESPACE)/housekeeping"]
    assert beat_container["image"] == TEST_WORKER_IMAGE
    assert beat["spec"]["template"]["spec"]["serviceAccountName"] == "housekeeping-beat"
    for kind in ("serviceaccount", "role", "rolebinding"):
        assert get(kubectl, namespace, kind, "housekeeping-beat") is not None, kind

    pool = wait_for(kubectl, namespace, "workerpool", "tasks",
                    lambda wp: condition(wp, "QueuesResolved").get("status") == "True")
    assert pool["status"]["queues"] == "emails,reports.v1"
    assert condition(pool, "QueuesResolved")["observedGeneration"] == pool["metadata"]["generation"]
    schedule = wait_for(kubectl, namespace, "beatschedule", "housekeeping",
                        lambda bs: condition(bs, "QueuesResolved").get("status") == "True")
    assert schedule["status"]["entryCount"] == 3
    queue = wait_for(kubectl, namespace, "taskqueue", "reports",
                     lambda tq: condition(tq, "BrokerReachable").get("status") == "True")
    assert queue["status"]["brokerHost"] == f"127.0.0.1:{redis_server.port}"
    assert queue["status"]["backlog"] == 0

    def created_events() -> set[str]:
        return {event["involvedObject"]["name"] for event in items(kubectl, namespace, "events")
                if event["reason"] == "Created"}

    wait_until(lambda: {"tasks", "housekeeping"} <= created_events(), 30, "Created events for both resources")


def test_workerpool_changes_propagate_to_its_deployment(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    apply_examples(kubectl, namespace, redis_server.url)
    wait_for(kubectl, namespace, "deployment", "tasks-worker")

    kubectl("patch", "workerpool", "tasks", "-n", namespace, "--type", "merge", "-p",
            '{"spec": {"concurrency": 8, "queues": ["emails"], "image": "ghcr.io/celeriac/examples:0.2.0"}}')

    def updated(deployment: dict[str, Any]) -> bool:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return container["image"].endswith(":0.2.0") and "8" in container["command"]

    deployment = wait_for(kubectl, namespace, "deployment", "tasks-worker", updated)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][container["command"].index("-Q") + 1] == "emails"
    assert container["command"][container["command"].index("-c") + 1] == "8"
    pool = wait_for(kubectl, namespace, "workerpool", "tasks", lambda wp: wp["status"].get("queues") == "emails")
    assert condition(pool, "QueuesResolved")["observedGeneration"] == pool["metadata"]["generation"]


def test_deleting_the_custom_resources_garbage_collects_what_they_created(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    apply_examples(kubectl, namespace, redis_server.url)
    wait_for(kubectl, namespace, "poddisruptionbudget", "tasks-worker")
    wait_for(kubectl, namespace, "deployment", "housekeeping-beat")

    kubectl("delete", "workerpool", "tasks", "-n", namespace)
    kubectl("delete", "beatschedule", "housekeeping", "-n", namespace)

    for kind, name in [("deployment", "tasks-worker"), ("poddisruptionbudget", "tasks-worker"),
                       ("deployment", "housekeeping-beat"), ("serviceaccount", "housekeeping-beat"),
                       ("role", "housekeeping-beat"), ("rolebinding", "housekeeping-beat")]:
        wait_gone(kubectl, namespace, kind, name)
    assert items(kubectl, namespace, "deployments,poddisruptionbudgets,roles,rolebindings",
                 "app.kubernetes.io/managed-by=celeriac-operator") == []

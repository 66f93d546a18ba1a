"""Operator restarts (clean or crash, mid-way or not) never duplicate or orphan objects; scale without autoscaling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from manifests_support import apply, broker_secret, condition, example_documents, get, items, wait_for
from operator_support import OperatorProcess, start_operator

from control_plane import ControlPlane
from servers import RedisServer, wait_until

pytestmark = pytest.mark.k8s

MANAGED = "app.kubernetes.io/managed-by=celeriac-operator"
KINDS = "deployments,poddisruptionbudgets,serviceaccounts,roles,rolebindings"


def managed_objects(kubectl: Any, namespace: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> uid of everything the operator created in ``namespace``."""
    return {(obj["kind"], obj["metadata"]["name"]): obj["metadata"]["uid"]
            for obj in items(kubectl, namespace, KINDS, MANAGED)}


def all_examples(redis_url: str) -> list[dict[str, Any]]:
    return [broker_secret(redis_url), *example_documents("taskqueues.yaml"), *example_documents("workerpool.yaml"),
            *example_documents("beatschedule.yaml")]


EXPECTED = {("Deployment", "tasks-worker"), ("PodDisruptionBudget", "tasks-worker"),
            ("Deployment", "housekeeping-beat"), ("ServiceAccount", "housekeeping-beat"),
            ("Role", "housekeeping-beat"), ("RoleBinding", "housekeeping-beat")}


def test_operator_killed_mid_way_and_restarted_leaves_each_object_exactly_once(
    control_plane: ControlPlane, celeriac_crds: list[str], kubectl: Any, namespace: str, *,
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    first = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "first")
    try:
        apply(kubectl, namespace, *all_examples(redis_server.url))
        # Crash as soon as the first object exists: the rest of the reconcile never ran in this process.
        wait_for(kubectl, namespace, "deployment", "tasks-worker")
    finally:
        first.kill()

    second = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "second")
    try:
        wait_for(kubectl, namespace, "rolebinding", "housekeeping-beat")
        wait_for(kubectl, namespace, "workerpool", "tasks",
                 lambda wp: condition(wp, "QueuesResolved").get("status") == "True")
        before = managed_objects(kubectl, namespace)
        assert set(before) == EXPECTED
    finally:
        second.stop()

    third = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "third")
    try:
        wait_until_resumed(third)
        assert managed_objects(kubectl, namespace) == before  # same uids: nothing recreated, nothing added
    finally:
        third.stop()
    for deployment in items(kubectl, namespace, "deployments", MANAGED):
        assert len(deployment["metadata"]["ownerReferences"]) == 1


def wait_until_resumed(operator: OperatorProcess) -> None:
    """The restarted operator finished its resume pass over the WorkerPool and the BeatSchedule."""

    def done() -> bool:
        logs = operator.logs()
        return "workerpool_apply' succeeded" in logs and "beatschedule_apply' succeeded" in logs

    wait_until(done, 60, "the restarted operator's resume handlers", interval_s=0.2)


def test_without_autoscaling_the_deployment_follows_spec_replicas_and_kubectl_scale(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    (pool,) = example_documents("workerpool.yaml")
    pool["spec"]["autoscaling"] = {"enabled": False}
    pool["spec"]["replicas"] = 1
    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"), pool)
    wait_for(kubectl, namespace, "deployment", "tasks-worker", lambda d: d["spec"]["replicas"] == 1)
    assert get(kubectl, namespace, "poddisruptionbudget", "tasks-worker") is None

    kubectl("scale", "workerpool", "tasks", "-n", namespace, "--replicas", "3")

    wait_for(kubectl, namespace, "deployment", "tasks-worker", lambda d: d["spec"]["replicas"] == 3)
    wait_for(kubectl, namespace, "poddisruptionbudget", "tasks-worker")
    wait_for(kubectl, namespace, "workerpool", "tasks", lambda wp: wp["status"].get("desiredReplicas") == 3)


def test_turning_autoscaling_on_hands_replicas_to_the_autoscaler_without_a_reset(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    (pool,) = example_documents("workerpool.yaml")
    pool["spec"]["autoscaling"] = {"enabled": False, "minReplicas": 3, "maxReplicas": 8}
    pool["spec"]["replicas"] = 4
    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"), pool)
    wait_for(kubectl, namespace, "deployment", "tasks-worker", lambda d: d["spec"]["replicas"] == 4)

    kubectl("patch", "workerpool", "tasks", "-n", namespace, "--type", "merge", "-p",
            '{"spec": {"autoscaling": {"enabled": true, "scaleDownStabilizationSeconds": 3600}}}')

    def autoscaler_owns_replicas(deployment: dict[str, Any]) -> bool:
        owners = [entry["manager"] for entry in deployment["metadata"].get("managedFields", [])
                  if "f:replicas" in (entry.get("fieldsV1", {}).get("f:spec") or {})]
        return owners == ["celeriac-autoscaler"]

    def deployment_with_owners() -> dict[str, Any]:
        done = kubectl("get", "deployment", "tasks-worker", "-n", namespace, "-o", "json", "--show-managed-fields")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    wait_until(lambda: autoscaler_owns_replicas(deployment_with_owners()), 60,
               "spec.replicas owned by the autoscaler alone", interval_s=0.2)
    deployment = deployment_with_owners()
    # Held at 4 by the stabilization window (backlog 0 asks for 3), never reset to the default 1.
    assert deployment["spec"]["replicas"] == 4

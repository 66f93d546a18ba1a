"""The WorkerPool builder: command lines, env, probes, security context, PDB rules, labels and selector."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac_operator import names
from celeriac_operator.builders import workerpool as build
from celeriac_operator.models import WorkerPool
from celeriac_operator.queues import ResolvedQueues

QUEUES = ResolvedQueues(queue_names={"emails": "emails", "reports": "reports.v1"},
                        secret_name="broker", secret_key="url")


def pool(**spec: Any) -> WorkerPool:
    body = {
        "metadata": {"name": "tasks", "namespace": "ns", "uid": "u-1", "generation": 3},
        "spec": {"queues": ["emails", "reports"], "app": "proj.app:celery", **spec},
    }
    return WorkerPool.from_body(body)


def container(wp: WorkerPool) -> dict[str, Any]:
    deployment = build.deployment(wp, QUEUES, default_image="img:1", replicas=None)
    (result,) = deployment["spec"]["template"]["spec"]["containers"]
    return result


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, ["celeriac", "worker", "-A", "proj.app:celery", "-Q", "emails,reports.v1", "-c", "2", "-P", "prefork",
          "--prefetch-multiplier", "4", "--shutdown-timeout", "25", "--health-port", "9808"]),
    ({"concurrency": 16, "pool": "threads", "prefetchMultiplier": 1, "shutdownTimeoutSeconds": 90,
      "terminationGracePeriodSeconds": 100, "healthPort": 9999, "extraArgs": ["-l", "debug"]},
     ["celeriac", "worker", "-A", "proj.app:celery", "-Q", "emails,reports.v1", "-c", "16", "-P", "threads",
      "--prefetch-multiplier", "1", "--shutdown-timeout", "90", "--health-port", "9999", "-l", "debug"]),
    ({"runtime": "celery", "pool": "solo", "extraArgs": ["--without-gossip"]},
     ["celery", "-A", "proj.app:celery", "worker", "-Q", "emails,reports.v1", "-c", "2", "-P", "solo",
      "--prefetch-multiplier", "4", "--without-gossip"]),
])
def test_worker_command_line_follows_the_runtime_and_spec(spec: dict[str, Any], expected: list[str]) -> None:
    assert container(pool(**spec))["command"] == expected


def test_celeriac_runtime_gets_broker_from_the_secret_pod_identity_and_user_env_last() -> None:
    env = container(pool(env=[{"name": "LOG_LEVEL", "value": "debug"}],
                         resultBackend={"secretRef": {"name": "results", "key": "redis"}}))["env"]
    assert [var["name"] for var in env] == [
        "CELERIAC_BROKER_URL", "CELERIAC_RESULT_BACKEND", "POD_NAME", "POD_NAMESPACE", "LOG_LEVEL"]
    assert env[0]["valueFrom"] == {"secretKeyRef": {"name": "broker", "key": "url"}}
    assert env[1]["valueFrom"] == {"secretKeyRef": {"name": "results", "key": "redis"}}
    assert env[2]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_celery_runtime_reads_celerys_own_env_names_and_has_no_http_probes() -> None:
    result = container(pool(runtime="celery", resultBackend={"secretRef": {"name": "results"}}))
    names_ = [var["name"] for var in result["env"]]
    assert names_[:2] == ["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"]
    assert "livenessProbe" not in result
    assert "readinessProbe" not in result
    assert "ports" not in result


def test_a_user_variable_replaces_ours_of_the_same_name_instead_of_duplicating_it() -> None:
    env = container(pool(env=[{"name": "POD_NAME", "value": "fixed"}]))["env"]
    assert [var for var in env if var["name"] == "POD_NAME"] == [{"name": "POD_NAME", "value": "fixed"}]


def test_celeriac_runtime_probes_livez_and_readyz_on_the_named_health_port() -> None:
    result = container(pool(healthPort=9100))
    assert result["ports"] == [{"name": "health", "containerPort": 9100, "protocol": "TCP"}]
    assert result["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert result["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_pods_run_non_root_read_only_without_capabilities_with_a_writable_tmp() -> None:
    deployment = build.deployment(pool(), QUEUES, default_image="img:1", replicas=1)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (worker,) = pod["containers"]
    assert worker["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert worker["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_scheduling_fields_grace_period_and_resources_are_passed_through() -> None:
    spec = {
        "terminationGracePeriodSeconds": 120, "nodeSelector": {"pool": "workers"},
        "tolerations": [{"key": "spot", "operator": "Exists"}], "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
        "priorityClassName": "high", "serviceAccountName": "tasks-sa", "imagePullPolicy": "Always",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}, "image": "mine:2",
    }
    deployment = build.deployment(pool(**spec), QUEUES, default_image="img:1", replicas=1)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Exists"}]
    assert pod["priorityClassName"] == "high"
    assert pod["serviceAccountName"] == "tasks-sa"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "zone"
    (worker,) = pod["containers"]
    assert (worker["image"], worker["imagePullPolicy"]) == ("mine:2", "Always")
    assert worker["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}


def test_default_image_comes_from_the_operator_setting() -> None:
    assert container(pool())["image"] == "img:1"


def test_replicas_are_left_to_the_autoscaler_when_none() -> None:
    assert "replicas" not in build.deployment(pool(), QUEUES, default_image="i", replicas=None)["spec"]
    assert build.deployment(pool(), QUEUES, default_image="i", replicas=3)["spec"]["replicas"] == 3


def test_selector_is_stable_across_spec_changes_and_pod_labels_cannot_override_it() -> None:
    before = build.deployment(pool(), QUEUES, default_image="i", replicas=1)
    after = build.deployment(pool(concurrency=9, podLabels={names.LABEL_WORKERPOOL: "other", "team": "a"},
                                  image="new:1"), QUEUES, default_image="i", replicas=1)
    assert before["spec"]["selector"] == after["spec"]["selector"] == {
        "matchLabels": {names.LABEL_WORKERPOOL: "tasks", names.LABEL_COMPONENT: "worker"}}
    labels = after["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_WORKERPOOL] == "tasks"
    assert labels["team"] == "a"
    assert labels[names.LABEL_MANAGED_BY] == "celeriac-operator"


def test_everything_built_is_owned_by_the_workerpool_as_controller() -> None:
    for obj in (build.deployment(pool(), QUEUES, default_image="i", replicas=1), build.pdb(pool())):
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "celeriac.io/v1alpha1", "kind": "WorkerPool", "name": "tasks", "uid": "u-1",
            "controller": True, "blockOwnerDeletion": True}]
        assert obj["metadata"]["name"] == "tasks-worker"
        assert obj["metadata"]["namespace"] == "ns"


@pytest.mark.parametrize(("spec", "wanted"), [
    ({}, True),  # autoscaling on by default: maxReplicas 10
    ({"autoscaling": {"maxReplicas": 1}}, False),
    ({"autoscaling": {"enabled": False}, "replicas": 1}, False),
    ({"autoscaling": {"enabled": False}, "replicas": 2}, True),
    ({"autoscaling": {"enabled": False, "maxReplicas": 1}, "replicas": 3}, True),
])
def test_a_pdb_exists_only_when_the_pool_can_have_more_than_one_replica(spec: dict[str, Any], wanted: bool) -> None:
    assert build.wants_pdb(pool(**spec)) is wanted


def test_the_pdb_lets_one_worker_be_evicted_at_a_time() -> None:
    assert build.pdb(pool())["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {names.LABEL_WORKERPOOL: "tasks", names.LABEL_COMPONENT: "worker"}},
    }

"""charts/celeriac rendered by the real helm: lint, both watch scopes, pod security, settings, schema and guards."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac_operator.settings import Settings
from helm_support import CHART, HelmFailed, find, helm, render


def _operator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("values", [[], ["--set", "watch.scope=namespaces", "--set", "replicas=2"]])
def test_helm_lint_strict_is_clean(values: list[str]) -> None:
    out = helm("lint", str(CHART), "--strict", *values)
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_cluster_scope_watches_all_namespaces_through_a_cluster_role_and_a_cluster_peering() -> None:
    objects = render()
    assert _operator(objects)["args"][:2] == ["--all-namespaces", "--peering=celeriac-operator"]
    (binding,) = find(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-celeriac", "namespace": "celeriac-system"}]
    assert binding["roleRef"]["name"] == find(objects, "ClusterRole")[0]["metadata"]["name"]
    assert [p["kind"] for p in find(objects, "ClusterKopfPeering", "celeriac-operator")] == ["ClusterKopfPeering"]
    assert find(objects, "Role", "rel-celeriac") == []
    assert find(objects, "KopfPeering") == []


def test_namespaces_scope_grants_a_role_and_a_peering_in_each_watched_namespace_only() -> None:
    objects = render({"watch.scope": "namespaces", "watch.namespaces": '["team-a","team-b"]'})
    assert _operator(objects)["args"][:3] == ["--namespace=team-a", "--namespace=team-b", "--peering=celeriac-operator"]
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert sorted(o["metadata"]["namespace"] for o in find(objects, kind)
                      if o["metadata"]["name"] != "rel-celeriac-test") == ["team-a", "team-b"], kind
    for binding in find(objects, "RoleBinding", "rel-celeriac"):
        assert binding["subjects"][0]["namespace"] == "celeriac-system"
    (cluster_role,) = find(objects, "ClusterRole")
    assert cluster_role["metadata"]["name"].endswith("-discovery")
    assert find(objects, "ClusterKopfPeering") == []


def test_namespaces_scope_without_a_list_watches_the_release_namespace() -> None:
    objects = render({"watch.scope": "namespaces"}, namespace="jobs")
    assert "--namespace=jobs" in _operator(objects)["args"]
    assert [r["metadata"]["namespace"] for r in find(objects, "Role", "rel-celeriac")] == ["jobs"]


def test_cluster_discovery_off_leaves_no_cluster_scoped_object_but_the_crds() -> None:
    objects = render({"watch.scope": "namespaces", "rbac.clusterDiscovery": "false"})
    assert {o["kind"] for o in objects if "namespace" not in o["metadata"]} == {"CustomResourceDefinition"}


def test_no_rendered_rule_uses_a_wildcard() -> None:
    for values in ({}, {"watch.scope": "namespaces"}):
        for role in find(render(values), "Role") + find(render(values), "ClusterRole"):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], (role["metadata"]["name"], rule)


def test_operator_and_test_pods_run_non_root_read_only_without_capabilities() -> None:
    objects = render()
    (deployment,) = find(objects, "Deployment")
    (test_pod,) = find(objects, "Pod")
    for pod in (deployment["spec"]["template"]["spec"], test_pod["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
        assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert "emptyDir" in pod["volumes"][0]


def test_operator_settings_values_become_its_environment_and_probes() -> None:
    container = _operator(render({"operator.recheckIntervalSeconds": "3", "operator.redisKeyPrefix": "pfx:",
                                  "operator.livenessPort": "8181", "operator.logFormat": "json"}))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CELERIAC_OPERATOR_RECHECK_INTERVAL_S"] == "3"
    assert env["CELERIAC_OPERATOR_REDIS_KEY_PREFIX"] == "pfx:"
    assert env["CELERIAC_OPERATOR_WORKER_IMAGE"] == Settings().worker_image
    settings = Settings.from_env({k: v for k, v in env.items() if v is not None})
    assert settings.recheck_interval_s == 3
    assert settings.redis_key_prefix == "pfx:"
    assert "--liveness-port=8181" in container["args"]
    assert "--log-format=json" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["ports"] == [{"name": "liveness", "containerPort": 8181, "protocol": "TCP"}]


def test_standalone_single_replica_recreates_instead_of_overlapping_and_creates_no_peering() -> None:
    objects = render({"peering.enabled": "false"})
    assert "--standalone" in _operator(objects)["args"]
    assert find(objects, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    assert find(objects, "ClusterKopfPeering") == []
    assert find(objects, "KopfPeering") == []


def test_image_digest_pins_the_operator_image_instead_of_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    assert _operator(render({"image.digest": digest}))["image"] == f"ghcr.io/celeriac/celeriac-operator@{digest}"
    assert _operator(render({"image.tag": "9.9.9"}))["image"] == "ghcr.io/celeriac/celeriac-operator:9.9.9"


def test_helm_test_pod_runs_the_charts_check_with_a_read_only_account() -> None:
    objects = render()
    (pod,) = find(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    assert command[2] == (CHART / "files" / "check_ready.py").read_text()
    (role,) = find(objects, "Role", pod["spec"]["serviceAccountName"])
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"get", "list"}
    assert find(render({"test.enabled": "false"}), "Pod") == []


@pytest.mark.parametrize(("values", "message"), [
    ({"replicass": "2"}, "at '': additional properties 'replicass' not allowed"),
    ({"watch.scope": "everywhere"}, "at '/watch/scope': value must be one of 'cluster', 'namespaces'"),
    ({"replicas": "-1"}, "at '/replicas': minimum: got -1, want 0"),
    ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy': value must be one of"),
    ({"operator.logFormat": "xml"}, "at '/operator/logFormat': value must be one of 'text', 'json'"),
    ({"operator.extra": "1"}, "at '/operator': additional properties 'extra' not allowed"),
    ({"watch.namespaces": '["Not_A_Namespace"]'}, "at '/watch/namespaces/0': 'Not_A_Namespace' does not match"),
    ({"image.digest": "latest"}, "at '/image/digest'"),
])
def test_schema_rejects_unknown_keys_and_bad_values_naming_the_field(values: dict[str, str], message: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(values)
    assert "values don't meet the specifications of the schema" in failed.value.stderr
    assert message in failed.value.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": "2", "peering.enabled": "false"},
     "replicas is 2 but peering.enabled is false: without peering every replica would act at once"),
    ({"image.tag": "1.0.0", "image.digest": "sha256:" + "0" * 64}, "image.tag (1.0.0) and image.digest"),
    ({"watch.namespaces": '["a"]'}, "watch.namespaces is [a] but watch.scope is cluster"),
    ({"serviceAccount.create": "false"}, "serviceAccount.name is required when serviceAccount.create is false"),
])
def test_contradictory_values_fail_with_what_to_change(values: dict[str, str], message: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        render(values)
    assert message in failed.value.stderr

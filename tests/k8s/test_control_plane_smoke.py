"""Proof that every part of the local control plane is the real thing, not a stand-in."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from control_plane import HELM, K8S, ControlPlane

pytestmark = pytest.mark.k8s

GROUP = "smoke.celeriac.io"


def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll until ``check`` returns something truthy; controllers act asynchronously."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_api_server_reports_the_built_kubernetes_version(kube_api: ApiClient) -> None:
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == K8S.version
    assert (info.major, info.minor) == ("1", "36")


def test_crd_with_cel_rule_rejects_a_violating_object_with_the_rules_message(
    kube_api: ApiClient, namespace: str
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                        "x-kubernetes-validations": [
                            {"rule": "self.min <= self.max", "message": "min must not exceed max"}
                        ],
                    }},
                }},
            }],
        },
    }
    ext = client.ApiextensionsV1Api(kube_api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(f"ranges.{GROUP}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, 30, "the CRD to be established")
    objects = client.CustomObjectsApi(kube_api)

    def create(lo: int, hi: int, name: str) -> dict[str, object]:
        body = {"apiVersion": f"{GROUP}/v1", "kind": "Range", "metadata": {"name": name},
                "spec": {"min": lo, "max": hi}}
        return dict(objects.create_namespaced_custom_object(GROUP, "v1", namespace, "ranges", body))

    assert create(1, 2, "good")["spec"] == {"min": 1, "max": 2}
    with pytest.raises(ApiException) as rejected:
        create(3, 2, "bad")
    assert rejected.value.status == 422
    assert "min must not exceed max" in str(rejected.value.body)


def test_deployment_gets_a_replicaset_from_the_controller_manager(kube_api: ApiClient, namespace: str) -> None:
    labels = {"app": "smoke"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smoke"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example.invalid/c")]),
            ),
        ),
    )
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment)
    sets = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, 60, "a ReplicaSet")
    assert isinstance(sets, list)
    assert len(sets) == 1
    assert sets[0].metadata.owner_references[0].name == "smoke"
    core = client.CoreV1Api(kube_api)
    wait_for(lambda: len(core.list_namespaced_pod(namespace).items) == 2, 60, "two pods")
    pods = core.list_namespaced_pod(namespace).items
    assert {p.metadata.owner_references[0].name for p in pods} == {sets[0].metadata.name}


def test_namespace_deletion_completes(kube_api: ApiClient, control_plane: ControlPlane) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="smoke-delete")))
    core.create_namespaced_config_map("smoke-delete", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    core.delete_namespace("smoke-delete")

    def gone() -> bool:
        try:
            core.read_namespace("smoke-delete")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 60, "the namespace to be deleted")


def test_lease_updates_use_optimistic_concurrency(kube_api: ApiClient, namespace: str) -> None:
    leases = client.CoordinationV1Api(kube_api)
    created = leases.create_namespaced_lease(namespace, client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    ))
    stale = leases.read_namespaced_lease("leader", namespace)
    created.spec.holder_identity = "b"
    updated = leases.replace_namespaced_lease("leader", namespace, created)
    assert updated.spec.holder_identity == "b"
    assert updated.metadata.resource_version != stale.metadata.resource_version

    stale.spec.holder_identity = "c"
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("leader", namespace, stale)
    assert conflict.value.status == 409
    assert leases.read_namespaced_lease("leader", namespace).spec.holder_identity == "b"


def test_kubectl_and_helm_report_the_built_versions(control_plane: ControlPlane) -> None:
    env = {"KUBECONFIG": str(control_plane.kubeconfig), "HOME": str(control_plane.directory), "PATH": "/usr/bin:/bin"}
    kubectl = subprocess.run(
        [str(K8S.path("kubectl")), "version", "-o", "json"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert f'"gitVersion": "{K8S.version}"' in kubectl  # client
    assert kubectl.count(K8S.version) == 2  # client and server
    helm = subprocess.run(
        [str(HELM.path("helm")), "version", "--short"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert helm.startswith(HELM.version)

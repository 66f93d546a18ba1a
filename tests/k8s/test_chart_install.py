"""charts/celeriac with the real helm against the local control plane: install, upgrade, uninstall.

There is no kubelet in this tier, so the operator Deployment's pod never runs here; instead the operator
is started as a local process authenticated as the chart's ServiceAccount, which proves the chart's RBAC
and peering object are enough for it to work (tests/e2e/test_chart_helm_test.py runs the pods for real).
The CRDs are cluster-wide and already applied by the session fixture ``celeriac_crds``, so most tests
install with ``crds.enabled=false``; one adopts them the way Helm documents (ownership metadata).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import service_account_kubeconfig, start_operator

from helm_support import CHART, HelmFailed, helm, set_args
from servers import wait_until

pytestmark = pytest.mark.k8s

RELEASE = "rel"
NAMESPACED = {"watch.scope": "namespaces", "crds.enabled": "false"}


class Release:
    """One helm release in the test's namespace; uninstalled at teardown if still there."""

    def __init__(self, kubeconfig: Path, namespace: str, name: str = RELEASE) -> None:
        self.kubeconfig, self.namespace, self.name = kubeconfig, namespace, name

    def helm(self, *args: str, timeout_s: float = 120) -> str:
        return helm(*args, "--namespace", self.namespace, kubeconfig=self.kubeconfig, timeout_s=timeout_s)

    def install(self, values: dict[str, str]) -> str:
        return self.helm("install", self.name, str(CHART), *set_args(values))

    def upgrade(self, values: dict[str, str]) -> str:
        return self.helm("upgrade", self.name, str(CHART), "--reuse-values", *set_args(values))

    def uninstall(self) -> str:
        return self.helm("uninstall", self.name, "--wait")

    def installed(self) -> bool:
        return self.name in self.helm("list", "--short").split()


@pytest.fixture
def release(control_plane: Any, celeriac_crds: list[str], namespace: str) -> Iterator[Release]:
    made = Release(control_plane.kubeconfig, namespace)
    try:
        yield made
    finally:
        if made.installed():
            made.uninstall()


def _deployment(kube_api: Any, namespace: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(kube_api).read_namespaced_deployment(f"{RELEASE}-celeriac", namespace)


def _instance_objects(kube_api: Any, namespace: str) -> list[str]:
    """Everything labelled with the release, namespaced and cluster-scoped, as kind/name."""
    from kubernetes import client

    selector = f"app.kubernetes.io/instance={RELEASE}"
    core, apps, rbac = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    found = [f"Deployment/{o.metadata.name}"
             for o in apps.list_namespaced_deployment(namespace, label_selector=selector).items]
    found += [f"ServiceAccount/{o.metadata.name}"
              for o in core.list_namespaced_service_account(namespace, label_selector=selector).items]
    found += [f"Role/{o.metadata.name}" for o in rbac.list_namespaced_role(namespace, label_selector=selector).items]
    found += [f"RoleBinding/{o.metadata.name}"
              for o in rbac.list_namespaced_role_binding(namespace, label_selector=selector).items]
    found += [f"ClusterRole/{o.metadata.name}" for o in rbac.list_cluster_role(label_selector=selector).items
              if o.metadata.name.startswith(namespace)]
    found += [f"ClusterRoleBinding/{o.metadata.name}"
              for o in rbac.list_cluster_role_binding(label_selector=selector).items
              if o.metadata.name.startswith(namespace)]
    found += [f"KopfPeering/{o['metadata']['name']}" for o in custom.list_namespaced_custom_object(
        "kopf.dev", "v1", namespace, "kopfpeerings", label_selector=selector)["items"]]
    return sorted(found)


def test_namespaced_install_creates_the_operator_objects_and_uninstall_removes_them_all(
    release: Release, kube_api: Any, namespace: str,
) -> None:
    notes = release.install(NAMESPACED)
    assert f"It watches: {namespace}." in notes
    assert "did not install the celeriac.io CRDs (crds.enabled=false)" in notes
    assert f"helm test {RELEASE} -n {namespace}" in notes
    assert _instance_objects(kube_api, namespace) == sorted([
        "ClusterRole/" + f"{namespace}-{RELEASE}-celeriac-discovery",
        "ClusterRoleBinding/" + f"{namespace}-{RELEASE}-celeriac-discovery",
        f"Deployment/{RELEASE}-celeriac", "KopfPeering/celeriac-operator",
        f"Role/{RELEASE}-celeriac", f"Role/{RELEASE}-celeriac-test",
        f"RoleBinding/{RELEASE}-celeriac", f"RoleBinding/{RELEASE}-celeriac-test",
        f"ServiceAccount/{RELEASE}-celeriac", f"ServiceAccount/{RELEASE}-celeriac-test",
    ])
    (container,) = _deployment(kube_api, namespace).spec.template.spec.containers
    assert container.command == ["python", "-m", "celeriac_operator"]
    assert container.args[:2] == [f"--namespace={namespace}", "--peering=celeriac-operator"]

    release.uninstall()
    assert _instance_objects(kube_api, namespace) == []
    assert not release.installed()


def test_upgrade_changes_the_operators_settings_in_place(release: Release, kube_api: Any, namespace: str) -> None:
    release.install(NAMESPACED)
    before = _deployment(kube_api, namespace)
    release.upgrade({"operator.logFormat": "json", "operator.recheckIntervalSeconds": "5"})
    after = _deployment(kube_api, namespace)
    assert after.metadata.uid == before.metadata.uid
    assert after.metadata.generation == before.metadata.generation + 1
    (container,) = after.spec.template.spec.containers
    assert "--log-format=json" in container.args
    assert {e.name: e.value for e in container.env}["CELERIAC_OPERATOR_RECHECK_INTERVAL_S"] == "5"
    assert "REVISION: 2" in release.helm("status", RELEASE)


def test_operator_run_as_the_charts_service_account_reconciles_in_the_watched_namespace(
    release: Release, kube_api: Any, namespace: str, tmp_path: Path, kubectl: Any,
) -> None:
    from kubernetes import client

    release.install(NAMESPACED)
    sa_kubeconfig = service_account_kubeconfig(kube_api, release.kubeconfig, namespace,
                                               f"{RELEASE}-celeriac", tmp_path / "operator-sa.kubeconfig")
    account = f"system:serviceaccount:{namespace}:{RELEASE}-celeriac"

    def can_i(verb: str, resource: str, where: str) -> str:
        scope = ["-n", where] if where else []
        return str(kubectl("auth", "can-i", verb, resource, "--as", account, *scope, check=False).stdout.strip())

    # The API server's RBAC authorizer learns new Roles through an informer: wait until it has them.
    wait_until(lambda: can_i("patch", "deployments.apps", namespace) == "yes"
               and can_i("watch", "customresourcedefinitions", "") == "yes", 30, "the chart's RBAC in effect")
    for verb, resource, where, allowed in [
        ("patch", "deployments.apps", namespace, "yes"), ("get", "secrets", namespace, "yes"),
        ("list", "secrets", namespace, "no"), ("get", "secrets", "default", "no"),
        ("patch", "deployments.apps", "default", "no"), ("watch", "customresourcedefinitions", "", "yes"),
        ("create", "clusterkopfpeerings.kopf.dev", "", "no"),
    ]:
        assert can_i(verb, resource, where) == allowed, (verb, resource, where)

    operator = start_operator(sa_kubeconfig, [namespace], tmp_path / "operator", standalone=False,
                              peering_name="celeriac-operator")
    try:
        core = client.CoreV1Api(kube_api)
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="broker"), string_data={"url": "redis://127.0.0.1:1/0"}))
        custom = client.CustomObjectsApi(kube_api)
        custom.create_namespaced_custom_object("celeriac.io", "v1alpha1", namespace, "taskqueues", {
            "apiVersion": "celeriac.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": "jobs"},
            "spec": {"broker": {"secretRef": {"name": "broker"}}}})

        def checked() -> bool:
            status = custom.get_namespaced_custom_object("celeriac.io", "v1alpha1", namespace, "taskqueues",
                                                         "jobs").get("status") or {}
            return any(c["type"] == "BrokerReachable" for c in status.get("conditions", []))

        wait_until(checked, 60, "the chart-authorized operator writes the TaskQueue's conditions")
        assert "Forbidden" not in operator.logs()
        assert "403" not in operator.logs()
    finally:
        operator.stop()


def test_helm_test_check_sees_the_crds_served_and_reports_an_unavailable_operator(
    release: Release, kube_api: Any, namespace: str, tmp_path: Path, kubectl: Any,
) -> None:
    release.install(NAMESPACED)
    account = f"system:serviceaccount:{namespace}:{RELEASE}-celeriac-test"
    wait_until(lambda: kubectl("auth", "can-i", "get", f"deployments.apps/{RELEASE}-celeriac", "--as", account,
                               "-n", namespace, check=False).stdout.strip() == "yes", 30, "the test's RBAC in effect")
    sa_kubeconfig = service_account_kubeconfig(kube_api, release.kubeconfig, namespace,
                                               f"{RELEASE}-celeriac-test", tmp_path / "test-sa.kubeconfig")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(sa_kubeconfig), CELERIAC_TEST_NAMESPACE=namespace,
               CELERIAC_TEST_DEPLOYMENT=f"{RELEASE}-celeriac", CELERIAC_TEST_TIMEOUT_S="1")
    done = subprocess.run([sys.executable, str(CHART / "files" / "check_ready.py")], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[:3] == [f"ok   {plural}.celeriac.io served (0 in {namespace})"
                         for plural in ("taskqueues", "workerpools", "beatschedules")]
    assert lines[3].startswith(f"FAIL operator {namespace}/{RELEASE}-celeriac: 0/")
    assert "replicas available after 1 s" in lines[3]


def test_crds_enabled_adopts_existing_crds_updates_them_and_keeps_them_on_uninstall(
    release: Release, kube_api: Any, namespace: str, celeriac_crds: list[str],
) -> None:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(kube_api)
    ours = [name for name in celeriac_crds if name.endswith(".celeriac.io")]
    with pytest.raises(HelmFailed, match="cannot be imported into the current release"):
        Release(release.kubeconfig, namespace, "unowned").install({"peering.name": f"p-{namespace}"})
    assert not Release(release.kubeconfig, namespace, "unowned").installed(), "ownership is checked before anything"

    adopt = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}, "annotations": {
        "meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": namespace}}}
    for name in ours:
        ext.patch_custom_resource_definition(name, adopt)
    try:
        release.install({"peering.name": f"p-{namespace}"})
        for name in ours:
            crd = ext.read_custom_resource_definition(name)
            assert crd.metadata.labels["app.kubernetes.io/instance"] == RELEASE
            assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
            source = yaml.safe_load((CHART / "files" / "crds" / f"celeriac.io_{name.split('.')[0]}.yaml").read_text())
            served = kube_api.sanitize_for_serialization(crd.spec)
            assert served["names"] == source["spec"]["names"]
            assert served["versions"][0]["additionalPrinterColumns"] == \
                source["spec"]["versions"][0]["additionalPrinterColumns"]
        release.uninstall()
        for name in ours:
            assert ext.read_custom_resource_definition(name).metadata.name == name
    finally:
        release_free = {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}, "annotations": {
            "meta.helm.sh/release-name": None, "meta.helm.sh/release-namespace": None,
            "helm.sh/resource-policy": None}}}
        for name in ours:
            ext.patch_custom_resource_definition(name, release_free)


def test_on_a_fresh_cluster_install_brings_every_crd_and_keep_decides_what_uninstall_deletes(
    tmp_path: Path,
) -> None:
    """A private control plane with no CRDs at all (the session's has them): the first ``helm install``
    must install kopf's peering CRDs (Helm's crds/ directory) before it can map the ClusterKopfPeering."""
    from kubernetes import client, config

    from control_plane import ControlPlane

    plane = ControlPlane(tmp_path / "fresh")
    plane.start(controller_manager=False)
    try:
        fresh = Release(plane.kubeconfig, "default")
        ext = client.ApiextensionsV1Api(config.new_client_from_config(config_file=str(plane.kubeconfig)))

        def crds() -> set[str]:
            return {crd.metadata.name for crd in ext.list_custom_resource_definition().items}

        ours = {"taskqueues.celeriac.io", "workerpools.celeriac.io", "beatschedules.celeriac.io"}
        kopf = {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
        assert crds() == set()
        fresh.install({})
        assert crds() == ours | kopf
        assert "These resources were kept due to the resource policy" in fresh.uninstall()
        assert crds() == ours | kopf
        fresh.install({})
        fresh.upgrade({"crds.keep": "false"})
        fresh.uninstall()
        wait_until(lambda: crds() == kopf, 30, "the celeriac.io CRDs deleted; Helm never deletes its crds/ directory")
    finally:
        plane.stop()

"""``helm test`` of charts/celeriac passes once the chart's operator pod runs (on the local node agent).

The whole path a user takes: ``helm install`` (single-namespace scope), the Deployment's pod starts
``python -m celeriac_operator`` with the chart's flags, environment and ServiceAccount, becomes Ready
through its ``/healthz`` readiness probe, reconciles a TaskQueue, and ``helm test`` runs the chart's check
pod (the CRDs are served, the operator is available) to success; ``helm uninstall`` stops it.
"""

from __future__ import annotations

from typing import Any

import pytest
from agent_support import Agent

from helm_support import CHART, helm, set_args
from servers import wait_until

pytestmark = pytest.mark.e2e

RELEASE = "rel"
VALUES = {"watch.scope": "namespaces", "crds.enabled": "false",
          "operator.taskqueueCheckIntervalSeconds": "1", "test.timeoutSeconds": "60"}


def test_helm_test_passes_against_the_operator_the_chart_runs(
    control_plane: Any, kube_api: Any, namespace: str, celeriac_crds: list[str], agent: Agent,
) -> None:
    from kubernetes import client

    def run(*args: str, timeout_s: float = 120) -> str:
        return helm(*args, "--namespace", namespace, kubeconfig=control_plane.kubeconfig, timeout_s=timeout_s)

    run("install", RELEASE, str(CHART), *set_args(VALUES))
    apps = client.AppsV1Api(kube_api)
    try:
        def available() -> bool:
            status = apps.read_namespaced_deployment(f"{RELEASE}-celeriac", namespace).status
            return (status.available_replicas or 0) >= 1

        wait_until(available, 90, "the chart's operator Deployment available (pod Ready via /healthz)")

        core, custom = client.CoreV1Api(kube_api), client.CustomObjectsApi(kube_api)
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="broker"), string_data={"url": "redis://127.0.0.1:1/0"}))
        custom.create_namespaced_custom_object("celeriac.io", "v1alpha1", namespace, "taskqueues", {
            "apiVersion": "celeriac.io/v1alpha1", "kind": "TaskQueue", "metadata": {"name": "jobs"},
            "spec": {"broker": {"secretRef": {"name": "broker"}}}})

        def reconciled() -> bool:
            body = custom.get_namespaced_custom_object("celeriac.io", "v1alpha1", namespace, "taskqueues", "jobs")
            return any(c["type"] == "BrokerReachable" for c in (body.get("status") or {}).get("conditions", []))

        wait_until(reconciled, 60, "the chart's operator pod reconciles a TaskQueue")

        out = run("test", RELEASE, "--timeout", "120s", timeout_s=180)
        assert f"TEST SUITE:     {RELEASE}-celeriac-test" in out
        assert "Phase:          Succeeded" in out
        log = agent.container_log(namespace, f"{RELEASE}-celeriac-test", "check")
        assert f"ok   operator {namespace}/{RELEASE}-celeriac: 1/1 replicas available" in log
        assert "ok   taskqueues.celeriac.io served (1 in" in log
    finally:
        run("uninstall", RELEASE, "--wait")

    wait_until(lambda: not core.list_namespaced_pod(namespace).items, 60, "the operator pod gone after uninstall")

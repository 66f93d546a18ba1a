"""The generated ClusterRole (operator/rbac/clusterrole.yaml) is enough: the operator, authenticated as a
ServiceAccount bound to nothing else, reconciles every example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from manifests_support import apply, broker_secret, condition, example_documents, get, wait_for
from operator_support import service_account_kubeconfig, start_operator

from celeriac_operator import rbac
from control_plane import ControlPlane
from servers import RedisServer

pytestmark = pytest.mark.k8s


def test_operator_reconciles_every_example_with_only_the_generated_clusterrole(
    control_plane: ControlPlane, celeriac_crds: list[str], kube_api: Any, kubectl: Any, namespace: str, *,
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    binding = f"celeriac-operator-{namespace}"
    kubectl("apply", "-f", str(rbac.OUTPUT))
    kubectl("create", "serviceaccount", "celeriac-operator", "-n", namespace)
    kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac.CLUSTER_ROLE_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": "celeriac-operator", "namespace": namespace}],
    }))
    kubeconfig = service_account_kubeconfig(kube_api, control_plane.kubeconfig, namespace, "celeriac-operator",
                                            tmp_path / "operator-kubeconfig")
    operator = start_operator(kubeconfig, [namespace], tmp_path / "operator")
    try:
        apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"),
              *example_documents("workerpool.yaml"), *example_documents("beatschedule.yaml"))

        wait_for(kubectl, namespace, "workerpool", "tasks",
                 lambda wp: condition(wp, "QueuesResolved").get("status") == "True"
                 and condition(wp, "Autoscaling").get("status") == "True")
        wait_for(kubectl, namespace, "beatschedule", "housekeeping",
                 lambda bs: condition(bs, "QueuesResolved").get("status") == "True")
        wait_for(kubectl, namespace, "taskqueue", "emails",
                 lambda tq: condition(tq, "BrokerReachable").get("status") == "True")
        for kind, name in [("deployment", "tasks-worker"), ("poddisruptionbudget", "tasks-worker"),
                           ("deployment", "housekeeping-beat"), ("serviceaccount", "housekeeping-beat"),
                           ("role", "housekeeping-beat"), ("rolebinding", "housekeeping-beat")]:
            assert get(kubectl, namespace, kind, name) is not None, (kind, name)
        assert "Forbidden" not in operator.logs()
        assert 'HTTP/1.1" 403' not in operator.logs()
        assert "Failed to post an event" not in operator.logs()
    finally:
        operator.stop()
        kubectl("delete", "clusterrolebinding", binding)

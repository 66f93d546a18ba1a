"""Install the operator with the real Helm chart (charts/celeriac) into a test namespace.

The operator then runs as a pod of the chart's Deployment, started by the node agent with the chart's
command, ServiceAccount and RBAC (namespaced mode, so only the test namespace is watched). The CRDs come from
the session fixture ``celeriac_crds`` (the same crds/ files the chart templates), so the release installs
with ``crds.enabled=false`` and never competes with that fixture for the CRDs' ownership.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHART = Path(__file__).resolve().parents[2] / "charts" / "celeriac"

FAST_OPERATOR = {
    "operator.recheckIntervalSeconds": "2",
    "operator.taskqueueCheckIntervalSeconds": "2",
    "operator.retryDelaySeconds": "1",
}


def helm(kubeconfig: Path, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the built helm against the control plane; a failure raises with helm's stderr."""
    from control_plane import HELM

    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CACHE_HOME": str(kubeconfig.parent / "helm-cache"),
           "HELM_CONFIG_HOME": str(kubeconfig.parent / "helm-config"),
           "HELM_DATA_HOME": str(kubeconfig.parent / "helm-data")}
    done = subprocess.run([str(HELM.path("helm")), *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def install_operator(kubeconfig: Path, namespace: str, release: str, worker_image: str) -> None:
    """``helm install`` the chart: one standalone operator watching ``namespace``."""
    values = {
        "watch.scope": "namespaces",
        "peering.enabled": "false",
        "crds.enabled": "false",
        "crds.keep": "false",
        "workerImage": worker_image,
        "operator.verbose": "true",
        **FAST_OPERATOR,
    }
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    helm(kubeconfig, "install", release, str(CHART), "--namespace", namespace, *sets)

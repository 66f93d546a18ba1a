"""Fixtures of the e2e tier: ``agent`` (the local node agent running the test namespace's pods).

The k8s tier's fixtures (``celeriac_crds``, ``kubectl``) are shared from tests/k8s/conftest.py.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_support import Agent, start_agent

# The k8s tier's fixtures, loaded under another module name (a second conftest cannot be imported by name).
_K8S_CONFTEST = Path(__file__).resolve().parents[1] / "k8s" / "conftest.py"
_spec = importlib.util.spec_from_file_location("k8s_tier_conftest", _K8S_CONFTEST)
assert _spec is not None
assert _spec.loader is not None
_k8s = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_k8s)
celeriac_crds = _k8s.celeriac_crds
kubectl = _k8s.kubectl


def failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"report_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture
def agent(control_plane: Any, kube_api: Any, namespace: str, tmp_path: Path,
          request: pytest.FixtureRequest) -> Iterator[Agent]:
    """The node agent for the test's namespace, on a Node named after the namespace."""
    started = start_agent(control_plane.kubeconfig, kube_api, [namespace], tmp_path / "agent",
                          node_name=f"node-{namespace}")
    try:
        yield started
    finally:
        started.stop()
        if failed(request):
            print(f"--- node agent log ---\n{started.logs()[-10000:]}\n{started.pod_logs()[-30000:]}")

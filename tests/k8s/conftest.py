"""Fixtures of the k8s tier: the CRDs from ``crds/`` applied to the session's control plane, ``kubectl``, and
``operator`` (the real operator process watching the test's namespace)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from operator_support import OperatorProcess, start_operator

from servers import wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from control_plane import ControlPlane

CRDS = Path(__file__).resolve().parents[2] / "crds"


def crd_documents() -> list[dict[str, object]]:
    """Every CustomResourceDefinition in ``crds/`` (the files users and the chart apply)."""
    documents = []
    for path in sorted(CRDS.glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return [doc for doc in documents if doc.get("kind") == "CustomResourceDefinition"]


@pytest.fixture(scope="session")
def celeriac_crds(control_plane: ControlPlane) -> list[str]:
    """Apply ``crds/*.yaml`` once per session (create or replace) and wait until each is Established.

    Returns the CRD names.
    """
    from kubernetes import client, config

    api: ApiClient = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in crd_documents():
        name = doc["metadata"]["name"]  # type: ignore[index]
        try:
            current = ext.read_custom_resource_definition(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(doc)
        else:
            doc["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[index]
            ext.replace_custom_resource_definition(name, doc)
        names.append(name)

    def established(name: str) -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    if not names:
        raise RuntimeError(f"no CustomResourceDefinitions in {CRDS}; generate them: python -m celeriac_operator.crdgen")
    for name in names:
        wait_until(lambda name=name: established(name), timeout_s=30, what=f"CRD {name} Established")
    return names


Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """Run the built ``kubectl`` against the control plane: ``kubectl("get", "wp", "-n", ns, input=None, check=True)``.

    Returns the CompletedProcess (text mode, stdout and stderr captured). With ``check=True`` a non-zero exit
    raises AssertionError carrying kubectl's stderr, so a failing test shows the API server's message.
    """
    from control_plane import K8S

    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(K8S.path("kubectl")), *args],
            check=False, input=input, capture_output=True, text=True, env=env, timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    return run


@pytest.fixture
def operator(
    control_plane: ControlPlane, celeriac_crds: list[str], namespace: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """``python -m celeriac_operator --standalone --namespace <namespace>``, live before the test starts.

    Stopped in teardown; its log is printed when the test failed.
    """
    process = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "operator")
    try:
        yield process
    finally:
        process.stop()
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
        )
        if failed:
            print(f"--- operator log ({process.log_path}) ---\n{process.logs()[-20000:]}")

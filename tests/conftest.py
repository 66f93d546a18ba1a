"""Fixtures shared by every test tier.

``redis_server``: a real ``redis-server`` per test (function scope) on a free loopback port.
``rabbitmq_server``: a private RabbitMQ node (session scope) with its own epmd, cookie and ports.
``control_plane``: the local Kubernetes control plane (session scope), with ``kube_api`` (an
admin client) and ``namespace`` (a fresh namespace per test, logs kept when the test fails).
"""

from __future__ import annotations

import gc
import re
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from servers import RedisServer, start_redis  # noqa: E402

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from control_plane import ControlPlane


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """A skipped test is not a passing one: fail the run and say which were skipped."""
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} test(s) skipped; skips fail this suite", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh redis-server for one test; stopped and its directory removed afterwards."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        # Celery's AsyncResult.__del__ unsubscribes from the result channel; collect such
        # objects while Redis still runs, or a later test pays 20 s of reconnect retries.
        # The collection may also close a client socket left in a reference cycle by any earlier
        # test (module-scoped servers never collect); its ResourceWarning would be blamed on this
        # test, so it is not turned into an error here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        server.stop()


# --- Kubernetes control plane ----------------------------------------------------------------

ARTIFACTS = ROOT / ".artifacts"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Remember each phase's report on the item so fixtures can tell whether the test failed."""
    report: pytest.TestReport = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session, as users run it.

    Raises a clear error naming ``scripts/control-plane build`` when the binaries are missing.
    """
    from control_plane import ControlPlane

    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> ApiClient:
    """A Kubernetes API client authenticated as the control plane's admin."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    assert isinstance(api, client.ApiClient)
    return api


@pytest.fixture
def namespace(control_plane: ControlPlane, kube_api: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; on failure the servers' logs are copied to .artifacts/."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        if _failed(request):
            target = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.nodeid)
            shutil.copytree(control_plane.logs, target, dirs_exist_ok=True)
            print(f"control-plane logs for {request.node.nodeid}: {target}")
        core.delete_namespace(name)


from servers import RabbitMQServer, start_rabbitmq  # noqa: E402


@pytest.fixture(scope="session")
def rabbitmq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """One private RabbitMQ node for the whole session (it takes seconds to start)."""
    server = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield server
    finally:
        server.stop()

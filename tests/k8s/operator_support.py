"""Run the real operator (``python -m celeriac_operator``) as a subprocess against the test control plane.

:func:`start_operator` starts it for the given namespaces with ``KUBECONFIG`` pointing at the control plane,
waits until kopf's liveness endpoint answers, and returns an :class:`OperatorProcess`; ``stop()`` ends it
(SIGTERM, then SIGKILL). Its stdout and stderr go to a log file, printed by the ``operator`` fixture when a
test fails. Short re-check intervals keep recovery tests quick without sleeping in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import free_port, stop_process, wait_until

TEST_WORKER_IMAGE = "celeriac-test:0.1.0"
"""The image the operator puts into pods of resources that name none (no kubelet runs them here)."""

TEST_ENV = {
    "CELERIAC_OPERATOR_WORKER_IMAGE": TEST_WORKER_IMAGE,
    "CELERIAC_OPERATOR_RECHECK_INTERVAL_S": "2",
    "CELERIAC_OPERATOR_TASKQUEUE_CHECK_INTERVAL_S": "2",
    "CELERIAC_OPERATOR_RETRY_DELAY_S": "1",
}


@dataclass
class OperatorProcess:
    """One running operator process; ``log_path`` holds everything it printed."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    liveness_port: int
    namespaces: tuple[str, ...]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def healthy(self) -> bool:
        """True when kopf's liveness endpoint answers 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=15.0)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean-up code of the operator runs."""
        import signal

        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def service_account_kubeconfig(kube_api: Any, admin_kubeconfig: Path, namespace: str, account: str,
                               target: Path) -> Path:
    """A copy of the admin kubeconfig that authenticates as ServiceAccount ``namespace/account`` (a real
    token from the TokenRequest API), so a process run with it has exactly that account's RBAC."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = client.CoreV1Api(kube_api).create_namespaced_service_account_token(account, namespace, request)
    config = json.loads(admin_kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token.status.token}
    target.write_text(json.dumps(config))
    return target


def start_operator(
    kubeconfig: Path,
    namespaces: Sequence[str],
    log_dir: Path,
    *,
    standalone: bool = True,
    peering_name: str | None = None,
    priority: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    wait_healthy: bool = True,
    timeout_s: float = 60.0,
) -> OperatorProcess:
    """Start ``python -m celeriac_operator`` for ``namespaces`` and (by default) wait until it is live."""
    port = free_port()
    args = [sys.executable, "-m", "celeriac_operator", "--liveness-port", str(port), "--verbose"]
    for ns in namespaces:
        args += ["--namespace", ns]
    if standalone:
        args.append("--standalone")
    if peering_name is not None:
        args += ["--peering", peering_name]
    if priority is not None:
        args += ["--priority", str(priority)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_OPERATOR_")}
    env.update(TEST_ENV)
    env.update(extra_env or {})
    env["KUBECONFIG"] = str(kubeconfig)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"operator-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    operator = OperatorProcess(proc, log_path, port, tuple(namespaces), args, env)
    if wait_healthy:
        try:
            wait_until(lambda: operator.healthy() or not operator.running(), timeout_s, "operator liveness endpoint")
            if not operator.running():
                raise RuntimeError(f"operator exited with {proc.returncode}:\n{operator.logs()[-5000:]}")
        except BaseException:
            operator.stop()
            raise
    return operator

"""Real ``celeriac beat`` and ``celeriac worker`` processes against the control plane and Redis.

``beatk8s.py`` (written into the test's directory) is the app both run: its task ``beat.record``
RPUSHes ``<task id> <unix time>`` to the Redis list ``beat:executions``, so a test sees every
execution of every published id. :class:`Procs` starts processes and kills them all at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from celeriac import keys
from servers import stop_process

CELERIAC = str(Path(sys.executable).with_name("celeriac"))
GROUP, VERSION, PLURAL = "celeriac.io", "v1alpha1", "beatschedules"
EXECUTIONS = "beat:executions"

BEAT_APP = """
import os
import time
import redis
from celeriac import Celeriac

url = os.environ["CELERIAC_BROKER_URL"]
app = Celeriac("beatk8s", broker=url, backend=url)
app.conf.beat_schedule = {
    "tick": {"task": "beat.record", "schedule": 1.0, "options": {"queue": "beat-q"}, "missed_run_policy": "runAll",
             "max_catch_up": 30},
}
_redis = redis.Redis.from_url(url)


@app.task(name="beat.record", bind=True)
def record(self, *args, **kwargs):
    _redis.rpush("beat:executions", f"{self.request.id} {time.time()}")
    return self.request.id
"""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def alive(self) -> bool:
        return self.popen.poll() is None


class Procs:
    """Starts ``celeriac`` processes for one test; :meth:`close` kills whatever still runs."""

    def __init__(self, directory: Path, kubeconfig: Path, redis_url: str) -> None:
        self.directory = directory
        self.kubeconfig = kubeconfig
        self.redis_url = redis_url
        self.started: list[Proc] = []
        (directory / "beatk8s.py").write_text(BEAT_APP)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERIAC_", "KUBERNETES_", "POD_"))}
        return {**base, "PYTHONPATH": str(self.directory), "KUBECONFIG": str(self.kubeconfig),
                "CELERIAC_BROKER_URL": self.redis_url, "CELERIAC_RESULT_BACKEND": self.redis_url, **extra}

    def start(self, name: str, *args: str, **env: str) -> Proc:
        log_path = self.directory / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen([CELERIAC, *args], cwd=self.directory, env=self.env(**env), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        return proc

    def beat(self, identity: str, *args: str, app: str | None = "beatk8s", **env: str) -> Proc:
        """``celeriac [-A app] beat --identity <identity> <args>``; ``app=None`` runs as the operator's pods do."""
        app_args = ("-A", app) if app else ()
        return self.start(identity, *app_args, "beat", "--identity", identity, *args, **env)

    def worker(self, queue: str = "beat-q") -> Proc:
        return self.start("worker", "-A", "beatk8s", "worker", "-Q", queue, "-P", "threads", "-c", "4",
                          "--health-port", "off", "-l", "info")

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-6000:]}" for p in self.started)

    def close(self) -> None:
        for proc in self.started:
            stop_process(proc.popen, timeout_s=5)
            proc.kill9()


@pytest.fixture(name="rclient")
def rclient_fixture(redis_server: Any) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(name="procs")
def procs_fixture(
    control_plane: Any, redis_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Procs]:
    """Import this into a test module (``from beat_support import procs_fixture``) to get ``procs``."""
    started = Procs(tmp_path, control_plane.kubeconfig, redis_server.url)
    try:
        yield started
    finally:
        started.close()
        failed = any(getattr(getattr(request.node, f"report_{w}", None), "failed", False) for w in ("setup", "call"))
        if failed:
            print(started.logs())


def beat_schedule(name: str, entries: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BeatSchedule", "metadata": {"name": name},
            "spec": {"entries": entries, **spec}}


FAST_ELECTION = {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1}
"""Short election settings so failover tests are not dominated by 15 s waits."""


def create_schedule(kube_api: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    created: dict[str, Any] = client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body)
    return created


def get_schedule(kube_api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    found: dict[str, Any] = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return found


def patch_spec(kube_api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    from kubernetes import client

    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}, _content_type="application/merge-patch+json")


def lease_holder(kube_api: Any, namespace: str, name: str) -> str | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    holder = lease.spec.holder_identity if lease.spec else None
    return str(holder) if holder else None


def lease_annotations(kube_api: Any, namespace: str, name: str) -> dict[str, str]:
    from kubernetes import client

    lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(name, namespace)
    return dict(lease.metadata.annotations or {})


@dataclass(frozen=True)
class Execution:
    task_id: str
    at_s: float


def executions(rclient: Any) -> list[Execution]:
    found = []
    for raw in rclient.lrange(EXECUTIONS, 0, -1):
        task_id, at = raw.decode().split()
        found.append(Execution(task_id, float(at)))
    return found


def guard_ids(rclient: Any) -> set[str]:
    """Task ids whose publish-once guard exists (each one was published exactly once)."""
    prefix = keys.BEAT_FIRED_PREFIX
    return {raw.decode()[len(prefix):] for raw in rclient.scan_iter(match=f"{prefix}*", count=1000)}


def fired_slots(log: str, entry: str) -> list[tuple[datetime, str, bool]]:
    """(slot, task id, published) for each 'fired entry' line of a beat log."""
    found = []
    for line in log.splitlines():
        marker = f"fired entry {entry} slot "
        if marker in line:
            rest = line.split(marker, 1)[1].split()
            slot = datetime.fromisoformat(rest[0]).astimezone(timezone.utc)
            found.append((slot, rest[3], "already published" not in line))
    return found

"""Run our worker in a real subprocess for integration tests, and wait on Redis conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

LAUNCHER = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
from worker_tasks import app
from celeriac.worker import Worker, WorkerOptions
options = WorkerOptions(**json.loads(sys.argv[1]))
sys.exit(Worker(app, options).run())
"""


class WorkerProcess:
    """``celeriac`` worker in a child process; ``stop()`` SIGTERMs it (warm) and waits."""

    def __init__(
        self, redis_url: str, log_path: Path, env: dict[str, str] | None = None, broker_url: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("health_port", None)
        options.setdefault("pool", "prefork")
        options.setdefault("concurrency", 2)
        options.setdefault("hostname", f"w{os.getpid()}-{time.monotonic_ns()}@test")
        self.hostname = options["hostname"]
        full_env = {
            **os.environ,
            "CELERIAC_BROKER_URL": broker_url or redis_url,
            "CELERIAC_RESULT_BACKEND": redis_url,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "worker")]),
            **(env or {}),
        }
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, json.dumps(options)],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"worker did not stop; log:\n{self.log()}") from None

    def kill_group(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0,
               worker: WorkerProcess | None = None) -> None:
    """Poll ``check`` until true, or fail naming ``what`` (with the worker's log when given)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited ({worker.proc.returncode}) waiting for {what}:\n{worker.log()}")
        time.sleep(0.02)
    detail = f"\n{worker.log()}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")


def stop_workers(workers: list[WorkerProcess]) -> None:
    """Stop every worker a test started; kill the group even when a graceful stop fails."""
    for worker in workers:
        try:
            worker.stop()
        finally:
            worker.kill_group()

"""A worker run in this process on a thread, so a test can read its state or instrument it
(wrap a broker or writer method) before it starts. Real Redis, real pool, real engine."""

from __future__ import annotations

import threading
from typing import Any

import redis

from celeriac.worker import Worker, WorkerOptions

STOP_TIMEOUT_S = 30.0


def hold_until_released(url: str, tag: str) -> None:
    """A task body that blocks: push ``tag`` to ``started``, then wait (up to 60 s) until the test
    pushes to ``release:<tag>``, so a test can act while the task is provably mid-run."""
    client = redis.Redis.from_url(url, socket_timeout=None)  # redis-py's default 5 s read timeout is shorter
    try:
        client.rpush("started", tag)
        client.blpop([f"release:{tag}"], timeout=60)
    finally:
        client.close()


class ThreadedWorker:
    """``Worker(app, WorkerOptions(**options)).run()`` on a thread named ``engine`` once
    :meth:`start` is called; :meth:`stop` shuts it down and returns its exit code."""

    def __init__(self, app: Any, **options: Any) -> None:
        options.setdefault("health_port", None)
        self.worker = Worker(app, WorkerOptions(**options))
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)

    def start(self) -> ThreadedWorker:
        self.thread.start()
        return self

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def stop(self, cold: bool = False) -> int | None:
        self.worker.request_shutdown(cold=cold)
        self.thread.join(timeout=STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.exit_code

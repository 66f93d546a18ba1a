"""Our client over a real RabbitMQ, calling a real Celery 5.7 worker (results in Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import start_golden_celery_worker

from celeriac import Celeriac, states
from servers import RedisServer, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def queue() -> str:
    return f"interop-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def celery_worker(
    rabbitmq_server: Any, redis_server: RedisServer, queue: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``celery worker -P solo -Q <queue>`` consuming from RabbitMQ, storing results in Redis."""
    log = tmp_path / "worker.log"
    env = {"GOLDEN_REDIS_URL": redis_server.url, "GOLDEN_BROKER_URL": rabbitmq_server.url}
    worker = start_golden_celery_worker(log, env, "-Q", queue)
    try:
        wait_until(lambda: b"ready." in log.read_bytes(), 60, f"celery worker to be ready (log: {log})")
        yield worker
    finally:
        # Celery's own shutdown over AMQP takes ~10 s here; nothing is left to finish, so kill it.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def test_celery_worker_over_amqp_runs_our_calls_and_we_read_the_results(
    rabbitmq_server: Any, redis_server: RedisServer, queue: str, celery_worker: Any
) -> None:
    app = Celeriac("client", broker=rabbitmq_server.url, backend=redis_server.url, set_as_current=False)
    try:
        added = app.send_task("golden.add", (2, 3), queue=queue, priority=5, headers={"trace": "x"})
        failed = app.send_task("golden.fail", ("boom",), queue=queue)
        retried = app.send_task("golden.retry_fast", (7,), queue=queue)
        assert added.get(timeout=30) == 5
        with pytest.raises(ValueError, match="boom"):
            failed.get(timeout=30)
        assert retried.get(timeout=30) == 14
        assert (added.state, failed.state, retried.state) == (states.SUCCESS, states.FAILURE, states.SUCCESS)
    finally:
        app.close()

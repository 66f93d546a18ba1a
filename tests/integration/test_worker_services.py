"""The worker starts its observability parts: health port, metrics, heartbeat record, remote control."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import pools as kombu_pools
from worker_process import WorkerProcess, wait_until

from celeriac.worker.heartbeat import read_workers
from servers import free_port

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def celery_client(redis_server: Any) -> Iterator[Celery]:
    client = Celery("client", broker=redis_server.url, backend=redis_server.url)
    yield client
    kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
    client.close()


def test_worker_serves_health_metrics_heartbeat_and_answers_celery_inspect(
    redis_server: Any, celery_client: Celery, tmp_path: Path
) -> None:
    port = free_port()
    worker = WorkerProcess(redis_server.url, tmp_path / "worker.log", health_port=port, events=True,
                           hostname="services@test")
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, "the consumer to be ready", worker=worker)
        assert get(port, "/livez")[0] == 200
        results = [celery_client.send_task("tests.add", (i, i)) for i in range(3)]
        assert [r.get(timeout=30) for r in results] == [0, 2, 4]
        wait_until(lambda: 'celeriac_tasks_succeeded_total{task="tests.add"} 3.0' in get(port, "/metrics")[1],
                   "three successes in /metrics", worker=worker)
        client = redis_server.client()
        try:
            records = read_workers(client, "", time.time(), 30)
        finally:
            client.close()
        assert [r.worker_id for r in records] == ["services@test"]
        assert celery_client.control.inspect(timeout=5).ping() == {"services@test": {"ok": "pong"}}
    finally:
        assert worker.stop() == 0
    assert get(port, "/livez")[0] == 0

"""The worker starts its observability parts: health port, metrics, heartbeat record, remote control."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cli_support import http_get as get
from worker_process import WorkerProcess, wait_until

from celeriac.worker.heartbeat import read_workers
from servers import free_port

pytestmark = pytest.mark.integration


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

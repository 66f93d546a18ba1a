"""The health port answers real HTTP requests from the state the engine reports."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from celeriac.worker.health import HealthServer
from celeriac.worker.state import WorkerState

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_livez_is_ok_while_the_loop_ticks_and_fails_when_it_stalls() -> None:
    state = WorkerState("w@h", ["celery"], 1)
    state.tick()
    with HealthServer(state, port=0, host="127.0.0.1", stale_after_s=0.5) as server:
        assert get(server.port, "/livez")[0] == 200
        deadline = time.monotonic() + 10
        while state.is_alive(0.5) and time.monotonic() < deadline:
            time.sleep(0.05)
        status, _, body = get(server.port, "/livez")
        assert status == 503
        assert body.startswith("event loop stalled for ")
        state.tick()
        assert get(server.port, "/livez")[0] == 200


def test_readyz_follows_the_consumer() -> None:
    state = WorkerState("w@h", ["celery"], 1)
    with HealthServer(state, port=0, host="127.0.0.1") as server:
        assert get(server.port, "/readyz") == (503, "text/plain; charset=utf-8", "consumer not attached\n")
        state.set_consumer_ready(True)
        assert get(server.port, "/readyz") == (200, "text/plain; charset=utf-8", "ok\n")


def test_metrics_expose_task_counts_in_prometheus_text() -> None:
    state = WorkerState("w@h", ["celery"], 1)
    state.on_received({"id": "a", "name": "proj.add"})
    state.on_started("a", 1)
    state.on_finished("a", "proj.add", "SUCCESS", 0.02)
    state.set_prefetched(2)
    with HealthServer(state, port=0, host="127.0.0.1") as server:
        status, content_type, body = get(server.port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    lines = body.splitlines()
    assert 'celeriac_tasks_received_total{task="proj.add"} 1.0' in lines
    assert 'celeriac_tasks_succeeded_total{task="proj.add"} 1.0' in lines
    assert 'celeriac_task_runtime_seconds_count{task="proj.add"} 1.0' in lines
    assert 'celeriac_task_runtime_seconds_bucket{le="0.025",task="proj.add"} 1.0' in lines
    assert "celeriac_tasks_prefetched 2.0" in lines
    assert "celeriac_tasks_active 0.0" in lines


def test_unknown_path_is_404_and_stop_frees_the_port() -> None:
    state = WorkerState("w@h", ["celery"], 1)
    server = HealthServer(state, port=0, host="127.0.0.1")
    server.start()
    port = server.port
    assert get(port, "/nope")[0] == 404
    server.stop()
    again = HealthServer(state, port=port, host="127.0.0.1")
    again.start()
    assert again.port == port
    again.stop()

"""A real ``celeriac worker -E`` process on RabbitMQ is seen by Celery's own tools over AMQP:
``celery inspect ping`` reaches it through ``celery.pidbox`` and Celery's event receiver reads
its events from the ``celeryev`` exchange (nothing goes through the Redis result backend)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cli_support import CELERIAC, CELERY, cli_env
from event_capture import start_event_capture
from kombu import pools as kombu_pools

from servers import RabbitMQServer, RedisServer, stop_process

pytestmark = pytest.mark.integration

HOSTNAME = "celeriac@amqp-obs"
DEADLINE_S = 60.0


def write_apps(directory: Path, broker_url: str, backend_url: str) -> None:
    (directory / "proj.py").write_text(
        "from celeriac import Celeriac\n"
        f"app = Celeriac('proj', broker={broker_url!r}, backend={backend_url!r})\n"
        "@app.task(name='proj.add')\n"
        "def add(x, y):\n"
        "    return x + y\n"
    )
    (directory / "peer.py").write_text(f"from celery import Celery\napp = Celery('peer', broker={broker_url!r})\n")


def test_celery_inspect_ping_and_events_over_rabbitmq_see_our_worker(
    rabbitmq_server: RabbitMQServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    write_apps(tmp_path, rabbitmq_server.url, redis_server.url)
    env = cli_env(tmp_path)
    monitor = Celery("monitor", broker=rabbitmq_server.url, backend=redis_server.url)
    events: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}
    task_id = ""

    def on_event(event: dict[str, Any]) -> None:
        if event.get("hostname") != HOSTNAME:
            return
        events.append(event)
        if event["type"] == "task-succeeded" and event.get("uuid") == task_id:
            holder["receiver"].should_stop = True

    thread = start_event_capture(monitor, on_event, holder, timeout_s=DEADLINE_S)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [CELERIAC, "worker", "-A", "proj", "-P", "threads", "-c", "1", "-E", "--health-port", "off",
             "-n", HOSTNAME, "-l", "info"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        pong: dict[str, Any] = {}
        while not pong:
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no pong from {HOSTNAME}:\n{log_path.read_text()}"
            done = subprocess.run(
                [CELERY, "-A", "peer", "inspect", "ping", "--json", "-t", "1", "-d", HOSTNAME],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False,
            )  # fmt: skip
            pong = json.loads(done.stdout) if done.returncode == 0 else {}
        assert pong == {HOSTNAME: {"ok": "pong"}}
        result = monitor.send_task("proj.add", (2, 3))
        task_id = result.id
        assert result.get(timeout=DEADLINE_S) == 5
        thread.join(timeout=DEADLINE_S)
        assert not thread.is_alive(), f"no task-succeeded event; got {[e['type'] for e in events]}"
    finally:
        stop_process(worker)
        if "receiver" in holder:
            holder["receiver"].should_stop = True  # a failed test leaves no capturing thread behind
        thread.join(timeout=DEADLINE_S)
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        monitor.close()
    mine = [event["type"] for event in events if event.get("uuid") == task_id]
    assert mine == ["task-received", "task-started", "task-succeeded"]
    assert events[0]["type"] == "worker-online"

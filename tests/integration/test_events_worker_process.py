"""A real ``celeriac worker -E`` process, watched with Celery's own tools: its task events reach
Celery's EventReceiver and ``celery inspect active`` lists the task while it runs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cli_support import CELERIAC, CELERY, cli_env
from kombu import pools as kombu_pools

from servers import RedisServer, stop_process

pytestmark = pytest.mark.integration


def write_apps(directory: Path, url: str) -> None:
    (directory / "proj.py").write_text(
        "import redis\n"
        "from celeriac import Celeriac\n"
        f"app = Celeriac('proj', broker={url!r}, backend={url!r})\n"
        "@app.task(name='proj.hold')\n"
        "def hold(key):\n"
        f"    client = redis.Redis.from_url({url!r})\n"
        "    client.blpop([key], timeout=60)  # runs until the test releases it\n"
        "    client.close()\n"
        "    return 'released'\n"
    )
    (directory / "peer.py").write_text(f"from celery import Celery\napp = Celery('peer', broker={url!r})\n")


def test_celery_tools_see_a_running_task_and_its_events(redis_server: RedisServer, tmp_path: Path) -> None:
    write_apps(tmp_path, redis_server.url)
    env = cli_env(tmp_path)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [CELERIAC, "worker", "-A", "proj", "-Q", "jobs", "-P", "prefork", "-c", "1", "-E",
         "--health-port", "off", "-n", "celeriac@ev1", "-l", "info"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    events: list[dict[str, Any]] = []
    monitor = Celery("monitor", broker=redis_server.url)
    task_id = ""

    def capture() -> None:
        with monitor.connection() as conn:
            receiver = monitor.events.Receiver(conn, handlers={"*": on_event})
            holder["receiver"] = receiver
            receiver.capture(limit=None, timeout=60, wakeup=False)

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] == "task-succeeded" and event.get("uuid") == task_id:
            holder["receiver"].should_stop = True

    holder: dict[str, Any] = {}
    thread = threading.Thread(target=capture, daemon=True)
    client = redis_server.client()
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while not any(event["type"] == "worker-online" for event in events):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "no worker-online event"
            time.sleep(0.05)
        sent = subprocess.run([CELERIAC, "-A", "proj", "call", "proj.hold", "--args", '["release-me"]', "-Q", "jobs"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stderr
        task_id = sent.stdout.strip()

        running: list[dict[str, Any]] = []
        while not running:
            assert time.monotonic() < deadline, "the task never showed up in inspect active"
            active = subprocess.run([CELERY, "-A", "peer", "inspect", "active", "--json", "-t", "1"],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
            running = json.loads(active.stdout).get("celeriac@ev1", []) if active.returncode == 0 else []
        [entry] = running
        assert (entry["id"], entry["name"], entry["args"], entry["hostname"]) == (
            task_id, "proj.hold", ["release-me"], "celeriac@ev1"
        )
        assert isinstance(entry["worker_pid"], int)
        assert entry["worker_pid"] != worker.pid

        client.lpush("release-me", "go")
        thread.join(timeout=60)
        assert not thread.is_alive(), "no task-succeeded event"
    finally:
        stop_process(worker)
        log.close()
        client.close()
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        monitor.close()
    mine = [event for event in events if event.get("uuid") == task_id]
    assert [event["type"] for event in mine] == ["task-received", "task-started", "task-succeeded"]
    received, started, succeeded = mine
    assert (received["name"], received["hostname"]) == ("proj.hold", "celeriac@ev1")
    assert started["hostname"] == "celeriac@ev1"
    assert succeeded["result"] == "'released'"

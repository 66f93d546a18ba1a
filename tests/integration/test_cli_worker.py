"""``celeriac worker`` as a real process: drains in burst mode, and while running answers
probes, Prometheus, Celery's ``inspect ping`` and keeps its heartbeat record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_support import CELERIAC, CELERY, cli_env, http_get, write_add_app

from celeriac import keys
from celeriac.worker.heartbeat import read_workers
from servers import RedisServer, free_port, stop_process

pytestmark = pytest.mark.integration


def write_apps(directory: Path, url: str) -> None:
    write_add_app(directory, url)
    (directory / "peer.py").write_text(f"from celery import Celery\napp = Celery('peer', broker={url!r})\n")


def run(directory: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=directory, capture_output=True, text=True, timeout=120,
                          env=cli_env(directory), check=False)


def test_burst_worker_drains_the_queue_and_exits_zero(redis_server: RedisServer, tmp_path: Path) -> None:
    write_apps(tmp_path, redis_server.url)
    ids = []
    for number in range(3):
        sent = run(tmp_path, CELERIAC, "-A", "proj", "call", "proj.add", "--args", f"[{number}, 10]", "-Q", "jobs")
        assert sent.returncode == 0, sent.stderr
        ids.append(sent.stdout.strip())
    done = run(tmp_path, CELERIAC, "worker", "-A", "proj", "-Q", "jobs", "-P", "solo", "--burst",
               "--health-port", "off", "-l", "warning")
    assert done.returncode == 0, done.stderr
    results = [json.loads(run(tmp_path, CELERIAC, "-A", "proj", "result", task_id).stdout) for task_id in ids]
    assert [(doc["state"], doc["result"]) for doc in results] == [("SUCCESS", 10), ("SUCCESS", 11), ("SUCCESS", 12)]
    assert redis_server.client().llen("jobs") == 0


def test_running_worker_serves_probes_metrics_control_and_heartbeat(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    write_apps(tmp_path, redis_server.url)
    port = free_port()
    env = cli_env(tmp_path)
    env["POD_NAME"] = "pod-under-test"
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [CELERIAC, "worker", "-A", "proj", "-Q", "jobs", "-P", "threads", "-c", "2", "-E",
         "--health-port", str(port), "-n", "celeriac@cli1", "-l", "info"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while http_get(port, "/readyz")[0] != 200:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.05)
        assert http_get(port, "/livez") == (200, "ok\n")

        ping = run(tmp_path, CELERY, "-A", "peer", "inspect", "ping", "--json", "-t", "2")
        assert ping.returncode == 0, ping.stderr
        assert json.loads(ping.stdout) == {"celeriac@cli1": {"ok": "pong"}}

        done = run(tmp_path, CELERIAC, "-A", "proj", "call", "proj.add", "--args", "[2, 3]", "-Q", "jobs",
                   "--wait", "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == 5
        _, metrics = http_get(port, "/metrics")
        assert 'celeriac_tasks_succeeded_total{task="proj.add"} 1.0' in metrics.splitlines()

        [record] = read_workers(redis_server.client(), "", now_s=time.time(), stale_after_s=30.0)
        assert (record.worker_id, record.pod_name, record.queues, record.concurrency) == (
            "celeriac@cli1", "pod-under-test", ("jobs",), 2
        )
        while record.processed != 1:  # the next heartbeat (every 2 s) carries the new count
            assert time.monotonic() < deadline, f"heartbeat never showed the processed task: {record}"
            time.sleep(0.1)
            [record] = read_workers(redis_server.client(), "", now_s=time.time(), stale_after_s=30.0)

        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert redis_server.client().exists(keys.worker_record("celeriac@cli1")) == 0
    finally:
        stop_process(worker)
        log.close()

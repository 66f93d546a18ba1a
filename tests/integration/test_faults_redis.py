"""Faults with exact counts: killed workers, shutdown under load, poison messages, Redis restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from worker_process import wait_until

from celeriac.brokers import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30


def strs(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]


def test_sigkilled_worker_with_late_acks_task_completes_exactly_once_elsewhere(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    env = {"VISIBILITY_TIMEOUT_S": "1"}
    first = start_worker(env=env, concurrency=1)
    result = celery_client.send_task("tests.hold_late", ("once",))
    wait_until(lambda: rclient.llen("started") == 1, "the task to start on the first worker", worker=first)
    first.kill_group()
    assert rclient.hlen("unacked") == 1
    second = start_worker(env=env, concurrency=1)
    wait_until(lambda: rclient.llen("started") == 2, "the task to restart on the second worker", worker=second)
    rclient.rpush("release:once", "go")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "once"
    assert strs(rclient.lrange("executions", 0, -1)) == ["once"]
    assert second.stop() == 0
    assert rclient.hlen("unacked") == 0
    assert rclient.llen("celery") == 0


def test_real_celery_worker_restores_the_eta_task_our_killed_worker_held(
    redis_server: Any, celery_client: Celery, start_worker: Any, rclient: Any, tmp_path: Path
) -> None:
    ours = start_worker(env={"VISIBILITY_TIMEOUT_S": "1"})
    result = celery_client.send_task("tests.record", ("eta",), countdown=2)
    wait_until(lambda: rclient.hlen("unacked") == 1, "our worker to hold the ETA task", worker=ours)
    ours.kill_group()
    # Celery scans at consumer start (then only every ~100 s): start it once the entry is overdue.
    wait_until(lambda: time.time() - rclient.zrange("unacked_index", 0, 0, withscores=True)[0][1] > 1.5,
               "the abandoned entry to pass the visibility timeout")
    env = {**os.environ, "CELERY_BROKER_URL": redis_server.url, "VISIBILITY_TIMEOUT_S": "1"}
    with (tmp_path / "celery.log").open("wb") as log:
        peer = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "celery_peer_tasks", "worker", "-P", "solo",
             "--without-gossip", "--without-mingle", "-l", "info"],
            cwd=Path(__file__).parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        assert result.get(timeout=RESULT_TIMEOUT_S) == "eta"
        assert strs(rclient.lrange("executions", 0, -1)) == ["eta"]
    finally:
        os.killpg(peer.pid, signal.SIGTERM)
        peer.wait(30)
    assert rclient.hlen("unacked") == 0


def test_sigterm_under_load_finishes_running_tasks_and_requeues_the_rest(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=2, prefetch_multiplier=2)
    sent = [celery_client.send_task("tests.hold", (f"t{i}",)) for i in range(10)]
    wait_until(lambda: rclient.llen("started") == 2, "two tasks to start", worker=worker)
    running = strs(rclient.lrange("started", 0, -1))
    worker.signal(signal.SIGTERM)
    for tag in running:
        rclient.rpush(f"release:{tag}", "go")
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert sorted(strs(rclient.lrange("executions", 0, -1))) == sorted(running)
    assert rclient.llen("celery") == len(sent) - len(running)
    assert rclient.hlen("unacked") == 0
    finished = [r for r in sent if r.state == "SUCCESS"]
    assert sorted(r.result for r in finished) == sorted(running)
    assert len(finished) + rclient.llen("celery") == len(sent)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_cold_shutdown_after_the_deadline_requeues_running_tasks(
    celery_client: Celery, start_worker: Any, rclient: Any, pool: str
) -> None:
    worker = start_worker(concurrency=1, shutdown_timeout_s=0.5, pool=pool)
    stuck = celery_client.send_task("tests.hold", ("stuck",))
    wait_until(lambda: rclient.llen("started") == 1, "the task to start", worker=worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert rclient.llen("executions") == 0
    assert rclient.llen("celery") == 1
    envelope = json.loads(rclient.lindex("celery", 0))
    assert envelope["headers"]["id"] == stuck.id
    assert envelope["headers"]["redelivered"] is True
    assert rclient.hlen("unacked") == 0


def raw_envelope(headers: dict[str, Any], body: bytes, content_type: str = "application/json",
                 delivery_info: bool = True, tag: str = "t") -> str:
    properties: dict[str, Any] = {"correlation_id": headers.get("id"), "priority": 0, "body_encoding": "base64",
                                  "delivery_tag": tag}
    if delivery_info:
        properties["delivery_info"] = {"exchange": "", "routing_key": "celery"}
    return json.dumps({"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
                       "content-type": content_type, "headers": headers, "properties": properties})


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_going(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    good_body = json.dumps([["x"], {}, {}]).encode()
    poison = {
        "two-element": raw_envelope({"task": "tests.record", "id": "a"}, json.dumps([["x"], {}]).encode(), tag="a"),
        "bad-json": raw_envelope({"task": "tests.record", "id": "b"}, b"[not json", tag="b"),
        "content-type": raw_envelope({"task": "tests.record", "id": "c"}, good_body, "application/x-weird", tag="c"),
        "unknown-task": raw_envelope({"task": "tests.nope", "id": "d"}, good_body, tag="d"),
        "no-delivery-info": raw_envelope({"task": "tests.record", "id": "e"}, good_body, delivery_info=False,
                                         tag="e"),
        "not-an-envelope": "}{",
    }
    for raw in poison.values():
        rclient.lpush("celery", raw)
    worker = start_worker(concurrency=1)
    after = celery_client.send_task("tests.record", ("alive",))
    assert after.get(timeout=RESULT_TIMEOUT_S) == "alive"
    wait_until(lambda: rclient.llen("celery.dead") == len(poison), "every poison message dead-lettered",
               worker=worker)
    dead = [json.loads(raw) for raw in rclient.lrange("celery.dead", 0, -1)]
    reasons = {d["headers"].get("id", "raw"): d["headers"][DEAD_LETTER_REASON_HEADER] for d in dead}
    assert set(reasons) == {"a", "b", "c", "d", "e", "raw"}
    assert "unknown task 'tests.nope'" in reasons["d"]
    assert "delivery_info" in reasons["e"]
    assert {d["headers"][DEAD_LETTER_QUEUE_HEADER] for d in dead} == {"celery"}
    assert strs(rclient.lrange("executions", 0, -1)) == ["alive"]
    assert rclient.hlen("unacked") == 0
    meta = json.loads(rclient.get("celery-task-meta-d"))
    assert meta["status"] == "FAILURE"
    assert meta["result"]["exc_type"] == "NotRegistered"
    assert worker.proc.poll() is None
    assert worker.log().count("dead-lettering message") == len(poison)


def test_worker_resumes_consuming_after_redis_restarts(
    redis_server: Any, celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    assert celery_client.send_task("tests.add", (1, 1)).get(timeout=RESULT_TIMEOUT_S) == 2
    redis_server.restart()
    wait_until(lambda: "lost the broker" in worker.log(), "the worker to notice the restart", worker=worker)
    results = [celery_client.send_task("tests.record", (f"r{i}",)) for i in range(3)]
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in results] == ["r0", "r1", "r2"]
    assert worker.proc.poll() is None
    assert worker.stop() == 0

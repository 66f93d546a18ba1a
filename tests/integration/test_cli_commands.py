"""The real ``celeriac`` console script, run in a subprocess against a real Redis."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from celery import Celery
from cli_support import CELERIAC, cli_env, start_celery_peer, write_add_app
from kombu import pools as kombu_pools

from celeriac import keys
from celeriac.brokers import connect
from celeriac.message import Message
from servers import RedisServer, stop_process

pytestmark = pytest.mark.integration


def celeriac(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CELERIAC, *args], cwd=directory, capture_output=True, text=True, timeout=60,
                          env=cli_env(), check=False)


def body_of(raw: bytes) -> tuple[dict[str, object], list[object]]:
    envelope = json.loads(raw)
    return envelope["headers"], json.loads(base64.b64decode(envelope["body"]))


def test_call_publishes_a_celery_message_and_prints_its_id(redis_server: RedisServer, tmp_path: Path) -> None:
    write_add_app(tmp_path, redis_server.url)
    done = celeriac(tmp_path, "-A", "proj", "call", "proj.add", "--args", "[2, 3]", "--kwargs", '{"z": 1}',
                    "-Q", "maths")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    [raw] = redis_server.client().lrange("maths", 0, -1)
    headers, body = body_of(raw)
    assert (headers["task"], headers["id"], headers["eta"]) == ("proj.add", task_id, None)
    assert body[:2] == [[2, 3], {"z": 1}]
    before = datetime.now(timezone.utc)
    later = celeriac(tmp_path, "-A", "proj", "call", "proj.add", "--queue", "maths", "--countdown", "3600")
    after = datetime.now(timezone.utc)
    assert later.returncode == 0, later.stderr
    [raw_later, _] = redis_server.client().lrange("maths", 0, -1)
    eta = datetime.fromisoformat(str(body_of(raw_later)[0]["eta"]))
    assert before + timedelta(seconds=3600) <= eta <= after + timedelta(seconds=3600)


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")  # inside celery 5.7
def test_result_prints_what_a_celery_backend_stored(redis_server: RedisServer, tmp_path: Path) -> None:
    write_add_app(tmp_path, redis_server.url)
    peer = Celery("peer", broker=redis_server.url, backend=redis_server.url)
    try:
        peer.backend.store_result("done-1", 5, "SUCCESS")
        peer.backend.mark_as_failure("failed-1", KeyError("missing"), traceback="Traceback: boom")
    finally:
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        peer.close()
    done = celeriac(tmp_path, "-A", "proj", "result", "done-1")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["id"], doc["state"], doc["result"]) == ("done-1", "SUCCESS", 5)
    failed = json.loads(celeriac(tmp_path, "-A", "proj", "result", "failed-1").stdout)
    assert failed["state"] == "FAILURE"
    assert failed["result"] == {"exc_type": "KeyError", "exc_message": ["missing"], "exc_module": "builtins"}
    assert failed["traceback"] == "Traceback: boom"
    pending = json.loads(celeriac(tmp_path, "-A", "proj", "result", "unknown-1").stdout)
    assert (pending["state"], pending["result"]) == ("PENDING", None)


def test_purge_needs_force_off_a_terminal_and_reports_the_count(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    write_add_app(tmp_path, redis_server.url)
    for _ in range(3):
        assert celeriac(tmp_path, "-A", "proj", "call", "proj.add", "--args", "[1, 1]", "-Q", "q1").returncode == 0
    refused = celeriac(tmp_path, "-A", "proj", "purge", "-Q", "q1")
    assert refused.returncode == 2
    assert "pass -f" in refused.stderr
    assert redis_server.client().llen("q1") == 3
    done = celeriac(tmp_path, "-A", "proj", "purge", "-Q", "q1", "-f")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "purged 3 message(s) from q1\n"
    assert redis_server.client().llen("q1") == 0


def test_dlq_lists_reasons_and_requeues_without_dead_letter_headers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    write_add_app(tmp_path, redis_server.url)
    broker = connect(redis_server.url, {})
    try:
        for number in range(3):
            broker.publish(Message(headers={"id": f"m{number}", "task": "proj.gone"}, properties={},
                                   body=b"[[], {}, {}]"), queue="jobs")
        for delivery in broker.fetch(["jobs"], 3, 1.0):
            broker.reject_to_dead_letter(delivery, f"unknown task {delivery.message.headers['id']}")
    finally:
        broker.close()
    listed = celeriac(tmp_path, "-A", "proj", "dlq", "list", "-Q", "jobs")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["id"], row["reason"], row["queue"]) for row in rows] == [
        ("m0", "unknown task m0", "jobs"), ("m1", "unknown task m1", "jobs"), ("m2", "unknown task m2", "jobs")
    ]
    assert listed.stderr == "3 of 3 dead-lettered message(s) in jobs\n"
    moved = celeriac(tmp_path, "-A", "proj", "dlq", "requeue", "-Q", "jobs", "--count", "2")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == "requeued 2 message(s) from jobs.dead\n"
    client = redis_server.client()
    assert client.llen(keys.dead_letter_queue("jobs")) == 1
    requeued = [body_of(raw)[0] for raw in reversed(client.lrange("jobs", 0, -1))]
    assert [headers["id"] for headers in requeued] == ["m0", "m1"]
    assert all(not name.startswith("x-celeriac-dead-letter") for headers in requeued for name in headers)


def test_inspect_ping_and_call_wait_against_a_real_celery_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    write_add_app(tmp_path, redis_server.url)
    (tmp_path / "peer.py").write_text(
        "from celery import Celery\n"
        f"app = Celery('peer', broker={redis_server.url!r}, backend={redis_server.url!r})\n"
        "@app.task(name='proj.add')\n"
        "def add(x, y):\n"
        "    return x + y\n"
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = start_celery_peer(tmp_path, "peer", "celery@peer", log)
    try:
        deadline = time.monotonic() + 60
        ping = celeriac(tmp_path, "-A", "proj", "inspect", "ping", "-t", "0.5")
        while ping.returncode != 0 and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            ping = celeriac(tmp_path, "-A", "proj", "inspect", "ping", "-t", "0.5")
        assert ping.returncode == 0, ping.stderr
        assert json.loads(ping.stdout) == {"celery@peer": {"ok": "pong"}}
        done = celeriac(tmp_path, "-A", "proj", "call", "proj.add", "--args", "[20, 22]", "--wait",
                        "--timeout", "30")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert (doc["state"], doc["result"]) == ("SUCCESS", 42)
    finally:
        stop_process(worker)
        log.close()


def test_bad_input_gives_one_line_and_a_nonzero_exit(redis_server: RedisServer, tmp_path: Path) -> None:
    write_add_app(tmp_path, redis_server.url)
    cases = [
        (("-A", "nosuchmodule", "result", "x"), 2, "cannot import app module 'nosuchmodule'"),
        (("-A", "proj:nothere", "result", "x"), 2, "has no attribute 'nothere'"),
        (("-A", "proj", "call", "proj.add", "--args", "{oops"), 2, "--args is not valid JSON"),
        (("-A", "proj", "call", "proj.add", "--kwargs", "[1]"), 2, "--kwargs must be a JSON object"),
        (("-A", "proj", "inspect", "ping", "-t", "0.2"), 1, "no worker replied within 0.2s"),
        (("-A", "proj", "--broker", "redis://127.0.0.1:1/0", "purge", "-Q", "q", "-f"), 1, "purge failed"),
    ]
    for args, code, text in cases:
        done = celeriac(tmp_path, *args)
        assert (done.returncode, text in done.stderr, "Traceback" in done.stderr) == (code, True, False), args


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "celeriac", "--help"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: celeriac ")

"""Remote control both ways: real ``celery inspect``/``control`` against our responder, and our
client against a real Celery worker."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from cli_support import CELERIAC, CELERY, cli_env, start_celery_peer
from kombu import pools as kombu_pools

from celeriac import keys
from celeriac.worker.control import ControlResponder, broadcast
from celeriac.worker.events import kombu_envelope
from celeriac.worker.state import WorkerState
from servers import RedisServer, stop_process

pytestmark = pytest.mark.integration


def write_celery_app(directory: Path, url: str, prefix: str = "") -> None:
    options = f"broker_transport_options={{'global_keyprefix': {prefix!r}}}" if prefix else ""
    (directory / "ctlapp.py").write_text(
        "from celery import Celery\n"
        f"app = Celery('ctlapp', broker={url!r})\n"
        f"app.conf.update({options})\n"
        "@app.task\n"
        "def add(x, y):\n"
        "    return x + y\n"
    )


def run_celery(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CELERY, "-A", "ctlapp", *args], cwd=directory, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(directory)}, check=False,
    )


@pytest.fixture
def busy_worker(redis_server: RedisServer) -> Iterator[tuple[WorkerState, list[tuple[list[str], str]]]]:
    state = WorkerState("celeriac@node1", ["celery"], 2)
    state.on_received({
        "id": "task-1", "name": "ctlapp.add", "args": [2, 3], "kwargs": {},
        "delivery_info": {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False},
        "acknowledged": True,
    })
    state.on_started("task-1", 4242)
    terminated: list[tuple[list[str], str]] = []
    responder = ControlResponder(
        redis_server.client(), state, terminate=lambda ids, sig: terminated.append((ids, sig)),
        task_names=lambda: ["ctlapp.add"],
    )
    responder.start()
    try:
        yield state, terminated
    finally:
        responder.stop()


def test_celery_inspect_ping_and_active_are_answered_by_our_responder(
    redis_server: RedisServer, tmp_path: Path, busy_worker: tuple[WorkerState, list[object]]
) -> None:
    write_celery_app(tmp_path, redis_server.url)
    ping = run_celery(tmp_path, "inspect", "ping", "--json", "-t", "2")
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout) == {"celeriac@node1": {"ok": "pong"}}
    active = run_celery(tmp_path, "inspect", "active", "--json", "-t", "2")
    assert active.returncode == 0, active.stderr
    [entry] = json.loads(active.stdout)["celeriac@node1"]
    assert entry["id"] == "task-1"
    assert entry["name"] == "ctlapp.add"
    assert entry["args"] == [2, 3]
    assert entry["worker_pid"] == 4242
    assert entry["delivery_info"]["routing_key"] == "celery"


def test_celery_control_revoke_terminate_reaches_the_engine_callback(
    redis_server: RedisServer, tmp_path: Path,
    busy_worker: tuple[WorkerState, list[tuple[list[str], str]]],
) -> None:
    state, terminated = busy_worker
    write_celery_app(tmp_path, redis_server.url)
    result = run_celery(tmp_path, "control", "revoke", "queued-1", "--json", "-t", "2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"celeriac@node1": {"ok": "tasks {'queued-1'} flagged as revoked"}}]
    app = Celery("client", broker=redis_server.url)
    try:
        app.control.revoke("task-1", terminate=True, signal="SIGKILL")
    finally:
        app.close()
    deadline = time.monotonic() + 10
    while not terminated and time.monotonic() < deadline:
        time.sleep(0.02)
    assert terminated == [(["task-1"], "SIGKILL")]
    assert state.is_revoked("task-1")
    assert broadcast(redis_server.client(), "revoked", timeout_s=1.0) == [
        {"celeriac@node1": ["queued-1", "task-1"]}
    ]


def test_our_client_filters_by_destination_and_returns_at_the_limit(
    redis_server: RedisServer, busy_worker: tuple[WorkerState, list[object]]
) -> None:
    client = redis_server.client()
    other = ControlResponder(client, WorkerState("celeriac@node2", ["celery"], 1))
    other.start()
    try:
        both = broadcast(client, "ping", timeout_s=0.5)
        assert sorted(both, key=lambda reply: next(iter(reply))) == [
            {"celeriac@node1": {"ok": "pong"}}, {"celeriac@node2": {"ok": "pong"}}
        ]
        assert broadcast(client, "ping", destination=["celeriac@node2"], timeout_s=5.0) == [
            {"celeriac@node2": {"ok": "pong"}}
        ]
        assert broadcast(client, "registered", destination=["celeriac@node1"]) == [
            {"celeriac@node1": ["ctlapp.add"]}
        ]
        assert broadcast(client, "scheduled", destination=["celeriac@node1"]) == [{"celeriac@node1": []}]
        assert broadcast(client, "nope", destination=["celeriac@node1"]) == [
            {"celeriac@node1": {"error": "KeyError('nope')"}}
        ]
    finally:
        other.stop()
    assert client.smembers(keys.binding_key("reply.celery.pidbox")) == set()


def test_pickle_commands_are_refused(redis_server: RedisServer) -> None:
    state = WorkerState("celeriac@node3", ["celery"], 1)
    responder = ControlResponder(redis_server.client(), state)
    raw = json.loads(kombu_envelope({"method": "ping"}, exchange="celery.pidbox", routing_key="",
                                    headers={}, delivery_mode=2))
    raw["content-type"] = "application/x-python-serialize"
    assert responder.handle_raw(json.dumps(raw)) is None
    raw["content-type"] = "application/json"
    assert responder.handle_raw(json.dumps(raw)) == {"ok": "pong"}


def test_our_client_pings_a_real_celery_worker_with_a_key_prefix(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    write_celery_app(tmp_path, redis_server.url, prefix="pfx:")
    log = (tmp_path / "worker.log").open("wb")
    worker = start_celery_peer(tmp_path, "ctlapp", "celery@peer", log)
    try:
        client = redis_server.client()
        replies: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            replies = broadcast(client, "ping", destination=["celery@peer"], timeout_s=0.5, prefix="pfx:")
        assert replies == [{"celery@peer": {"ok": "pong"}}]
        [stats] = broadcast(client, "active", destination=["celery@peer"], prefix="pfx:")
        assert stats == {"celery@peer": []}
    finally:
        stop_process(worker)
        log.close()


def test_responder_resubscribes_after_a_redis_restart(redis_server: RedisServer) -> None:
    state = WorkerState("celeriac@node4", ["celery"], 1)
    client = redis_server.client()
    responder = ControlResponder(client, state, poll_interval_s=0.1)
    responder.start()
    try:
        assert broadcast(client, "ping", destination=["celeriac@node4"]) == [{"celeriac@node4": {"ok": "pong"}}]
        redis_server.restart()
        replies: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while not replies and time.monotonic() < deadline:
            try:
                replies = broadcast(client, "ping", destination=["celeriac@node4"], timeout_s=0.3)
            except redis.ConnectionError:  # the client's pooled socket died with the old server
                continue
        assert replies == [{"celeriac@node4": {"ok": "pong"}}]
    finally:
        responder.stop()
        client.close()


def test_celery_revoke_terminate_kills_a_running_task_on_a_celeriac_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url
    (tmp_path / "hold.py").write_text(
        "import redis\n"
        "from celeriac import Celeriac\n"
        f"app = Celeriac('hold', broker={url!r}, backend={url!r})\n"
        "@app.task(name='hold.hold')\n"
        "def hold(key):\n"
        f"    redis.Redis.from_url({url!r}).blpop([key], timeout=120)  # only a kill ends it early\n"
        "    return 'released'\n"
    )
    env = cli_env(tmp_path)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [CELERIAC, "worker", "-A", "hold", "-Q", "hq", "-P", "prefork",
         "-c", "1", "--health-port", "off", "-n", "celeriac@rv", "-l", "info"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    peer = Celery("peer", broker=url, backend=url)
    client = redis_server.client()
    try:
        task_id = peer.send_task("hold.hold", ["never"], queue="hq").id
        deadline = time.monotonic() + 60
        running: list[object] = []
        while not running:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the task never started"
            replies = broadcast(client, "active", destination=["celeriac@rv"], timeout_s=0.5)
            running = replies[0]["celeriac@rv"] if replies else []  # type: ignore[assignment]
        peer.control.revoke(task_id, terminate=True, signal="SIGKILL")
        meta: dict[str, object] = {}
        while meta.get("status") != "REVOKED":
            assert time.monotonic() < deadline, f"task meta stayed {meta}"
            time.sleep(0.05)
            raw = client.get(keys.task_meta(task_id))
            meta = json.loads(raw) if raw else {}
        assert meta["result"] == {
            "exc_type": "TaskRevokedError", "exc_message": ["terminated"], "exc_module": "celery.exceptions"
        }
        assert broadcast(client, "ping", destination=["celeriac@rv"]) == [{"celeriac@rv": {"ok": "pong"}}]
    finally:
        stop_process(worker)
        log.close()
        client.close()
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        peer.close()


def test_a_starting_celery_worker_learns_our_revokes_through_mingle(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    state = WorkerState("celeriac@mingle", ["celery"], 1)
    state.revoke(["revoked-before-celery-started"])
    client = redis_server.client()
    responder = ControlResponder(client, state)
    responder.start()
    write_celery_app(tmp_path, redis_server.url)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [CELERY, "-A", "ctlapp", "worker", "-P", "solo", "-n", "celery@mingler", "--without-gossip", "-l", "info"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    try:
        replies: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            replies = broadcast(client, "revoked", destination=["celery@mingler"], timeout_s=0.5)
        assert replies == [{"celery@mingler": ["revoked-before-celery-started"]}]
        assert "mingle: sync with 1 nodes" in (tmp_path / "worker.log").read_text()
    finally:
        stop_process(worker)
        log.close()
        responder.stop()
        client.close()


def test_mingle_learns_revoked_ids_from_a_running_celery_worker(redis_server: RedisServer, tmp_path: Path) -> None:
    write_celery_app(tmp_path, redis_server.url)
    log = (tmp_path / "worker.log").open("wb")
    worker = start_celery_peer(tmp_path, "ctlapp", "celery@elder", log)
    client = redis_server.client()
    try:
        replies: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            replies = broadcast(client, "ping", destination=["celery@elder"], timeout_s=0.5)
        broadcast(client, "revoke", {"task_id": ["old-1", "old-2"]}, reply=False)
        def elder_revoked() -> list[str]:
            replies = broadcast(client, "revoked", destination=["celery@elder"])
            return sorted(replies[0]["celery@elder"]) if replies else []  # type: ignore[call-overload]

        while elder_revoked() != ["old-1", "old-2"]:  # Celery keeps them as a set: any order
            assert time.monotonic() < deadline, "the Celery worker never recorded the revokes"
        state = WorkerState("celeriac@newcomer", ["celery"], 1)
        assert ControlResponder(client, state).mingle(timeout_s=1.0) == 1
        assert sorted(state.revoked_ids()) == ["old-1", "old-2"]
    finally:
        stop_process(worker)
        log.close()
        client.close()

"""Remote control and events on RabbitMQ: real ``celery inspect`` and Celery's EventReceiver
against our AMQP responder and event sink, and our client against our responder."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cli_support import CELERY
from event_capture import start_event_capture
from kombu import pools as kombu_pools

from celeriac.app import Celeriac
from celeriac.worker.control import broadcast
from celeriac.worker.control_amqp import AmqpControlResponder
from celeriac.worker.events import AmqpEventSink, EventDispatcher
from celeriac.worker.state import WorkerState
from servers import RabbitMQServer

pytestmark = pytest.mark.integration


@pytest.fixture
def amqp_node(rabbitmq_server: RabbitMQServer) -> Iterator[tuple[WorkerState, list[tuple[list[str], str]]]]:
    state = WorkerState("celeriac@rabbit1", ["celery"], 2)
    state.on_received({"id": "task-9", "name": "proj.add", "args": [4, 5], "kwargs": {}})
    state.on_started("task-9", 777)
    terminated: list[tuple[list[str], str]] = []
    responder = AmqpControlResponder(
        rabbitmq_server.url, state, terminate=lambda ids, sig: terminated.append((ids, sig))
    )
    responder.start()
    try:
        yield state, terminated
    finally:
        responder.stop()


def test_celery_inspect_over_rabbitmq_is_answered(
    rabbitmq_server: RabbitMQServer, tmp_path: Path, amqp_node: tuple[WorkerState, list[object]]
) -> None:
    url = rabbitmq_server.url
    (tmp_path / "rabbitapp.py").write_text(f"from celery import Celery\napp = Celery('r', broker={url!r})\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for method, expected in (("ping", {"ok": "pong"}), ("revoked", [])):
        done = subprocess.run(
            [CELERY, "-A", "rabbitapp", "inspect", method, "--json", "-t", "2", "-d", "celeriac@rabbit1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"celeriac@rabbit1": expected}


def test_celery_revoke_terminate_and_our_client_over_rabbitmq(
    rabbitmq_server: RabbitMQServer, amqp_node: tuple[WorkerState, list[tuple[list[str], str]]]
) -> None:
    state, terminated = amqp_node
    peer = Celery("peer", broker=rabbitmq_server.url)
    try:
        peer.control.revoke("task-9", terminate=True, signal="SIGTERM")
    finally:
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        peer.close()
    deadline = time.monotonic() + 20
    while not terminated and time.monotonic() < deadline:
        time.sleep(0.02)
    assert terminated == [(["task-9"], "SIGTERM")]
    app = Celeriac("client", broker=rabbitmq_server.url, set_as_current=False)
    [reply] = broadcast(app, "active", destination=["celeriac@rabbit1"], timeout_s=2.0)
    [entry] = reply["celeriac@rabbit1"]
    assert (entry["id"], entry["args"], entry["worker_pid"]) == ("task-9", [4, 5], 777)
    assert broadcast(app, "revoked", destination=["celeriac@rabbit1"], timeout_s=2.0) == [
        {"celeriac@rabbit1": ["task-9"]}
    ]
    assert state.is_revoked("task-9")


def test_celery_receiver_reads_our_events_over_rabbitmq(rabbitmq_server: RabbitMQServer) -> None:
    monitor = Celery("monitor", broker=rabbitmq_server.url)
    events: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] == "worker-offline":
            holder["receiver"].should_stop = True

    thread = start_event_capture(monitor, on_event, holder, timeout_s=30)
    state = WorkerState("celeriac@rabbit2", ["celery"], 1)
    dispatcher = EventDispatcher(AmqpEventSink(rabbitmq_server.url), state, heartbeat_interval_s=60.0)
    dispatcher.start()
    state.on_received({"id": "e1", "name": "proj.add", "args": [1, 2]})
    state.on_started("e1", 1)
    state.on_finished("e1", "proj.add", "SUCCESS", 0.5, result_repr="3")
    dispatcher.stop()
    thread.join(timeout=30)
    kombu_pools.reset()
    monitor.close()
    assert not thread.is_alive(), f"no worker-offline event; got {[event['type'] for event in events]}"
    assert [event["type"] for event in events] == [
        "worker-online", "task-received", "task-started", "task-succeeded", "worker-offline"
    ]
    assert events[3]["result"] == "3"
    assert {event["hostname"] for event in events} == {"celeriac@rabbit2"}

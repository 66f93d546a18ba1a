"""Our events, read by Celery's own EventReceiver over a real Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from celery import Celery

from celeriac.worker.events import EventDispatcher, decode_envelope
from celeriac.worker.state import WorkerState
from servers import RedisServer

pytestmark = pytest.mark.integration


class Capture:
    """Celery's ``app.events.Receiver`` in a thread, collecting every event it hands us."""

    def __init__(self, url: str, client: redis.Redis[Any], last_type: str) -> None:
        self.app = Celery("monitor", broker=url)
        self.client = client
        self.last_type = last_type
        self.events: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self.receiver = receiver
            receiver.capture(limit=None, timeout=20, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["type"] == self.last_type:
            self.receiver.should_stop = True

    def __enter__(self) -> Capture:
        patterns_before = self.client.execute_command("PUBSUB", "NUMPAT")
        self.thread.start()
        deadline = time.monotonic() + 20
        while self.client.execute_command("PUBSUB", "NUMPAT") <= patterns_before:
            assert time.monotonic() < deadline, "the Celery receiver never subscribed"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.app.close()


def test_celery_receiver_reads_worker_and_batched_task_events(redis_server: RedisServer) -> None:
    client = redis_server.client()
    state = WorkerState("celeriac@host1", ["celery"], 2)
    dispatcher = EventDispatcher(client, state, heartbeat_interval_s=60.0)
    with Capture(redis_server.url, client, last_type="worker-offline") as capture:
        dispatcher.start()
        state.on_received({"id": "t1", "name": "proj.add", "args": [2, 3], "kwargs": {}, "root_id": "t1"})
        state.on_started("t1", 4321)
        state.on_finished("t1", "proj.add", "SUCCESS", 0.25, result_repr="5")
        state.on_received({"id": "t2", "name": "proj.fail"})
        state.on_started("t2", 4321)
        state.on_finished("t2", "proj.fail", "FAILURE", 0.5, exception_repr="KeyError('x')",
                          traceback="Traceback ...")
        dispatcher.stop()
    types = [event["type"] for event in capture.events]
    assert types[0] == "worker-online"
    assert types[-1] == "worker-offline"
    assert len(types) == 8
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in capture.events:
        by_type.setdefault(event["type"], []).append(event)
    assert len(by_type["task-received"]) == 2
    assert len(by_type["task-started"]) == 2
    assert len(by_type["task-succeeded"]) == 1
    assert len(by_type["task-failed"]) == 1
    received = by_type["task-received"][0]
    assert received["uuid"] == "t1"
    assert received["name"] == "proj.add"
    assert received["args"] == "[2, 3]"
    assert received["root_id"] == "t1"
    assert received["hostname"] == "celeriac@host1"
    succeeded = by_type["task-succeeded"][0]
    assert (succeeded["uuid"], succeeded["result"], succeeded["runtime"]) == ("t1", "5", 0.25)
    failed = by_type["task-failed"][0]
    assert (failed["uuid"], failed["exception"]) == ("t2", "KeyError('x')")
    online = by_type["worker-online"][0]
    assert online["sw_ident"] == "py-celery"
    assert online["freq"] == 60.0
    clocks = [event["clock"] for event in capture.events]
    assert sorted(clocks) == list(range(1, 9))


def test_heartbeats_arrive_every_interval_with_counts(redis_server: RedisServer) -> None:
    client = redis_server.client()
    state = WorkerState("celeriac@host2", ["celery"], 1)
    state.on_received({"id": "a", "name": "proj.add"})
    state.on_started("a", 1)
    dispatcher = EventDispatcher(client, state, heartbeat_interval_s=0.2)
    with Capture(redis_server.url, client, last_type="worker-offline") as capture:
        dispatcher.start()
        deadline = time.monotonic() + 20
        while len(capture.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        dispatcher.stop()
    types = [event["type"] for event in capture.events]
    assert types[:3] == ["worker-online", "worker-heartbeat", "worker-heartbeat"]
    assert types[-1] == "worker-offline"
    assert set(types[1:-1]) == {"worker-heartbeat"}
    assert capture.events[1]["active"] == 1
    assert capture.events[1]["processed"] == 0
    assert capture.events[1]["freq"] == 0.2


def test_task_events_are_sent_as_one_task_multi_list(redis_server: RedisServer) -> None:
    client = redis_server.client()
    pubsub = client.pubsub()
    pubsub.psubscribe("/0.celeryev/*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    state = WorkerState("celeriac@host3", ["celery"], 1)
    dispatcher = EventDispatcher(client, state, buffer_limit=3, flush_interval_s=60.0)
    state.add_listener(dispatcher.on_state_event)
    state.on_received({"id": "a", "name": "proj.add"})
    state.on_started("a", 1)
    state.on_finished("a", "proj.add", "SUCCESS", 0.1, result_repr="1")
    message = pubsub.get_message(timeout=5)
    assert message["channel"] == b"/0.celeryev/task.multi"
    headers, body = decode_envelope(message["data"])
    assert headers == {"hostname": "celeriac@host3"}
    assert [event["type"] for event in body] == ["task-received", "task-started", "task-succeeded"]
    assert list(body[0])[:4] == ["hostname", "utcoffset", "pid", "clock"]
    assert list(body[0])[-2:] == ["timestamp", "type"]
    pubsub.close()


def test_a_full_buffer_is_published_by_the_events_thread_in_batches_of_the_limit(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    pubsub = client.pubsub()
    pubsub.psubscribe("/0.celeryev/task.*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    state = WorkerState("celeriac@host4", ["celery"], 1)
    dispatcher = EventDispatcher(client, state, buffer_limit=4, flush_interval_s=60.0, heartbeat_interval_s=60.0)
    dispatcher.start()
    for number in range(4):
        state.on_received({"id": f"t{number}", "name": "proj.add"})
    message = pubsub.get_message(timeout=10)
    _, body = decode_envelope(message["data"])
    assert [event["uuid"] for event in body] == ["t0", "t1", "t2", "t3"]
    state.on_received({"id": "t4", "name": "proj.add"})
    dispatcher.stop()
    _, rest = decode_envelope(pubsub.get_message(timeout=10)["data"])
    assert [event["uuid"] for event in rest] == ["t4"]
    pubsub.close()
    client.close()

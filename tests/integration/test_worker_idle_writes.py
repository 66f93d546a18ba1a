"""An engine about to go idle with nothing waiting to start sends its last writes (a lone result,
an ack) itself when the writer thread has nothing to do, and one with tasks waiting for a slot
leaves them to the writer thread; either way every result is stored and every message acked.

The worker runs in this process on a thread (real Redis, real pool); the writer's ``_send`` is
wrapped only to record which thread sent each batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from worker_process import wait_until
from worker_thread import ThreadedWorker, hold_until_released

from celeriac import Celeriac
from celeriac.worker import dispatch
from servers import RedisServer

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("idle_writes", broker=redis_server.url, backend=redis_server.url, set_as_current=False)

    @app.task(name="idle_writes.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="idle_writes.add_late", acks_late=True)
    def add_late(x: int, y: int) -> int:
        return x + y

    url = redis_server.url

    @app.task(name="idle_writes.hold")
    def hold() -> str:
        hold_until_released(url, "held")
        return "released"

    yield app
    app.close()


class RecordingWorker(ThreadedWorker):
    """A :class:`ThreadedWorker` recording each batch the writer sends as (sending thread,
    results, acks)."""

    def __init__(self, app: Celeriac, **options: Any) -> None:
        super().__init__(app, hostname="idle@test", **options)
        self.sends: list[tuple[str, int, int]] = []
        writer = self.worker.dispatch.writer
        send = writer._send

        def recorded(batch: Any) -> Any:
            self.sends.append((threading.current_thread().name, len(batch.results), len(batch.acks)))
            return send(batch)

        writer._send = recorded  # type: ignore[method-assign]
        self.start()


def run_one_at_a_time(app: Celeriac, redis_server: RedisServer, worker: RecordingWorker, task: str) -> None:
    """Five calls of ``task``, each waited for before the next, until every message is acked;
    then stop ``worker``."""
    client = redis_server.client()
    try:
        for i in range(5):
            assert app.tasks[task].delay(i, 1).get(timeout=DEADLINE_S) == i + 1
        wait_until(lambda: client.hlen("unacked") == 0, "every message to be acked")
    finally:
        worker.stop()


@pytest.mark.parametrize("task", ["idle_writes.add", "idle_writes.add_late"])
def test_an_idle_engine_sends_a_lone_result_itself(app: Celeriac, redis_server: RedisServer, task: str) -> None:
    worker = RecordingWorker(app, pool="threads", concurrency=2)
    run_one_at_a_time(app, redis_server, worker, task)
    assert sum(results for _, results, _ in worker.sends) == 5
    assert sum(acks for _, _, acks in worker.sends) == 5
    # Nothing waits for a pool slot: each result (and each early ack) leaves from the loop itself.
    assert {thread for thread, _, _ in worker.sends} == {"engine"}, worker.sends
    assert [results for _, results, _ in worker.sends if results] == [1] * 5


def test_a_busy_engine_leaves_writes_to_the_writer_thread_and_loses_none(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    add = app.tasks["idle_writes.add_late"]
    results = [add.delay(i, i) for i in range(2000)]
    worker = RecordingWorker(app, pool="threads", concurrency=4)
    try:
        assert [r.get(timeout=DEADLINE_S) for r in results] == [2 * i for i in range(2000)]
        wait_until(lambda: client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0,
                   "every message to be acked")
    finally:
        worker.stop()
    threads = {thread for thread, _, _ in worker.sends}
    assert "celeriac-acks" in threads, worker.sends
    assert sum(results for _, results, _ in worker.sends) == 2000
    assert client.llen("celery") == 0


def test_an_idle_engine_sends_a_short_tasks_early_ack_with_its_result(
    app: Celeriac, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "ACK_HOLD_S", DEADLINE_S)  # however slow this machine is
    worker = RecordingWorker(app, pool="threads", concurrency=2)
    run_one_at_a_time(app, redis_server, worker, "idle_writes.add")
    assert worker.sends == [("engine", 1, 1)] * 5  # one round trip per task: its result and its ack


def test_an_early_ack_held_for_a_result_leaves_once_the_hold_is_over(app: Celeriac, redis_server: RedisServer) -> None:
    client = redis_server.client()
    worker = RecordingWorker(app, pool="threads", concurrency=2)
    try:
        result = app.tasks["idle_writes.hold"].delay()
        wait_until(lambda: client.hlen("unacked") == 0 and worker.sends, "the early ack of the running task")
        assert not result.ready()
        client.rpush("release:held", 1)
        assert result.get(timeout=DEADLINE_S) == "released"
    finally:
        worker.stop()
    assert worker.sends == [("engine", 0, 1), ("engine", 1, 0)]


@pytest.mark.parametrize("task", ["idle_writes.add", "idle_writes.add_late"])
def test_a_lone_prefork_task_has_its_result_stored_by_its_child_and_its_ack_sent_after(
    app: Celeriac, redis_server: RedisServer, task: str
) -> None:
    worker = RecordingWorker(app, pool="prefork", concurrency=2)
    run_one_at_a_time(app, redis_server, worker, task)
    # Nothing else ran or waited: no batch to join, so the child wrote each result itself (no
    # hop back to the engine first) and the engine sent only the acks (late ones after the reply).
    assert worker.sends == [("engine", 0, 1)] * 5

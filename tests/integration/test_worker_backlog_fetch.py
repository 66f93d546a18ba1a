"""While a backlog lasts the engine fetches the next batch itself, without waiting and without the
consumer thread; it still never holds more than its prefetch window, and once the queue is empty
the consumer thread's blocking fetch picks up the next message again.

The worker runs in this process on a thread (real Redis, real pool); the broker's ``fetch`` is
wrapped only to record which thread called it and with what timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from worker_process import wait_until
from worker_thread import ThreadedWorker, hold_until_released

from celeriac import Celeriac
from celeriac.worker import Worker, WorkerOptions
from servers import RedisServer

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("backlog", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    url = redis_server.url

    @app.task(name="backlog.hold", acks_late=True)
    def hold(tag: str) -> str:
        hold_until_released(url, tag)
        return tag

    @app.task(name="backlog.add")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()


class FetchingWorker(ThreadedWorker):
    """A :class:`ThreadedWorker` recording every broker fetch as (thread name, timeout, size)."""

    def __init__(self, app: Celeriac, **options: Any) -> None:
        super().__init__(app, hostname="backlog@test", **options)
        self.fetches: list[tuple[str, float, int]] = []
        fetch = self.worker.broker.fetch

        def recorded(queues: list[str], max_count: int, timeout_s: float) -> Any:
            batch = fetch(queues, max_count, timeout_s)
            self.fetches.append((threading.current_thread().name, timeout_s, len(batch)))
            return batch

        self.worker.broker.fetch = recorded  # type: ignore[method-assign]
        self.start()

    def engine_batches(self) -> list[int]:
        """Sizes of the non-empty batches the engine fetched itself (never waiting: timeout 0)."""
        return [size for thread, timeout_s, size in self.fetches if thread == "engine" and size]

    def assert_engine_never_waits(self) -> None:
        assert all(timeout_s == 0 for thread, timeout_s, _ in self.fetches if thread == "engine")


def test_engine_fetches_a_backlog_itself_and_holds_no_more_than_the_window(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    tags = [f"t{i}" for i in range(24)]
    ids = [app.send_task("backlog.hold", (tag,)).id for tag in tags]
    # threads x2, prefetch multiplier 2: a window of 4 unacknowledged messages (late acks: the
    # running ones count too).
    worker = FetchingWorker(app, pool="threads", concurrency=2, prefetch_multiplier=2)
    try:
        for tag in tags:
            wait_until(lambda t=tag: t.encode() in client.lrange("started", 0, -1), f"{tag} to start")
            assert worker.worker.dispatch.unacked_count() <= 4
            client.rpush(f"release:{tag}", 1)
        assert [app.AsyncResult(r).get(timeout=DEADLINE_S) for r in ids] == tags
        wait_until(lambda: client.hlen("unacked") == 0, "every message to be acked")
    finally:
        worker.stop()
    assert client.llen("celery") == 0
    assert sorted(client.lrange("started", 0, -1)) == sorted(t.encode() for t in tags)
    assert worker.engine_batches(), "the engine never fetched the backlog itself"
    assert max(worker.engine_batches()) <= 4
    worker.assert_engine_never_waits()


def test_after_a_backlog_drains_the_consumer_thread_picks_up_the_next_message(
    app: Celeriac, redis_server: RedisServer
) -> None:
    add = app.tasks["backlog.add"]
    results = [add.delay(i, i) for i in range(200)]
    worker = FetchingWorker(app, pool="threads", concurrency=2)
    try:
        assert [r.get(timeout=DEADLINE_S) for r in results] == [2 * i for i in range(200)]
        assert worker.engine_batches(), "the engine never fetched the backlog itself"
        fetches_before = len(worker.fetches)
        wait_until(lambda: any(thread != "engine" and size == 0 for thread, _, size in worker.fetches[fetches_before:]),
                   "the consumer thread to wait on the empty queue")
        assert add.delay(20, 22).get(timeout=DEADLINE_S) == 42
    finally:
        worker.stop()
    worker.assert_engine_never_waits()


@pytest.mark.parametrize(("pool", "concurrency", "batch_min"), [("prefork", 2, 8), ("threads", 8, 16), ("solo", 1, 2)])
def test_a_pool_holding_jobs_ahead_waits_for_the_whole_window(
    app: Celeriac, pool: str, concurrency: int, batch_min: int
) -> None:
    # Window = 4 x concurrency; a busy loop fetches once half of it is free, or all of it when
    # the pool holds jobs ahead (a prefork child keeps one in its pipe, so it works through the fetch).
    worker = Worker(app, WorkerOptions(health_port=None, pool=pool, concurrency=concurrency))
    try:
        assert worker.fetch_batch_min == batch_min
    finally:
        worker.broker.close()

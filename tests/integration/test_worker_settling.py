"""How the engine settles messages in its state: a requeued task stops counting as reserved or
active, and a revoked task's event says why (terminated, expired) as Celery's does.

The worker runs in this process on a thread (real Redis, real pool), so the test reads its
:class:`~celeriac.worker.state.WorkerState` and listens to its transitions directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from kombu import pools as kombu_pools
from worker_process import wait_until
from worker_thread import ThreadedWorker, hold_until_released

from celeriac import Celeriac, ChordError, Signature, states
from celeriac.canvas import chord
from servers import RedisServer

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("settling", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    url = redis_server.url

    @app.task(name="settling.hold", acks_late=True)
    def hold(tag: str) -> str:
        hold_until_released(url, tag)
        return tag

    @app.task(name="settling.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="settling.quiet_add", ignore_result=True)
    def quiet_add(x: int, y: int) -> int:
        return x + y

    @app.task(name="settling.quiet_stuck", ignore_result=True, time_limit=0.5)
    def quiet_stuck() -> None:
        time.sleep(60)

    @app.task(name="settling.tsum")
    def tsum(numbers: list[int]) -> int:
        return sum(numbers)

    yield app
    app.close()


class RunningWorker(ThreadedWorker):
    """A :class:`ThreadedWorker` with every state transition recorded."""

    def __init__(self, app: Celeriac, **options: Any) -> None:
        options.setdefault("hostname", "settling@test")
        super().__init__(app, **options)
        self.transitions: list[tuple[str, dict[str, Any]]] = []
        self.worker.state.add_listener(lambda kind, fields: self.transitions.append((kind, fields)))
        self.start()

    def revoked_events(self) -> list[dict[str, Any]]:
        return [fields for kind, fields in self.transitions if kind == "task-revoked"]


def test_cold_shutdown_requeues_running_and_prefetched_tasks_and_counts_none_of_them(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    running = RunningWorker(app, pool="threads", concurrency=1, prefetch_multiplier=3)
    try:
        results = [app.send_task("settling.hold", (f"t{i}",)) for i in range(3)]
        wait_until(lambda: client.llen("started") == 1, "the first task to start")
        state = running.worker.state
        wait_until(lambda: state.snapshot()["reserved"] == 2, "two more tasks to be prefetched")
        assert state.active_count() == 1
        assert running.stop(cold=True) == 0
        snap = state.snapshot()
        assert (snap["active"], snap["reserved"], snap["processed"]) == (0, 0, 0)
        assert state.active_requests() == []
        assert state.reserved_requests() == []
        assert state.metrics.active._value.get() == 0
        assert client.llen("celery") == 3
        queued = [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]
        assert sorted(queued) == sorted(r.id for r in results)
    finally:
        client.rpush("release:t0", "go")  # the abandoned thread ends
        client.close()


def test_warm_shutdown_requeues_prefetched_tasks_so_only_the_running_one_counts(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    running = RunningWorker(app, pool="threads", concurrency=1, prefetch_multiplier=3)
    try:
        first = app.send_task("settling.hold", ("w0",))
        for i in (1, 2):
            app.send_task("settling.hold", (f"w{i}",))
        wait_until(lambda: client.llen("started") == 1, "the first task to start")
        state = running.worker.state
        wait_until(lambda: state.snapshot()["reserved"] == 2, "two more tasks to be prefetched")
        running.worker.request_shutdown()
        wait_until(lambda: client.llen("celery") == 2, "the prefetched tasks to go back to the queue")
        snap = state.snapshot()
        assert (snap["active"], snap["reserved"]) == (1, 0)
        client.rpush("release:w0", "go")
        assert first.get(timeout=DEADLINE_S) == "w0"
        assert running.stop() == 0
        snap = state.snapshot()
        assert (snap["active"], snap["reserved"], snap["processed"]) == (0, 0, 1)
    finally:
        client.close()


def test_expired_task_is_revoked_with_expired_flag(app: Celeriac, redis_server: RedisServer) -> None:
    running = RunningWorker(app, pool="threads", concurrency=1)
    try:
        past = datetime.now(timezone.utc) - timedelta(seconds=5)
        result = app.send_task("settling.add", (1, 2), expires=past)
        wait_until(lambda: len(running.revoked_events()) == 1, "the task-revoked transition")
        assert result.state == "REVOKED"
    finally:
        assert running.stop() == 0
    assert running.revoked_events() == [
        {"uuid": result.id, "terminated": False, "signum": None, "expired": True}
    ]


def test_terminated_task_is_revoked_with_terminated_flag(app: Celeriac, redis_server: RedisServer) -> None:
    client = redis_server.client()
    running = RunningWorker(app, pool="prefork", concurrency=1)
    try:
        result = app.send_task("settling.hold", ("term",))
        wait_until(lambda: client.llen("started") == 1, "the task to start")
        running.worker.state.revoke([result.id])
        running.worker.terminate([result.id], "SIGKILL")
        wait_until(lambda: len(running.revoked_events()) == 1, "the task-revoked transition")
        assert result.state == "REVOKED"
    finally:
        assert running.stop() == 0
        client.close()
    assert running.revoked_events() == [
        {"uuid": result.id, "terminated": True, "signum": None, "expired": False}
    ]
    assert running.worker.state.snapshot()["active"] == 0


def test_celery_inspect_registered_lists_the_app_tasks_without_celery_builtins(
    app: Celeriac, redis_server: RedisServer
) -> None:
    running = RunningWorker(app, pool="threads", concurrency=1)
    peer = Celery("peer", broker=redis_server.url)
    try:
        wait_until(running.worker.state.is_ready, "the consumer to be ready")
        registered = peer.control.inspect(timeout=2, destination=["settling@test"]).registered()
        builtin = app.send_task("celery.accumulate", (1, 2))  # hidden, yet still run
        assert builtin.get(timeout=DEADLINE_S) == [1, 2]
    finally:
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        peer.close()
        assert running.stop() == 0
    names = ["settling.add", "settling.hold", "settling.quiet_add", "settling.quiet_stuck", "settling.tsum"]
    # Shared tasks defined by other tests in this process are the app's too (as in Celery), so
    # the expected list is the app's registry without Celery's builtins, which must be there.
    assert "celery.accumulate" in app.tasks
    expected = sorted(name for name in app.tasks if not name.startswith("celery."))
    assert set(names) <= set(expected)
    assert registered == {"settling@test": expected}


@pytest.mark.parametrize(
    ("pool", "failing"),
    [("threads", "expired"), ("prefork", "time-limit")],
)
def test_chord_member_with_ignore_result_failing_outside_the_trace_fails_the_chord(
    app: Celeriac, redis_server: RedisServer, pool: str, failing: str
) -> None:
    if failing == "expired":
        member = Signature("settling.quiet_add", (2, 2), app=app)
        member.set(expires=(datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat())
    else:
        member = Signature("settling.quiet_stuck", app=app)
    member.freeze()
    running = RunningWorker(app, pool=pool, concurrency=2)
    try:
        result = chord([Signature("settling.quiet_add", (1, 1), app=app), member],
                       Signature("settling.tsum", app=app)).apply_async()  # fmt: skip
        with pytest.raises(ChordError) as raised:
            result.get(timeout=DEADLINE_S)
        assert result.state == states.FAILURE
    finally:
        assert running.stop() == 0
    assert f"Dependency {member.id} raised" in str(raised.value)
    client = redis_server.client()
    try:  # the member's own result is not stored: its task ignores results (Celery's store_errors)
        assert client.exists(f"celery-task-meta-{member.id}") == 0
    finally:
        client.close()

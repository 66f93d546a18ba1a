"""A pool may decline a job (prefork: a hard-limited job waits for an idle process): the message
stays ready and un-acked, starts on a later ``run_ready``, and the rate-limit token taken for it
is given back. Also: when the broker shares the backend's Redis server and database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from celeriac import Celeriac
from celeriac.brokers import Delivery
from celeriac.brokers.redis import RedisBroker
from celeriac.protocol import build_task_message
from celeriac.worker.dispatch import Dispatcher
from celeriac.worker.jobs import Job
from celeriac.worker.options import WorkerOptions
from celeriac.worker.ratelimit import TokenBucket
from celeriac.worker.state import WorkerState
from celeriac.worker.timers import Timers

# Nothing here connects: redis-py clients connect on their first command, and none is sent.
URL = "redis://127.0.0.1:6390/0"


class DecliningPool:
    """One slot whose ``submit`` returns None until ``accepting`` is set."""

    def __init__(self) -> None:
        self.accepting = False
        self.offered: list[str] = []
        self.started: list[str] = []

    def start(self) -> None:
        """Nothing to start."""

    def free_slots(self) -> int:
        return 1 - len(self.started)

    def submit(self, job: Job) -> int | None:
        self.offered.append(job.task_id)
        if not self.accepting:
            return None
        self.started.append(job.task_id)
        return 4242

    def soft_limit(self, task_id: str) -> None:
        """Not timed here."""

    def kill(self, task_id: str, signum: int) -> bool:
        return False

    def stop(self, kill: bool) -> None:
        """Nothing to stop."""

    def fds(self) -> list[int]:
        return []

    def on_readable(self, fd: int) -> None:
        """No pipes."""


@pytest.fixture
def app() -> Iterator[Celeriac]:
    app = Celeriac("decline", broker=URL, backend=URL, set_as_current=False)

    @app.task(name="decline.limited", rate_limit="1/m")
    def limited() -> None:
        """One run a minute: a token lost on a declined start would delay the task a minute."""

    @app.task(name="decline.late", acks_late=True)
    def late() -> None:
        """Acked when it finishes."""

    yield app
    app.close()


def make_dispatcher(app: Celeriac, pool: DecliningPool) -> tuple[Dispatcher, WorkerState, Timers]:
    state = WorkerState("decline@test", ["celery"], 1)
    timers = Timers()
    broker = RedisBroker(URL)
    options = WorkerOptions(pool="threads", concurrency=1, health_port=None, hostname="decline@test")
    return Dispatcher(app, broker, state=state, pool=pool, timers=timers, options=options), state, timers


def delivery(task_id: str, name: str) -> Delivery:
    return Delivery(build_task_message(task_id, name), "celery", "", "celery", f"tag-{task_id}")


def test_declined_start_leaves_the_message_ready_and_unacked_until_the_pool_accepts(app: Celeriac) -> None:
    pool = DecliningPool()
    dispatch, state, timers = make_dispatcher(app, pool)
    dispatch.reserve(1)
    dispatch.accept([delivery("t1", "decline.limited")])

    dispatch.run_ready()
    assert pool.offered == ["t1"]
    assert pool.started == []
    assert (dispatch.running_count(), dispatch.waiting_count(), dispatch.unacked_count()) == (0, 1, 1)
    assert not dispatch.runnable()  # so the loop sleeps until a pool event, instead of spinning
    assert state.active_count() == 0
    assert [r["id"] for r in state.reserved_requests()] == ["t1"]
    assert dispatch._writes.acks == []  # no early ack for a task that did not start
    assert len(timers) == 0  # not parked as rate-limited either

    pool.accepting = True
    dispatch.run_ready()
    assert pool.started == ["t1"]
    assert len(timers) == 0  # the token given back let it start at once, not a minute later
    assert (dispatch.running_count(), dispatch.waiting_count()) == (1, 0)
    assert [r["id"] for r in state.active_requests()] == ["t1"]
    assert [d.delivery_tag for d in dispatch._writes.acks] == ["tag-t1"]


def test_declined_job_keeps_its_place_ahead_of_later_messages(app: Celeriac) -> None:
    pool = DecliningPool()
    dispatch, _, _ = make_dispatcher(app, pool)
    dispatch.reserve(2)
    dispatch.accept([delivery("first", "decline.late"), delivery("second", "decline.late")])
    dispatch.run_ready()
    dispatch.run_ready()
    assert pool.offered == ["first", "first"]  # a decline ends the run; nothing jumps the queue
    pool.accepting = True
    dispatch.run_ready()
    assert pool.started == ["first"]
    assert dispatch._writes.acks == []  # late ack: nothing acked at start


def test_declined_start_of_a_rate_limited_task_spends_no_token(app: Celeriac) -> None:
    pool = DecliningPool()
    dispatch, _, timers = make_dispatcher(app, pool)
    dispatch.reserve(2)
    dispatch.accept([delivery("a", "decline.limited")])
    for _ in range(3):
        dispatch.run_ready()
    pool.accepting = True
    dispatch.run_ready()
    assert pool.started == ["a"]
    dispatch.accept([delivery("b", "decline.limited")])
    pool.started.clear()
    dispatch.run_ready()
    assert pool.started == []  # the one token per minute was spent by "a" alone
    assert len(timers) == 1


def test_token_bucket_give_back_returns_a_taken_token_up_to_capacity() -> None:
    now = [10.0]
    bucket = TokenBucket(1 / 60, clock=lambda: now[0])
    assert bucket.take() == 0.0
    assert bucket.take() > 0
    bucket.give_back()
    assert bucket.take() == 0.0
    bucket.give_back()
    bucket.give_back()  # never above capacity (one token)
    assert bucket.take() == 0.0
    assert bucket.take() > 0


def test_redis_broker_shares_the_server_of_a_client_on_the_same_url() -> None:
    broker = RedisBroker(URL)
    client = redis.Redis.from_url(URL)
    try:
        assert broker.shares_server(client)
        assert broker.shares_server(broker.client)
    finally:
        client.close()
        broker.client.close()


@pytest.mark.parametrize(
    "other",
    ["redis://127.0.0.1:6390/1", "redis://127.0.0.1:6391/0", "redis://127.0.0.2:6390/0",
     "redis://:secret@127.0.0.1:6390/0", "unix:///tmp/redis.sock?db=0"],
    ids=["other-db", "other-port", "other-host", "other-password", "unix-socket"],
)
def test_redis_broker_does_not_share_another_server_or_database(other: str) -> None:
    broker = RedisBroker(URL)
    client = redis.Redis.from_url(other)
    try:
        assert not broker.shares_server(client)
    finally:
        client.close()
        broker.client.close()


def test_redis_broker_does_not_share_with_an_object_that_is_not_a_redis_client() -> None:
    broker = RedisBroker(URL)
    try:
        assert not broker.shares_server(object())
    finally:
        broker.client.close()

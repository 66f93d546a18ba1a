"""Early subscription: a thread that has waited for a result before subscribes to its next
task's result channel before publishing it, so that task's ``get()`` needs no GET and no
confirmation round trip. At most one such subscription per thread is outstanding.

Most tests need no worker: the task message stays queued and the test stores the result the
way a worker does (``RedisBackend.store_result``: SET and PUBLISH in one script).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from worker_process import WorkerProcess

from celeriac import AsyncResult, Celeriac, states
from celeriac.backend import RedisBackend
from celeriac.exceptions import TimeoutError
from servers import RedisServer, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("early", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def writer(redis_server: RedisServer) -> Iterator[RedisBackend]:
    """Stores results as a worker would (SET and PUBLISH), on connections of its own."""
    backend = RedisBackend(redis_server.url)
    yield backend
    backend.close()


def wait_once(app: Celeriac) -> None:
    """Make the calling thread wait for a result that never comes: it now has a subscriber."""
    with pytest.raises(TimeoutError):
        app.AsyncResult("never-stored").get(timeout=0.01)


def subscribe_calls(rclient: Any) -> int:
    """SUBSCRIBE commands Redis has run so far (every client's, from ``INFO commandstats``)."""
    return int(rclient.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0))


def subscribers(rclient: Any, *results: AsyncResult) -> int:
    """Subscriptions, summed over the result channels of ``results``."""
    return sum(count for _, count in rclient.pubsub_numsub(*(f"celery-task-meta-{r.id}" for r in results)))


def no_result_channels(rclient: Any) -> bool:
    return not rclient.pubsub_channels("celery-task-meta-*")


def test_sequential_delay_get_returns_every_result_also_beside_a_second_producer(
    app: Celeriac, start_worker: Callable[..., WorkerProcess], rclient: Any
) -> None:
    start_worker(concurrency=2)
    rounds = 150
    values: dict[int, list[Any]] = {0: [], 1000: []}

    def produce(offset: int) -> None:
        for n in range(rounds):
            values[offset].append(app.send_task("tests.add", (offset, n)).get(timeout=TIMEOUT_S))

    second = threading.Thread(target=produce, args=(1000,))
    second.start()
    produce(0)
    second.join(timeout=TIMEOUT_S * 2)
    assert values == {offset: [offset + n for n in range(rounds)] for offset in values}
    wait_until(lambda: no_result_channels(rclient), 10, "every result channel to be unsubscribed")


def test_a_thread_that_waited_subscribes_to_its_next_task_before_publishing_it(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    result = app.send_task("tests.add", (1, 2))
    assert subscribers(rclient, result) == 1  # the task is still queued: nothing ran yet
    writer.store_result(result.id, 3, states.SUCCESS)
    assert result.get(timeout=TIMEOUT_S) == 3
    wait_until(lambda: subscribers(rclient, result) == 0, 10, "the unsubscribe after get()")


def test_a_producer_that_publishes_many_tasks_before_waiting_subscribes_early_only_once(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    before = subscribe_calls(rclient)
    results = [app.send_task("tests.add", (n, n)) for n in range(50)]
    # Each SUBSCRIBE was written before a publish whose reply we already have: Redis ran it.
    assert subscribe_calls(rclient) - before == 1
    assert (subscribers(rclient, results[0]), subscribers(rclient, *results)) == (1, 1)
    for n, result in enumerate(results):
        writer.store_result(result.id, 2 * n, states.SUCCESS)
    assert [result.get(timeout=TIMEOUT_S) for result in results] == [2 * n for n in range(50)]
    wait_until(lambda: no_result_channels(rclient), 10, "every result channel to be unsubscribed")


def test_a_thread_that_never_waited_never_subscribes(app: Celeriac, rclient: Any) -> None:
    app.backend.get_meta("warm")  # the backend is open, only its subscriber is missing
    before = subscribe_calls(rclient)
    queued = [app.send_task("tests.add", (n, n)) for n in range(20)]
    assert subscribe_calls(rclient) == before
    waiter = threading.Thread(target=wait_once, args=(app,))  # another thread's subscriber...
    waiter.start()
    waiter.join(timeout=TIMEOUT_S)
    after_wait = subscribe_calls(rclient)
    queued += [app.send_task("tests.add", (n, n)) for n in range(20)]
    assert (after_wait - before, subscribe_calls(rclient) - after_wait) == (1, 0)  # ...is not ours
    assert subscribers(rclient, *queued) == 0


def test_get_of_an_early_subscribed_task_whose_result_message_is_lost_still_returns(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    result = app.send_task("tests.add", (1, 2))
    assert subscribers(rclient, result) == 1
    document = writer.encode(writer.meta_document(result.id, 3, states.SUCCESS))
    rclient.set(f"celery-task-meta-{result.id}", document)  # stored, never published
    assert result.get(timeout=TIMEOUT_S) == 3  # found by the GET after an empty wait slice


def test_timeout_of_an_early_subscribed_get_raises_and_leaves_no_subscription(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    late = app.send_task("tests.add", (1, 2))
    assert subscribers(rclient, late) == 1
    with pytest.raises(TimeoutError):
        late.get(timeout=0.05)
    wait_until(lambda: no_result_channels(rclient), 10, "the unsubscribe after the timeout")
    following = app.send_task("tests.add", (3, 4))  # the thread may subscribe early again
    assert subscribers(rclient, following) == 1
    writer.store_result(following.id, 7, states.SUCCESS)
    assert following.get(timeout=TIMEOUT_S) == 7


def test_get_of_another_task_ends_the_early_subscription(app: Celeriac, writer: RedisBackend, rclient: Any) -> None:
    wait_once(app)
    first, second = app.send_task("tests.add", (0, 1)), app.send_task("tests.add", (0, 2))
    assert (subscribers(rclient, first), subscribers(rclient, second)) == (1, 0)
    writer.store_result(second.id, 2, states.SUCCESS)
    assert second.get(timeout=TIMEOUT_S) == 2
    wait_until(lambda: no_result_channels(rclient), 10, "the early subscription to end")
    writer.store_result(first.id, 1, states.SUCCESS)
    assert first.get(timeout=TIMEOUT_S) == 1


def test_get_survives_losing_the_subscriber_connection_after_an_early_subscribe(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    result = app.send_task("tests.add", (1, 2))
    assert subscribers(rclient, result) == 1
    assert rclient.client_kill_filter(_type="pubsub") == 1
    writer.store_result(result.id, 3, states.SUCCESS)  # its publish reaches no subscriber
    assert result.get(timeout=TIMEOUT_S) == 3


def test_a_forked_child_does_not_subscribe_on_its_parents_connection(
    app: Celeriac, writer: RedisBackend, rclient: Any
) -> None:
    wait_once(app)
    before = subscribe_calls(rclient)
    pid = os.fork()
    if pid == 0:  # child: publish with the inherited app (and its parent's subscriber), then leave
        code = 0
        try:
            app.send_task("tests.add", (5, 5), task_id="from-child")
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert subscribe_calls(rclient) == before
    result = app.send_task("tests.add", (1, 2))  # the parent's subscriber is intact
    assert subscribers(rclient, result) == 1
    writer.store_result(result.id, 3, states.SUCCESS)
    assert result.get(timeout=TIMEOUT_S) == 3

"""``solo`` runs each task on the engine's own thread; a watcher thread keeps what the blocked loop
would miss. These tests prove it: a cold shutdown and the warm-shutdown deadline stop a running
task and requeue its message, and a long task neither fails ``/livez`` nor holds back its early ack.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from cli_support import http_get
from worker_process import WorkerProcess, wait_until
from worker_thread import ThreadedWorker

from celeriac import Celeriac
from celeriac.worker.health import HealthServer
from servers import RedisServer

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30
STALE_AFTER_S = 1.5
"""A /livez stale window well below the seconds a task runs (the default is 60 s)."""

INTERRUPTED = "the running task was interrupted and will be requeued"
"""What the worker logs when a cold shutdown stopped the task running on its thread."""

LONG_SHUTDOWN_TIMEOUT_S = 300.0
"""A warm shutdown's deadline no test waits for: only a cold shutdown stops the task in time."""


def strs(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]


def assert_requeued_alone(rclient: Any, task_id: str) -> None:
    """The task's message is back on its queue, marked redelivered, with nothing left unacked
    and no result stored (the task never finished)."""
    assert rclient.llen("executions") == 0
    assert rclient.llen("celery") == 1
    envelope = json.loads(rclient.lindex("celery", 0))
    assert envelope["headers"]["id"] == task_id
    assert envelope["headers"]["redelivered"] is True
    assert rclient.hlen("unacked") == 0
    assert rclient.zcard("unacked_index") == 0
    assert rclient.exists(f"celery-task-meta-{task_id}") == 0


def signal_until_interrupted(worker: WorkerProcess, signum: int) -> None:
    """Send ``signum`` again and again until the worker says it interrupted the running task,
    as an impatient operator does.

    Two signals sent back to back may reach Python's handler once (CPython runs a handler
    once per pending signal, however often it arrived), so a second SIGTERM is only sure to
    count as a second one when it arrives after the first was handled; nothing outside the
    process shows when that is while a solo task runs. Signalling stops at the log line, so
    none arrives after the interpreter restored the default handlers on its way out.
    """

    def interrupted() -> bool:
        if INTERRUPTED in worker.log():
            return True
        worker.signal(signum)
        return False

    wait_until(interrupted, f"the worker to interrupt its task on repeated signal {signum}", worker=worker)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT],
                         ids=["repeated-sigterm", "repeated-sigint", "sigquit"])
@pytest.mark.parametrize(
    "task", ["tests.spin", "tests.nap", "tests.spin_late"], ids=["python-loop", "time-sleep", "late-ack"]
)
def test_cold_shutdown_interrupts_the_running_solo_task_and_requeues_its_message(
    celery_client: Celery, start_worker: Any, rclient: Any, signum: int, task: str
) -> None:
    worker = start_worker(pool="solo", shutdown_timeout_s=LONG_SHUTDOWN_TIMEOUT_S)
    running = celery_client.send_task(task, ("t",))
    wait_until(lambda: rclient.llen("started") == 1, "the task to start", worker=worker)
    if signum == signal.SIGQUIT:
        worker.signal(signum)  # cold at once
    else:
        signal_until_interrupted(worker, signum)  # the first is warm, the next cold
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert_requeued_alone(rclient, running.id)
    assert INTERRUPTED in worker.log()


@pytest.mark.parametrize("task", ["tests.spin", "tests.spin_late"], ids=["early-ack", "late-ack"])
def test_warm_shutdown_deadline_interrupts_a_long_solo_task_and_requeues_it(
    celery_client: Celery, start_worker: Any, rclient: Any, task: str
) -> None:
    worker = start_worker(pool="solo", shutdown_timeout_s=0.5)
    stuck = celery_client.send_task(task, ("stuck",))
    wait_until(lambda: rclient.llen("started") == 1, "the task to start", worker=worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert_requeued_alone(rclient, stuck.id)


def test_requeued_solo_task_runs_to_success_on_the_next_worker(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    first = start_worker(pool="solo")
    result = celery_client.send_task("tests.hold", ("again",))
    wait_until(lambda: rclient.llen("started") == 1, "the task to start", worker=first)
    first.signal(signal.SIGQUIT)
    assert first.wait(RESULT_TIMEOUT_S) == 0
    assert rclient.llen("celery") == 1
    rclient.rpush("release:again", "go")  # the second run finds its release waiting
    start_worker(pool="solo")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "again"
    assert strs(rclient.lrange("started", 0, -1)) == ["again", "again"]
    assert strs(rclient.lrange("executions", 0, -1)) == ["again"]
    wait_until(lambda: rclient.hlen("unacked") == 0, "the second run to be acked")


# -- in process: the worker's state and a /livez with a short stale window ---------------------


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("solo", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    url = redis_server.url

    @app.task(name="solo.hold")
    def hold(tag: str) -> str:
        client = redis.Redis.from_url(url, socket_timeout=None)
        try:
            client.rpush("started", tag)
            client.blpop([f"release:{tag}"], timeout=60)
            client.rpush("executions", tag)
        finally:
            client.close()
        return tag

    yield app
    app.close()


def test_long_solo_task_keeps_livez_healthy_and_its_early_ack_is_sent_while_it_runs(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    running = ThreadedWorker(app, hostname="solo@test", pool="solo").start()
    health = HealthServer(running.worker.state, port=0, host="127.0.0.1", stale_after_s=STALE_AFTER_S)
    health.start()
    try:
        result = app.send_task("solo.hold", ("long",))
        wait_until(lambda: client.llen("started") == 1, "the task to start")
        started_s = time.monotonic()
        wait_until(lambda: client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0,
                   "the early ack to reach Redis while the task runs", timeout_s=10)
        assert client.llen("executions") == 0  # still running: the ack did not wait for it

        def healthy_for_three_stale_windows() -> bool:
            status, body = http_get(health.port, "/livez")
            assert status == 200, f"/livez answered {status} {body!r} while a solo task ran"
            return time.monotonic() - started_s > 3 * STALE_AFTER_S

        wait_until(healthy_for_three_stale_windows, "three stale windows to pass", timeout_s=15)
        assert client.llen("executions") == 0
        client.rpush("release:long", "go")
        assert result.get(timeout=RESULT_TIMEOUT_S) == "long"
        wait_until(lambda: client.llen("executions") == 1, "the task to finish")
    finally:
        client.rpush("release:long", "go")
        running.stop()
        health.stop()
        client.close()


def test_messages_prefetched_behind_a_long_solo_task_keep_their_visibility(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    env = {"VISIBILITY_TIMEOUT_S": "3"}
    start_worker(pool="solo", env=env)
    long = celery_client.send_task("tests.nap", ("long", 7.0))
    after = celery_client.send_task("tests.record", ("after",))
    wait_until(lambda: rclient.llen("started") == 1 and rclient.hlen("unacked") >= 1 and rclient.llen("celery") == 0,
               "the long task to run and the next one to be prefetched")
    start_worker(concurrency=1, env=env)  # its visibility sweep would take a message whose score went stale
    assert long.get(timeout=RESULT_TIMEOUT_S) == "long"
    assert after.get(timeout=RESULT_TIMEOUT_S) == "after"
    assert strs(rclient.lrange("executions", 0, -1)).count("after") == 1

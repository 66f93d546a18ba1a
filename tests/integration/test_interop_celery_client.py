"""A real Celery 5.7 client calls our worker; Celery's own AsyncResult reads the results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import TaskRevokedError, TimeLimitExceeded
from worker_process import wait_until

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30


@pytest.fixture
def celery_client(redis_server: Any) -> Iterator[Celery]:
    """Unlike the shared fixture (tests/integration/conftest.py): no broker retries on startup."""
    client = Celery("client", broker=redis_server.url, backend=redis_server.url)
    client.conf.broker_connection_retry_on_startup = False
    yield client
    client.close()


def strs(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_celery_client_gets_results_and_reraised_failures_from_our_worker(
    celery_client: Celery, start_worker: Any, pool: str
) -> None:
    start_worker(pool=pool)
    sums = [celery_client.send_task("tests.add", (i, 10)) for i in range(5)]
    failed = celery_client.send_task("tests.fail", ("boom",))
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in sums] == [10, 11, 12, 13, 14]
    with pytest.raises(ValueError, match="boom"):
        failed.get(timeout=RESULT_TIMEOUT_S)
    assert failed.state == "FAILURE"


def test_retries_republish_the_same_id_until_success(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    start_worker()
    result = celery_client.send_task("tests.retry_twice", ("r",))
    assert result.get(timeout=RESULT_TIMEOUT_S) == 2
    assert strs(rclient.lrange("attempts", 0, -1)) == ["r:0", "r:1", "r:2"]


def test_eta_tasks_are_held_without_blocking_others_and_requeued_on_shutdown(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    # Only once the worker consumes does "now" have a head start: a slow start-up would
    # otherwise find "soon" already due and run it first.
    assert celery_client.send_task("tests.add", (1, 1)).get(timeout=RESULT_TIMEOUT_S) == 2
    soon = celery_client.send_task("tests.record", ("soon",), countdown=3)
    later = celery_client.send_task("tests.record", ("later",), countdown=3600)
    now = celery_client.send_task("tests.record", ("now",))
    assert now.get(timeout=RESULT_TIMEOUT_S) == "now"
    assert soon.get(timeout=RESULT_TIMEOUT_S) == "soon"
    assert strs(rclient.lrange("executions", 0, -1)) == ["now", "soon"]
    assert rclient.hlen("unacked") == 1
    assert worker.stop() == 0
    assert rclient.hlen("unacked") == 0
    assert rclient.llen("celery") == 1
    assert later.state == "PENDING"


def test_expired_task_is_revoked_not_run(celery_client: Celery, start_worker: Any, rclient: Any) -> None:
    start_worker()
    expired = celery_client.send_task(
        "tests.record", ("expired",), expires=datetime.now(timezone.utc) - timedelta(seconds=5)
    )
    marker = celery_client.send_task("tests.record", ("after",))
    assert marker.get(timeout=RESULT_TIMEOUT_S) == "after"
    with pytest.raises(TaskRevokedError):
        expired.get(timeout=RESULT_TIMEOUT_S)
    assert expired.state == "REVOKED"
    assert strs(rclient.lrange("executions", 0, -1)) == ["after"]


def test_worker_disable_rate_limits_runs_rate_limited_tasks_at_once(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    start_worker(concurrency=1, env={"DISABLE_RATE_LIMITS": "1"})
    results = [celery_client.send_task("tests.rate_limited", (f"rl{i}",)) for i in range(3)]
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in results] == ["rl0", "rl1", "rl2"]
    assert strs(rclient.lrange("executions", 0, -1)) == ["rl0", "rl1", "rl2"]


def test_rate_limited_task_waits_without_blocking_other_tasks(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    first = celery_client.send_task("tests.rate_limited", ("rl1",))
    second = celery_client.send_task("tests.rate_limited", ("rl2",))
    others = [celery_client.send_task("tests.record", (f"o{i}",)) for i in range(3)]
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in others] == ["o0", "o1", "o2"]
    assert first.get(timeout=RESULT_TIMEOUT_S) == "rl1"
    assert sorted(strs(rclient.lrange("executions", 0, -1))) == ["o0", "o1", "o2", "rl1"]
    assert second.state == "PENDING"
    assert worker.stop() == 0
    assert rclient.llen("celery") == 1


def test_soft_time_limit_raises_inside_the_task(celery_client: Celery, start_worker: Any) -> None:
    start_worker()
    result = celery_client.send_task("tests.soft_limited", ("s",))
    assert result.get(timeout=RESULT_TIMEOUT_S) == "soft limit honoured"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_soft_time_limit_reaches_python_code_on_thread_pools(
    celery_client: Celery, start_worker: Any, pool: str
) -> None:
    start_worker(pool=pool)
    result = celery_client.send_task("tests.spin_soft")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "soft limit honoured"


def test_hard_time_limit_replaces_the_process_and_the_next_task_runs(
    celery_client: Celery, start_worker: Any
) -> None:
    start_worker(concurrency=1)
    killed = celery_client.send_task("tests.hard_limited", ("h",))
    after = celery_client.send_task("tests.add", (1, 2))
    with pytest.raises(TimeLimitExceeded):
        killed.get(timeout=RESULT_TIMEOUT_S)
    assert after.get(timeout=RESULT_TIMEOUT_S) == 3


def test_revoke_skips_a_waiting_task_and_terminate_kills_a_running_one(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    running = celery_client.send_task("tests.hold", ("victim",))
    wait_until(lambda: strs(rclient.lrange("started", 0, -1)) == ["victim"], "victim to start", worker=worker)
    waiting = celery_client.send_task("tests.record", ("skipped",), countdown=2)
    celery_client.control.revoke(waiting.id)
    celery_client.control.revoke(running.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        running.get(timeout=RESULT_TIMEOUT_S)
    assert celery_client.send_task("tests.add", (2, 2)).get(timeout=RESULT_TIMEOUT_S) == 4
    wait_until(lambda: waiting.state == "REVOKED", "the waiting task to be revoked", worker=worker)
    assert strs(rclient.lrange("executions", 0, -1)) == []


def test_max_tasks_per_child_replaces_each_process(celery_client: Celery, start_worker: Any) -> None:
    start_worker(concurrency=1, max_tasks_per_child=1)
    pids = [celery_client.send_task("tests.pid", (f"p{i}",)).get(timeout=RESULT_TIMEOUT_S) for i in range(3)]
    assert len(set(pids)) == 3


def test_ignore_result_stores_nothing(celery_client: Celery, start_worker: Any, rclient: Any) -> None:
    start_worker()
    quiet = celery_client.send_task("tests.quiet", ("q",))
    marker = celery_client.send_task("tests.add", (0, 0))
    assert marker.get(timeout=RESULT_TIMEOUT_S) == 0
    wait_until(lambda: rclient.llen("executions") == 1, "the quiet task to run")
    assert rclient.exists(f"celery-task-meta-{quiet.id}") == 0


def test_burst_worker_drains_the_queue_and_exits(celery_client: Celery, start_worker: Any, rclient: Any) -> None:
    for i in range(20):
        celery_client.send_task("tests.record", (f"b{i}",), priority=9 if i % 2 else 0)
    worker = start_worker(burst=True, fetch_timeout_s=0.2)
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert sorted(strs(rclient.lrange("executions", 0, -1))) == sorted(f"b{i}" for i in range(20))
    assert rclient.llen("celery") == 0
    assert rclient.hlen("unacked") == 0


def test_worker_consumes_every_queue_it_is_given_and_inspect_shows_running_tasks(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(queues=["alpha", "beta"], hostname="multi@test")
    held = celery_client.send_task("tests.hold", ("in-alpha",), queue="alpha")
    other = celery_client.send_task("tests.add", (2, 5), queue="beta")
    assert other.get(timeout=RESULT_TIMEOUT_S) == 7
    wait_until(lambda: rclient.llen("started") == 1, "the held task to start", worker=worker)
    active = celery_client.control.inspect(timeout=5).active()
    assert [entry["id"] for entry in active["multi@test"]] == [held.id]
    assert active["multi@test"][0]["delivery_info"]["routing_key"] == "alpha"
    rclient.rpush("release:in-alpha", "go")
    assert held.get(timeout=RESULT_TIMEOUT_S) == "in-alpha"

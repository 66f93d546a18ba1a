"""prefork children hold one job in their pipe besides the one they run. A job waiting there is
given back (not failed) when its child dies, a hard-limited job never waits there (its limit
times its own run), and a long drain settles every message whichever way it is acked and
wherever its results go (the same Redis database as the broker, or another one)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.exceptions import WorkerLostError
from worker_process import WorkerProcess, wait_until

from servers import RedisServer

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30
DRAIN_TASKS = 300


def strs(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]


def active_tasks(celery_client: Celery, worker: WorkerProcess) -> list[dict[str, Any]]:
    """What ``celery inspect active`` shows for ``worker`` (running and in a child's pipe)."""
    replies = celery_client.control.inspect(destination=[worker.hostname], timeout=5).active() or {}
    return list(replies.get(worker.hostname, []))


@pytest.mark.parametrize("waiting_task", ["tests.record", "tests.record_late"], ids=["early-ack", "late-ack"])
def test_job_waiting_in_a_killed_childs_pipe_is_requeued_and_runs_once(
    celery_client: Celery, start_worker: Any, rclient: Any, waiting_task: str
) -> None:
    worker = start_worker(concurrency=1)
    running = celery_client.send_task("tests.hold", ("running",))
    waiting = celery_client.send_task(waiting_task, ("waiting",))
    wait_until(lambda: rclient.llen("started") == 1, "the first task to start", worker=worker)
    entries: list[dict[str, Any]] = []

    def both_handed_to_the_child() -> bool:
        entries[:] = active_tasks(celery_client, worker)
        return sorted(e["id"] for e in entries) == sorted([running.id, waiting.id])

    wait_until(both_handed_to_the_child, "both tasks to be handed to the one child", worker=worker)
    pids = {e["worker_pid"] for e in entries}
    assert len(pids) == 1
    assert worker.proc.pid not in pids
    os.kill(pids.pop(), signal.SIGKILL)

    assert waiting.get(timeout=RESULT_TIMEOUT_S) == "waiting"
    with pytest.raises(WorkerLostError):
        running.get(timeout=RESULT_TIMEOUT_S)
    assert strs(rclient.lrange("executions", 0, -1)) == ["waiting"]
    assert strs(rclient.lrange("started", 0, -1)) == ["running"]
    wait_until(lambda: rclient.hlen("unacked") == 0 and rclient.zcard("unacked_index") == 0,
               "every message to be settled", worker=worker)
    assert rclient.llen("celery") == 0
    assert f"requeueing {waiting_task}[{waiting.id}]: its pool process exited before starting it" in worker.log()


def test_job_behind_a_hard_limited_one_is_not_sent_into_its_pipe(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    killed = celery_client.send_task("tests.hard_limited", ("killed",))
    after = celery_client.send_task("tests.record", ("after",))
    wait_until(lambda: rclient.llen("started") == 1, "the hard-limited task to start", worker=worker)

    def after_done_and_never_beside_the_limited_one() -> bool:
        active = {e["id"] for e in active_tasks(celery_client, worker)}
        assert active != {killed.id, after.id}, "a job was queued behind a hard-limited one"
        return bool(after.ready())

    wait_until(after_done_and_never_beside_the_limited_one, "the task behind the limited one to run",
               worker=worker)
    assert after.get(timeout=RESULT_TIMEOUT_S) == "after"
    assert killed.state == "FAILURE"
    assert strs(rclient.lrange("executions", 0, -1)) == ["after"]


@pytest.fixture
def clients(rclient: Any, redis_server: RedisServer) -> Iterator[tuple[Any, Any]]:
    """Clients on database 0 (the broker's) and database 1 of the test's Redis."""
    db1 = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/1")
    yield rclient, db1
    db1.close()


@pytest.mark.parametrize(
    "acks_late_and_backend_db", [(False, 0), (True, 0), (False, 1), (True, 1)],
    ids=["early-acks-backend-same-db", "late-acks-backend-same-db", "early-acks-backend-db-1",
         "late-acks-backend-db-1"],
)
def test_drain_settles_every_message_and_stores_every_result(
    celery_client: Celery, redis_server: RedisServer, start_worker: Any, clients: tuple[Any, Any],
    acks_late_and_backend_db: tuple[bool, int],
) -> None:
    rclient, db1_client = clients
    acks_late, backend_db = acks_late_and_backend_db
    ids = [celery_client.send_task("tests.add", (i, i)).id for i in range(DRAIN_TASKS)]
    backend_url = redis_server.url.rsplit("/", 1)[0] + f"/{backend_db}"
    results, other = (rclient, db1_client) if backend_db == 0 else (db1_client, rclient)
    worker = start_worker(concurrency=2, acks_late=acks_late, burst=True,
                          env={"CELERIAC_RESULT_BACKEND": backend_url})
    assert worker.wait(RESULT_TIMEOUT_S) == 0
    assert rclient.llen("celery") == 0
    assert rclient.hlen("unacked") == 0
    assert rclient.zcard("unacked_index") == 0
    metas = [results.get(f"celery-task-meta-{task_id}") for task_id in ids]
    assert all(meta is not None for meta in metas), f"{metas.count(None)} result(s) missing"
    decoded = [json.loads(meta) for meta in metas]
    assert [m["status"] for m in decoded] == ["SUCCESS"] * DRAIN_TASKS
    assert [m["result"] for m in decoded] == [2 * i for i in range(DRAIN_TASKS)]
    assert other.keys("celery-task-meta-*") == []
def test_hard_time_limit_times_its_own_run_not_the_wait_behind_a_long_task(
    celery_client: Celery, start_worker: Any, rclient: Any
) -> None:
    worker = start_worker(concurrency=1)
    long = celery_client.send_task("tests.nap", ("long", 3.0))
    limited = celery_client.send_task("tests.record", ("limited",), time_limit=1)
    assert long.get(timeout=RESULT_TIMEOUT_S) == "long"
    assert limited.get(timeout=RESULT_TIMEOUT_S) == "limited"
    assert strs(rclient.lrange("executions", 0, -1)) == ["long", "limited"]
    assert "hard time limit" not in worker.log()



"""The prefetch window counts unacknowledged messages, as Celery's (kombu's QoS) does.

Our worker and a real Celery 5.7 worker, same pool, concurrency and prefetch multiplier, each
get the same blocking tasks on their own queue: both must take exactly as many messages. With
early acks a running task has been acknowledged and no longer counts, so each worker holds its
running tasks plus a full window; with late acks the running ones fill the window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from worker_process import wait_until

from servers import RedisServer

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
TASKS = 8
CONCURRENCY = 2
MULTIPLIER = 1


@pytest.fixture
def celery_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker on queue ``theirs``: threads x2, prefetch multiplier 1."""
    env = {**os.environ, "CELERY_BROKER_URL": redis_server.url}
    command = [
        str(Path(sys.executable).parent / "celery"), "-A", "celery_peer_tasks", "worker", "-P", "threads",
        "-c", str(CONCURRENCY), "--prefetch-multiplier", str(MULTIPLIER), "-Q", "theirs",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info",
        "-n", f"window-{os.getpid()}@test",
    ]  # fmt: skip
    with (tmp_path / "celery.log").open("wb") as log:
        proc = subprocess.Popen(command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.parametrize(("task", "taken"), [("tests.hold", 4), ("tests.hold_late", 2)])
def test_our_worker_takes_as_many_messages_as_celery_with_the_same_window(
    celery_client: Celery, start_worker: Any, rclient: Any, task: str, taken: int
) -> None:
    ours = start_worker(queues=["ours"], pool="threads", concurrency=CONCURRENCY, prefetch_multiplier=MULTIPLIER)
    for runtime in ("ours", "theirs"):
        for i in range(TASKS):
            celery_client.send_task(task, (f"{runtime}-{i}",), queue=runtime)

    def started(runtime: str) -> int:
        return sum(1 for tag in rclient.lrange("started", 0, -1) if tag.decode().startswith(runtime))

    # Nothing finishes until released, so what each worker has taken can only grow.
    wait_until(lambda: started("ours") == CONCURRENCY and rclient.llen("ours") == TASKS - taken,
               f"our worker to run {CONCURRENCY} tasks and take {taken} messages", worker=ours)
    wait_until(lambda: started("theirs") == CONCURRENCY and rclient.llen("theirs") == TASKS - taken,
               f"Celery to run {CONCURRENCY} tasks and take {taken} messages")
    unacked = taken - (0 if task == "tests.hold_late" else CONCURRENCY)
    assert rclient.hlen("unacked") == 2 * unacked  # both workers: the same messages unacknowledged
    assert rclient.llen("ours") == rclient.llen("theirs") == TASKS - taken

    for runtime in ("ours", "theirs"):
        for i in range(TASKS):
            rclient.rpush(f"release:{runtime}-{i}", "go")
    wait_until(lambda: rclient.llen("executions") == 2 * TASKS, "every task to run once", worker=ours)
    assert ours.stop() == 0

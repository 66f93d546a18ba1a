"""Our worker over a real RabbitMQ, called by a real Celery client (results in Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import pools as kombu_pools
from worker_process import WorkerProcess, stop_workers, wait_until

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30


@pytest.fixture
def queue() -> str:
    return f"amqp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def celery_client(rabbitmq_server: Any, redis_server: Any) -> Iterator[Celery]:
    client = Celery("client", broker=rabbitmq_server.url, backend=redis_server.url)
    yield client
    kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
    client.close()


@pytest.fixture
def start_worker(
    rabbitmq_server: Any, redis_server: Any, tmp_path: Path, queue: str
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**options: Any) -> WorkerProcess:
        worker = WorkerProcess(redis_server.url, tmp_path / f"worker{len(started)}.log",
                               broker_url=rabbitmq_server.url, queues=[queue], **options)
        started.append(worker)
        return worker

    yield start
    stop_workers(started)


def test_celery_client_runs_tasks_on_our_worker_over_amqp(
    celery_client: Celery, start_worker: Any, queue: str
) -> None:
    start_worker()
    results = [celery_client.send_task("tests.add", (i, 1), queue=queue) for i in range(4)]
    failed = celery_client.send_task("tests.fail", ("amqp boom",), queue=queue)
    assert [r.get(timeout=RESULT_TIMEOUT_S) for r in results] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="amqp boom"):
        failed.get(timeout=RESULT_TIMEOUT_S)


def test_killed_worker_with_late_acks_task_is_requeued_and_completes_once(
    celery_client: Celery, start_worker: Any, rclient: Any, queue: str
) -> None:
    first = start_worker(concurrency=1)
    result = celery_client.send_task("tests.hold_late", ("amqp-once",), queue=queue)
    wait_until(lambda: rclient.llen("started") == 1, "the task to start on the first worker", worker=first)
    first.kill_group()
    second = start_worker(concurrency=1)
    wait_until(lambda: rclient.llen("started") == 2, "the task to restart on the second worker", worker=second)
    rclient.rpush("release:amqp-once", "go")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "amqp-once"
    assert [v.decode() for v in rclient.lrange("executions", 0, -1)] == ["amqp-once"]

"""Fixtures shared by the integration tests (the servers themselves come from tests/conftest.py).

``rclient``: a Redis client on the test's ``redis_server``.
``broker_for``: opens our Redis brokers (with transport options) on ``redis_server``; closes them after.
``celery_client``: a real Celery 5.7 client with broker and backend on ``redis_server``.
``start_worker``: starts our worker in a subprocess against ``redis_server``; stops them all after.
``module_redis_server``: one ``redis-server`` for a whole module, for tests sharing a long-lived worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import pools as kombu_pools
from worker_process import WorkerProcess, stop_workers

from celeriac.brokers import connect
from celeriac.brokers.redis import RedisBroker
from servers import RedisServer, start_redis


@pytest.fixture
def rclient(redis_server: Any) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def broker_for(redis_server: Any) -> Iterator[Callable[..., RedisBroker]]:
    opened: list[RedisBroker] = []

    def open_broker(**options: Any) -> RedisBroker:
        broker = connect(redis_server.url, options)
        assert isinstance(broker, RedisBroker)
        opened.append(broker)
        return broker

    yield open_broker
    for broker in opened:
        broker.close()


@pytest.fixture
def celery_client(redis_server: Any) -> Iterator[Celery]:
    client = Celery("client", broker=redis_server.url, backend=redis_server.url)
    yield client
    kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
    client.close()


@pytest.fixture
def start_worker(redis_server: Any, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**options: Any) -> WorkerProcess:
        env = options.pop("env", None)
        worker = WorkerProcess(redis_server.url, tmp_path / f"worker{len(started)}.log", env=env, **options)
        started.append(worker)
        return worker

    yield start
    stop_workers(started)


@pytest.fixture(scope="module")
def module_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()

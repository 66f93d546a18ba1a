"""``mingle``: a starting worker learns the task ids other workers hold as revoked (Celery's
startup sync), from our workers and from a real Celery 5.7 worker, so it drops them too."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from cli_support import CELERY
from kombu import pools as kombu_pools
from worker_process import wait_until

from celeriac import Celeriac
from celeriac.worker import Worker, WorkerOptions
from servers import RedisServer, stop_process

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("mingle", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def start_worker(app: Celeriac) -> Iterator[Callable[..., Worker]]:
    running: list[tuple[Worker, threading.Thread]] = []

    def start(hostname: str, mingle: bool) -> Worker:
        worker = Worker(app, WorkerOptions(pool="threads", concurrency=1, health_port=None, hostname=hostname,
                                           mingle=mingle, mingle_timeout_s=1.0))  # fmt: skip
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        wait_until(worker.state.is_ready, f"{hostname} to consume")
        return worker

    yield start
    for worker, thread in running:
        worker.request_shutdown()
        thread.join(timeout=DEADLINE_S)
        assert not thread.is_alive()


def test_mingling_worker_learns_revoked_ids_from_our_running_worker(start_worker: Callable[..., Worker]) -> None:
    first = start_worker("first@mingle", mingle=False)
    first.state.revoke(["revoked-1", "revoked-2"])
    second = start_worker("second@mingle", mingle=True)
    assert sorted(second.state.revoked_ids()) == ["revoked-1", "revoked-2"]
    loner = start_worker("third@mingle", mingle=False)
    assert loner.state.revoked_ids() == []


def test_mingling_worker_learns_revoked_ids_from_a_celery_worker(
    redis_server: RedisServer, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    (tmp_path / "capp.py").write_text(f"from celery import Celery\napp = Celery('capp', broker={redis_server.url!r})\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "celery.log"
    with log.open("wb") as out:
        celery_worker = subprocess.Popen(
            [CELERY, "-A", "capp", "worker", "-P", "solo", "-n", "celery@mingle", "--without-mingle",
             "--without-gossip", "--without-heartbeat", "-l", "info"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    peer = Celery("peer", broker=redis_server.url)
    try:
        wait_until(lambda: bool(peer.control.inspect(timeout=0.5, destination=["celery@mingle"]).ping()),
                   "the Celery worker to answer")  # fmt: skip
        peer.control.revoke("revoked-by-celery", destination=["celery@mingle"], reply=True, timeout=5)
        ours = start_worker("ours@mingle", mingle=True)
        assert ours.state.revoked_ids() == ["revoked-by-celery"]
    finally:
        kombu_pools.reset()  # Celery.close() leaves its pooled broker sockets open
        peer.close()
        stop_process(celery_worker)

"""Our client and result reader against a real Celery 5.7 worker, and Celery's reader against our backend."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from cli_support import start_golden_celery_worker

from celeriac import Celeriac, TaskError, states
from celeriac.exceptions import TaskRevokedError
from servers import RedisServer, stop_process, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url(module_redis_server: RedisServer) -> str:
    """One redis-server for the module, so one Celery worker serves every test here."""
    return module_redis_server.url


@pytest.fixture(scope="module")
def celery_worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A golden.celery_tasks worker -P solo``: a real Celery worker on the module's Redis."""
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    worker = start_golden_celery_worker(log, {"GOLDEN_REDIS_URL": redis_url})
    try:
        wait_until(lambda: b"ready." in log.read_bytes(), 60, f"celery worker to be ready (log: {log})")
        yield worker
    finally:
        stop_process(worker)


@pytest.fixture
def app(redis_url: str) -> Iterator[Celeriac]:
    app = Celeriac("client", broker=redis_url, backend=redis_url)
    yield app
    app.close()


def test_celery_worker_runs_our_call_and_our_result_reads_the_value(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.add", (2, 3))
    assert result.get(timeout=30) == 5
    assert (result.state, result.successful(), result.ready()) == (states.SUCCESS, True, True)
    assert result.date_done is not None


def test_failure_reraises_the_original_builtin_type_with_its_args(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.fail", ("boom",))
    with pytest.raises(ValueError, match="boom") as raised:
        result.get(timeout=30)
    assert raised.value.args == ("boom", 42)
    assert result.failed()
    assert result.traceback is not None
    assert "ValueError" in result.traceback


def test_failure_of_a_type_not_importable_here_raises_task_error_naming_it(app: Celeriac, celery_worker: Any) -> None:
    assert "golden.celery_tasks" not in sys.modules
    result = app.send_task("golden.fail_custom")
    with pytest.raises(TaskError) as raised:
        result.get(timeout=30)
    assert (raised.value.exc_type, raised.value.exc_module, raised.value.exc_args) == (
        "WorkerOnlyError",
        "golden.celery_tasks",
        ("nope", 3),
    )
    assert "golden.celery_tasks.WorkerOnlyError" in str(raised.value)
    assert isinstance(result.get(timeout=1, propagate=False), TaskError)


def test_task_retried_by_celery_ends_in_success_with_its_retry_count(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.retry_fast", (7,))
    assert result.get(timeout=30) == 14


def test_link_callback_runs_on_celery_worker_and_is_listed_in_children(app: Celeriac, celery_worker: Any) -> None:
    @app.task(name="golden.add")
    def add(x: int, y: int) -> int:
        return x + y

    result = add.apply_async((2, 3), link=add.s(10))
    assert result.get(timeout=30) == 5
    (child,) = result.children
    assert child.get(timeout=30) == 15
    assert app.backend.get_meta(child.id)["parent_id"] == result.id


def test_celery_reads_results_our_backend_wrote(app: Celeriac, redis_url: str) -> None:
    celery_app = Celery("reader", broker=redis_url, backend=redis_url)
    app.backend.store_result("ours-success", {"sum": [1, 2]}, states.SUCCESS)
    app.backend.store_result("ours-failure", ValueError("bad", 7), states.FAILURE, traceback="Traceback ...")
    app.backend.store_result("ours-progress", {"done": 3, "total": 10}, "PROGRESS")
    assert celery_app.AsyncResult("ours-success").get(timeout=5) == {"sum": [1, 2]}
    with pytest.raises(ValueError, match="bad") as raised:
        celery_app.AsyncResult("ours-failure").get(timeout=5)
    assert raised.value.args == ("bad", 7)
    progress = celery_app.AsyncResult("ours-progress")
    assert (progress.state, progress.info) == ("PROGRESS", {"done": 3, "total": 10})
    del progress, raised  # Celery's results unsubscribe in __del__: let them do it while Redis is up
    gc.collect()
    celery_app.close()


def test_celery_worker_obeys_our_revoke_broadcast(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.add", (1, 1), countdown=3600)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == states.REVOKED


def test_celery_worker_honours_our_countdown(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.add", (20, 22), countdown=0.5)
    assert result.get(timeout=30) == 42


def test_celery_worker_revokes_our_already_expired_call(app: Celeriac, celery_worker: Any) -> None:
    result = app.send_task("golden.add", (1, 1), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=30)
    assert result.state == states.REVOKED

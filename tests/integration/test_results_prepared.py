"""A plain SUCCESS (nothing to publish or join) leaves a pool prepared: its result document is
encoded where the task ran and the process batching writes only queues the bytes. It is stored
exactly as the full ``apply_outcome`` path stores it; anything else takes the full path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celeriac
from celeriac.protocol import build_task_message, decode_task_message
from celeriac.serialization import accept_set
from celeriac.worker.jobs import Job, apply_result, execute_job
from celeriac.worker.writer import BrokerWriter, Writes
from servers import RedisServer

pytestmark = pytest.mark.integration

DELIVERY = {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False}
ACCEPT = accept_set(["json"])


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("prepared", broker=redis_server.url, backend=redis_server.url, set_as_current=False)

    @app.task(name="prepared.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="prepared.fail")
    def fail() -> None:
        raise ValueError("boom")

    @app.task(name="prepared.quiet", ignore_result=True)
    def quiet() -> int:
        return 1

    yield app
    app.close()


def job(task_id: str, name: str, args: tuple[Any, ...] = (), **options: Any) -> Job:
    request = decode_task_message(build_task_message(task_id, name, args, **options), ACCEPT)
    return Job(request, DELIVERY, "worker@test")


def stored(client: Any, task_id: str) -> dict[str, Any]:
    meta = json.loads(client.get(f"celery-task-meta-{task_id}"))
    meta.pop("date_done")
    return dict(meta)


def test_a_plain_success_is_prepared_and_stored_as_the_full_path_stores_it(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    prepared = execute_job(app, job("p1", "prepared.add", (2, 3)), defer_apply=True)
    assert prepared.outcome is None
    assert prepared.prepared is not None
    with client.pipeline(transaction=False) as pipe:
        apply_result(app, job("p1", "prepared.add", (2, 3)), prepared, pipe)
        pipe.execute()
    execute_job(app, job("p2", "prepared.add", (2, 3)))  # applied in full, not deferred
    assert stored(client, "p1") == {**stored(client, "p2"), "task_id": "p1"}
    assert stored(client, "p1")["result"] == 5


@pytest.mark.parametrize(
    ("task_id", "name", "options"),
    [
        ("f1", "prepared.fail", {}),
        ("q1", "prepared.quiet", {}),
        ("c1", "prepared.add", {"callbacks": [{"task": "prepared.add", "args": [1], "kwargs": {}, "options": {},
                                               "subtask_type": None, "immutable": False}]}),
    ],
    ids=["failure", "ignored-result", "with-callback"],
)
def test_anything_but_a_plain_stored_success_takes_the_full_path(
    app: Celeriac, task_id: str, name: str, options: dict[str, Any]
) -> None:
    args = (1, 2) if name == "prepared.add" else ()
    result = execute_job(app, job(task_id, name, args, **options), defer_apply=True)
    assert result.prepared is None
    assert result.outcome is not None


def test_the_writer_stores_consecutive_prepared_results_with_one_script_call_each_guarded(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    app.backend.store_result("p2", 99, "SUCCESS")  # already SUCCESS: the batch must not overwrite it
    jobs = [job(f"p{n}", "prepared.add", (n, n)) for n in range(1, 5)]
    failing = job("f1", "prepared.fail")
    batch = [(j, execute_job(app, j, defer_apply=True)) for j in [*jobs[:2], failing, *jobs[2:]]]
    client.config_resetstat()
    writer = BrokerWriter(app.broker, app)
    writer.start()
    try:
        writer.submit(Writes(results=batch))
    finally:
        writer.stop()
    # p1, p2 | f1 (full path) | p3, p4: two store calls for the four prepared results, one for f1.
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == 3
    assert [stored(client, f"p{n}")["result"] for n in range(1, 5)] == [2, 99, 6, 8]
    assert stored(client, "f1")["status"] == "FAILURE"

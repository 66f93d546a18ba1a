"""``run_task`` + ``apply_outcome`` against real Redis: what Celery's worker publishes and stores."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac, Task, states
from celeriac.protocol import build_task_message, decode_task_message
from celeriac.serialization import accept_set
from celeriac.trace import apply_outcome, run_task
from golden.cases import NORMALISED, normalise_envelope
from servers import RedisServer

pytestmark = pytest.mark.integration

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "golden" / "celery-5.7-messages.json").read_text())
DELIVERY = {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False}
ACCEPT = accept_set(["json"])


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("golden", broker=redis_server.url, backend=redis_server.url, set_as_current=False)

    @app.task(name="golden.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="golden.fail")
    def fail(message: str) -> None:
        raise ValueError(message, 42)

    @app.task(name="golden.retry_once", bind=True)
    def retry_once(self: Task, value: int) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=3600, exc=KeyError("again"))
        return value

    yield app
    app.close()


def execute(app: Celeriac, task_id: str, name: str, args: tuple[Any, ...], **options: Any) -> None:
    request = decode_task_message(build_task_message(task_id, name, args, **options), ACCEPT)
    task = app.tasks[name]
    outcome = run_task(app, task, request, DELIVERY, "worker@test")
    apply_outcome(app, task, request, outcome, delivery_info=DELIVERY, hostname="worker@test")


def queued(client: Any, key: str = "celery") -> list[dict[str, Any]]:
    messages = []
    for raw in reversed(client.lrange(key, 0, -1)):  # LPUSHed: oldest last
        envelope = json.loads(raw)
        envelope["body"] = base64.b64decode(envelope["body"]).decode()
        messages.append(envelope)
    return messages


def stored(client: Any, task_id: str) -> dict[str, Any]:
    meta = json.loads(client.get(f"celery-task-meta-{task_id}"))
    meta["date_done"] = NORMALISED if meta["date_done"] is not None else None
    meta["traceback"] = NORMALISED if meta["traceback"] is not None else None
    return meta


def test_retry_republishes_and_stores_exactly_what_celerys_worker_does(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    task_id = GOLDEN["worker"]["result_retry"]["task_id"]
    execute(app, task_id, "golden.retry_once", (7,))
    assert json.dumps(stored(client, task_id)) == json.dumps(GOLDEN["worker"]["result_retry"])
    (raw,) = client.lrange("celery", 0, -1)
    envelope = json.loads(raw)
    body = base64.b64decode(envelope.pop("body")).decode()
    golden = GOLDEN["worker"]["worker_retry"]
    assert json.dumps(normalise_envelope(envelope)) == json.dumps(golden["envelope"])
    assert body == golden["body"]


def test_failure_stores_celerys_document(app: Celeriac, redis_server: RedisServer) -> None:
    task_id = GOLDEN["worker"]["result_failure"]["task_id"]
    execute(app, task_id, "golden.fail", ("boom",))
    assert json.dumps(stored(redis_server.client(), task_id)) == json.dumps(GOLDEN["worker"]["result_failure"])


def test_success_publishes_link_callback_with_result_prepended_before_storing(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    execute(app, "parent-1", "golden.add", (2, 3), callbacks=[dict(app.tasks["golden.add"].s(10))], root_id="root-1")
    (callback,) = queued(client)
    assert callback["body"].startswith("[[5, 10], {}, ")
    assert (callback["headers"]["parent_id"], callback["headers"]["root_id"]) == ("parent-1", "root-1")
    meta = stored(client, "parent-1")
    assert meta["children"] == [[[callback["headers"]["id"], None], None]]
    assert "parent_id" not in meta  # a top-level task has no parent; Celery then omits the field


def test_several_callbacks_go_out_as_one_group(app: Celeriac, redis_server: RedisServer) -> None:
    client = redis_server.client()
    link = dict(app.tasks["golden.add"].s(1))
    execute(app, "parent-2", "golden.add", (1, 1), callbacks=[link, link])
    first, second = queued(client)
    assert first["headers"]["group"] == second["headers"]["group"] is not None
    assert (first["headers"]["group_index"], second["headers"]["group_index"]) == (0, 1)
    (group_child,) = stored(client, "parent-2")["children"]
    assert group_child[0] == [first["headers"]["group"], None]
    assert len(group_child[1]) == 2


def test_chain_sends_the_last_step_next_with_the_rest_of_the_chain(app: Celeriac, redis_server: RedisServer) -> None:
    client = redis_server.client()
    add = app.tasks["golden.add"]
    second = dict(add.s(100).set(task_id="step-2"))
    third = dict(add.s(1000).set(task_id="step-3"))
    execute(app, "step-1", "golden.add", (1, 2), chain=[third, second])
    (sent,) = queued(client)
    assert sent["headers"]["id"] == "step-2"
    assert sent["body"] == json.dumps([[3, 100], {}, {"callbacks": None, "errbacks": None, "chain": [third],
                                                      "chord": None}])  # fmt: skip


def test_failure_marks_remaining_chain_steps_failed_and_publishes_errbacks(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    step = dict(app.tasks["golden.add"].s(1).set(task_id="never-runs"))
    errback = {"task": "elsewhere.on_error", "args": [], "kwargs": {}, "options": {}, "subtask_type": None,
               "immutable": False}  # fmt: skip
    execute(app, "failing", "golden.fail", ("x",), chain=[step], errbacks=[errback])
    assert stored(client, "never-runs")["status"] == states.FAILURE
    (sent,) = queued(client)
    assert (sent["headers"]["task"], sent["headers"]["parent_id"]) == ("elsewhere.on_error", "failing")
    assert sent["body"].startswith('[["failing"], {}, ')


def test_local_errback_taking_request_exc_traceback_is_called_inline(app: Celeriac, redis_server: RedisServer) -> None:
    seen: list[Any] = []

    @app.task(name="local.on_error")
    def on_error(request: Any, exc: BaseException, traceback: str) -> None:
        seen.append((request.id, type(exc).__name__, "ValueError" in traceback))

    errback = dict(on_error.s())
    execute(app, "failing-2", "golden.fail", ("x",), errbacks=[errback])
    assert seen == [("failing-2", "ValueError", True)]
    assert queued(redis_server.client()) == []


def test_ignore_result_stores_nothing(app: Celeriac, redis_server: RedisServer) -> None:
    execute(app, "quiet", "golden.add", (1, 1), ignore_result=True)
    assert redis_server.client().exists("celery-task-meta-quiet") == 0


def test_track_started_stores_started_with_pid_and_hostname(app: Celeriac, redis_server: RedisServer) -> None:
    seen: list[dict[str, Any]] = []

    @app.task(name="tracked", track_started=True)
    def tracked() -> None:
        seen.append(app.backend.get_meta("tracked-1"))

    execute(app, "tracked-1", "tracked", ())
    assert (seen[0]["status"], seen[0]["result"]) == (states.STARTED, {"pid": os.getpid(), "hostname": "worker@test"})
    assert app.backend.get_meta("tracked-1")["status"] == states.SUCCESS


def test_request_inside_the_task_carries_the_message_fields(app: Celeriac) -> None:
    seen: dict[str, Any] = {}

    @app.task(name="introspect", bind=True)
    def introspect(self: Task) -> None:
        r = self.request
        seen.update(id=r.id, retries=r.retries, root=r.root_id, parent=r.parent_id, host=r.hostname,
                    queue=r.delivery_info["routing_key"], limits=r.timelimit, trace=r.headers.get("trace"),
                    eager=r.is_eager)  # fmt: skip

    execute(app, "i-1", "introspect", (), retries=2, root_id="r", parent_id="p", time_limit=9, headers={"trace": "t"})
    assert seen == {"id": "i-1", "retries": 2, "root": "r", "parent": "p", "host": "worker@test", "queue": "celery",
                    "limits": (9, None), "trace": "t", "eager": False}  # fmt: skip


def test_bare_retry_exception_is_recorded_but_not_republished(app: Celeriac, redis_server: RedisServer) -> None:
    from celeriac import Retry

    @app.task(name="bare_retry")
    def bare_retry() -> None:
        raise Retry("handled elsewhere")

    execute(app, "bare-1", "bare_retry", ())
    assert app.backend.get_meta("bare-1")["status"] == states.RETRY
    assert queued(redis_server.client()) == []


def test_a_return_value_json_cannot_carry_fails_the_task_instead_of_losing_it(
    app: Celeriac, redis_server: RedisServer
) -> None:
    @app.task(name="returns_object")
    def returns_object() -> object:
        return object()

    execute(app, "unencodable", "returns_object", ())
    meta = app.backend.get_meta("unencodable")
    assert (meta["status"], meta["result"]["exc_type"]) == (states.FAILURE, "SerializationError")


def test_result_get_inside_a_running_task_is_refused(app: Celeriac) -> None:
    @app.task(name="blocks")
    def blocks() -> None:
        app.AsyncResult("other").get(timeout=1)

    execute(app, "blocker", "blocks", ())
    meta = app.backend.get_meta("blocker")
    assert (meta["status"], meta["result"]["exc_type"]) == (states.FAILURE, "RuntimeError")
    assert "Never call result.get() within a task" in meta["result"]["exc_message"][0]


def test_run_and_apply_in_a_forked_child_use_the_childs_own_connections(
    app: Celeriac, redis_server: RedisServer
) -> None:
    app.backend.get_meta("warm")  # the parent's connections exist before the fork
    app.broker.depth("celery")
    pid = os.fork()
    if pid == 0:  # child: run a task end to end with the inherited app, then leave at once
        code = 0
        try:
            execute(app, "forked", "golden.add", (20, 22), callbacks=[dict(app.tasks["golden.add"].s(1))])
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert app.backend.get_meta("forked")["result"] == 42
    assert len(queued(redis_server.client())) == 1
    assert app.backend.get_meta("warm")["status"] == states.PENDING  # the parent's connection still works


def test_a_failing_hook_does_not_change_the_outcome(app: Celeriac) -> None:
    class Noisy(Task):
        name = "noisy"

        def run(self) -> int:
            return 1

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            raise RuntimeError("hook bug")

    app.register_task(Noisy)
    with pytest.raises(RuntimeError, match="hook bug"):
        Noisy().on_success(1, "x", (), {})
    execute(app, "noisy-1", "noisy", ())
    assert app.backend.get_meta("noisy-1")["status"] == states.SUCCESS

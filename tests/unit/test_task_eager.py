"""The task API run eagerly (``task_always_eager`` / ``apply``): what users' unit tests rely on."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celeriac, EagerResult, MaxRetriesExceededError, Task, shared_task
from celeriac.app import current_app
from celeriac.exceptions import NotRegistered


@pytest.fixture
def app() -> Celeriac:
    return Celeriac("eager", set_as_current=False, task_always_eager=True)


def test_delay_runs_eagerly_and_returns_a_ready_result(app: Celeriac) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    assert isinstance(result, EagerResult)
    assert (result.get(), result.state, result.successful(), add.name) == (5, "SUCCESS", True, "test_task_eager.add")


def test_request_describes_the_eager_execution(app: Celeriac) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True, name="eager.inner")
    def inner(self: Task) -> None:
        seen["inner"] = (self.request.id, self.request.root_id, self.request.parent_id, self.request.is_eager)

    @app.task(bind=True, name="eager.outer")
    def outer(self: Task) -> str:
        seen["outer"] = (self.request.id, self.request.retries, self.request.called_directly)
        inner.delay()
        return str(self.request.id)

    outer_id = outer.apply_async(task_id="outer-1").get()
    assert seen["outer"] == ("outer-1", 0, False)
    inner_id, root_id, parent_id, is_eager = seen["inner"]
    assert (root_id, parent_id, is_eager) == ("outer-1", outer_id, True)
    assert inner_id != outer_id


def test_retry_reruns_eagerly_until_success(app: Celeriac) -> None:
    attempts: list[int] = []

    @app.task(bind=True, max_retries=3)
    def flaky(self: Task) -> int:
        attempts.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(countdown=10)
        return self.request.retries

    assert flaky.delay().get() == 2
    assert attempts == [0, 1, 2]


def test_retry_past_max_retries_reraises_the_cause(app: Celeriac) -> None:
    @app.task(bind=True, max_retries=1)
    def always(self: Task) -> None:
        raise self.retry(exc=KeyError("gone"), countdown=0)

    result = always.apply()
    assert result.state == "FAILURE"
    assert isinstance(result.result, KeyError)
    with pytest.raises(KeyError):
        result.get()


def test_retry_without_exc_past_the_limit_raises_max_retries_exceeded(app: Celeriac) -> None:
    @app.task(bind=True, max_retries=0)
    def once(self: Task) -> None:
        raise self.retry()

    assert isinstance(once.apply().result, MaxRetriesExceededError)


def test_autoretry_for_retries_the_listed_exceptions_then_fails(app: Celeriac) -> None:
    calls: list[int] = []

    @app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=2, retry_backoff=True, retry_jitter=False)
    def fetch(self: Task) -> None:
        calls.append(self.request.retries)
        raise ConnectionError("down")

    result = fetch.apply()
    assert calls == [0, 1, 2]
    assert isinstance(result.result, ConnectionError)


def test_failures_propagate_only_when_asked(app: Celeriac) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("x")

    assert boom.delay().state == "FAILURE"
    app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="x"):
        boom.delay()


def test_link_callback_runs_eagerly_with_the_result_prepended(app: Celeriac) -> None:
    got: list[Any] = []

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def record(value: int, tag: str) -> None:
        got.append((value, tag))

    add.apply_async((2, 3), link=record.s("done"))
    assert got == [(5, "done")]


def test_calling_with_wrong_arguments_fails_at_the_call_site(app: Celeriac) -> None:
    @app.task
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="wrong arguments"):
        one.delay(1, 2)


def test_task_options_are_set_and_unknown_ones_rejected(app: Celeriac) -> None:
    @app.task(name="opt.t", queue="q", max_retries=7, time_limit=30, soft_time_limit=20, acks_late=True,
              rate_limit="10/s", ignore_result=True)  # fmt: skip
    def t() -> None:
        return None

    assert (t.queue, t.max_retries, t.time_limit, t.soft_time_limit, t.acks_late, t.rate_limit, t.ignore_result) == (
        "q", 7, 30, 20, True, "10/s", True,
    )  # fmt: skip
    with pytest.raises(TypeError, match="unknown task option"):
        app.task(colour="red")(lambda: None)


def test_direct_call_runs_the_function_with_called_directly_request(app: Celeriac) -> None:
    @app.task(bind=True)
    def who(self: Task) -> bool:
        return self.request.called_directly

    assert who() is True


def test_missing_task_raises_not_registered(app: Celeriac) -> None:
    with pytest.raises(NotRegistered, match="'nope' is not registered"):
        app.tasks["nope"]
    assert app.tasks.get("nope") is None


def test_shared_task_is_registered_in_every_app() -> None:
    @shared_task(name="shared.double")
    def double(x: int) -> int:
        return x * 2

    later = Celeriac("later", set_as_current=False, task_always_eager=True)
    assert later.tasks["shared.double"].delay(4).get() == 8
    assert current_app().tasks["shared.double"] is not None


def test_class_based_task_with_hooks_runs(app: Celeriac) -> None:
    events: list[str] = []

    class Hooked(Task):
        name = "eager.hooked"

        def run(self, x: int) -> int:
            return x + 1

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            events.append(f"success:{retval}")

    task = app.register_task(Hooked)
    assert task.delay(1).get() == 2
    assert events == ["success:2"]

"""Result handles: ``AsyncResult`` reads what a worker stored, ``EagerResult`` wraps a local run.

A failed task's stored exception is rebuilt as its original type when that type is
already imported here, otherwise as :class:`~celeriac.exceptions.TaskError` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.serialization import dict_to_exception

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.backend import RedisBackend


class _AppBound:
    """A result object bound to an app, or to the current app when none was given."""

    _app: Celeriac | None

    @property
    def app(self) -> Celeriac:
        if self._app is None:
            from celeriac.app import current_app  # lazily: app imports this module

            self._app = current_app()
        return self._app


class AsyncResult(_AppBound):
    """The result of a task published to a broker, read from the result backend."""

    def __init__(
        self,
        id: str,
        backend: RedisBackend | None = None,
        task_name: str | None = None,
        app: Celeriac | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        self.id = id
        self._app = app
        self._backend = backend
        self.task_name = task_name
        self.parent: AsyncResult | GroupResult | None = parent
        self._cache: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def backend(self) -> RedisBackend:
        return self._backend if self._backend is not None else self.app.backend

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def as_tuple(self) -> list[Any]:
        """How Celery stores a result in ``children``: ``[[id, parent|null], null]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], None]

    # Meta
    def _get_meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id)
        if meta["status"] in states.READY_STATES:
            self._cache = meta
        return meta

    def _set_cache(self, meta: dict[str, Any]) -> None:
        if meta["status"] in states.READY_STATES:
            self._cache = meta

    @property
    def state(self) -> str:
        return str(self._get_meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception for FAILURE/RETRY/REVOKED (the meta dict for custom states)."""
        return _decode_result(self._get_meta())

    info = result

    @property
    def traceback(self) -> str | None:
        tb = self._get_meta().get("traceback")
        return None if tb is None else str(tb)

    @property
    def date_done(self) -> str | None:
        return self._get_meta().get("date_done")

    @property
    def children(self) -> list[Any]:
        return [_result_from_tuple(item, self._app) for item in self._get_meta().get("children") or ()]

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        """Wait for the task (pub/sub wake-up) and return its value; re-raise its error if ``propagate``.

        ``interval`` is accepted for Celery compatibility and ignored: nothing polls.
        Raises :class:`celeriac.exceptions.TimeoutError` after ``timeout`` seconds.
        """
        if disable_sync_subtasks and self._cache is None:
            _refuse_inside_a_task()
        meta = self._cache or self.backend.wait_for(self.id, timeout)
        self._set_cache(meta)
        value = _decode_result(meta)
        if propagate and meta["status"] in states.PROPAGATE_STATES and isinstance(value, BaseException):
            raise value
        return value

    wait = get

    def forget(self) -> None:
        """Delete the stored result."""
        self._cache = None
        self.backend.forget(self.id)

    def revoke(self, connection: Any = None, terminate: bool = False, signal: str | None = None) -> None:
        """Ask every worker to skip (or with ``terminate``, kill) this task."""
        revoke(self.app, self.id, terminate=terminate, signal=signal)


class EagerResult(AsyncResult):
    """The outcome of a local run (``apply`` or ``task_always_eager``); nothing is read remotely."""

    def __init__(
        self, id: str, value: Any, state: str, traceback: str | None = None, task_name: str | None = None
    ) -> None:
        super().__init__(id, task_name=task_name)
        self._value = value
        self._state = state
        self._traceback = traceback
        self._cache = {
            "status": state,
            "result": value,
            "traceback": traceback,
            "children": [],
            "task_id": id,
        }

    @property
    def state(self) -> str:
        return self._state

    status = state

    @property
    def result(self) -> Any:
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        if propagate and self._state in states.PROPAGATE_STATES and isinstance(self._value, BaseException):
            raise self._value
        return self._value

    def forget(self) -> None:
        """Nothing is stored for an eager run."""

    def revoke(self, connection: Any = None, terminate: bool = False, signal: str | None = None) -> None:
        self._state = states.REVOKED


class GroupResult(_AppBound):
    """The results of a group of tasks, in order; ``save``/``restore`` use Celery's taskset key."""

    def __init__(
        self,
        id: str,
        results: Sequence[AsyncResult],
        app: Celeriac | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        self.id = id
        self.results = list(results)
        self._app = app
        self.parent = parent

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id_list(self) -> list[str]:
        return [result.id for result in self.results]

    def waiting(self) -> bool:
        """True while any member is not ready yet."""
        return not self.ready()

    def as_tuple(self) -> list[Any]:
        """Celery's form: ``[[group_id, parent|null], [member tuples...]]``."""
        parent = self.parent.as_tuple() if self.parent is not None else None
        return [[self.id, parent], [result.as_tuple() for result in self.results]]

    def ready(self) -> bool:
        return all(result.ready() for result in self.results)

    def successful(self) -> bool:
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        return any(result.failed() for result in self.results)

    def completed_count(self) -> int:
        return sum(1 for result in self.results if result.successful())

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Every member's value, in order; ``timeout`` bounds the whole wait, in seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            values.append(result.get(timeout=remaining, propagate=propagate))
        return values

    join = get

    def forget(self) -> None:
        for result in self.results:
            result.forget()
        self.delete()

    def revoke(self, terminate: bool = False, signal: str | None = None) -> None:
        revoke(self.app, [result.id for result in self.results], terminate=terminate, signal=signal)

    def save(self) -> GroupResult:
        """Store the group under ``celery-taskset-meta-<id>`` so any process can ``restore`` it."""
        self.app.backend.save_group(self.id, self.as_tuple())
        return self

    def delete(self) -> None:
        self.app.backend.delete_group(self.id)

    @classmethod
    def restore(cls, group_id: str, app: Celeriac | None = None) -> GroupResult | None:
        """The group saved under ``group_id`` (by us or by Celery), or None."""
        if app is None:
            from celeriac.app import current_app  # lazily: app imports this module

            app = current_app()
        saved = app.backend.get_group(group_id)
        if saved is None:
            return None
        restored = _result_from_tuple(saved, app)
        results = restored if isinstance(restored, list) else [restored]
        return cls(group_id, results, app=app)


def _refuse_inside_a_task() -> None:
    """Celery's guard: a task blocking on another task's result can deadlock the pool."""
    from celeriac.task import current_task  # lazily: task imports this module

    running = current_task()
    if running is not None and not running[1].is_eager:
        raise RuntimeError(
            "Never call result.get() within a task: it can deadlock the worker. Use a callback (link) "
            "or pass disable_sync_subtasks=False if you know the result is produced elsewhere."
        )


def _decode_result(meta: dict[str, Any]) -> Any:
    value = meta.get("result")
    if meta.get("status") in states.EXCEPTION_STATES and value is not None:
        return dict_to_exception(value)
    return value


def _result_from_tuple(item: Any, app: Celeriac | None) -> Any:
    """``[[id, parent], null]`` -> AsyncResult; a group ``[[gid, parent], [...]]`` -> list of results."""
    if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (list, tuple)):
        (task_id, _parent), members = item
        if members:
            return [_result_from_tuple(member, app) for member in members]
        return AsyncResult(str(task_id), app=app)
    return AsyncResult(str(item), app=app)


# Remote control: the pidbox ``revoke`` broadcast (wire-protocol §4.1).
def revoke(app: Celeriac, task_id: str | Sequence[str], terminate: bool = False, signal: str | None = None) -> None:
    """Broadcast ``revoke`` to every worker, as ``celery control revoke`` does (Redis or AMQP broker)."""
    from celeriac.worker.control import broadcast  # lazily: the control client is the worker package's

    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    arguments = {"task_id": ids[0] if len(ids) == 1 else ids, "terminate": terminate, "signal": signal}
    broadcast(app, "revoke", arguments, reply=False)

"""Tasks: the decorated function, its options, and how it is called.

``delay``/``apply_async`` publish a protocol v2 message (or run eagerly when
``task_always_eager`` is set); ``apply`` runs locally. Inside a task ``self.request``
describes the message being executed and ``self.retry`` raises :class:`Retry`, which the
worker turns into a republish of the same id (see :mod:`celeriac.trace`).
"""

from __future__ import annotations

import inspect
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.exceptions import Ignore, MaxRetriesExceededError, Retry
from celeriac.protocol import STANDARD_HEADERS
from celeriac.result import AsyncResult, EagerResult
from celeriac.signature import Signature

if TYPE_CHECKING:
    from celeriac.app import Celeriac


class Context:
    """``task.request``: what the current execution knows about its message.

    ``called_directly`` is true when the task function was called as a plain function.
    """

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: datetime | None = None
    expires: datetime | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    delivery_info: dict[str, Any] = {}  # noqa: RUF012
    hostname: str | None = None
    headers: dict[str, Any] = {}  # noqa: RUF012
    reply_to: str | None = None
    correlation_id: str | None = None
    origin: str | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    ignore_result: bool | None = False
    is_eager: bool = False
    called_directly: bool = True
    stamps: dict[str, Any] = {}  # noqa: RUF012
    stamped_headers: list[str] | None = None

    def __init__(self, **fields: Any) -> None:
        self.children: list[Any] = []
        for name, value in fields.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"<Context {self.task}[{self.id}] retries={self.retries}>"

    @classmethod
    def from_request(cls, request: Any, delivery_info: Mapping[str, Any], hostname: str | None) -> Context:
        """A context for executing a decoded :class:`~celeriac.protocol.TaskRequest`."""
        context = cls()
        # Custom headers are also attributes (Celery does this); they never shadow a known field.
        headers = request.headers
        for name in headers.keys() - STANDARD_HEADERS:
            setattr(context, name, headers[name])
        # Straight into the instance dict: one setattr per field cost 2 µs per task run.
        context.__dict__.update(
            id=request.id,
            task=request.task,
            args=request.args,
            kwargs=request.kwargs,
            retries=request.retries,
            root_id=request.root_id,
            parent_id=request.parent_id,
            group=request.group,
            group_index=request.group_index,
            eta=request.eta,
            expires=request.expires,
            timelimit=request.timelimit,
            delivery_info=dict(delivery_info),
            hostname=hostname,
            headers=dict(headers),
            reply_to=request.reply_to,
            correlation_id=request.correlation_id,
            origin=request.origin,
            callbacks=request.callbacks,
            errbacks=request.errbacks,
            chain=request.chain,
            chord=request.chord,
            ignore_result=request.ignore_result,
            stamps=request.stamps,
            stamped_headers=request.stamped_headers,
            called_directly=False,
        )
        return context


_local = threading.local()


def _stack() -> list[tuple[Task, Context]]:
    stack: list[tuple[Task, Context]] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def push_request(task: Task, context: Context) -> None:
    _stack().append((task, context))


def pop_request() -> None:
    _stack().pop()


def current_task() -> tuple[Task, Context] | None:
    """The task executing in this thread (worker or eager), not plain function calls."""
    for task, context in reversed(_stack()):
        if not context.called_directly:
            return task, context
    return None


def backoff_interval(
    factor: float,
    retries: int,
    maximum_s: float,
    full_jitter: bool = False,
    rng: Callable[[int], int] | None = None,
) -> int:
    """Celery's retry backoff: ``min(maximum, factor * 2**retries)`` s, full jitter optional.

    With jitter the delay is uniform in ``[0, countdown]`` (``rng(n)`` returns 0..n-1).
    """
    countdown = int(min(maximum_s, factor * (2**retries)))
    if full_jitter:
        countdown = (rng or random.randrange)(countdown + 1)
    return max(0, countdown)


class Task:
    """A registered task. Class attributes are the defaults; ``app.task(...)`` overrides them."""

    name: str = ""
    app: Celeriac
    bind: bool = False
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}  # noqa: RUF012 - copied per task by the decorator
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | float | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    acks_late: bool | None = None
    reject_on_worker_lost: bool | None = None
    track_started: bool | None = None
    serializer: str | None = None
    queue: str | None = None
    priority: int | None = None
    expires: float | datetime | None = None
    throws: tuple[type[BaseException], ...] = ()

    _fun: Callable[..., Any] | None = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body: the decorated function (given ``self`` first when ``bind``)."""
        if self._fun is None:
            raise NotImplementedError(f"task {self.name} has no body: override run() or decorate a function")
        if self.bind:
            return self._fun(self, *args, **kwargs)
        return self._fun(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_task() is None or _stack()[-1][0] is not self:
            push_request(self, Context(args=args, kwargs=kwargs, called_directly=True))
            try:
                return self._run_with_autoretry(args, kwargs)
            finally:
                pop_request()
        return self._run_with_autoretry(args, kwargs)

    def _run_with_autoretry(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self.autoretry_for:
            return self.run(*args, **kwargs)
        try:
            return self.run(*args, **kwargs)
        except (Ignore, Retry):
            raise
        except self.dont_autoretry_for:
            raise
        except self.autoretry_for as exc:
            options = dict(self.retry_kwargs)
            if self.retry_backoff:
                options["countdown"] = backoff_interval(
                    max(1.0, float(self.retry_backoff)),
                    self.request.retries,
                    self.retry_backoff_max,
                    self.retry_jitter,
                )
            raise self.retry(exc=exc, **options) from exc

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def request(self) -> Context:
        """The context of the current execution of this task in this thread."""
        for task, context in reversed(_stack()):
            if task is self:
                return context
        return Context()

    # Options resolved against the app's settings
    def option(self, name: str, setting: str) -> Any:
        value = getattr(self, name)
        return self.app.conf[setting] if value is None else value

    # Calling
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        link: Any = None,
        link_error: Any = None,
        **options: Any,
    ) -> AsyncResult:
        """Publish a call; options are Celery's (countdown, eta, expires, queue, priority, headers...)."""
        if self.typing:
            self._check_arguments(args or (), kwargs or {})
        if self.app.conf.task_always_eager:
            task_id = task_id or str(uuid.uuid4())
            return self.apply(args, kwargs, task_id=task_id, link=link, link_error=link_error, **options)
        for name in ("queue", "priority", "time_limit", "soft_time_limit", "expires", "serializer"):
            value = getattr(self, name)
            if value is not None:
                options.setdefault(name, value)
        options.setdefault("ignore_result", bool(self.option("ignore_result", "task_ignore_result")))
        return self.app.send_task(self.name, args, kwargs, task_id=task_id, link=link, link_error=link_error, **options)

    _signature: inspect.Signature | None = None

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        sig = self._signature
        if sig is None:  # computed once per task: inspect.signature costs more than building the message
            try:
                sig = inspect.signature(self._fun if self._fun is not None else self.run)
            except (TypeError, ValueError):
                self.typing = False
                return
            self._signature = sig
        try:
            if self.bind and self._fun is not None:
                sig.bind(self, *args, **kwargs)
            else:
                sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() called with wrong arguments: {exc}") from exc

    def apply(  # noqa: PLR0917 - Celery's positional signature
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        link: Any = None,
        link_error: Any = None,
        retries: int = 0,
        throw: bool | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here and now (Celery's ``apply``); retries re-run it eagerly."""
        from celeriac.trace import apply_eager  # lazily: trace imports this module

        return apply_eager(
            self,
            tuple(args or ()),
            dict(kwargs or {}),
            task_id or str(uuid.uuid4()),
            link=link,
            link_error=link_error,
            retries=retries,
            throw=throw,
            headers=options.get("headers"),
        )

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self, args, kwargs, immutable=True, app=self.app)

    def signature(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature:
        return Signature(self, args, kwargs, options, app=self.app)

    subtask = signature

    def map(self, it: Any) -> Signature:
        """``celery.map``: one message applying this task to every item."""
        from celeriac.canvas_maps import xmap  # lazily: canvas builds on signatures

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Any) -> Signature:
        """``celery.starmap``: one message applying this task to every args tuple."""
        from celeriac.canvas_maps import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Any, n: int) -> Signature:
        """A group of ``celery.starmap`` messages of at most ``n`` calls each."""
        from celeriac.canvas_maps import chunks

        return chunks(self.s(), it, n, app=self.app)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, app=self.app, task_name=self.name)

    # Inside a task
    def retry(  # noqa: PLR0917 - Celery's positional signature
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Ask for this task to run again later: raises :class:`Retry` (returns it if not ``throw``).

        Past ``max_retries`` it re-raises ``exc`` (or :class:`MaxRetriesExceededError`).
        """
        request = self.request
        if request.called_directly:
            raise exc or Retry("Task can be retried", None)
        retries = request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        if limit is not None and retries > limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}"
            )
        spec = {
            "args": tuple(request.args if args is None else args),
            "kwargs": dict(request.kwargs if kwargs is None else kwargs),
            "countdown": countdown,
            "eta": eta,
            "retries": retries,
            "options": options,
        }
        ret = Retry(exc=exc, when=eta or countdown, is_eager=request.is_eager, sig=spec)
        if throw:
            raise ret
        return ret

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Store a (custom) state for this or another task, e.g. progress for a UI."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise ValueError("update_state needs a task_id outside of a running task")
        self.app.backend.store_result(task_id, meta, state or states.PENDING, request=self.request)

    # Hooks a custom base class may override (called by the worker)
    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called before the task body runs."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called after a successful run."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called after the task raised."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called when the task asked to be retried."""

    def after_return(  # noqa: PLR0917 - Celery's hook signature
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called after every run, whatever its outcome."""

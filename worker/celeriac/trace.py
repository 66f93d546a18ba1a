"""Execute a task and act on its outcome the way Celery's worker does (wire-protocol §1.4).

``run_task`` runs the body with ``self.request`` set and turns whatever happens into an
:class:`Outcome` (plain data, so a pool child can hand it to the consumer).
``apply_outcome`` then publishes callbacks, the next chain step or errbacks, republishes
retries under the same id, and stores the result. Both are safe in a forked child: the
app reopens its broker and backend connections per process.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import time
import traceback as tb_module
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.chord_counter import on_chord_part_return
from celeriac.exceptions import BackendError, Ignore, Reject, Retry, SerializationError
from celeriac.protocol import TaskRequest
from celeriac.result import EagerResult
from celeriac.signature import Signature, signature, signature_list
from celeriac.task import Context, Task, current_task, pop_request, push_request

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.backend import PreparedResult

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What a task run produced (read-only by convention: frozen, it cost 0.7 µs more per run).

    ``state`` is SUCCESS, FAILURE, RETRY, REJECTED or IGNORED. ``retval`` is the return
    value or the exception. ``retry`` holds the republish spec (args, kwargs, countdown,
    eta, retries, options) of a RETRY; ``requeue`` the wish of a :class:`Reject`.
    ``children`` are the results of tasks the body sent, in Celery's tuple form.
    """

    state: str
    retval: Any
    traceback: str | None = None
    runtime_s: float = 0.0
    children: tuple[Any, ...] = ()
    retry: dict[str, Any] | None = None
    requeue: bool = False
    exc_type: str | None = field(default=None)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (from prefork children) as one tuple, like :class:`~celeriac.protocol.TaskRequest`."""
        return Outcome, _outcome_fields(self)


_outcome_fields = attrgetter(*(f.name for f in fields(Outcome)))


def _format_traceback(exc: BaseException) -> str:
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


def run_task(
    app: Celeriac,
    task: Task,
    request: TaskRequest,
    delivery_info: Mapping[str, Any],
    hostname: str,
    *,
    is_eager: bool = False,
) -> Outcome:
    """Run ``task`` for ``request``; never raises for an exception of the task's own making."""
    context = Context.from_request(request, delivery_info, hostname)
    context.is_eager = is_eager
    if not is_eager and task.option("track_started", "task_track_started") and not _ignored(task, request):
        app.backend.mark_as_started(request.id, os.getpid(), hostname, request=context)
    push_request(task, context)
    started = time.perf_counter()
    try:
        task.before_start(request.id, request.args, request.kwargs)
        retval = task(*request.args, **request.kwargs)
    except Retry as exc:
        outcome = _failed_outcome(states.RETRY, exc.exc, exc, started, context)
        outcome = replace(outcome, retry=exc.sig if isinstance(exc.sig, dict) else None)
        _hook(task.on_retry, exc.exc or exc, request.id, request.args, request.kwargs, outcome.traceback)
    except Reject as exc:
        outcome = Outcome(states.REJECTED, exc, None, time.perf_counter() - started, requeue=exc.requeue)
    except Ignore as exc:
        outcome = Outcome(states.IGNORED, exc, None, time.perf_counter() - started)
    except Exception as exc:
        outcome = _failed_outcome(states.FAILURE, exc, exc, started, context)
        _hook(task.on_failure, exc, request.id, request.args, request.kwargs, outcome.traceback)
    else:
        outcome = Outcome(states.SUCCESS, retval, None, time.perf_counter() - started, _children(context))
        _hook(task.on_success, retval, request.id, request.args, request.kwargs)
    finally:
        pop_request()
    _hook(task.after_return, outcome.state, outcome.retval, request.id, request.args, request.kwargs, outcome.traceback)
    return outcome


def _hook(hook: Any, *args: Any) -> None:
    """Call a task hook; a failing hook is logged and never changes the task's outcome."""
    try:
        hook(*args)
    except Exception:
        logger.exception("task hook %s raised", getattr(hook, "__qualname__", hook))


def _failed_outcome(
    state: str, stored: BaseException | None, raised: BaseException, started: float, context: Context
) -> Outcome:
    return Outcome(
        state,
        stored,
        _format_traceback(raised),
        time.perf_counter() - started,
        _children(context),
        exc_type=type(stored).__name__ if stored is not None else None,
    )


def _children(context: Context) -> tuple[Any, ...]:
    return tuple(child.as_tuple() if hasattr(child, "as_tuple") else child for child in context.children)


def _ignored(task: Task, request: TaskRequest) -> bool:
    """Ignore the result if the message or the task (or the app's default) says so."""
    return bool(request.ignore_result) or bool(task.option("ignore_result", "task_ignore_result"))


class _StoredRequest:
    """The request fields the backend reads when it builds a meta document."""

    def __init__(self, request: TaskRequest, children: list[Any], delivery_info: Mapping[str, Any], hostname: str):
        self.task = request.task
        self.args = request.args
        self.kwargs = request.kwargs
        self.group = request.group
        self.parent_id = request.parent_id
        self.retries = request.retries
        self.children = children
        self.delivery_info = dict(delivery_info)
        self.hostname = hostname


def prepare_plain_success(
    app: Celeriac,
    task: Task,
    request: TaskRequest,
    outcome: Outcome,
    *,
    delivery_info: Mapping[str, Any],
    hostname: str,
) -> PreparedResult | None:
    """For a SUCCESS that publishes and joins nothing (no callbacks, chain or chord) and stores its
    result: that result, encoded as :func:`apply_outcome` would store it. A prefork child builds it
    so the parent only queues bytes; None for anything else (or a value the serializer refuses),
    which then takes :func:`apply_outcome` in full."""
    if outcome.state != states.SUCCESS or request.callbacks or request.chain or request.chord:
        return None
    if _ignored(task, request):
        return None
    stored = _StoredRequest(request, list(outcome.children), delivery_info, hostname)
    try:
        return app.backend.prepare_result(request.id, outcome.retval, states.SUCCESS, request=stored)
    except (SerializationError, BackendError):
        return None


def apply_outcome(
    app: Celeriac,
    task: Task,
    request: TaskRequest,
    outcome: Outcome,
    *,
    delivery_info: Mapping[str, Any] | None = None,
    hostname: str = "",
    store: bool = True,
    pipe: Any = None,
) -> None:
    """Publish follow-ups and store the result of ``outcome`` exactly as Celery's worker does.

    SUCCESS: callbacks (retval prepended), then the next chain step, then the result
    (so ``children`` lists them). FAILURE: the result, the remaining chain steps as
    FAILURE, then errbacks. RETRY: republish the same id with ``retries + 1``, store
    RETRY. ``store=False`` skips result writes (eager runs); ``pipe`` batches them.
    """
    delivery_info = delivery_info or {}
    children = list(outcome.children)
    stored = _StoredRequest(request, children, delivery_info, hostname)
    ignored = _ignored(task, request)
    priority = delivery_info.get("priority") if app.conf["task_inherit_parent_priority"] else None
    follow: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id or request.id, "add_to_parent": False}
    if priority is not None:
        follow["priority"] = priority
    if outcome.state == states.SUCCESS:
        try:
            if request.callbacks:
                children.extend(_send_callbacks(app, request, outcome.retval, follow))
            if request.chain:
                rest = [signature(item, app) for item in request.chain]
                next_step = rest.pop()
                children.append(next_step.apply_async((outcome.retval,), chain=rest or None, **follow).as_tuple())
            if store and not ignored:
                app.backend.store_result(request.id, outcome.retval, states.SUCCESS, request=stored, pipe=pipe)
            if store and request.chord:
                on_chord_part_return(app, request, states.SUCCESS, outcome.retval)
        except SerializationError as exc:
            # A return value the serializer cannot carry fails the task (Celery: EncodeError).
            logger.error("task %s[%s] returned a value that cannot be stored: %s", request.task, request.id, exc)
            failed = Outcome(states.FAILURE, exc, _format_traceback(exc), outcome.runtime_s, outcome.children)
            apply_outcome(app, task, request, failed, delivery_info=delivery_info, hostname=hostname, store=store,
                          pipe=pipe)  # fmt: skip
    elif outcome.state == states.FAILURE:
        store_errors = store and (
            not ignored or bool(task.option("store_errors_even_if_ignored", "task_store_errors_even_if_ignored"))
        )
        if store_errors:
            app.backend.store_result(request.id, outcome.retval, states.FAILURE, outcome.traceback, stored, pipe)
        if store and request.chord:
            on_chord_part_return(app, request, states.FAILURE, outcome.retval)
        if store_errors:
            for step in request.chain or ():
                step_id = (step.get("options") or {}).get("task_id")
                if step_id:
                    app.backend.store_result(step_id, outcome.retval, states.FAILURE, outcome.traceback, pipe=pipe)
        _send_errbacks(app, request, outcome, follow)
    elif outcome.state == states.RETRY:
        if outcome.retry is not None:  # a bare ``raise Retry()`` is only recorded, as in Celery
            _republish_retry(app, request, outcome, delivery_info)
            children.append([[request.id, None], None])  # Celery lists the republished self as a child
        if store and not ignored:
            app.backend.store_result(request.id, outcome.retval, states.RETRY, outcome.traceback, stored, pipe)


def _send_callbacks(app: Celeriac, request: TaskRequest, retval: Any, follow: dict[str, Any]) -> list[Any]:
    callbacks = [signature(item, app) for item in request.callbacks or ()]
    if len(callbacks) == 1:
        return [callbacks[0].apply_async((retval,), **follow).as_tuple()]
    if not callbacks:
        return []
    # Several callbacks go out as one group, like Celery's worker sends them.

    group_id = str(uuid.uuid4())
    members = [
        callback.apply_async((retval,), group_id=group_id, group_index=index, **follow).as_tuple()
        for index, callback in enumerate(callbacks)
    ]
    return [[[group_id, None], members]]


def _send_errbacks(app: Celeriac, request: TaskRequest, outcome: Outcome, follow: dict[str, Any]) -> None:
    context = Context.from_request(request, {}, "")
    _call_errbacks(app, request.errbacks, context, outcome.retval, outcome.traceback, follow)


def _call_errbacks(  # noqa: PLR0917 - internal helper with the errback call's parts
    app: Celeriac, errbacks: Any, context: Context, exc: Any, traceback: str | None, follow: dict[str, Any]
) -> None:
    for item in errbacks or ():
        errback = signature(item, app)
        local = app.tasks.get(errback.name)
        if local is not None and _takes_request(local):
            try:
                local(context, exc, traceback, *errback.args, **errback.kwargs)
            except Exception:
                logger.exception("errback %s of task %s[%s] raised", errback.name, context.task, context.id)
            continue
        errback.apply_async((context.id,), **follow)


def call_errbacks(  # noqa: PLR0917 - mirrors Celery's fake-request errback call
    app: Celeriac,
    task_id: str,
    task_name: str,
    errbacks: Any,
    exc: BaseException,
    traceback: str | None,
    request: Any = None,
) -> None:
    """Run ``errbacks`` for a task that never ran here (a chord body failed by its header)."""
    root_id = getattr(request, "root_id", None) or task_id
    context = Context(id=task_id, task=task_name, root_id=root_id, errbacks=errbacks, called_directly=False)
    follow: dict[str, Any] = {"parent_id": task_id, "root_id": root_id, "add_to_parent": False}
    callbacks = [signature(item, app) for item in signature_list(errbacks) or ()]
    _call_errbacks(app, callbacks, context, exc, traceback, follow)


def _takes_request(task: Task) -> bool:
    """Celery calls an errback inline with (request, exc, traceback) when it takes more than one arg."""

    fun = task._fun if task._fun is not None else task.run
    try:
        params = [
            p
            for p in inspect.signature(fun).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return False
    if task.bind and task._fun is not None:
        params = params[1:]
    return len(params) > 1 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _republish_retry(app: Celeriac, request: TaskRequest, outcome: Outcome, delivery_info: Mapping[str, Any]) -> None:
    spec = outcome.retry or {}
    options = dict(spec.get("options") or {})
    hard, soft = request.timelimit
    exchange = delivery_info.get("exchange")
    routing_key = delivery_info.get("routing_key")
    if "queue" not in options:
        if not exchange and routing_key:
            options["queue"] = routing_key
        elif exchange is not None:
            options.update(exchange=exchange, routing_key=routing_key)
    if delivery_info.get("priority") is not None:
        options.setdefault("priority", delivery_info["priority"])
    app.send_task(
        request.task,
        spec.get("args", request.args),
        spec.get("kwargs", request.kwargs),
        task_id=request.id,
        retries=int(spec.get("retries", request.retries + 1)),
        countdown=spec.get("countdown"),
        eta=spec.get("eta"),
        expires=request.headers.get("expires") or None,
        root_id=request.root_id,
        parent_id=request.parent_id or request.id,
        group_id=request.group,
        group_index=request.group_index,
        shadow=request.shadow,
        chord=request.chord,
        chain=request.chain,
        link=request.callbacks,
        link_error=request.errbacks,
        time_limit=hard,
        soft_time_limit=soft,
        reply_to=request.reply_to,
        ignore_result=request.ignore_result,
        headers=_custom_headers(request),
        add_to_parent=False,
        origin=request.origin,
        **options,
    )


def _custom_headers(request: TaskRequest) -> dict[str, Any]:
    return {k: v for k, v in request.custom_headers.items() if k != "x-death"}


def apply_eager(
    task: Task,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task_id: str,
    *,
    link: Any = None,
    link_error: Any = None,
    retries: int = 0,
    throw: bool | None = None,
    headers: Mapping[str, Any] | None = None,
) -> EagerResult:
    """Celery's ``Task.apply``: run here, follow retries eagerly, publish callbacks as usual."""
    from celeriac.app import current_app  # lazily: app imports this module

    app = task.app if getattr(task, "app", None) is not None else current_app()
    parent = current_task()
    root_id = parent[1].root_id or parent[1].id if parent else task_id
    parent_id = parent[1].id if parent else None
    callbacks = signature_list(link)
    errbacks = signature_list(link_error)
    while True:
        request = TaskRequest(
            id=task_id,
            task=task.name,
            args=args,
            kwargs=kwargs,
            retries=retries,
            root_id=root_id,
            parent_id=parent_id,
            callbacks=_as_dicts(callbacks),
            errbacks=_as_dicts(errbacks),
            headers=dict(headers or {}),
            ignore_result=None,
        )
        outcome = run_task(app, task, request, {"is_eager": True}, _hostname(), is_eager=True)
        if outcome.state == states.RETRY and outcome.retry is not None:
            args = tuple(outcome.retry["args"])
            kwargs = dict(outcome.retry["kwargs"])
            retries = int(outcome.retry["retries"])
            continue
        break
    store = bool(app.conf.task_store_eager_result)
    apply_outcome(app, task, request, outcome, delivery_info={"is_eager": True}, hostname=_hostname(), store=store)
    propagate = app.conf.task_eager_propagates if throw is None else throw
    if propagate and outcome.state == states.FAILURE and isinstance(outcome.retval, BaseException):
        raise outcome.retval
    return EagerResult(task_id, outcome.retval, outcome.state, outcome.traceback, task.name)


def _as_dicts(signatures: list[Signature] | None) -> list[dict[str, Any]] | None:
    return [dict(item) for item in signatures] if signatures else None


def _hostname() -> str:

    return socket.gethostname()

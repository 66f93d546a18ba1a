"""What a pool runs: a :class:`Job` in, a :class:`JobResult` out, both small and picklable.

:func:`execute_job` is the one seam between the worker engine and task execution: it
calls :func:`celeriac.trace.run_task` (run the function with ``self.request`` set) and
:func:`celeriac.trace.apply_outcome` (store the result, publish callbacks, chain steps,
retries) in whatever process or thread the pool uses, then reduces the outcome to the
few fields the engine reports to :class:`~celeriac.worker.state.WorkerState`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from celeriac import states
from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.protocol import TaskRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One task execution handed to a pool."""

    request: TaskRequest
    delivery_info: dict[str, Any]
    hostname: str
    soft_time_limit_s: float | None = None
    hard_time_limit_s: float | None = None
    apply_here: bool = False
    """Apply the outcome (store the result, publish follow-ups) where the task ran instead of
    deferring it to the engine: set when there is no batch for it to join (nothing else runs or
    waits), so the result need not wait for the hop back to the engine."""

    @property
    def task_id(self) -> str:
        return self.request.id


@dataclass(frozen=True)
class JobResult:
    """How an execution ended, as the engine needs it (the result itself is already stored)."""

    task_id: str
    task_name: str
    state: str
    runtime_s: float
    pid: int = field(default_factory=os.getpid)
    result_repr: str = ""
    exception_repr: str = ""
    traceback: str = ""
    requeue: bool = False
    """True when the task raised ``Reject(requeue=True)``: put the message back."""
    outcome: Any = None
    """The :class:`celeriac.trace.Outcome`, when applying it (result write, callbacks) was left
    to the engine so that it can batch result writes; None when it was applied already."""
    prepared: Any = None
    """Instead of ``outcome``, for a plain SUCCESS: the :class:`~celeriac.backend.PreparedResult`
    to write (:func:`celeriac.trace.prepare_plain_success`), built where the task ran."""

    @property
    def deferred(self) -> bool:
        """Something is left for :func:`apply_result` to do."""
        return self.outcome is not None or self.prepared is not None


def execute_job(app: Any, job: Job, defer_apply: bool = False) -> JobResult:
    """Run ``job`` through the trace functions; never raises (failures become FAILURE results).

    With ``defer_apply`` the outcome is returned unapplied in :attr:`JobResult.outcome`, and
    the caller must pass it to :func:`apply_result` (the engine does, batching result writes).
    """
    from celeriac import trace

    request = job.request
    started = time.monotonic()
    try:
        task = app.tasks[request.task]
        outcome = trace.run_task(app, task, request, job.delivery_info, job.hostname)
        if not defer_apply:
            trace.apply_outcome(app, task, request, outcome, delivery_info=job.delivery_info,
                                hostname=job.hostname)
    except BaseException as exc:  # the seam must never kill a pool process
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        log.exception("executing task %s[%s] failed outside the task", request.task, request.id)
        return JobResult(
            request.id, request.task, states.FAILURE, time.monotonic() - started,
            exception_repr=repr(exc), traceback=tb.format_exc(),
        )
    runtime_s = time.monotonic() - started
    if not defer_apply:
        return summarize(request, outcome, runtime_s)
    prepared = trace.prepare_plain_success(app, task, request, outcome, delivery_info=job.delivery_info,
                                           hostname=job.hostname)
    if prepared is not None:
        return summarize(request, outcome, runtime_s, prepared=prepared)
    return summarize(request, outcome, runtime_s, deferred_outcome=outcome)


def apply_result(app: Any, job: Job, result: JobResult, pipe: Any = None) -> None:
    """Apply a deferred outcome: publish follow-ups, store the result (into ``pipe`` if given)."""
    from celeriac import trace

    if result.prepared is not None:
        app.backend.store_prepared([result.prepared], pipe)
        return
    task = app.tasks[job.request.task]
    trace.apply_outcome(app, task, job.request, result.outcome, delivery_info=job.delivery_info,
                        hostname=job.hostname, pipe=pipe)


def summarize(
    request: TaskRequest, outcome: Any, runtime_s: float, *, deferred_outcome: Any = None, prepared: Any = None
) -> JobResult:
    """Reduce a :class:`celeriac.trace.Outcome` to a :class:`JobResult`; ``deferred_outcome`` or
    ``prepared`` is what is left for the engine to apply (:attr:`JobResult.outcome`/``prepared``)."""
    state = str(outcome.state)
    retval = outcome.retval
    failed = isinstance(retval, BaseException)
    return JobResult(
        task_id=request.id,
        task_name=request.task,
        state=state,
        runtime_s=float(outcome.runtime_s or runtime_s),
        result_repr="" if failed else _safe_repr(retval),
        exception_repr=_safe_repr(retval) if failed else "",
        traceback=str(outcome.traceback or ""),
        requeue=bool(outcome.requeue),
        outcome=deferred_outcome,
        prepared=prepared,
    )


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a user object whose __repr__ fails must not fail the task
        text = f"<unrepresentable {type(value).__name__}>"
    return text[:1024]


# -- soft time limits -------------------------------------------------------------------------


def _raise_soft_limit(signum: int, frame: FrameType | None) -> None:
    raise SoftTimeLimitExceeded()


def arm_soft_limit(seconds: float | None) -> None:
    """In a prefork child: raise SoftTimeLimitExceeded in the task after ``seconds`` (SIGALRM)."""
    if seconds:
        signal.signal(signal.SIGALRM, _raise_soft_limit)
        signal.setitimer(signal.ITIMER_REAL, seconds)


def disarm_soft_limit() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Best effort for thread pools: raise ``exc_type`` in a thread at its next Python bytecode.

    A thread blocked in a C call (``time.sleep``, a socket read) sees it only when that call
    returns; this is why hard limits are not enforced on the ``threads``/``solo`` pools.
    """
    if thread_id not in {t.ident for t in threading.enumerate()}:
        return False
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    if hit > 1:  # more than one thread state touched: undo, as the C API docs require
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return bool(hit == 1)

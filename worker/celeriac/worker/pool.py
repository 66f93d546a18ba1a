"""Execution pools. ``threads`` and ``prefork`` (in :mod:`.prefork`) run :class:`~.jobs.Job`
objects elsewhere and report back by calling ``post(event)`` with a :class:`JobDone` or a
:class:`JobLost` from their own thread; the engine turns those into acks, state updates and
result writes on its loop.

``solo`` (:class:`SoloPool`) runs each job on the engine's own thread, as Celery's solo pool
runs tasks in its consumer loop: no hand-off between threads per message, which is what
limits a one-task-at-a-time worker. A small watcher thread keeps what a blocked loop would
otherwise miss: the liveness tick, soft time limits and the shutdown deadline.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.worker.jobs import Job, JobResult, execute_job, raise_in_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobDone:
    job: Job
    result: JobResult


@dataclass(frozen=True)
class JobLost:
    """The process running ``job`` exited before reporting (killed, crashed, terminated)."""

    job: Job
    exitcode: int | None
    started: bool = True
    """False for a job that was still waiting in the process's pipe: it goes back to its queue."""


PoolEvent = JobDone | JobLost
Post = Callable[[Any], None]


class Pool(Protocol):
    lookahead: int
    """Jobs the pool can hold besides the ones it runs (prefork: one in each child's pipe)."""

    def start(self) -> None: ...

    def free_slots(self) -> int: ...

    def submit(self, job: Job) -> int | None:
        """Start ``job`` on a free slot; returns the pid that runs it, or None if this job cannot
        start now (it stays ready, and is offered again once a slot frees)."""

    def soft_limit(self, task_id: str) -> None:
        """Raise SoftTimeLimitExceeded in a running task (pools that cannot do it in-process)."""

    def kill(self, task_id: str, signum: int) -> bool:
        """Send ``signum`` to the process running ``task_id``; False if it cannot be done."""

    def stop(self, kill: bool) -> None:
        """Stop the pool; with ``kill`` running tasks are killed (their jobs reported lost)."""

    def fds(self) -> list[int]:
        """File descriptors the engine waits on along with its events (prefork: the children's pipes)."""

    def on_readable(self, fd: int) -> None:
        """One of :meth:`fds` is readable: read it (and post what it says) on the engine's thread."""


class ThreadPool:
    """``size`` threads taking jobs from one queue; soft limits by async exception, no hard limits."""

    lookahead = 0

    def __init__(self, app: Any, size: int, post: Post) -> None:
        self.app = app
        self.size = size
        self.post = post
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, int] = {}
        self._busy = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._work, name=f"celeriac-pool-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def free_slots(self) -> int:
        with self._lock:
            return self.size - self._busy

    def submit(self, job: Job) -> int:
        with self._lock:
            self._busy += 1
        self._jobs.put(job)
        return os.getpid()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ident = threading.get_ident()
            with self._lock:
                self._running[job.task_id] = ident
            try:
                result = execute_job(self.app, job, defer_apply=True)
            except SoftTimeLimitExceeded:  # arrived after the task returned: harmless
                result = JobResult(job.task_id, job.request.task, "FAILURE", 0.0)
            finally:
                with self._lock:
                    self._running.pop(job.task_id, None)
                    self._busy -= 1
            self.post(JobDone(job, result))

    def soft_limit(self, task_id: str) -> None:
        with self._lock:
            ident = self._running.get(task_id)
        if ident is not None:
            raise_in_thread(ident, SoftTimeLimitExceeded)

    def kill(self, task_id: str, signum: int) -> bool:
        log.warning("pool %s cannot kill task %s: threads cannot be killed", "threads", task_id)
        return False

    def fds(self) -> list[int]:
        return []

    def on_readable(self, fd: int) -> None:
        """Never called: threads post their own events."""

    def stop(self, kill: bool) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if not kill:
            for thread in self._threads:
                thread.join()


class ShutdownInterrupt(SystemExit):
    """Raised inside a task running on the engine's thread (``solo``) by a cold shutdown: the
    task stops, and the engine's shutdown requeues its message as it does for killed tasks."""


SOLO_TICK_S = 1.0
"""While a ``solo`` task runs, the watcher ticks the liveness record this often (seconds)."""


class SoloPool:
    """One slot, run on the caller's (the engine's) thread by :meth:`run`; never reports through ``post``.

    The dispatcher calls :meth:`submit` (bookkeeping only) and then :meth:`run`. While a job runs
    the watcher thread calls ``while_running`` every tick (the engine ticks its liveness record,
    as a long task is not a wedged loop, and hands over the broker writes it holds), raises
    SoftTimeLimitExceeded at the job's soft limit, and, once :meth:`interrupt_after` armed a
    deadline, raises :class:`ShutdownInterrupt`. Both arrive at the task's next Python bytecode
    (not inside a blocking C call), as on ``threads``; hard limits and ``--terminate`` are not
    enforced.
    """

    lookahead = 0

    def __init__(self, app: Any, while_running: Callable[[], None]) -> None:
        self.app = app
        self.while_running = while_running
        """Called on the watcher thread while the engine's thread is inside a job (and cannot
        return from it before the call ends: both hold the pool's lock around the switch)."""
        self._cond = threading.Condition()
        self._job: Job | None = None
        self._ident = 0
        self._soft_at = 0.0
        self._interrupt_at = 0.0
        self._stopping = False
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="celeriac-solo-watch", daemon=True)
        self._watcher.start()

    def free_slots(self) -> int:
        return 1

    def submit(self, job: Job) -> int:
        return os.getpid()

    def run(self, job: Job) -> JobResult:
        """Execute ``job`` here and now; its outcome is left for the engine to apply."""
        soft_s = job.soft_time_limit_s
        with self._cond:
            self._job, self._ident = job, threading.get_ident()
            self._soft_at = time.monotonic() + soft_s if soft_s else 0.0
            if soft_s:  # the watcher sleeps a whole tick otherwise: wake it to time this limit
                self._cond.notify()
        result: JobResult | None = None
        try:
            try:
                result = execute_job(self.app, job, defer_apply=True)
            finally:
                with self._cond:
                    self._job = None
        except SoftTimeLimitExceeded:  # the limit struck as the task returned: its result stands
            if result is None:
                result = JobResult(job.task_id, job.request.task, "FAILURE", 0.0)
        return result

    def running_here(self) -> bool:
        """A job is running on the calling thread (a signal handler interrupted it)."""
        return self._job is not None and self._ident == threading.get_ident()

    def interrupt_after(self, seconds: float) -> None:
        """Cold shutdown in ``seconds`` (0: now): raise :class:`ShutdownInterrupt` in the running task."""
        with self._cond:
            self._interrupt_at = time.monotonic() + seconds
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                wait_s = SOLO_TICK_S
                if self._job is not None:
                    self.while_running()
                    if self._soft_at and now >= self._soft_at:
                        self._soft_at = 0.0
                        raise_in_thread(self._ident, SoftTimeLimitExceeded)
                    if self._interrupt_at and now >= self._interrupt_at:
                        self._interrupt_at = 0.0
                        raise_in_thread(self._ident, ShutdownInterrupt)
                for at in (self._soft_at, self._interrupt_at):
                    if at:
                        wait_s = min(wait_s, max(0.0, at - now))
                self._cond.wait(wait_s)

    def soft_limit(self, task_id: str) -> None:
        """Nothing to do: the watcher times soft limits itself."""

    def kill(self, task_id: str, signum: int) -> bool:
        log.warning("pool %s cannot kill task %s: it runs on the worker's own thread", "solo", task_id)
        return False

    def fds(self) -> list[int]:
        return []

    def on_readable(self, fd: int) -> None:
        """Never called: jobs run on the engine's thread."""

    def stop(self, kill: bool) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._watcher is not None:
            self._watcher.join()

"""Execution pools. Each one runs :class:`~.jobs.Job` objects and reports back by calling
``post(event)`` with a :class:`JobDone` or a :class:`JobLost`, from its own thread; the
engine turns those into acks, state updates and result writes on its loop.

``threads`` and ``solo`` live here (``solo`` is one thread, so the engine's loop stays
responsive while a task runs); ``prefork`` lives in :mod:`.prefork`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
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


PoolEvent = JobDone | JobLost
Post = Callable[[Any], None]


class Pool(Protocol):
    def start(self) -> None: ...

    def free_slots(self) -> int: ...

    def submit(self, job: Job) -> int:
        """Start ``job`` on a free slot; returns the pid (or thread id) that runs it."""

    def soft_limit(self, task_id: str) -> None:
        """Raise SoftTimeLimitExceeded in a running task (pools that cannot do it in-process)."""

    def kill(self, task_id: str, signum: int) -> bool:
        """Send ``signum`` to the process running ``task_id``; False if it cannot be done."""

    def stop(self, kill: bool) -> None:
        """Stop the pool; with ``kill`` running tasks are killed (their jobs reported lost)."""


class ThreadPool:
    """``size`` threads taking jobs from one queue; soft limits by async exception, no hard limits."""

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

    def stop(self, kill: bool) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if not kill:
            for thread in self._threads:
                thread.join()

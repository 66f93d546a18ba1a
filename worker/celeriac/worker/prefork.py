"""The prefork pool: N forked child processes, each running one job at a time.

Each child also holds up to :data:`LOOKAHEAD` more jobs in its pipe, which it starts as soon
as the current one returns instead of idling until the parent has read the reply and sent
another: with short tasks that wait, not the task, is what bounds a child's rate. Only jobs
without a hard time limit wait like this, and never behind one with a hard limit, so a
limit's timer (armed when the job is sent) always times the job it belongs to. An idle child
is always chosen before a busy one.

Parent and child talk over a socket pair (``multiprocessing.connection``): the parent
sends a pickled :class:`~.jobs.Job`, the child sends back ``(JobResult, retiring)`` whose
result carries the task's outcome for the engine to apply (so result writes of all children
are batched), unless the outcome cannot be pickled or the job says :attr:`~.jobs.Job.apply_here`
(nothing to batch it with), in which case the child applies it;
``retiring`` tells the parent not to send it another job (``max_tasks_per_child``).
The engine's loop waits on the children's ends itself (:meth:`PreforkPool.fds`) and calls
:meth:`PreforkPool.on_readable`, so a reply reaches the engine without passing through
another thread. A child that exits (killed by a hard time limit or ``revoke --terminate``,
crashed, or retiring after ``max_tasks_per_child``) closes its end; the engine sees EOF, the
pool reaps it, reports the job it held as :class:`~.pool.JobLost` and forks a replacement.

Children ignore SIGINT (a terminal's Ctrl-C is the parent's business), keep SIGTERM's
default (so ``revoke --terminate`` kills them) and exit when the parent's end closes.
Soft time limits run inside the child on SIGALRM (:func:`~.jobs.arm_soft_limit`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, Pipe, wait
from typing import Any

from celeriac.worker.jobs import Job, apply_result, arm_soft_limit, disarm_soft_limit, execute_job
from celeriac.worker.pool import JobDone, JobLost, Post

log = logging.getLogger(__name__)


LOOKAHEAD = 1
"""Jobs a busy child may hold besides the one it runs."""


@dataclass
class _Child:
    pid: int
    conn: Connection
    jobs: deque[Job] = field(default_factory=deque)
    """Sent and not yet answered, in order: ``jobs[0]`` runs, the rest wait in the pipe."""
    sent: int = 0
    retiring: bool = False
    """The child said it exits after its last result (``max_tasks_per_child``): give it no job."""

    def room(self, max_tasks: int | None) -> int:
        """Jobs this child can take now (never more than it will run before retiring)."""
        if self.retiring:
            return 0
        room = 1 + LOOKAHEAD - len(self.jobs)
        if self.jobs and self.jobs[-1].hard_time_limit_s:
            room = 0
        return max(0, min(room, max_tasks - self.sent) if max_tasks else room)


class PreforkPool:
    """Forked processes running jobs; hard limits and terminate kill one child and replace it."""

    def __init__(self, app: Any, size: int, post: Post, max_tasks_per_child: int | None = None) -> None:
        self.app = app
        self.size = size
        self.post = post
        self.max_tasks_per_child = max_tasks_per_child
        self.lookahead = size * LOOKAHEAD
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._stopping = False

    # -- parent side ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            for _ in range(self.size):
                self._children.append(self._fork())

    def _fork(self) -> _Child:
        parent_end, child_end = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            parent_end.close()
            for other in self._children:
                other.conn.close()
            code = 0
            try:
                _child_main(self.app, child_end, self.max_tasks_per_child)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_end.close()
        return _Child(pid, parent_end)

    def free_slots(self) -> int:
        with self._lock:
            return sum(child.room(self.max_tasks_per_child) for child in self._children)

    def submit(self, job: Job) -> int | None:
        """Send ``job`` to the least busy child that can take it; None if none can now (a job with a
        hard time limit waits for an idle child)."""
        with self._lock:
            candidates = [c for c in self._children if c.room(self.max_tasks_per_child) > 0
                          and not (job.hard_time_limit_s and c.jobs)]
            if not candidates:
                return None
            child = min(candidates, key=lambda c: len(c.jobs))
            child.jobs.append(job)
            child.sent += 1
        child.conn.send_bytes(pickle.dumps(job, pickle.HIGHEST_PROTOCOL))  # not ForkingPickler: no fds in a Job
        return child.pid

    def soft_limit(self, task_id: str) -> None:
        """Nothing to do: children raise SoftTimeLimitExceeded themselves on SIGALRM."""

    def kill(self, task_id: str, signum: int) -> bool:
        with self._lock:
            child = next((c for c in self._children if c.jobs and c.jobs[0].task_id == task_id), None)
        if child is None:  # not running (a job waiting in a child's pipe cannot be singled out)
            return False
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def stop(self, kill: bool) -> None:
        """Wait for busy children (with ``kill``, SIGKILL them first), reporting their jobs, then
        close every child's pipe (idle children exit) and reap them."""
        with self._lock:
            self._stopping = True
            children = list(self._children)
        for child in children:
            if kill and child.jobs:
                _signal(child.pid, signal.SIGKILL)
        while True:
            with self._lock:
                busy = {c.conn.fileno(): c for c in self._children if c.jobs}
            if not busy:
                break
            for ready in wait([c.conn for c in busy.values()], timeout=1.0):
                assert isinstance(ready, Connection)
                self.on_readable(ready.fileno())
        for child in children:
            child.conn.close()
            _reap(child.pid)

    def fds(self) -> list[int]:
        """The children's pipe ends, for the engine to wait on."""
        with self._lock:
            return [c.conn.fileno() for c in self._children]

    def on_readable(self, fd: int) -> None:
        """The engine saw ``fd`` readable: take the child's reply, or handle its exit (EOF)."""
        with self._lock:
            child = next((c for c in self._children if c.conn.fileno() == fd), None)
        if child is not None:
            self._on_readable(child)

    def _on_readable(self, child: _Child) -> None:
        try:
            result, retiring = child.conn.recv()
        except (EOFError, OSError):
            self._on_exit(child)
            return
        with self._lock:
            job = child.jobs.popleft() if child.jobs else None
            child.retiring = retiring
        if job is not None:
            self.post(JobDone(job, result))

    def _on_exit(self, child: _Child) -> None:
        exitcode = _reap(child.pid)
        child.conn.close()
        with self._lock:
            self._children.remove(child)
            jobs = list(child.jobs)
            if not self._stopping:
                self._children.append(self._fork())
        if jobs:
            log.warning("pool process %d exited (code %s) while running %s", child.pid, exitcode, jobs[0].task_id)
            self.post(JobLost(jobs[0], exitcode))
        for waiting in jobs[1:]:  # never started: they go back to their queue, not to FAILURE
            self.post(JobLost(waiting, exitcode, started=False))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reap(pid: int) -> int | None:
    """Wait for child ``pid`` (it closed its pipe, so it is exiting); its exit code, or -signal."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _child_main(app: Any, conn: Connection, max_tasks: int | None) -> None:  # pragma: no cover - child
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    done = 0
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        arm_soft_limit(job.soft_time_limit_s)
        try:
            result = execute_job(app, job, defer_apply=not job.apply_here)
        finally:
            disarm_soft_limit()
        done += 1
        retiring = bool(max_tasks and done >= max_tasks)
        try:
            payload = pickle.dumps((result, retiring))
        except Exception:  # an outcome that cannot cross processes is applied here instead
            apply_result(app, job, result)
            payload = pickle.dumps((replace(result, outcome=None), retiring))
        conn.send_bytes(payload)
        if retiring:
            return

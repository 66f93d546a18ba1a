"""The prefork pool: N forked child processes, one job at a time each.

Parent and child talk over a socket pair (``multiprocessing.connection``): the parent
sends a pickled :class:`~.jobs.Job`, the child sends back ``(JobResult, retiring)`` whose
result carries the task's outcome for the engine to apply (so result writes of all children
are batched), unless the outcome cannot be pickled, in which case the child applies it;
``retiring`` tells the parent not to send it another job (``max_tasks_per_child``).
A child that exits (killed by a hard time limit or ``revoke --terminate``, crashed, or
retiring after ``max_tasks_per_child``) closes its end; the reader thread sees EOF, reaps
it, reports the job it held as :class:`~.pool.JobLost` and forks a replacement.

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
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, Pipe, wait
from typing import Any

from celeriac.worker.jobs import Job, apply_result, arm_soft_limit, disarm_soft_limit, execute_job
from celeriac.worker.pool import JobDone, JobLost, Post

log = logging.getLogger(__name__)


@dataclass
class _Child:
    pid: int
    conn: Connection
    job: Job | None = None
    retiring: bool = False
    """The child said it exits after its last result (``max_tasks_per_child``): give it no job."""


class PreforkPool:
    """Forked processes running jobs; hard limits and terminate kill one child and replace it."""

    def __init__(self, app: Any, size: int, post: Post, max_tasks_per_child: int | None = None) -> None:
        self.app = app
        self.size = size
        self.post = post
        self.max_tasks_per_child = max_tasks_per_child
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._reader: threading.Thread | None = None

    # -- parent side ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            for _ in range(self.size):
                self._children.append(self._fork())
        self._reader = threading.Thread(target=self._read, name="celeriac-prefork", daemon=True)
        self._reader.start()

    def _fork(self) -> _Child:
        parent_end, child_end = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            parent_end.close()
            for other in self._children:
                other.conn.close()
            self._wake_r.close()
            self._wake_w.close()
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
            return sum(1 for child in self._children if child.job is None and not child.retiring)

    def submit(self, job: Job) -> int:
        with self._lock:
            child = next(c for c in self._children if c.job is None and not c.retiring)
            child.job = job
        child.conn.send(job)
        return child.pid

    def soft_limit(self, task_id: str) -> None:
        """Nothing to do: children raise SoftTimeLimitExceeded themselves on SIGALRM."""

    def kill(self, task_id: str, signum: int) -> bool:
        with self._lock:
            child = next((c for c in self._children if c.job is not None and c.job.task_id == task_id), None)
        if child is None:
            return False
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def stop(self, kill: bool) -> None:
        """Close every child's pipe (idle children exit); with ``kill``, SIGKILL busy ones too."""
        with self._lock:
            self._stopping = True
            children = list(self._children)
        for child in children:
            if kill and child.job is not None:
                _signal(child.pid, signal.SIGKILL)
        self._wake_w.send(b"stop")
        if self._reader is not None:
            self._reader.join()
        for child in children:
            child.conn.close()
            _reap(child.pid)

    def _read(self) -> None:
        while True:
            with self._lock:
                stopping = self._stopping
                conns = {c.conn: c for c in self._children}
                busy = any(c.job is not None for c in self._children)
            if stopping and not busy:
                return
            ready = wait([*conns, self._wake_r], timeout=1.0)
            for conn in ready:
                if conn is self._wake_r:
                    self._wake_r.recv()
                    continue
                assert isinstance(conn, Connection)
                self._on_readable(conns[conn])

    def _on_readable(self, child: _Child) -> None:
        try:
            result, retiring = child.conn.recv()
        except (EOFError, OSError):
            self._on_exit(child)
            return
        with self._lock:
            job, child.job = child.job, None
            child.retiring = retiring
        if job is not None:
            self.post(JobDone(job, result))

    def _on_exit(self, child: _Child) -> None:
        exitcode = _reap(child.pid)
        child.conn.close()
        with self._lock:
            self._children.remove(child)
            job = child.job
            if not self._stopping:
                self._children.append(self._fork())
        if job is not None:
            log.warning("pool process %d exited (code %s) while running %s", child.pid, exitcode, job.task_id)
            self.post(JobLost(job, exitcode))


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
            result = execute_job(app, job, defer_apply=True)
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

"""What every benchmark shares: a private redis-server, worker processes, CPU accounting, tables.

Each benchmark starts its own ``redis-server`` on a free loopback port in a temp dir (the test
suite's starter, ``tests/servers.py``) and stops everything it started, even on failure.
Workers are real subprocesses: ``python -m celeriac worker`` and ``python -m celery worker``
on the same ``bench_tasks`` module, with the same pool, concurrency and prefetch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/servers.py: the suite's redis-server starter

from servers import RedisServer, start_redis, stop_process  # noqa: E402

IMPLS = ("celeriac", "celery")
TASK_NAME = "bench.add"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one benchmark run, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="celeriac-bench-") as directory:
        server = start_redis(Path(directory))
        try:
            yield server
        finally:
            server.stop()


def client_app(impl: str, url: str) -> tuple[Any, Any]:
    """An in-process client app of ``impl`` and its ``bench.add`` task (same name as the workers')."""
    app: Any
    if impl == "celery":
        from celery import Celery

        app = Celery("bench-client", broker=url, backend=url, set_as_current=False)
    else:
        from celeriac import Celeriac

        app = Celeriac("bench-client", broker=url, backend=url, set_as_current=False)

    @app.task(name=TASK_NAME)
    def add(x: int, y: int) -> int:
        return x + y

    return app, add


def close_app(app: Any) -> None:
    """Release an app's connections (Celery and Celeriac spell it the same)."""
    with contextlib.suppress(Exception):
        app.close()


@dataclass
class WorkerProcess:
    impl: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds of the whole worker: main process and pool children."""
        return tree_cpu_s(self.proc.pid)

    def main_cpu_s(self) -> float:
        """CPU seconds of the worker's main process alone (every thread, no children)."""
        fields = _proc_stat(self.proc.pid)
        return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def worker_command(impl: str, concurrency: int, pool: str = "prefork") -> list[str]:
    """The two workers, configured alike: same pool and size, default prefetch, no events."""
    if impl == "celery":
        return [sys.executable, "-m", "celery", "-A", "bench_tasks", "worker", "-P", pool,
                "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-l", "warning"]
    return [sys.executable, "-m", "celeriac", "worker", "-A", "bench_tasks", "-P", pool,
            "-c", str(concurrency), "--health-port", "off", "-l", "warning"]


@contextlib.contextmanager
def worker(
    impl: str, url: str, concurrency: int = 2, acks_late: bool = False, pool: str = "prefork"
) -> Iterator[WorkerProcess]:
    """Run a worker of ``impl`` in its own process group; stop it (SIGTERM, then SIGKILL) afterwards."""
    env = {**os.environ, "BENCH_REDIS_URL": url, "BENCH_IMPL": impl, "BENCH_ACKS_LATE": "1" if acks_late else "0",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "CELERIAC_BROKER_URL": url, "CELERIAC_RESULT_BACKEND": url}
    log = Path(tempfile.mkstemp(prefix=f"bench-{impl}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(worker_command(impl, concurrency, pool), cwd=HERE, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    handle = WorkerProcess(impl, proc, log)
    try:
        yield handle
    except BaseException:
        print(f"--- {impl} worker log (tail) ---\n{handle.log_tail()}", file=sys.stderr)
        raise
    finally:
        try:
            stop_process(proc, timeout_s=15)
        finally:  # interrupted while waiting (Ctrl-C): never leave the worker behind
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.unlink(missing_ok=True)


def wait_ready(add: Any, timeout_s: float = 60.0) -> None:
    """A worker is ready once it has run a task end to end (pool started, queues declared)."""
    result = add.delay(0, 0)
    if result.get(timeout=timeout_s) != 0:
        raise RuntimeError("warm-up task returned a wrong value")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields after "pid (comm)"; comm may hold spaces


def _process_table() -> tuple[dict[int, int], dict[int, int]]:
    """``(ppid by pid, utime+stime+cutime+cstime ticks by pid)`` for every process."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields is None:
            continue
        parents[int(entry)] = int(fields[1])  # ppid; fields[11..14] = utime stime cutime cstime
        ticks[int(entry)] = sum(int(value) for value in fields[11:15])
    return parents, ticks


def tree_pids(root_pid: int, parents: dict[int, int] | None = None) -> set[int]:
    """``root_pid`` and its live descendants."""
    parents = parents if parents is not None else _process_table()[0]
    tree = {root_pid}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def tree_cpu_s(root_pid: int) -> float:
    """User+system CPU seconds of ``root_pid`` and its live descendants, plus reaped children's.

    A pool child that exits moves its time into its parent's cutime/cstime, so summing
    utime+stime+cutime+cstime over the live tree never loses a finished child's work.
    """
    parents, ticks = _process_table()
    return sum(ticks.get(pid, 0) for pid in tree_pids(root_pid, parents)) / CLOCK_TICKS_PER_S


def tree_pss_mib(root_pid: int) -> float:
    """Proportional set size of a process tree in MiB: pages shared by forked children count once
    in total, so prefork pools are not overstated the way summed RSS would be."""
    total_kib = 0
    for pid in tree_pids(root_pid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kib / 1024


def poll_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.002) -> None:
    """Poll ``check`` until true, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]

"""Drain rate, worker CPU, memory and start-up time: ours vs Celery 5.7 on the same Redis.

N ``bench.add`` calls (json, results stored, as Celery's defaults) are published once and kept
as raw envelopes. For each pool configuration, ack mode and repeat, both workers take turns
(the order alternates between repeats, A/B then B/A): flush Redis, start the worker, publish
one warm-up task at once and time until its result exists (start-up: process start to first
task consumed), read the worker's memory (idle), push the N envelopes to a staging list and
``RENAME`` it onto the queue (one atomic step that wakes a blocked ``BRPOP``). The clock runs
from the ``RENAME`` until every task's result exists. CPU is the worker process tree's (and
redis-server's) user+system time over the same window, from /proc; memory is the tree's PSS,
sampled every 50 ms during the drain for the peak.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import (
    client_app,
    close_app,
    poll_until,
    tree_cpu_s,
    tree_pss_mib,
    wait_ready,
    worker,
)

QUEUE = "celery"
STAGING = "bench.staging"
RESULT_KEY = "celery-task-meta-{}"
PUSH_CHUNK = 2000
MEMORY_SAMPLE_S = 0.2
"""Peak-memory sampling period during a drain. Reading ``smaps_rollup`` walks every mapping of
each worker process; every 50 ms (with a 2 ms completion poll) the observer cost this 2-core
machine enough to slow both frameworks' drains (Celery ~5%, Celeriac ~12%)."""
DRAIN_POLL_S = 0.01
"""Completion poll period: 10 ms is 0.2-1% of a drain, at a small fraction of the observer's CPU."""
CONFIGS = (("prefork", 2), ("threads", 8), ("solo", 1))
"""The pool configurations of issue 8: ``prefork -c 2``, ``threads -c 8``, ``solo``."""


@dataclass
class DrainRun:
    impl: str
    tasks: int
    elapsed_s: float
    worker_cpu_s: float
    main_cpu_s: float
    redis_cpu_s: float
    startup_s: float
    idle_mib: float
    peak_mib: float

    @property
    def rate(self) -> float:
        return self.tasks / self.elapsed_s

    def per_msg_us(self, cpu_s: float) -> float:
        return cpu_s / self.tasks * 1e6


@dataclass
class Preloaded:
    """The shared Redis and the envelopes every drain replays."""

    url: str
    redis: Any
    redis_pid: int
    envelopes: list[bytes]
    ids: list[str]


def preload(url: str, redis: Any, redis_pid: int, tasks: int) -> Preloaded:
    """Publish ``tasks`` calls with our client and take the raw envelopes out of the queue."""
    redis.flushdb()
    app, add = client_app("celeriac", url)
    try:
        ids = [add.delay(i, i).id for i in range(tasks)]
    finally:
        close_app(app)
    envelopes: list[bytes] = redis.lrange(QUEUE, 0, -1)
    if len(envelopes) != tasks:
        raise RuntimeError(f"expected {tasks} queued envelopes, found {len(envelopes)}")
    return Preloaded(url, redis, redis_pid, envelopes, ids)


def drain_once(bench: Preloaded, impl: str, *, pool: str, concurrency: int, acks_late: bool,
               timeout_s: float = 600.0) -> DrainRun:
    """One timed drain of the pre-loaded envelopes by a fresh worker of ``impl``."""
    r, envelopes, ids = bench.redis, bench.envelopes, bench.ids
    r.flushdb()
    app, add = client_app("celeriac", bench.url)
    try:
        started_process = time.perf_counter()
        with worker(impl, bench.url, concurrency=concurrency, acks_late=acks_late, pool=pool) as proc:
            wait_ready(add)
            startup_s = time.perf_counter() - started_process
            idle_mib = tree_pss_mib(proc.proc.pid)
            for start in range(0, len(envelopes), PUSH_CHUNK):
                r.rpush(STAGING, *envelopes[start:start + PUSH_CHUNK])
            keys = [RESULT_KEY.format(task_id) for task_id in ids]
            worker_cpu0, main_cpu0, redis_cpu0 = proc.cpu_s(), proc.main_cpu_s(), tree_cpu_s(bench.redis_pid)
            peak = [idle_mib, time.perf_counter()]

            def sample_memory() -> None:
                if time.perf_counter() - peak[1] >= MEMORY_SAMPLE_S:
                    peak[0] = max(peak[0], tree_pss_mib(proc.proc.pid))
                    peak[1] = time.perf_counter()

            started = time.perf_counter()
            r.rename(STAGING, QUEUE)
            poll_until(lambda: sample_memory() or r.llen(QUEUE) == 0, timeout_s, f"{impl} to empty the queue",
                       interval_s=DRAIN_POLL_S)
            poll_until(lambda: r.exists(*keys) == len(keys), timeout_s, f"{impl} to store every result",
                       interval_s=DRAIN_POLL_S)
            elapsed_s = time.perf_counter() - started
            worker_cpu_s, main_cpu_s = proc.cpu_s() - worker_cpu0, proc.main_cpu_s() - main_cpu0
            redis_cpu_s = tree_cpu_s(bench.redis_pid) - redis_cpu0
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{impl} worker exited during the run")
    finally:
        close_app(app)
    sample = r.get(keys[-1])
    if sample is None or b'"SUCCESS"' not in sample:
        raise RuntimeError(f"{impl}: last result is not SUCCESS: {sample!r}")
    print(f"  drain {impl:8s} {pool} -c {concurrency} {'late' if acks_late else 'early'}: "
          f"{len(ids) / elapsed_s:,.0f} tasks/s", file=sys.stderr, flush=True)
    return DrainRun(impl, len(ids), elapsed_s, worker_cpu_s, main_cpu_s, redis_cpu_s, startup_s, idle_mib, peak[0])

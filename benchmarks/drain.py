"""Drain rate: how fast a worker empties a pre-loaded queue, ours vs Celery 5.7, same Redis.

N ``bench.add`` calls (json, results stored, as Celery's defaults) are published once and
kept as raw envelopes. For each worker and ack mode: flush Redis, start the worker (prefork,
``-c 2``, default prefetch) and wait until it has run one warm-up task, push the N envelopes
to a staging list, then RENAME it onto the queue (one atomic step that wakes a blocked BRPOP).
The clock runs from the RENAME until every task's result exists; worker start-up and import
time are outside it. CPU is the worker process tree's (and redis-server's) user+system time
over the same window, from /proc.

Run: ``.venv/bin/python benchmarks/drain.py [--tasks N] [--concurrency C] [--pool P] [--modes early,late] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from harness import (
    IMPLS,
    client_app,
    close_app,
    poll_until,
    print_table,
    ratio,
    redis_server,
    tree_cpu_s,
    wait_ready,
    worker,
)

QUEUE = "celery"
STAGING = "bench.staging"
RESULT_KEY = "celery-task-meta-{}"
PUSH_CHUNK = 2000


@dataclass
class DrainRun:
    impl: str
    mode: str
    tasks: int
    elapsed_s: float
    worker_cpu_s: float
    main_cpu_s: float
    redis_cpu_s: float

    @property
    def rate(self) -> float:
        return self.tasks / self.elapsed_s

    @property
    def worker_cpu_us(self) -> float:
        return self.worker_cpu_s / self.tasks * 1e6

    @property
    def main_cpu_us(self) -> float:
        return self.main_cpu_s / self.tasks * 1e6

    @property
    def redis_cpu_us(self) -> float:
        return self.redis_cpu_s / self.tasks * 1e6


@dataclass
class Preloaded:
    """The shared Redis and the envelopes every drain replays."""

    url: str
    redis: Any
    redis_pid: int
    envelopes: list[bytes]
    ids: list[str]


def preload(url: str, redis: Any, tasks: int) -> tuple[list[bytes], list[str]]:
    """Publish ``tasks`` calls with our client and take the raw envelopes out of the queue."""
    app, add = client_app("celeriac", url)
    try:
        ids = [add.delay(i, i).id for i in range(tasks)]
    finally:
        close_app(app)
    envelopes: list[bytes] = redis.lrange(QUEUE, 0, -1)
    if len(envelopes) != tasks:
        raise RuntimeError(f"expected {tasks} queued envelopes, found {len(envelopes)}")
    return envelopes, ids


def drain_once(bench: Preloaded, impl: str, mode: str, *, concurrency: int, pool: str, timeout_s: float) -> DrainRun:
    """One timed drain of the pre-loaded envelopes by a fresh worker of ``impl``."""
    url, r, envelopes, ids, redis_pid = bench.url, bench.redis, bench.envelopes, bench.ids, bench.redis_pid
    r.flushdb()
    app, add = client_app("celeriac", url)
    try:
        with worker(impl, url, concurrency=concurrency, acks_late=(mode == "late"), pool=pool) as proc:
            wait_ready(add)
            for start in range(0, len(envelopes), PUSH_CHUNK):
                r.rpush(STAGING, *envelopes[start:start + PUSH_CHUNK])
            keys = [RESULT_KEY.format(task_id) for task_id in ids]
            worker_cpu0, main_cpu0, redis_cpu0 = proc.cpu_s(), proc.main_cpu_s(), tree_cpu_s(redis_pid)
            started = time.perf_counter()
            r.rename(STAGING, QUEUE)
            poll_until(lambda: r.llen(QUEUE) == 0, timeout_s, f"{impl} to empty the queue")
            poll_until(lambda: r.exists(*keys) == len(keys), timeout_s, f"{impl} to store every result")
            elapsed_s = time.perf_counter() - started
            worker_cpu_s, main_cpu_s = proc.cpu_s() - worker_cpu0, proc.main_cpu_s() - main_cpu0
            redis_cpu_s = tree_cpu_s(redis_pid) - redis_cpu0
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{impl} worker exited during the run")
    finally:
        close_app(app)
    sample = r.get(keys[-1])
    if sample is None or b'"SUCCESS"' not in sample:
        raise RuntimeError(f"{impl}: last result is not SUCCESS: {sample!r}")
    return DrainRun(impl, mode, len(ids), elapsed_s, worker_cpu_s, main_cpu_s, redis_cpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, help="tasks per drain (default 20000; 3000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes of each worker (2)")
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork",
                        help="pool of both workers (prefork)")
    parser.add_argument("--modes", default="early,late", help="ack modes to run: early,late")
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one drain may take (300)")
    args = parser.parse_args(argv)
    tasks = args.tasks or (3000 if args.quick else 20000)
    modes = [m for m in args.modes.split(",") if m]

    runs: list[DrainRun] = []
    with redis_server() as server:
        r = server.client()
        envelopes, ids = preload(server.url, r, tasks)
        assert server.proc is not None
        bench = Preloaded(server.url, r, server.proc.pid, envelopes, ids)
        for mode in modes:
            for impl in IMPLS:
                runs.append(drain_once(bench, impl, mode, concurrency=args.concurrency, pool=args.pool,
                                       timeout_s=args.timeout))
                print(f"  {impl:8s} {mode}-ack: {runs[-1].rate:,.0f} tasks/s", file=sys.stderr, flush=True)

    print(f"\nDrain of {tasks} bench.add tasks, {args.pool} -c {args.concurrency}, results stored (json)\n")
    print_table(
        ["worker", "acks", "seconds", "tasks/s", "worker CPU µs/msg", "of it main process", "redis CPU µs/msg"],
        [[run.impl, run.mode, f"{run.elapsed_s:.2f}", f"{run.rate:,.0f}", f"{run.worker_cpu_us:,.0f}",
          f"{run.main_cpu_us:,.0f}", f"{run.redis_cpu_us:,.0f}"] for run in runs],
    )
    print()
    for mode in modes:
        ours = next(run for run in runs if run.impl == "celeriac" and run.mode == mode)
        theirs = next(run for run in runs if run.impl == "celery" and run.mode == mode)
        print(f"ratio ours/celery drain {mode}-ack: tasks/s {ratio(ours.rate, theirs.rate)}, "
              f"worker CPU/msg {ratio(ours.worker_cpu_us, theirs.worker_cpu_us)}, "
              f"redis CPU/msg {ratio(ours.redis_cpu_us, theirs.redis_cpu_us)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Client publish rate: ``add.delay(i, i)`` in a loop with no worker, our client vs Celery's.

Both clients run in this process against one private Redis (flushed between them), after a
warm-up that opens the connection and declares the queue. Reported: calls per second and
the client's own CPU per call (``time.process_time``), and the queue length afterwards,
which must equal the number of calls.

Run: ``.venv/bin/python benchmarks/publish.py [--tasks N] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from harness import IMPLS, client_app, close_app, print_table, ratio, redis_server

QUEUE = "celery"
WARMUP = 100


@dataclass
class PublishRun:
    impl: str
    tasks: int
    elapsed_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.tasks / self.elapsed_s

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.tasks * 1e6


def publish_once(impl: str, url: str, tasks: int) -> PublishRun:
    app, add = client_app(impl, url)
    try:
        for i in range(WARMUP):
            add.delay(i, i)
        cpu0, started = time.process_time(), time.perf_counter()
        for i in range(tasks):
            add.delay(i, i)
        elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        close_app(app)
    return PublishRun(impl, tasks, elapsed_s, cpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, help="calls per client (default 20000; 3000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    args = parser.parse_args(argv)
    tasks = args.tasks or (3000 if args.quick else 20000)

    runs: list[PublishRun] = []
    with redis_server() as server:
        r = server.client()
        for impl in IMPLS:
            r.flushdb()
            runs.append(publish_once(impl, server.url, tasks))
            queued = r.llen(QUEUE)
            if queued != tasks + WARMUP:
                raise RuntimeError(f"{impl}: {queued} messages queued, expected {tasks + WARMUP}")
            print(f"  {impl:8s} client: {runs[-1].rate:,.0f} calls/s", file=sys.stderr, flush=True)

    print(f"\nPublish of {tasks} delay() calls, no worker, json\n")
    print_table(
        ["client", "seconds", "calls/s", "client CPU µs/call"],
        [[run.impl, f"{run.elapsed_s:.2f}", f"{run.rate:,.0f}", f"{run.cpu_us:,.0f}"] for run in runs],
    )
    print()
    ours, theirs = runs
    print(f"ratio ours/celery publish: calls/s {ratio(ours.rate, theirs.rate)}, "
          f"client CPU/call {ratio(ours.cpu_us, theirs.cpu_us)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

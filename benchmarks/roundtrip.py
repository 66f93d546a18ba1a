"""Round-trip latency: sequential ``add.delay(1, 2).get()`` against an idle worker.

Four pairs on one private Redis: our client → our worker, Celery client → Celery worker and
the two crossed pairs (the formats are the same, so any client works with any worker). The
clients run in this process, one call at a time and taking turns, after a warm-up; each worker is prefork
``-c 2`` as in drain.py. The crossed pairs tell client cost from worker cost: holding the
worker fixed and swapping the client isolates the client's share, and the other way round.

Run: ``.venv/bin/python benchmarks/roundtrip.py [--rounds N] [--warmup N] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from harness import IMPLS, client_app, close_app, percentile, print_table, ratio, redis_server, wait_ready, worker


@dataclass
class Pair:
    client: str
    worker: str
    latencies_s: list[float]

    def p(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_s), fraction) * 1000


def measure(adds: dict[str, Any], rounds: int, warmup: int) -> dict[str, list[float]]:
    """``rounds`` timed sequential round trips per client after ``warmup`` untimed ones.

    The clients take turns call by call, so a change in machine load hits both alike.
    """
    latencies_s: dict[str, list[float]] = {impl: [] for impl in adds}
    for index in range(warmup + rounds):
        for impl, add in adds.items():
            started = time.perf_counter()
            value = add.delay(1, 2).get(timeout=30)
            elapsed_s = time.perf_counter() - started
            if value != 3:
                raise RuntimeError(f"{impl} round trip returned {value!r}")
            if index >= warmup:
                latencies_s[impl].append(elapsed_s)
    return latencies_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="timed round trips per pair (default 2000; 300 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed round trips first (default 100; 20 with --quick)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes of each worker (2)")
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    args = parser.parse_args(argv)
    rounds = args.rounds or (300 if args.quick else 2000)
    warmup = args.warmup if args.warmup is not None else (20 if args.quick else 100)

    pairs: list[Pair] = []
    with redis_server() as server:
        clients = {impl: client_app(impl, server.url) for impl in IMPLS}
        try:
            for worker_impl in IMPLS:
                server.client().flushdb()
                with worker(worker_impl, server.url, concurrency=args.concurrency):
                    wait_ready(clients[worker_impl][1])
                    measured = measure({impl: clients[impl][1] for impl in IMPLS}, rounds, warmup)
                    for client_impl in IMPLS:
                        pairs.append(Pair(client_impl, worker_impl, measured[client_impl]))
                        print(f"  {client_impl} client -> {worker_impl} worker: p50 {pairs[-1].p(0.5):.3f} ms",
                              file=sys.stderr, flush=True)
        finally:
            for app, _ in clients.values():
                close_app(app)

    print(f"\nRound trips delay().get(), {rounds} sequential per pair (clients alternating) after {warmup} warm-up, "
          f"prefork -c {args.concurrency}\n")
    print_table(
        ["client", "worker", "p50 ms", "p90 ms", "p99 ms"],
        [[pair.client, pair.worker, f"{pair.p(0.5):.3f}", f"{pair.p(0.9):.3f}", f"{pair.p(0.99):.3f}"]
         for pair in pairs],
    )
    print()
    by = {(pair.client, pair.worker): pair for pair in pairs}
    base = by["celery", "celery"]
    for client_impl, worker_impl in (("celeriac", "celeriac"), ("celeriac", "celery"), ("celery", "celeriac")):
        pair = by[client_impl, worker_impl]
        print(f"ratio {client_impl}->{worker_impl} / celery->celery round trip: "
              f"p50 {ratio(pair.p(0.5), base.p(0.5))}, p99 {ratio(pair.p(0.99), base.p(0.99))}")
    client_gain = {w: by["celery", w].p(0.5) - by["celeriac", w].p(0.5) for w in IMPLS}
    worker_gain = {c: by[c, "celery"].p(0.5) - by[c, "celeriac"].p(0.5) for c in IMPLS}
    print(f"p50 saved by our client: {client_gain['celeriac']:.3f} ms (our worker), "
          f"{client_gain['celery']:.3f} ms (Celery worker)")
    print(f"p50 saved by our worker: {worker_gain['celeriac']:.3f} ms (our client), "
          f"{worker_gain['celery']:.3f} ms (Celery client)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

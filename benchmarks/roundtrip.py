"""Round-trip latency: sequential ``add.delay(1, 2).get()`` against an idle worker.

Each framework's client against its own worker (each pool configuration the drain measures),
``rounds`` timed calls after ``warmup`` untimed ones; p50/p90/p99 by nearest rank.
"""

from __future__ import annotations

import time

from benchmarks.harness import client_app, close_app, percentile, wait_ready, worker


def roundtrip_once(impl: str, url: str, redis: object, rounds: int, *, warmup: int,
                   pool: str = "prefork", concurrency: int = 2) -> dict[float, float]:
    """``{0.5: p50_ms, 0.9: p90_ms, 0.99: p99_ms}`` for ``impl``'s client and worker."""
    redis.flushdb()  # type: ignore[attr-defined]
    app, add = client_app(impl, url)
    latencies_s: list[float] = []
    try:
        with worker(impl, url, concurrency=concurrency, pool=pool):
            wait_ready(add)
            for index in range(warmup + rounds):
                started = time.perf_counter()
                value = add.delay(1, 2).get(timeout=30)
                elapsed_s = time.perf_counter() - started
                if value != 3:
                    raise RuntimeError(f"{impl} round trip returned {value!r}")
                if index >= warmup:
                    latencies_s.append(elapsed_s)
    finally:
        close_app(app)
    latencies_s.sort()
    return {fraction: percentile(latencies_s, fraction) * 1000 for fraction in (0.5, 0.9, 0.99)}

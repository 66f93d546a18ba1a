"""Result-backend throughput: N tasks with stored results, then ``get()`` on every one.

With a running worker (prefork ``-c 2``), the client publishes N ``add.delay(i, i)`` and then
calls ``get()`` on each result in order. Two figures: the whole cycle in tasks/s (publish,
execute, store, fetch) and the ``get()`` phase alone (results/s; most results are stored by
the time the client asks, so it mostly measures fetching them).
"""

from __future__ import annotations

import time

from benchmarks.harness import client_app, close_app, wait_ready, worker


def results_once(impl: str, url: str, redis: object, tasks: int, concurrency: int = 2) -> tuple[float, float]:
    """``(cycle tasks/s, get() results/s)``."""
    redis.flushdb()  # type: ignore[attr-defined]
    app, add = client_app(impl, url)
    try:
        with worker(impl, url, concurrency=concurrency):
            wait_ready(add)
            started = time.perf_counter()
            handles = [add.delay(i, i) for i in range(tasks)]
            published = time.perf_counter()
            values = [handle.get(timeout=120) for handle in handles]
            done = time.perf_counter()
    finally:
        close_app(app)
    if values != [2 * i for i in range(tasks)]:
        raise RuntimeError(f"{impl}: wrong results")
    return tasks / (done - started), tasks / (done - published)

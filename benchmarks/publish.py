"""Enqueue rate from one producer: ``add.delay(i, i)`` in a loop with no worker.

Calls/s and the client's own CPU per call (``time.process_time``), after 100 untimed warm-up
calls; the queue length afterwards must be exactly the number of calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.harness import client_app, close_app

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


def publish_once(impl: str, url: str, redis: object, tasks: int) -> PublishRun:
    redis.flushdb()  # type: ignore[attr-defined]
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
    queued = redis.llen(QUEUE)  # type: ignore[attr-defined]
    if queued != tasks + WARMUP:
        raise RuntimeError(f"{impl}: {queued} messages queued, expected {tasks + WARMUP}")
    return PublishRun(impl, tasks, elapsed_s, cpu_s)

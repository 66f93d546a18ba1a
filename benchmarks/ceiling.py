"""The broker ceiling: what this Redis serves to plain clients, so every figure reads as a fraction.

On the same redis-server, with messages the size of a real ``bench.add`` envelope:

- redis-py ``LPUSH`` one at a time, then ``BRPOP`` one at a time (one round trip each, what an
  un-batched producer or consumer pays);
- redis-py batches: ``LPUSH`` of 100 values per call, then ``LPOP key 100`` (messages moved
  per second when round trips are amortised);
- kombu (Celery's transport) ``Producer.publish`` one at a time, and a ``SimpleQueue`` consumer
  with ``no_ack`` (kombu's own ``BRPOP`` loop, no unacked bookkeeping).
"""

from __future__ import annotations

import time
from typing import Any

CEILING_KEY = "bench.ceiling"
BATCH = 100


def _rate(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


def ceiling_once(url: str, redis: Any, envelope: bytes, count: int) -> dict[str, float]:
    """Operations (or messages) per second for each raw client pattern."""
    figures: dict[str, float] = {}
    redis.delete(CEILING_KEY)
    started = time.perf_counter()
    for _ in range(count):
        redis.lpush(CEILING_KEY, envelope)
    figures["redis-py LPUSH, one per call"] = _rate(count, started)
    started = time.perf_counter()
    for _ in range(count):
        redis.brpop([CEILING_KEY], timeout=5)
    figures["redis-py BRPOP, one per call"] = _rate(count, started)

    started = time.perf_counter()
    for _ in range(0, count, BATCH):
        redis.lpush(CEILING_KEY, *([envelope] * BATCH))
    pushed = redis.llen(CEILING_KEY)
    figures[f"redis-py LPUSH, {BATCH} per call"] = _rate(pushed, started)
    started = time.perf_counter()
    popped = 0
    while batch := redis.lpop(CEILING_KEY, BATCH):
        popped += len(batch)
    figures[f"redis-py LPOP, {BATCH} per call"] = _rate(popped, started)

    from kombu import Connection, Exchange, Queue

    queue = Queue(CEILING_KEY, Exchange(CEILING_KEY), routing_key=CEILING_KEY)
    body = envelope.decode()
    with Connection(url) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish({"warm": 0}, exchange=queue.exchange, routing_key=CEILING_KEY, declare=[queue])
        started = time.perf_counter()
        for _ in range(count):
            producer.publish(body, exchange=queue.exchange, routing_key=CEILING_KEY)
        figures["kombu publish, one per call"] = _rate(count, started)
        simple = conn.SimpleQueue(queue, no_ack=True)
        simple.get(timeout=5)
        started = time.perf_counter()
        for _ in range(count):
            simple.get(timeout=5)
        figures["kombu consume (SimpleQueue, no_ack)"] = _rate(count, started)
        simple.close()
    redis.delete(CEILING_KEY)
    return figures

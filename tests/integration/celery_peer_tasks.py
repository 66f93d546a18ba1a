"""A real Celery app with the same task names as ``worker_tasks``: the peer in mixed-worker tests.

Run as ``celery -A celery_peer_tasks worker`` with ``CELERY_BROKER_URL`` set; records
executions in the same Redis list so tests count runs across both kinds of worker.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

URL = os.environ["CELERY_BROKER_URL"]
app = Celery("celery_peer", broker=URL, backend=URL)
app.conf.broker_transport_options = {"visibility_timeout": float(os.environ.get("VISIBILITY_TIMEOUT_S", "3600"))}
_redis = redis.Redis.from_url(URL)


@app.task(name="tests.record")
def record(tag: str) -> str:
    _redis.rpush("executions", tag)
    return tag


_blocking = redis.Redis.from_url(URL, socket_timeout=None)  # ``hold`` waits longer than the default timeout


@app.task(name="tests.hold")
def hold(tag: str, timeout_s: float = 60.0) -> str:
    """As ``worker_tasks.hold``: mark started, wait for ``release:<tag>``, then record."""
    _blocking.rpush("started", tag)
    _blocking.blpop([f"release:{tag}"], timeout=timeout_s)
    _redis.rpush("executions", tag)
    return tag


@app.task(name="tests.hold_late", acks_late=True)
def hold_late(tag: str, timeout_s: float = 60.0) -> str:
    return hold(tag, timeout_s)

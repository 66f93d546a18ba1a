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

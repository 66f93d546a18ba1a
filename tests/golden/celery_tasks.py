"""Tasks for the real Celery worker that capture.py and the interop tests run.

The backend comes from ``GOLDEN_REDIS_URL``, the broker from ``GOLDEN_BROKER_URL`` (default: the same Redis).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

REDIS_URL = os.environ.get("GOLDEN_REDIS_URL")
app = Celery("golden", broker=os.environ.get("GOLDEN_BROKER_URL") or REDIS_URL, backend=REDIS_URL)
app.conf.broker_connection_retry_on_startup = True
app.conf.result_extended = os.environ.get("GOLDEN_RESULT_EXTENDED") == "1"


@app.task(name="golden.add")
def add(x: Any, y: Any, *rest: Any, **kwargs: Any) -> Any:
    return x + y


@app.task(name="golden.on_error")
def on_error(*args: Any) -> None:
    return None


@app.task(name="golden.fail")
def fail(message: str) -> None:
    raise ValueError(message, 42)


@app.task(name="golden.retry_once", bind=True)
def retry_once(self: Any, value: int) -> int:
    if self.request.retries == 0:
        raise self.retry(countdown=3600, exc=KeyError("again"))
    return value


class WorkerOnlyError(Exception):
    """Defined only where the worker runs: a client that never imported this module cannot rebuild it."""


@app.task(name="golden.fail_custom")
def fail_custom() -> None:
    raise WorkerOnlyError("nope", 3)


@app.task(name="golden.retry_fast", bind=True)
def retry_fast(self: Any, value: int) -> int:
    if self.request.retries < 2:
        raise self.retry(countdown=0.2, exc=KeyError("again"))
    return value * self.request.retries

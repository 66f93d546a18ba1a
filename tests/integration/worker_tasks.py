"""Tasks the worker tests run in a real worker process (imported there as ``worker_tasks``).

Every task records what it did in Redis (``executions`` list, ``started`` list, counters),
so tests assert exact counts. ``hold`` blocks until the test pushes to ``release:<tag>``,
which lets a test act while a task is provably mid-run, without sleeping.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from celeriac import Celeriac
from celeriac.exceptions import SoftTimeLimitExceeded

app = Celeriac("worker_tests")
app.conf.broker_transport_options = {"visibility_timeout": float(os.environ.get("VISIBILITY_TIMEOUT_S", "3600"))}
app.conf.worker_disable_rate_limits = os.environ.get("DISABLE_RATE_LIMITS") == "1"
# redis-py 8 reads with a 5 s socket timeout by default; ``hold`` blocks longer than that.
_redis = redis.Redis.from_url(os.environ.get("CELERIAC_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
                              socket_timeout=None)


def _record(tag: str) -> None:
    _redis.rpush("executions", tag)


@app.task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.record")
def record(tag: str) -> str:
    _record(tag)
    return tag


@app.task(name="tests.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="tests.hold")
def hold(tag: str, timeout_s: float = 60.0) -> str:
    """Mark started, wait until the test releases ``tag`` (or ``timeout_s``), then record."""
    _redis.rpush("started", tag)
    _redis.blpop([f"release:{tag}"], timeout=timeout_s)
    _record(tag)
    return tag


@app.task(name="tests.hold_late", acks_late=True)
def hold_late(tag: str, timeout_s: float = 60.0) -> str:
    return hold(tag, timeout_s)


@app.task(name="tests.retry_twice", bind=True, max_retries=5, default_retry_delay=0.05)
def retry_twice(self: Any, tag: str) -> int:
    _redis.rpush("attempts", f"{tag}:{self.request.retries}")
    if self.request.retries < 2:
        raise self.retry(countdown=0.05)
    return int(self.request.retries)


@app.task(name="tests.soft_limited", soft_time_limit=0.3)
def soft_limited(tag: str) -> str:
    _redis.rpush("started", tag)
    try:
        _redis.blpop([f"release:{tag}"], timeout=30)
    except SoftTimeLimitExceeded:
        _record(f"{tag}:soft")
        return "soft limit honoured"
    return "released"


@app.task(name="tests.hard_limited", time_limit=0.5)
def hard_limited(tag: str) -> str:
    _redis.rpush("started", tag)
    time.sleep(30)
    return tag


@app.task(name="tests.rate_limited", rate_limit="1/m")
def rate_limited(tag: str) -> str:
    _record(tag)
    return tag


@app.task(name="tests.pid")
def pid(tag: str) -> int:
    _record(tag)
    return os.getpid()


@app.task(name="tests.quiet", ignore_result=True)
def quiet(tag: str) -> None:
    _record(tag)


@app.task(name="tests.spin_soft", soft_time_limit=0.3)
def spin_soft() -> str:
    """Busy Python code: where the threads pool's best-effort soft limit can reach the task."""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            pass
    except SoftTimeLimitExceeded:
        return "soft limit honoured"
    return "ran to the end"


@app.task(name="tests.spin")
def spin(tag: str, seconds: float = 30.0) -> str:
    """Mark started, then run Python bytecode for ``seconds``: where an exception raised in the
    running thread (a soft limit, a solo shutdown interrupt) reaches the task."""
    _redis.rpush("started", tag)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    _record(tag)
    return tag


@app.task(name="tests.spin_late", acks_late=True)
def spin_late(tag: str, seconds: float = 30.0) -> str:
    return str(spin(tag, seconds))


@app.task(name="tests.nap")
def nap(tag: str, seconds: float = 30.0) -> str:
    """Mark started, then block in ``time.sleep`` (a C call no thread-raised exception interrupts)."""
    _redis.rpush("started", tag)
    time.sleep(seconds)
    _record(tag)
    return tag


@app.task(name="tests.record_late", acks_late=True)
def record_late(tag: str) -> str:
    return str(record(tag))

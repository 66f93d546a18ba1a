"""Example tasks: what a Celery user's ``tasks.py`` looks like under Celeriac.

Run a worker for them with ``celeriac worker -A tasks -c 2`` from this folder; the broker and
result backend come from ``CELERIAC_BROKER_URL`` / ``CELERIAC_RESULT_BACKEND`` (default: a
local Redis).
"""

from __future__ import annotations

import random

from celeriac import Celeriac, Task

app = Celeriac("examples")
app.conf.update(task_acks_late=True, result_expires=3600)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self: Task, succeed_on_attempt: int) -> str:
    """Fails until its ``succeed_on_attempt``-th run: retries with a countdown, like Celery."""
    if self.request.retries + 1 < succeed_on_attempt:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries + 1} failed"))
    return f"succeeded on attempt {self.request.retries + 1}"


@app.task
def divide(x: float, y: float) -> float:
    return x / y


@app.task(rate_limit="50/s")
def roll() -> int:
    return random.randint(1, 6)

"""Example tasks: what a Celery user's ``tasks.py`` looks like under Celeriac.

Three kinds of work, routed to the two TaskQueues of ``manifests/taskqueues.yaml``:

* e-mail (``send_welcome_email``) -> queue ``emails``: builds a real MIME message; it is "sent" by
  appending it to an outbox list in Redis (no SMTP server in the examples);
* reports (``build_report``, ``slow_report``) and arithmetic (``add``, ``multiply``, ``divide``, ``sum_of_squares``)
  -> queue ``reports.v1``.

Run a worker for them with ``celeriac worker -A tasks -Q emails,reports.v1 -c 2`` from this folder;
the broker and result backend come from ``CELERIAC_BROKER_URL`` / ``CELERIAC_RESULT_BACKEND``
(default: a local Redis). With ``EXAMPLES_COUNT_EXECUTIONS=1`` every arithmetic and ``slow_report`` execution increments
``examples:executions[<task id>]`` in the result backend's Redis, so a test can prove each task ran
exactly once.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from email.message import EmailMessage
from typing import Any

from celeriac import Celeriac, Task

app = Celeriac("examples")
app.conf.update(
    task_acks_late=True,
    result_expires=3600,
    task_routes={"tasks.send_*": {"queue": "emails"}, "tasks.*": {"queue": "reports.v1"}},
)

EXECUTIONS_KEY = "examples:executions"
OUTBOX_KEY = "examples:outbox"
_redis: Any = None


def _backend_redis() -> Any:
    """The result backend's Redis (the broker's when no backend is set), opened once per process."""
    global _redis
    if _redis is None:
        import redis

        url = (os.environ.get("CELERIAC_RESULT_BACKEND") or os.environ.get("CELERIAC_BROKER_URL")
               or "redis://127.0.0.1:6379/0")
        _redis = redis.Redis.from_url(url)
    return _redis


def _count_execution(task: Task) -> None:
    if os.environ.get("EXAMPLES_COUNT_EXECUTIONS") == "1":
        _backend_redis().hincrby(EXECUTIONS_KEY, str(task.request.id), 1)


# --- arithmetic -------------------------------------------------------------------------------


@app.task(bind=True)
def add(self: Task, x: int, y: int) -> int:
    _count_execution(self)
    return x + y


@app.task(bind=True)
def multiply(self: Task, x: int, y: int) -> int:
    _count_execution(self)
    return x * y


@app.task
def divide(x: float, y: float) -> float:
    return x / y


@app.task(bind=True)
def sum_of_squares(self: Task, n: int) -> int:
    """1^2 + ... + n^2, the slow way: a little CPU per task."""
    _count_execution(self)
    return sum(i * i for i in range(1, n + 1))


@app.task(rate_limit="50/s")
def roll() -> int:
    return random.randint(1, 6)


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self: Task, succeed_on_attempt: int) -> str:
    """Fails until its ``succeed_on_attempt``-th run: retries with a countdown, like Celery."""
    if self.request.retries + 1 < succeed_on_attempt:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries + 1} failed"))
    return f"succeeded on attempt {self.request.retries + 1}"


# --- e-mail -----------------------------------------------------------------------------------


@app.task(bind=True, max_retries=5, default_retry_delay=2)
def send_welcome_email(self: Task, to: str, name: str) -> dict[str, str]:
    """Render the welcome e-mail and put it in the outbox; a full outbox is retried later."""
    message = EmailMessage()
    message["From"] = "Celeriac examples <noreply@example.com>"
    message["To"] = to
    message["Subject"] = f"Welcome, {name}!"
    message.set_content(f"Hello {name},\n\nyour account is ready.\n")
    import redis

    try:
        _backend_redis().rpush(OUTBOX_KEY, message.as_string())
    except redis.ConnectionError as exc:  # Redis briefly unreachable: try again with a countdown
        raise self.retry(exc=exc) from exc
    return {"to": to, "subject": str(message["Subject"])}


# --- reports ----------------------------------------------------------------------------------


@app.task
def build_report(title: str, values: list[float]) -> dict[str, Any]:
    """Summary statistics of ``values``: what a nightly report task would compute."""
    if not values:
        return {"title": title, "count": 0}
    return {
        "title": title,
        "count": len(values),
        "total": sum(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "max": max(values),
    }


@app.task(bind=True)
def slow_report(self: Task, title: str, seconds: float) -> str:
    """A report that takes ``seconds`` to render. A scale-down removes idle workers first (the operator's
    pod-deletion-cost), so a worker in the middle of it keeps running until it is done."""
    _count_execution(self)
    time.sleep(seconds)
    return f"{title} rendered in {seconds:g}s"

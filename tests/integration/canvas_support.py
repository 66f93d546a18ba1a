"""Canvas test tasks, registered both on a Celeriac app and on a real Celery app, plus launchers.

The same task names exist in both runtimes, so one workflow can run on our worker, on a
Celery worker, or split between them (routed per queue). Launch ours with
:func:`start_our_worker` and Celery's with :func:`start_celery_worker`; both log to a file
and are stopped with :func:`servers.stop_process`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from celeriac import Celeriac

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
URL = os.environ.get("CANVAS_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celeriac("canvas_tests", broker=URL, backend=URL, set_as_current=False)
celery_app = Celery("canvas_peer", broker=URL, backend=URL, set_as_current=False)
_redis = redis.Redis.from_url(URL)


def _record(runtime: str, key: str, value: Any) -> None:
    _redis.rpush(key, f"{runtime}:{value}")


def _register(target: Any, runtime: str) -> None:
    """The canvas tasks, on ``target`` (our app or Celery's); ``runtime`` tags what they record."""

    @target.task(name="canvas.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @target.task(name="canvas.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @target.task(name="canvas.echo")
    def echo(value: Any) -> Any:
        return value

    @target.task(name="canvas.where")
    def where(value: Any) -> Any:
        """Record which runtime ran it under ``ran``, then return ``value``."""
        _record(runtime, "ran", value)
        return value

    @target.task(name="canvas.fail")
    def fail(*args: Any) -> None:
        raise ValueError(f"failed with {list(args)!r}")

    @target.task(name="canvas.fanout")
    def fanout(count: int) -> int:
        """Send a group from inside a task: the group is listed in this task's ``children``."""
        from celery import group as celery_group

        from celeriac import group as our_group

        make = our_group if runtime == "celeriac" else celery_group
        make(echo.s(i) for i in range(count)).apply_async()
        return count

    @target.task(name="canvas.errback")
    def errback(task_id: str) -> str:
        """An old-style errback (one argument): records the failed task's id under ``errbacks``."""
        _redis.rpush("errbacks", task_id)
        return task_id


_register(app, "celeriac")
_register(celery_app, "celery")

LAUNCHER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
from canvas_support import app
from celeriac.worker import Worker, WorkerOptions
queues = sys.argv[1].split(",")
sys.exit(Worker(app, WorkerOptions(queues=queues, pool=sys.argv[2], concurrency=int(sys.argv[3]),
                                   health_port=None, hostname=sys.argv[4])).run())
"""


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "CANVAS_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), str(ROOT / "worker")]),
    }


def start_our_worker(
    url: str, log: Path, queues: str = "celery", pool: str = "threads", concurrency: int = 2
) -> subprocess.Popen[bytes]:
    """Our worker on ``queues`` (comma separated), running the canvas tasks."""
    hostname = f"canvas-{os.getpid()}-{log.stem}@test"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, queues, pool, str(concurrency), hostname],
            env=_env(url), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def start_celery_worker(url: str, log: Path, queues: str = "celery") -> subprocess.Popen[bytes]:
    """A real Celery 5.7 worker (solo pool) on ``queues``, running the same task names."""
    command = [
        str(Path(sys.executable).parent / "celery"), "-A", "canvas_support:celery_app", "worker", "-P", "solo",
        "-Q", queues, "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "info",
        "-n", f"celery-{os.getpid()}-{log.stem}@test",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=HERE, env=_env(url), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

"""Run the real ``celeriac`` and ``celery`` console scripts in subprocesses for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

CELERIAC = str(Path(sys.executable).with_name("celeriac"))
CELERY = str(Path(sys.executable).with_name("celery"))
TESTS = Path(__file__).resolve().parent.parent


def cli_env(pythonpath: Path | None = None) -> dict[str, str]:
    """This process's environment minus ``CELERIAC_*`` (a stray setting would change what the CLI does)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERIAC_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def write_add_app(directory: Path, url: str) -> None:
    """``proj.py``: a Celeriac app on ``url`` with one task, ``proj.add``."""
    (directory / "proj.py").write_text(
        "from celeriac import Celeriac\n"
        f"app = Celeriac('proj', broker={url!r}, backend={url!r})\n"
        "@app.task(name='proj.add')\n"
        "def add(x, y):\n"
        "    return x + y\n"
    )


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on loopback; ``(0, "")`` while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def start_celery_peer(directory: Path, app: str, hostname: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A real Celery worker (``-P solo``, no mingle, no gossip) for ``app`` in ``directory``; the caller stops it."""
    return subprocess.Popen(
        [CELERY, "-A", app, "worker", "-P", "solo", "-n", hostname, "--without-mingle",
         "--without-gossip", "-l", "warning"],
        cwd=directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(directory)},
    )


def start_golden_celery_worker(log: Path, env: dict[str, str], *options: str) -> subprocess.Popen[bytes]:
    """``celery -A golden.celery_tasks worker -P solo <options>`` logging to ``log``; the caller waits and stops it.

    ``env`` adds to this process's environment (``GOLDEN_REDIS_URL``, optionally ``GOLDEN_BROKER_URL``).
    """
    command = [
        CELERY, "-A", "golden.celery_tasks", "worker", "-P", "solo", *options,
        "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "info",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=TESTS, env={**os.environ, "PYTHONPATH": str(TESTS), **env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

"""Run the real ``celeriac`` and ``celery`` console scripts in subprocesses for integration tests."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

CELERIAC = str(Path(sys.executable).with_name("celeriac"))
CELERY = str(Path(sys.executable).with_name("celery"))


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

"""The examples a new user starts from run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers import RedisServer

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_runtime_demo_runs_tasks_on_a_worker_and_drains_it(redis_server: RedisServer) -> None:
    env = {**os.environ, "CELERIAC_BROKER_URL": redis_server.url, "CELERIAC_RESULT_BACKEND": redis_server.url}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100 add tasks: sum of results = 9900" in done.stdout
    assert "flaky task: succeeded on attempt 3" in done.stdout
    assert "e-mail task: {'to': 'ada@example.com', 'subject': 'Welcome, Ada!'}" in done.stdout
    assert "report task: count=3 mean=2.0" in done.stdout
    assert "divide(1, 0) failed as expected: ZeroDivisionError" in done.stdout
    assert 'celeriac_tasks_succeeded_total{task=\\"tasks.add\\"} 100.0' in done.stdout
    assert "worker drained and exited with code 0" in done.stdout
    r = redis_server.client()
    assert r.llen("reports.v1") == 0
    assert r.llen("emails") == 0
    assert r.llen("examples:outbox") == 1
    assert r.hlen("unacked") == 0

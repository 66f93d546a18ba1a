"""The runtime demo: start a worker, send it work, show results, drain it with SIGTERM.

Run by ``scripts/demo`` with ``CELERIAC_BROKER_URL`` pointing at a local Redis. It is also
run by the test suite (tests/integration/test_examples.py), so it never goes stale.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tasks import add, app, build_report, divide, flaky, send_welcome_email  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the worker did not become ready")


def main() -> int:
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "worker", "-A", "tasks", "-Q", "emails,reports.v1", "-c", "2",
         "--pool", "prefork", "--health-port", str(port), "-l", "warning"],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    try:
        wait_ready(port)
        print(f"worker ready (health and metrics on http://127.0.0.1:{port})")

        results = [add.delay(i, i) for i in range(100)]
        total = sum(r.get(timeout=30) for r in results)
        print(f"100 add tasks: sum of results = {total}")

        print(f"flaky task: {flaky.delay(3).get(timeout=30)}")
        print(f"e-mail task: {send_welcome_email.delay('ada@example.com', 'Ada').get(timeout=30)}")
        report = build_report.delay("weekly", [3.0, 1.0, 2.0]).get(timeout=30)
        print(f"report task: count={report['count']} mean={report['mean']}")

        failed = divide.delay(1, 0)
        try:
            failed.get(timeout=30)
        except ZeroDivisionError as exc:
            print(f"divide(1, 0) failed as expected: {type(exc).__name__}: {exc} (state {failed.state})")

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = [line for line in resp.read().decode().splitlines()
                       if line.startswith("celeriac_tasks_succeeded_total")]
        print("metrics:", json.dumps(metrics, indent=1))
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        app.close()
    print(f"worker drained and exited with code {code}")
    return 0 if code == 0 and total == 9900 else 1


if __name__ == "__main__":
    sys.exit(main())

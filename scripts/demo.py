"""The local demo: Redis, the Kubernetes control plane, the operator, the node agent and the examples.

``scripts/demo`` (the README's main command) runs ``python scripts/demo.py up``: it starts everything under
``--state-dir`` (default /tmp/celeriac-demo), applies the CRDs and examples/manifests (the broker Secret
points at the demo's Redis), sends a burst of ``tasks.sum_of_squares`` calls and shows a live view (backlog, desired and
ready workers, completed tasks, the beat's leader and last run) every second until Ctrl-C or ``--duration``
seconds; then it stops everything it started. ``python scripts/demo.py burst --count N`` only sends a burst
(used by the e2e tests as the producer); ``down`` stops a demo left running (e.g. after ``kill -9``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMESPACE = "celeriac-demo"
DEFAULT_STATE_DIR = Path(os.environ.get("CELERIAC_DEMO_DIR", "/tmp/celeriac-demo"))


# --- the producer -------------------------------------------------------------------------------


def burst_arguments(index: int, size: int) -> int:
    """The n of the burst's ``index``-th ``sum_of_squares(n)`` call: ``size`` plus a varying 0..999."""
    return size + index % 1000


def expected_result(n: int) -> int:
    """1^2 + ... + n^2 in closed form, to check what the workers computed the slow way."""
    return n * (n + 1) * (2 * n + 1) // 6


def send_burst(count: int, size: int = 40_000, ids_file: Path | None = None) -> list[str]:
    """Send ``count`` ``tasks.sum_of_squares`` calls (about 1-2 ms of CPU each with the default ``size``,
    routed to ``reports.v1``); returns the task ids in order.

    The broker and result backend come from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND.
    """
    sys.path.insert(0, str(EXAMPLES))
    from tasks import app, sum_of_squares

    started_s = time.monotonic()
    try:
        ids = [sum_of_squares.delay(burst_arguments(i, size)).id for i in range(count)]
    finally:
        app.close()
    print(f"sent {count} tasks.sum_of_squares calls in {time.monotonic() - started_s:.1f}s", flush=True)
    if ids_file is not None:
        ids_file.write_text(json.dumps(ids))
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)
    p_burst = sub.add_parser("burst", help="send a burst of tasks.sum_of_squares calls to CELERIAC_BROKER_URL")
    p_burst.add_argument("--count", type=int, default=2000)
    p_burst.add_argument("--size", type=int, default=40_000, help="n of sum_of_squares(n): CPU per task")
    p_burst.add_argument("--ids-file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "burst":
        send_burst(args.count, args.size, args.ids_file)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""The local demo: Redis, the Kubernetes control plane, the operator, the node agent and the examples.

``scripts/demo`` (the README's main command) runs ``python scripts/demo.py up``: it starts everything under
``--state-dir`` (default /tmp/celeriac-demo), applies the CRDs and examples/manifests (the broker Secret
points at the demo's Redis), sends a burst of ``tasks.add`` calls and shows a live view (backlog, desired and
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


def send_burst(count: int, ids_file: Path | None = None) -> list[str]:
    """Send ``tasks.add(i, i)`` for i < count (routed to ``reports.v1``); returns the task ids in order.

    The broker and result backend come from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND.
    """
    sys.path.insert(0, str(EXAMPLES))
    from tasks import add, app

    started_s = time.monotonic()
    try:
        ids = [add.delay(i, i).id for i in range(count)]
    finally:
        app.close()
    print(f"sent {count} tasks.add calls in {time.monotonic() - started_s:.1f}s", flush=True)
    if ids_file is not None:
        ids_file.write_text(json.dumps(ids))
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)
    p_burst = sub.add_parser("burst", help="send a burst of tasks.add calls to CELERIAC_BROKER_URL")
    p_burst.add_argument("--count", type=int, default=2000)
    p_burst.add_argument("--ids-file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "burst":
        send_burst(args.count, args.ids_file)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``celeriac beat`` (placeholder until issue 5 lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``celeriac beat`` on the top-level subparsers."""
    beat = commands.add_parser("beat", parents=[common], help="run the scheduler")
    beat.set_defaults(handler=_not_ready)


def _not_ready(app: Any, args: argparse.Namespace) -> int:
    from celeriac.cli import UsageError

    raise UsageError("celeriac beat is not implemented yet")

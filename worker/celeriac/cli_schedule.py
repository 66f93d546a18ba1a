"""``celeriac schedule``: check a schedule before applying it (placeholder until issue 5 lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``celeriac schedule`` on the top-level subparsers."""
    schedule = commands.add_parser("schedule", parents=[common], help="inspect schedules")
    schedule.set_defaults(handler=_not_ready)


def _not_ready(app: Any, args: argparse.Namespace) -> int:
    from celeriac.cli import UsageError

    raise UsageError("celeriac schedule is not implemented yet")

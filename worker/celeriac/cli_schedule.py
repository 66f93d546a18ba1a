"""``celeriac schedule next``: print when a schedule fires, so it can be checked before it is applied.

``celeriac schedule next '30 2 * * *' --tz America/New_York -n 3`` prints one fire time per line,
first in the zone and then in UTC::

    2026-03-08T03:00:00-04:00  2026-03-08T07:00:00Z

EXPR is a cron expression or macro (``'0 9 * * 1-5'``, ``@daily``) or an interval (``90``,
``30s``, ``5m``, ``1h``, ``1d``). The same rules as ``celeriac beat`` apply, daylight saving
included, because both use :mod:`celeriac.schedules`.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from celeriac.schedules import Cron, Every, Schedule, ScheduleError, load_zone, parse_every

MAX_COUNT = 1000


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``celeriac schedule`` on the top-level subparsers."""
    schedule = commands.add_parser("schedule", parents=[common], help="check a schedule before applying it")
    actions = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    upcoming = actions.add_parser(
        "next", parents=[common], help="print the next fire times of a cron expression or interval",
        description="Print the next fire times, local time in --tz and UTC, one per line.",
    )
    upcoming.add_argument("expr", metavar="EXPR",
                          help="cron expression ('0 9 * * 1-5', @daily) or interval (90, 30s, 5m, 1h, 1d)")
    upcoming.add_argument("--tz", default="UTC", help="IANA time zone the cron expression runs in (UTC)")
    upcoming.add_argument("--after", help="ISO 8601 start instant; without an offset it is local to --tz (now)")
    upcoming.add_argument("-n", "--count", default="5", help=f"how many fire times, 1-{MAX_COUNT} (5)")
    upcoming.set_defaults(handler=cmd_schedule_next)


def cmd_schedule_next(app: Any, args: argparse.Namespace) -> int:
    """Print the next ``-n`` fire times of EXPR after ``--after`` (or now)."""
    from celeriac.cli import EXIT_OK, UsageError

    try:
        zone = load_zone(args.tz)
        found = parse_expr(args.expr, args.tz)
        after = _parse_after(args.after, zone)
    except ScheduleError as exc:
        raise UsageError(str(exc)) from exc
    count = _parse_count(args.count)
    for _ in range(count):
        after = found.next_after(after)
        print(f"{after.astimezone(zone).isoformat()}  {after.isoformat().replace('+00:00', 'Z')}")
    return EXIT_OK


def parse_expr(expr: str, tz: str) -> Schedule:
    """A cron expression or macro (has a space or starts with ``@``), else an interval."""
    text = expr.strip()
    if text.startswith("@") or len(text.split()) > 1:
        return Cron(text, tz)
    try:
        return Every(parse_every(text))
    except ScheduleError as exc:
        raise ScheduleError(
            f"{expr!r} is neither a cron expression (five fields such as '0 9 * * 1-5', or @daily) "
            f"nor an interval (90, 30s, 5m, 1h, 1d): {exc}"
        ) from exc


def _parse_after(text: str | None, zone: Any) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw)
    except ValueError:
        raise ScheduleError(
            f"--after {text!r} is not an ISO 8601 time such as 2026-03-08T01:30:00 or 2026-03-08T06:30:00Z"
        ) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _parse_count(text: str) -> int:
    from celeriac.cli import UsageError

    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise UsageError(f"-n {text!r}: give a whole number from 1 to {MAX_COUNT}")
    return int(text)

"""When scheduled tasks fire: intervals (:class:`Every`) and cron expressions in a time zone (:class:`Cron`).

A schedule is a pure function of time: given an instant it names the next *slot* (the instant
an entry is due). Every replica of ``celeriac beat`` computes the same slots, which is what lets
the scheduler derive one task id per (entry, slot) and publish each slot once.

- :class:`Every` slots sit at the UNIX epoch plus whole multiples of the interval (UTC), so
  ``every 5m`` fires at :00, :05, ... regardless of when the scheduler started.
- :class:`Cron` is evaluated on local wall-clock time in its IANA zone. Daylight saving:
  a local time that does not exist (spring-forward gap) fires once, at the first instant after
  the gap; a local time that occurs twice (fall-back) fires once, at its first occurrence.

``crontab(...)`` and ``schedule(...)`` mirror :mod:`celery.schedules` so a Celery
``beat_schedule`` ports unchanged; :func:`from_beat_entry` reads such an entry's ``schedule``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celeriac.cron import CronFields, ScheduleError, next_wall_minute, parse_cron

__all__ = [
    "Cron", "Every", "Schedule", "ScheduleError", "build_schedule", "crontab", "from_beat_entry",
    "load_zone", "parse_every", "schedule",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_MINUTE = timedelta(minutes=1)
_MIN_INTERVAL = timedelta(seconds=1)
_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY_PATTERN = re.compile(r"([0-9]+)([smhd]?)")


@runtime_checkable
class Schedule(Protocol):
    """What the scheduler needs from a schedule; every instant in and out is timezone-aware."""

    def next_after(self, after: datetime) -> datetime:
        """The first slot strictly after ``after`` (aware, any zone), as aware UTC."""
        ...

    def slots_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """Every slot in ``(start, end]``, ascending, aware UTC; ``limit`` keeps the *last* ``limit``."""
        ...

    def describe(self) -> str:
        """A short human description, e.g. ``every 30s`` or ``cron '0 9 * * 1-5' in Europe/London``."""
        ...

    @property
    def period_hint_s(self) -> float:
        """Typical spacing between slots in seconds (for cron: the smallest gap among the next few)."""
        ...


def load_zone(tz: str | tzinfo) -> ZoneInfo:
    """The IANA zone named ``tz`` (a :class:`ZoneInfo` or ``datetime.timezone.utc`` passes through)."""
    if isinstance(tz, ZoneInfo):
        return tz
    if tz is timezone.utc:
        return ZoneInfo("UTC")
    if isinstance(tz, str) and tz.strip():
        try:
            return ZoneInfo(tz.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ScheduleError(f"unknown time zone {tz!r}: use an IANA name such as Europe/London")


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{what} must be a timezone-aware datetime, got {value!r}")


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _format_interval(interval: timedelta) -> str:
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds:g}s"


class Every:
    """Fire every ``interval`` (at least 1 s), at the UNIX epoch plus whole multiples of it, in UTC."""

    def __init__(self, interval: timedelta) -> None:
        if not isinstance(interval, timedelta):
            raise ScheduleError(f"Every() takes a timedelta, got {interval!r}; use parse_every() for '30s'")
        if interval < _MIN_INTERVAL:
            raise ScheduleError(f"every {_format_interval(interval)}: the interval must be at least 1 second")
        self.interval = interval
        self._step_us = _micros(interval)

    def next_after(self, after: datetime) -> datetime:
        _require_aware(after, "after")
        index = _micros(after - _EPOCH) // self._step_us + 1
        return _EPOCH + timedelta(microseconds=index * self._step_us)

    def slots_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        _require_aware(start, "start")
        _require_aware(end, "end")
        first = _micros(start - _EPOCH) // self._step_us + 1
        last = _micros(end - _EPOCH) // self._step_us
        if limit is not None:
            first = max(first, last - max(limit, 0) + 1)
        return [_EPOCH + timedelta(microseconds=index * self._step_us) for index in range(first, last + 1)]

    def describe(self) -> str:
        return f"every {_format_interval(self.interval)}"

    @property
    def period_hint_s(self) -> float:
        return self.interval.total_seconds()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Every) and other.interval == self.interval

    def __hash__(self) -> int:
        return hash(("every", self.interval))

    def __repr__(self) -> str:
        return f"Every({self.interval!r})"


def _resolve_wall(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (aware UTC) at which local wall-clock minute ``wall`` fires in ``zone``.

    Normal times map one to one. A repeated time (fall-back) takes its first occurrence
    (``fold=0``, the pre-transition offset). A time inside a gap (spring-forward) fires at the
    transition instant itself, the first instant after the gap.
    """
    offset_first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    offset_second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert offset_first is not None  # a ZoneInfo always has an offset
    assert offset_second is not None
    if offset_first >= offset_second:  # unambiguous, or repeated: first occurrence
        return (wall - offset_first).replace(tzinfo=timezone.utc)
    # In a gap, fold=0 reads the wall time with the offset before the transition and fold=1 with
    # the one after; the transition lies between the two readings. Bisect it to the second.
    before_s = int((wall - offset_second - _NAIVE_EPOCH).total_seconds())
    after_s = int((wall - offset_first - _NAIVE_EPOCH).total_seconds())
    while after_s - before_s > 1:
        middle_s = (before_s + after_s) // 2
        if datetime.fromtimestamp(middle_s, zone).utcoffset() == offset_first:
            before_s = middle_s
        else:
            after_s = middle_s
    return datetime.fromtimestamp(after_s, timezone.utc)


class Cron:
    """A five-field cron expression (or ``@macro``) evaluated on wall-clock time in ``tz``.

    ``tz=None`` means "not given": UTC until :func:`from_beat_entry` supplies the app's zone.
    ``day_or=False`` makes day-of-month and day-of-week both required (Celery's ``crontab``).
    """

    def __init__(self, expr: str, tz: str | tzinfo | None = "UTC", *, day_or: bool = True) -> None:
        self.fields: CronFields = parse_cron(expr, day_or=day_or)
        self.expr = " ".join(expr.split())
        self.zone = load_zone("UTC" if tz is None else tz)
        self.zone_given = tz is not None
        self.day_or = day_or
        self._period_hint_s: float | None = None

    @property
    def tz(self) -> str:
        """The zone's IANA name."""
        return self.zone.key

    def with_zone(self, tz: str | tzinfo) -> Cron:
        """The same expression evaluated in ``tz``."""
        return Cron(self.expr, tz, day_or=self.day_or)

    def next_after(self, after: datetime) -> datetime:
        _require_aware(after, "after")
        wall = after.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0) + _ONE_MINUTE
        while True:
            wall = next_wall_minute(self.fields, wall)
            instant = _resolve_wall(wall, self.zone)
            if instant > after:  # not so only for walls in a repeated hour already passed, or a gap
                return instant
            wall += _ONE_MINUTE

    def slots_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        _require_aware(start, "start")
        _require_aware(end, "end")
        if limit is None:
            return self._walk(start, end)
        if limit <= 0:
            return []
        # Slots are at least a minute apart, so search backwards from `end` in growing windows
        # instead of walking a long outage slot by slot.
        window = timedelta(minutes=limit)
        while True:
            window_start = max(start, end - window)
            found = self._walk(window_start, end)
            if len(found) >= limit or window_start == start:
                return found[-limit:]
            window *= 4

    def _walk(self, start: datetime, end: datetime) -> list[datetime]:
        found: list[datetime] = []
        moment = start
        while True:
            moment = self.next_after(moment)
            if moment > end:
                return found
            found.append(moment)

    def describe(self) -> str:
        both_restricted = self.fields.dom_restricted and self.fields.dow_restricted
        both = " (day-of-month and day-of-week both required)" if both_restricted and not self.day_or else ""
        return f"cron {self.expr!r}{both} in {self.tz}"

    @property
    def period_hint_s(self) -> float:
        if self._period_hint_s is None:
            moment = datetime.now(timezone.utc)
            slots = [moment := self.next_after(moment) for _ in range(8)]
            self._period_hint_s = min((b - a).total_seconds() for a, b in itertools.pairwise(slots))
        return self._period_hint_s

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Cron) and (other.fields, other.zone.key, other.zone_given)
                == (self.fields, self.zone.key, self.zone_given))

    def __hash__(self) -> int:
        return hash(("cron", self.fields, self.zone.key, self.zone_given))

    def __repr__(self) -> str:
        tz = repr(self.tz) if self.zone_given else "None"
        return f"Cron({self.expr!r}, tz={tz}{'' if self.day_or else ', day_or=False'})"


def parse_every(value: int | float | str | timedelta) -> timedelta:
    """An interval from seconds (``30``, ``1.5``), ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a timedelta."""
    if isinstance(value, timedelta):
        interval = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ScheduleError(f"every {value!r}: the interval must be a finite number of seconds")
        interval = timedelta(seconds=value)
    elif isinstance(value, str):
        match = _EVERY_PATTERN.fullmatch(value.strip())
        if match is None:
            raise ScheduleError(
                f"every {value!r}: write whole seconds (30) or a whole number with a unit s, m, h or d "
                "('30s', '5m', '1h', '1d')"
            )
        interval = timedelta(seconds=int(match.group(1)) * _UNITS_S[match.group(2)])
    else:
        raise ScheduleError(f"every {value!r}: expected seconds, a string such as '5m', or a timedelta")
    if interval < _MIN_INTERVAL:
        raise ScheduleError(f"every {value!r}: the interval must be at least 1 second")
    return interval


def build_schedule(*, every: int | str | None = None, cron: str | None = None, tz: str = "UTC") -> Schedule:
    """The schedule of one entry: exactly one of ``every`` and ``cron`` (``tz`` applies to cron)."""
    if (every is None) == (cron is None):
        given = "both" if every is not None else "neither"
        raise ScheduleError(f"set exactly one of 'every' and 'cron' ({given} is set)")
    zone = load_zone(tz)  # checked for both kinds, so a typo never waits for the first cron entry
    if every is not None:
        return Every(parse_every(every))
    assert cron is not None
    return Cron(cron, zone)


CronSpec = int | str | Iterable[int]


def _crontab_field(value: Any, name: str) -> str:
    if value is None:
        return "*"
    if isinstance(value, bool):
        raise ScheduleError(f"crontab {name}={value!r}: expected a number, a string such as '*/15', or numbers")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = "".join(value.split())
        if not text:
            raise ScheduleError(f"crontab {name}={value!r} is empty; use '*' for every value")
        return text
    if isinstance(value, Iterable):
        items = sorted(value)
        if not items or not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            raise ScheduleError(f"crontab {name}={value!r}: a collection must hold one or more whole numbers")
        return ",".join(str(item) for item in items)
    raise ScheduleError(f"crontab {name}={value!r}: expected a number, a string such as '*/15', or numbers")


def crontab(minute: CronSpec = "*", hour: CronSpec = "*", day_of_week: CronSpec = "*",
            day_of_month: CronSpec = "*", month_of_year: CronSpec = "*", *,
            tz: str | tzinfo | None = None) -> Cron:
    """Celery's ``celery.schedules.crontab``: same argument names, order and meanings.

    As in Celery, day_of_month and day_of_week must *both* match when both are given, and
    ``day_of_week`` counts 0 = Sunday. ``tz=None`` takes the scheduler's zone (the app's
    ``timezone``, else UTC).
    """
    expr = " ".join((
        _crontab_field(minute, "minute"), _crontab_field(hour, "hour"),
        _crontab_field(day_of_month, "day_of_month"), _crontab_field(month_of_year, "month_of_year"),
        _crontab_field(day_of_week, "day_of_week"),
    ))
    return Cron(expr, tz, day_or=False)


def schedule(run_every: float | timedelta) -> Every:
    """Celery's ``celery.schedules.schedule``: every ``run_every`` seconds (or timedelta).

    Unlike Celery, slots are aligned to the UNIX epoch rather than to the last run.
    """
    return Every(parse_every(run_every))


def from_beat_entry(value: object, tz: str = "UTC") -> Schedule:
    """The schedule of a Celery-style ``beat_schedule[name]["schedule"]``.

    Accepts seconds, a timedelta, an :class:`Every` or :class:`Cron` (a cron without its own
    zone gets ``tz``), and Celery's own ``crontab``/``schedule`` objects, so configs that import
    from ``celery.schedules`` work too.
    """
    if isinstance(value, Every):
        return value
    if isinstance(value, Cron):
        return value if value.zone_given else value.with_zone(tz)
    if isinstance(value, timedelta) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return Every(parse_every(value))
    if type(value).__module__ == "celery.schedules":
        return _from_celery(value, tz)
    raise ScheduleError(
        f"beat_schedule 'schedule' {value!r} is not a schedule: use seconds, a timedelta, "
        "celeriac.schedules.crontab(...) or celeriac.schedules.schedule(...)"
    )


def _from_celery(value: Any, tz: str) -> Schedule:
    """Celery's crontab or schedule object, read through its public-ish attributes."""
    kind = type(value).__name__
    if kind == "crontab":
        return crontab(value._orig_minute, value._orig_hour, value._orig_day_of_week,
                       value._orig_day_of_month, value._orig_month_of_year, tz=tz)
    if kind == "schedule":
        return Every(parse_every(value.run_every))
    raise ScheduleError(f"Celery {kind} schedules are not supported; use crontab(...) or schedule(...)")

"""Five-field cron expressions: parse them, and find the next matching local wall-clock minute.

This module knows nothing about time zones: it matches *naive* wall-clock minutes. Turning a
wall-clock minute into an instant (and the daylight-saving rules that go with it) is
:class:`celeriac.schedules.Cron`'s job.

Syntax (Vixie cron, as Kubernetes CronJob accepts it): ``minute hour day-of-month month
day-of-week``; each field is ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``
(``a`` to the field's maximum), or a comma list of those. Months take ``jan``..``dec`` and
weekdays ``sun``..``sat`` (any case); day-of-week 0 and 7 are both Sunday. The macros
``@yearly @annually @monthly @weekly @daily @midnight @hourly`` stand for their usual fields.

When both day-of-month and day-of-week are restricted (neither is ``*``, ``?`` or ``*/1``), a day
matches if *either* matches, like Vixie cron and Kubernetes (``0 0 1 * mon``: the 1st and every
Monday). Celery's ``crontab`` requires *both*; :func:`parse_cron` takes ``day_or=False`` for it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from celeriac.exceptions import FatalError


class ScheduleError(FatalError):
    """A schedule that cannot be used as written; the message names the field and how to fix it."""


MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_WEEKDAYS = {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

# (name, lowest, highest, names, what the names are)
_FIELDS: tuple[tuple[str, int, int, dict[str, int], str], ...] = (
    ("minute", 0, 59, {}, ""),
    ("hour", 0, 23, {}, ""),
    ("day-of-month", 1, 31, {}, ""),
    ("month", 1, 12, _MONTHS, "a month name (jan..dec)"),
    ("day-of-week", 0, 7, _WEEKDAYS, "a weekday name (sun..sat)"),
)
_UNRESTRICTED = frozenset({"*", "?", "*/1"})
_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
# The Gregorian calendar repeats every 400 years, so any day pattern that can match does so within that.
_SEARCH_YEARS = 401


@dataclass(frozen=True)
class CronFields:
    """The allowed values of each field, sorted; weekdays use 0 = Sunday (7 folded into 0)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    dom_restricted: bool
    dow_restricted: bool
    day_or: bool

    def day_matches(self, day: date) -> bool:
        """Whether ``day`` is a firing day (month already checked)."""
        dom_ok = day.day in self.days
        dow_ok = day.isoweekday() % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted and self.day_or:
            return dom_ok or dow_ok
        return dom_ok and dow_ok


def expand_macro(expr: str) -> str:
    """The five fields an ``@macro`` stands for (other expressions whitespace-normalised)."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        fields = MACROS.get(text.lower())
        if fields is None:
            raise ScheduleError(
                f"cron {expr!r}: {text} is not a known macro; use one of {', '.join(MACROS)} or five fields"
            )
        return fields
    return text


def parse_cron(expr: str, *, day_or: bool = True) -> CronFields:
    """Parse ``expr``; a :class:`ScheduleError` names the wrong field and value."""
    if not isinstance(expr, str):
        raise ScheduleError(f"cron expression must be a string such as '0 9 * * 1-5', got {expr!r}")
    parts = expand_macro(expr).split()
    if len(parts) != 5:
        raise ScheduleError(
            f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or a macro such as @daily, got {len(parts)}"
        )
    values = [_parse_field(expr, index, text) for index, text in enumerate(parts)]
    weekdays = sorted({0 if day == 7 else day for day in values[4]})
    fields = CronFields(
        minutes=tuple(values[0]), hours=tuple(values[1]), days=tuple(values[2]), months=tuple(values[3]),
        weekdays=tuple(weekdays), dom_restricted=parts[2] not in _UNRESTRICTED,
        dow_restricted=parts[4] not in _UNRESTRICTED, day_or=day_or,
    )
    _check_can_fire(expr, fields)
    return fields


def _parse_field(expr: str, index: int, text: str) -> list[int]:
    name, lowest, highest, names, what_names = _FIELDS[index]
    where = f"cron {expr!r}: field {index + 1} ({name})"

    def value(token: str) -> int:
        if token.isdigit():
            number = int(token)
            if not lowest <= number <= highest:
                raise ScheduleError(f"{where} value {number} is out of range {lowest}-{highest}")
            return number
        if token.lower() in names:
            return names[token.lower()]
        if not token:
            raise ScheduleError(f"{where} {text!r} has a range or step with a missing value")
        kind = f"a number {lowest}-{highest}" + (f" or {what_names}" if what_names else "")
        raise ScheduleError(f"{where} {token!r} is not {kind}")

    found: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{where} {text!r} has an empty list item; separate values with single commas")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{where} step {step_text!r} in {item!r} must be a positive whole number")
            step = int(step_text)
        # An open end (`*`, `a/n`) stops at 6 in day-of-week: 7 (Sunday again) only when written.
        open_end = 6 if index == 4 else highest
        if span in ("*", "?"):
            first, last = lowest, open_end
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first, last = value(first_text), value(last_text)
            if first > last:
                raise ScheduleError(f"{where} range {span!r} is empty; write the lower bound first")
        else:
            first = value(span)
            last = open_end if slash else first
        found.update(range(first, last + 1, step))
    return sorted(found)


def _check_can_fire(expr: str, fields: CronFields) -> None:
    """Reject day-of-month/month combinations no calendar has (``0 0 30 2 *``), which would never fire."""
    if not fields.dom_restricted or (fields.dow_restricted and fields.day_or):
        return
    if any(day <= _LONGEST_MONTH[month] for month in fields.months for day in fields.days):
        return
    raise ScheduleError(
        f"cron {expr!r} never fires: no month among {','.join(map(str, fields.months))} has day "
        f"{','.join(map(str, fields.days))}"
    )


def _next_in(values: tuple[int, ...], current: int) -> int | None:
    """The smallest allowed value greater than ``current``, or None."""
    position = bisect.bisect_right(values, current)
    return values[position] if position < len(values) else None


def next_wall_minute(fields: CronFields, start: datetime) -> datetime:
    """The first naive wall-clock minute at or after ``start`` (naive, whole minute) that matches.

    Skips whole months, days and hours that cannot match, so a far-off match costs a few hundred
    steps, not a walk over every minute.
    """
    moment = start.replace(second=0, microsecond=0)
    last_year = start.year + _SEARCH_YEARS
    try:
        while moment.year <= last_year:
            if moment.month not in fields.months:
                month = _next_in(fields.months, moment.month)
                moment = (datetime(moment.year, month, 1) if month is not None
                          else datetime(moment.year + 1, fields.months[0], 1))
                continue
            if not fields.day_matches(moment.date()):
                moment = datetime(moment.year, moment.month, moment.day) + timedelta(days=1)
                continue
            if moment.hour not in fields.hours:
                hour = _next_in(fields.hours, moment.hour)
                moment = (moment.replace(hour=hour, minute=0) if hour is not None
                          else datetime(moment.year, moment.month, moment.day) + timedelta(days=1))
                continue
            if moment.minute not in fields.minutes:
                minute = _next_in(fields.minutes, moment.minute)
                moment = (moment.replace(minute=minute) if minute is not None
                          else moment.replace(minute=0) + timedelta(hours=1))
                continue
            return moment
    except (OverflowError, ValueError):
        pass  # ran past datetime.max
    raise ScheduleError(f"cron schedule never fires after {start.isoformat()} (searched {_SEARCH_YEARS} years)")

"""What the scheduler fires: :class:`Entry`, parsed from a BeatSchedule spec or ``beat_schedule``.

Both sources end up as the same frozen :class:`Entry`, so the loop, the policies and the
publisher never see raw dicts. Field names follow the BeatSchedule contract (camelCase in the
resource, snake_case here); ``beat_schedule`` uses Celery's keys plus two of Celeriac's
(``missed_run_policy``, ``max_catch_up``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celeriac.beat import BeatConfigError
from celeriac.schedules import Schedule, ScheduleError, build_schedule, from_beat_entry

POLICIES = ("skip", "runOnce", "runAll")
"""Missed-run policies: fire none, the most recent one, or up to ``max_catch_up`` oldest first."""
POLICY_ALIASES = {"skip": "skip", "runonce": "runOnce", "run_once": "runOnce", "runall": "runAll",
                  "run_all": "runAll"}
DEFAULT_POLICY = "runOnce"
DEFAULT_MAX_CATCH_UP = 10


@dataclass(frozen=True)
class Entry:
    """One scheduled task: fire ``task`` on ``queue`` at every slot of ``schedule``."""

    name: str
    task: str
    schedule: Schedule
    queue: str | None = None
    """A TaskQueue name (resource mode, mapped to a broker queue by ``CELERIAC_BEAT_QUEUES``) or a
    broker queue (config mode); None routes like ``send_task`` (task_routes, then the default queue)."""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None
    expires_s: float | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    missed_run_policy: str = DEFAULT_POLICY
    max_catch_up: int = DEFAULT_MAX_CATCH_UP
    suspend: bool = False


@dataclass(frozen=True)
class LeaseTimings:
    """Leader-election durations in seconds; ``retry < renew deadline < lease duration``."""

    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise BeatConfigError(
                f"leader election needs 0 < retry period ({self.retry_period_s}s) < renew deadline "
                f"({self.renew_deadline_s}s) < lease duration ({self.lease_duration_s}s); fix the values"
            )


@dataclass(frozen=True)
class ScheduleSpec:
    """A whole schedule source: entries, the global suspend switch and (resource mode) lease timings."""

    entries: tuple[Entry, ...]
    suspend: bool = False
    timings: LeaseTimings | None = None


def _policy(value: Any, where: str) -> str:
    policy = POLICY_ALIASES.get(str(value).lower()) if isinstance(value, str) else None
    if policy is None:
        raise BeatConfigError(f"{where}: missed-run policy {value!r} is not one of {', '.join(POLICIES)}")
    return policy


def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise BeatConfigError(f"{where} must be an integer {bound}, got {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BeatConfigError(f"{where} must be an object/dict, got {type(value).__name__}")
    return dict(value)


def _args(value: Any, where: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise BeatConfigError(f"{where} must be a list, got {type(value).__name__}")
    return tuple(value)


# -- resource mode --------------------------------------------------------------------------------


def spec_from_resource(resource: Mapping[str, Any]) -> ScheduleSpec:
    """Parse a BeatSchedule object (as the API returns it, defaults applied) into a :class:`ScheduleSpec`."""
    spec = _mapping(resource.get("spec"), "BeatSchedule spec")
    tz = str(spec.get("timeZone") or "UTC")
    raw_entries = spec.get("entries") or []
    if not isinstance(raw_entries, list):
        raise BeatConfigError("spec.entries must be a list")
    entries = tuple(entry_from_resource(raw, tz, i) for i, raw in enumerate(raw_entries))
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BeatConfigError(f"spec.entries has duplicate names {duplicates}; entry names must be unique")
    election = _mapping(spec.get("leaderElection"), "spec.leaderElection")
    timings = LeaseTimings(
        lease_duration_s=float(election.get("leaseDurationSeconds", 15)),
        renew_deadline_s=float(election.get("renewDeadlineSeconds", 10)),
        retry_period_s=float(election.get("retryPeriodSeconds", 2)),
    )
    return ScheduleSpec(entries, bool(spec.get("suspend", False)), timings)


def entry_from_resource(raw: Any, tz: str, index: int = 0) -> Entry:
    """One item of ``spec.entries``; ``tz`` is ``spec.timeZone`` (an entry's ``timeZone`` wins)."""
    where = f"spec.entries[{index}]"
    item = _mapping(raw, where)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BeatConfigError(f"{where}.name is required")
    where = f"entry {name!r}"
    task = item.get("task")
    if not isinstance(task, str) or not task:
        raise BeatConfigError(f"{where}: task is required (the registered task name)")
    queue = item.get("queue")
    if not isinstance(queue, str) or not queue:
        raise BeatConfigError(f"{where}: queue is required (a TaskQueue name in the namespace)")
    try:
        schedule = build_schedule(every=item.get("every"), cron=item.get("cron"), tz=str(item.get("timeZone") or tz))
    except ScheduleError as exc:
        raise BeatConfigError(f"{where}: {exc}") from exc
    options = _mapping(item.get("options"), f"{where}: options")
    priority = options.get("priority")
    expires = options.get("expiresSeconds")
    return Entry(
        name=name,
        task=task,
        schedule=schedule,
        queue=queue,
        args=_args(item.get("args"), f"{where}: args"),
        kwargs=_mapping(item.get("kwargs"), f"{where}: kwargs"),
        priority=None if priority is None else _int(priority, f"{where}: options.priority", 0, 9),
        expires_s=None if expires is None else float(_int(expires, f"{where}: options.expiresSeconds", 1)),
        headers={str(k): str(v) for k, v in _mapping(options.get("headers"), f"{where}: options.headers").items()},
        missed_run_policy=_policy(item.get("missedRunPolicy", DEFAULT_POLICY), where),
        max_catch_up=_int(item.get("maxCatchUp", DEFAULT_MAX_CATCH_UP), f"{where}: maxCatchUp", 1, 1000),
        suspend=bool(item.get("suspend", False)),
    )


# -- config mode ----------------------------------------------------------------------------------


def spec_from_beat_schedule(beat_schedule: Any, tz: str = "UTC") -> ScheduleSpec:
    """Parse Celery's ``beat_schedule`` setting; ``tz`` is the app's ``timezone`` (UTC when unset)."""
    if not isinstance(beat_schedule, Mapping):
        raise BeatConfigError(f"beat_schedule must be a dict of name -> entry, got {type(beat_schedule).__name__}")
    entries = tuple(entry_from_beat_schedule(str(name), value, tz) for name, value in beat_schedule.items())
    return ScheduleSpec(entries)


def entry_from_beat_schedule(name: str, raw: Any, tz: str = "UTC") -> Entry:
    """One ``beat_schedule`` item: ``{"task", "schedule", "args", "kwargs", "options", ...}``."""
    where = f"beat_schedule[{name!r}]"
    item = _mapping(raw, where)
    task = item.get("task")
    if not isinstance(task, str) or not task:
        raise BeatConfigError(f"{where}: 'task' is required (the registered task name)")
    if "schedule" not in item:
        raise BeatConfigError(f"{where}: 'schedule' is required (seconds, timedelta, crontab(...) or schedule(...))")
    try:
        schedule = from_beat_entry(item["schedule"], tz)
    except ScheduleError as exc:
        raise BeatConfigError(f"{where}: {exc}") from exc
    options = _mapping(item.get("options"), f"{where}['options']")
    expires = options.get("expires")
    if isinstance(expires, timedelta):
        expires = expires.total_seconds()
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires <= 0):
        raise BeatConfigError(f"{where}: options['expires'] must be positive seconds, got {expires!r}")
    priority = options.get("priority")
    queue = options.get("queue")
    return Entry(
        name=name,
        task=task,
        schedule=schedule,
        queue=str(queue) if queue else None,
        args=_args(item.get("args"), f"{where}['args']"),
        kwargs=_mapping(item.get("kwargs"), f"{where}['kwargs']"),
        priority=None if priority is None else _int(priority, f"{where}: options['priority']", 0, 9),
        expires_s=None if expires is None else float(expires),
        headers=_mapping(options.get("headers"), f"{where}: options['headers']"),
        missed_run_policy=_policy(item.get("missed_run_policy", DEFAULT_POLICY), where),
        max_catch_up=_int(item.get("max_catch_up", DEFAULT_MAX_CATCH_UP), f"{where}['max_catch_up']", 1, 1000),
        suspend=bool(item.get("suspend", False)),
    )

"""``BeatSchedule`` (``bs``): periodic tasks published by a leader-elected ``celeriac beat`` Deployment.

Status has two writers with distinct fields: the leading beat process (``leader``, ``leaderSince``,
``entries``, ``lastRunTime``) and the operator (``observedGeneration``, ``entryCount``, ``conditions``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from celeriac_operator import names
from celeriac_operator.models.common import (
    K8S_NAME_PATTERN,
    AnyValue,
    FreeForm,
    IntOrString,
    Model,
    Resource,
    ResourceRequirements,
    ResourceStatus,
    cel,
    rule,
)
from celeriac_operator.models.workerpool import PullPolicy

ENTRY_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
EVERY_PATTERN = r"^[1-9][0-9]*(s|m|h|d)$"
"""``every`` as a string: a positive count of seconds, minutes, hours or days (``30s``, ``5m``, ``1h``, ``1d``)."""
_EVERY_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELD = r"[0-9A-Za-z*/,?-]+"
CRON_PATTERN = rf"^({'|'.join(CRON_MACROS)}|{_CRON_FIELD}( +{_CRON_FIELD}){{4}})$"
"""Five space-separated fields (minute hour day-of-month month day-of-week) or a macro. The beat parses the
fields fully and reports a bad value in the BeatSchedule's conditions; admission checks the shape."""
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+/-]*$"


class EntryOptions(Model):
    """Publish options for an entry's messages."""

    priority: int | None = Field(default=None, ge=0, le=9, description="Message priority, 0..9 (9 is highest).")
    expires_seconds: int | None = Field(
        default=None, ge=1, description="Seconds after publication when a worker discards the message unrun."
    )
    headers: dict[str, str] | None = Field(default=None, description="Extra message headers.")


class BeatEntry(Model):
    """One periodic task: exactly one of `every` or `cron`."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            rule("has(self.every) || has(self.cron)", "set one of every or cron"),
            rule("!(has(self.every) && has(self.cron))", "every and cron are mutually exclusive: set only one"),
        )
    }

    name: str = Field(
        min_length=1, max_length=63, pattern=ENTRY_NAME_PATTERN,
        description="Entry name (lowercase DNS label); part of each run's deterministic task id.",
    )
    task: str = Field(min_length=1, max_length=256, description="Registered task name, e.g. `tasks.add`.")
    args: list[AnyValue] = Field(
        default_factory=list, max_length=64, description="Positional arguments.", json_schema_extra={"default": []}
    )
    kwargs: FreeForm = Field(default_factory=dict, description="Keyword arguments.", json_schema_extra={"default": {}})
    queue: str = Field(
        min_length=1, max_length=253, pattern=K8S_NAME_PATTERN,
        description="Name of a TaskQueue in the same namespace to publish to.",
    )
    every: IntOrString | None = Field(
        default=None,
        description="Interval: whole seconds (`30`) or a duration (`30s`, `5m`, `1h`, `1d`).",
        json_schema_extra=cel(rule(
            "type(self) == int ? self >= 1 : self.matches('" + EVERY_PATTERN + "')",
            "every must be a positive number of seconds or a duration like 30s, 5m, 1h, 1d",
        ), maxLength=16),
    )
    cron: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="Cron expression: five fields (minute hour day-of-month month day-of-week) or "
        + ", ".join(f"`{m}`" for m in CRON_MACROS) + ".",
        json_schema_extra=cel(rule(
            "self.matches('" + CRON_PATTERN.replace("\\", "\\\\") + "')",
            "cron must have 5 space-separated fields (minute hour day-of-month month day-of-week) or be one of "
            + ", ".join(CRON_MACROS),
        )),
    )
    time_zone: str | None = Field(
        default=None, max_length=64, pattern=TIME_ZONE_PATTERN,
        description="IANA time zone of `cron` for this entry. Default: `spec.timeZone`.",
    )
    options: EntryOptions | None = Field(default=None, description="Publish options.")
    missed_run_policy: Literal["skip", "runOnce", "runAll"] = Field(
        default="runOnce",
        description="Slots missed while no leader ran: `skip` them, `runOnce` (the latest) or `runAll` "
        "(up to `maxCatchUp`).",
    )
    max_catch_up: int = Field(default=10, ge=1, le=1000, description="Most missed slots run for `runAll`.")
    suspend: bool = Field(default=False, description="Stop firing this entry.")

    def interval_s(self) -> int | None:
        """``every`` in seconds (None for a cron entry)."""
        if self.every is None:
            return None
        if isinstance(self.every, int):
            return self.every
        match = re.fullmatch(EVERY_PATTERN, self.every)
        if match is None:
            raise ValueError(f"every {self.every!r} is not whole seconds or a duration like 30s, 5m, 1h, 1d")
        return int(self.every[:-1]) * _EVERY_UNIT_S[match.group(1)]


class LeaderElectionSpec(Model):
    """Lease timings for the beat replicas (a `coordination.k8s.io` Lease named `<name>-beat`)."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            rule(
                "self.retryPeriodSeconds < self.renewDeadlineSeconds",
                "leaderElection.retryPeriodSeconds must be < renewDeadlineSeconds",
                field_path=".retryPeriodSeconds",
            ),
            rule(
                "self.renewDeadlineSeconds < self.leaseDurationSeconds",
                "leaderElection.renewDeadlineSeconds must be < leaseDurationSeconds",
                field_path=".renewDeadlineSeconds",
            ),
        )
    }

    lease_duration_seconds: int = Field(
        default=15, ge=2, le=3600, description="How long a lease is valid; bounds the failover time."
    )
    renew_deadline_seconds: int = Field(
        default=10, ge=1, le=3600, description="A leader that has not renewed within this stops firing."
    )
    retry_period_seconds: int = Field(default=2, ge=1, le=3600, description="Seconds between acquire/renew attempts.")


TimeZone = Annotated[str, Field(min_length=1, max_length=64, pattern=TIME_ZONE_PATTERN)]


class BeatScheduleSpec(Model):
    """Desired state of a BeatSchedule."""

    time_zone: TimeZone = Field(default="UTC", description="IANA time zone of the `cron` entries, e.g. `Europe/Paris`.")
    replicas: int = Field(default=2, ge=1, le=5, description="Beat replicas; one leads at a time.")
    image: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="Beat image. Default: the operator's `CELERIAC_OPERATOR_WORKER_IMAGE`.",
    )
    image_pull_policy: PullPolicy | None = Field(default=None, description="Kubernetes image pull policy.")
    suspend: bool = Field(default=False, description="Stop firing every entry.")
    leader_election: LeaderElectionSpec = Field(
        default=LeaderElectionSpec(), description="Lease timings.",
        json_schema_extra={"default": LeaderElectionSpec().to_json()},
    )
    resources: ResourceRequirements | None = Field(default=None, description="Beat container resources.")
    entries: list[BeatEntry] = Field(
        min_length=1, max_length=100, description="The periodic tasks, keyed by `name`.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    def entry(self, name: str) -> BeatEntry | None:
        """The entry of that name."""
        return next((e for e in self.entries if e.name == name), None)


class EntryStatus(Model):
    """What the leading beat recorded for one entry."""

    name: str = Field(max_length=63, description="Entry name.")
    last_slot_time: datetime | None = Field(default=None, description="The schedule slot last fired.")
    last_run_time: datetime | None = Field(default=None, description="When that slot's message was published.")
    next_run_time: datetime | None = Field(default=None, description="The next slot.")
    last_task_id: str | None = Field(default=None, max_length=256, description="Task id of the last published message.")


class BeatScheduleStatus(ResourceStatus):
    """Observed state of a BeatSchedule. Conditions (operator): `Ready`, `QueuesResolved`."""

    leader: str | None = Field(default=None, max_length=253, description="Pod name of the leading beat (beat-written).")
    leader_since: datetime | None = Field(
        default=None, description="When the current leader took the lease (beat-written).",
    )
    entries: list[EntryStatus] = Field(
        default_factory=list, max_length=100, description="Per-entry run record (beat-written).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    last_run_time: datetime | None = Field(
        default=None, description="Latest publication over all entries (beat-written).",
    )
    entry_count: int | None = Field(default=None, ge=0, description="Number of entries (operator-written).")

    def entry(self, name: str) -> EntryStatus | None:
        """The recorded status of that entry."""
        return next((e for e in self.entries if e.name == name), None)


class BeatSchedule(Resource):
    """A parsed BeatSchedule."""

    kind: ClassVar[str] = names.BEATSCHEDULE_KIND
    summary: ClassVar[str] = "Periodic tasks published by a leader-elected `celeriac beat` Deployment."
    plural: ClassVar[str] = names.BEATSCHEDULE_PLURAL

    spec: BeatScheduleSpec
    status: BeatScheduleStatus = Field(default_factory=BeatScheduleStatus)

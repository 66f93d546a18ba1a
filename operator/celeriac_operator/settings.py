"""The operator's settings: one frozen dataclass, loaded from ``CELERIAC_OPERATOR_*`` environment variables.

Command-line flags of ``python -m celeriac_operator`` override the environment (see ``__main__``).
Every field documents its unit, its default and why it exists; docs/operator.md has the same table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from celeriac_operator.errors import SettingsError

ENV_PREFIX = "CELERIAC_OPERATOR_"

LOG_FORMATS = ("text", "json")

START_PRIORITY_BASE = 2**45
"""Larger than any millisecond timestamp until the year 3084, so start-time priorities stay positive."""


@dataclass(frozen=True)
class Settings:
    """What the operator process needs to know; all fields have safe defaults."""

    worker_image: str = "ghcr.io/celeriac/celeriac:0.1.0"
    """Image for worker and beat pods whose resource sets no ``image`` (env ``..._WORKER_IMAGE``)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (env ``..._NAMESPACES``, comma-separated). Empty with ``all_namespaces``
    false means the operator refuses to start: watching everything must be an explicit choice."""

    all_namespaces: bool = False
    """Watch every namespace (env ``..._ALL_NAMESPACES``, ``true``/``false``); needs the ClusterRole."""

    peering_name: str = "celeriac-operator"
    """Name of the KopfPeering (namespaced mode) or ClusterKopfPeering (cluster-wide) object through which
    replicas of the operator agree that only one of them is active (env ``..._PEERING_NAME``)."""

    standalone: bool = False
    """Skip peering: for a single replica, development and tests (env ``..._STANDALONE``)."""

    priority: int | None = None
    """Peering priority of this replica; the highest live one is active (env ``..._PRIORITY``). kopf pauses
    *all* replicas that share the highest priority, so the default is derived from the start time in
    milliseconds (earlier start = higher): the longest-running replica stays active, and replicas of one
    Deployment never tie."""

    liveness_port: int = 8080
    """Port of the liveness endpoint ``GET /healthz`` served by kopf (env ``..._LIVENESS_PORT``);
    0 disables it."""

    liveness_host: str = "0.0.0.0"
    """Address the liveness endpoint binds to (env ``..._LIVENESS_HOST``)."""

    log_format: str = "text"
    """``text`` (human) or ``json`` (one JSON object per line, for log collectors) (env ``..._LOG_FORMAT``)."""

    verbose: bool = False
    """Debug-level logs (env ``..._VERBOSE``)."""

    taskqueue_check_interval_s: float = 10.0
    """Seconds between broker checks of each TaskQueue (backlog, reachability) (env
    ``..._TASKQUEUE_CHECK_INTERVAL_S``)."""

    recheck_interval_s: float = 10.0
    """Seconds between re-reconciles of each WorkerPool and BeatSchedule, so problems found after admission
    (a missing TaskQueue or Secret) recover on their own when fixed (env ``..._RECHECK_INTERVAL_S``)."""

    heartbeat_stale_after_s: float = 15.0
    """Worker heartbeats older than this many seconds are ignored by the autoscaler (env
    ``..._HEARTBEAT_STALE_AFTER_S``); three times the worker's default 5 s heartbeat."""

    redis_key_prefix: str = ""
    """Key prefix of the workers' Redis keys (Celery's ``global_keyprefix``) (env ``..._REDIS_KEY_PREFIX``)."""

    retry_delay_s: float = 2.0
    """Seconds before kopf retries a handler after a conflict (HTTP 409) or a transient API error (env
    ``..._RETRY_DELAY_S``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings with every field that has a ``CELERIAC_OPERATOR_<FIELD>`` variable taken from it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            values[field.name] = _parse(field.name, field.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the non-None ``changes`` applied (command-line flags over the environment)."""
        settings = replace(self, **{k: v for k, v in changes.items() if v is not None})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise SettingsError naming the variable when a value can't work."""
        if self.log_format not in LOG_FORMATS:
            choices = ", ".join(LOG_FORMATS)
            raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT must be one of {choices}, not {self.log_format!r}")
        if not 0 <= self.liveness_port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}LIVENESS_PORT must be 0..65535, not {self.liveness_port}")
        for name in ("taskqueue_check_interval_s", "recheck_interval_s", "heartbeat_stale_after_s", "retry_delay_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be > 0, not {getattr(self, name)}")

    def effective_priority(self, started_at_s: float) -> int:
        """``priority``, or the start-time default (see the field's docstring)."""
        if self.priority is not None:
            return self.priority
        return START_PRIORITY_BASE - int(started_at_s * 1000)

    @property
    def liveness_endpoint(self) -> str | None:
        """kopf's ``liveness_endpoint`` URL, or None when disabled."""
        if not self.liveness_port:
            return None
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"


def _parse(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    variable = ENV_PREFIX + name.upper()
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{variable} must be true or false, not {raw!r}")
    if kind in ("int", "int | None"):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{variable} must be an integer, not {raw!r}") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{variable} must be a number (seconds), not {raw!r}") from None
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw

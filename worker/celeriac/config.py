"""Settings under Celery's names, with attribute and item access.

``app.conf.broker_url`` and ``app.conf["broker_url"]`` are the same thing. Two
environment variables win over code, so one image can be pointed at any broker by
its pod spec: ``CELERIAC_BROKER_URL`` and ``CELERIAC_RESULT_BACKEND``. Unknown names
are kept (Celery apps carry their own settings) but never change Celeriac's behaviour.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import timedelta
from typing import Any

from celeriac.exceptions import ImproperlyConfigured
from celeriac.serialization import accept_set

DEFAULT_URL = "redis://localhost:6379/0"

ENV_OVERRIDES = {"broker_url": "CELERIAC_BROKER_URL", "result_backend": "CELERIAC_RESULT_BACKEND"}
"""Setting -> environment variable that overrides it (read on every access)."""

DEFAULTS: dict[str, Any] = {
    # Connections
    "broker_url": DEFAULT_URL,
    "broker_transport_options": {},
    "result_backend": DEFAULT_URL,
    "result_backend_transport_options": {},
    # Serialization: JSON by default; pickle only when listed in accept_content.
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": None,  # None: same as accept_content
    "task_compression": None,  # gzip (zlib framing, as kombu), bzip2 or lzma
    # Routing
    "task_routes": None,
    "task_default_queue": "celery",
    "task_default_exchange": "celery",
    "task_default_routing_key": "celery",
    "task_default_priority": None,
    "task_create_missing_queues": True,
    "task_inherit_parent_priority": False,
    # Task behaviour defaults
    "task_acks_late": False,
    "task_reject_on_worker_lost": None,
    "task_track_started": False,
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_time_limit": None,  # seconds
    "task_soft_time_limit": None,  # seconds
    "task_default_rate_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_send_sent_event": False,
    "task_annotations": None,
    # Results
    "result_expires": timedelta(days=1),  # seconds or timedelta; None or 0 = never expire
    "result_extended": False,
    "result_chord_join_timeout": 3.0,  # seconds
    # Worker
    "worker_prefetch_multiplier": 4,
    "worker_concurrency": None,
    "worker_max_tasks_per_child": None,
    "worker_disable_rate_limits": False,
    "worker_send_task_events": False,
    "worker_shutdown_timeout_s": 25.0,  # Celeriac: warm-shutdown deadline, below a pod's 30 s grace
    # Celeriac: ack without running a scheduled message (header celeriac_scheduled) whose id is
    # already SUCCESS in the result backend: a duplicate from a scheduler failover never runs twice.
    # Costs one backend GET per scheduled message only; ordinary messages are not looked up.
    "worker_skip_succeeded_scheduled": True,
    # Scheduler (celeriac beat)
    "beat_schedule": {},  # Celery format: name -> {"task", "schedule", "args", "kwargs", "options"}
    "beat_lease_duration_s": 15.0,  # a Lease not renewed for this long (observed locally) may be taken
    "beat_renew_deadline_s": 10.0,  # a leader that has not renewed for this long stops firing (< lease)
    "beat_retry_period_s": 2.0,  # renew/acquire attempt interval; also the on-time window for a slot
    # Control and events
    "control_exchange": "celery",
    "event_exchange": "celeryev",
    # Time
    "timezone": None,  # None = UTC
    "enable_utc": True,
    # Modules imported by the worker at start
    "imports": (),
    "include": (),
}


class Settings(MutableMapping[str, Any]):
    """Celery-named settings: defaults, then code (``update``/assignment), then env overrides."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", copy.deepcopy(DEFAULTS))  # no shared mutable defaults
        if values:
            self.update(values)

    # Mapping protocol
    def __getitem__(self, key: str) -> Any:
        env = ENV_OVERRIDES.get(key)
        if env is not None:
            override = os.environ.get(env)
            if override:
                return override
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    # Attribute access
    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no setting named {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    # Derived values
    @property
    def result_expires_s(self) -> int | None:
        """``result_expires`` in whole seconds, or None when results never expire."""
        return as_seconds(self["result_expires"], "result_expires")

    @property
    def accept(self) -> frozenset[str]:
        """``accept_content`` as MIME types, for decoding messages."""
        return accept_set(self["accept_content"])

    @property
    def result_accept(self) -> frozenset[str]:
        """``result_accept_content`` (falls back to ``accept_content``) as MIME types."""
        return accept_set(self["result_accept_content"] or self["accept_content"])

    def from_object(self, source: object | str, namespace: str | None = None) -> None:
        """Load settings from an object or import path (``pkg.mod`` or ``pkg.mod:attr``).

        Only lower-case names are read; with ``namespace="CELERY"`` upper-case
        ``CELERY_BROKER_URL`` style names are read instead, like Celery's Django setup.
        """
        obj = load_object(source) if isinstance(source, str) else source
        prefix = f"{namespace}_" if namespace else None
        values = obj if isinstance(obj, Mapping) else {name: getattr(obj, name) for name in dir(obj)}
        for name, value in values.items():
            if prefix is not None:
                if name.startswith(prefix):
                    self[name[len(prefix) :].lower()] = value
            elif not name.startswith("_") and name.islower():
                self[name] = value


def as_seconds(value: Any, what: str) -> int | None:
    """A duration setting (seconds or timedelta) in whole seconds; None/0 mean "none"."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImproperlyConfigured(f"{what} must be seconds or a timedelta, got {value!r}")
    return int(value) or None


def load_object(path: str) -> Any:
    """Import ``pkg.mod`` or ``pkg.mod:attr`` (``pkg.mod.attr`` also works for attributes)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        if attr or "." not in module_name:
            raise
        module_name, _, attr = module_name.rpartition(".")
        module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module

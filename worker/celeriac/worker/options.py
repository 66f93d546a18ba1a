"""Worker settings: one frozen dataclass the CLI builds and :class:`~celeriac.worker.Worker` reads."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from celeriac.config import DEFAULTS

POOLS = ("prefork", "threads", "solo")


def default_hostname() -> str:
    """Celery's node name shape, ``celery@<host>``; a pod's name when ``POD_NAME`` is set."""
    return f"celeriac@{os.environ.get('POD_NAME') or socket.gethostname()}"


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker consumes and runs tasks.

    ``queues``: queues to consume, highest precedence first (default: the app's default queue).
    ``concurrency``: pool processes/threads (default: CPU count; ``solo`` always 1).
    ``pool``: ``prefork`` (forked processes; hard time limits kill and replace one),
    ``threads`` (a thread per slot; hard limits are not enforced) or ``solo`` (one thread).
    ``prefetch_multiplier``: messages held per slot (default: ``worker_prefetch_multiplier``).
    ``acks_late``: override ``task_acks_late`` for every task (None: task/config decides).
    ``health_port``: the /livez /readyz /metrics port (0: a free port; None: no server).
    ``shutdown_timeout_s``: how long a warm shutdown lets running tasks finish (default 25,
    below a pod's 30 s grace period) before it kills them and requeues their messages.
    ``max_tasks_per_child``: replace a prefork child after this many tasks (None: never).
    ``dead_letter_suffix``: malformed messages of queue Q go to ``Q<suffix>``.
    ``burst``: exit once the queues are empty and nothing is held or running (tests, batch jobs).
    ``fetch_timeout_s``: longest blocking wait for a message before the consumer re-checks.
    ``visibility_refresh_s``: how often held deliveries' unacked scores are refreshed
    (None: a third of the broker's ``visibility_timeout``).
    ``mingle``: at start, ask the other workers for their revoked task ids (Celery's mingle;
    off by default here, as it costs ``mingle_timeout_s`` when no other worker answers).
    """

    queues: tuple[str, ...] = ()
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    pool: str = "prefork"
    prefetch_multiplier: int | None = None
    acks_late: bool | None = None
    hostname: str = field(default_factory=default_hostname)
    loglevel: str = "INFO"
    events: bool = False
    health_port: int | None = 9808
    shutdown_timeout_s: float = DEFAULTS["worker_shutdown_timeout_s"]
    max_tasks_per_child: int | None = None
    dead_letter_suffix: str = ".dead"
    burst: bool = False
    fetch_timeout_s: float = 1.0
    visibility_refresh_s: float | None = None
    heartbeat_interval_s: float = 2.0
    pod_name: str | None = None
    mingle: bool = False
    mingle_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if isinstance(cast(object, self.queues), str):
            raise TypeError("queues must be a sequence of names, not one string")
        object.__setattr__(self, "queues", tuple(self.queues))
        if self.pool == "solo":
            object.__setattr__(self, "concurrency", 1)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any], **given: Any) -> WorkerOptions:
        """Options for an app: what ``given`` leaves unset (None) comes from its ``worker_*`` settings.

        Only ``concurrency``, ``prefetch_multiplier``, ``max_tasks_per_child``, ``events`` and
        ``shutdown_timeout_s`` have such a setting; every other name in ``given`` is taken as is.

        So ``app.conf.worker_concurrency = 8`` works as in Celery, and a command-line flag wins.
        """
        from_conf = {
            "concurrency": conf.get("worker_concurrency"),
            "prefetch_multiplier": conf.get("worker_prefetch_multiplier"),
            "max_tasks_per_child": conf.get("worker_max_tasks_per_child"),
            "events": conf.get("worker_send_task_events"),
            "shutdown_timeout_s": conf.get("worker_shutdown_timeout_s"),
        }
        settings = {name: value for name, value in from_conf.items() if value is not None}
        for name, value in given.items():
            if value is not None or name not in from_conf:
                settings[name] = value
        return cls(**settings)

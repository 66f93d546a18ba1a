"""Start and stop the observability parts (H3's modules) around the engine.

The health server, heartbeat, Celery events and the remote-control responder each run on
their own thread and only read :class:`~celeriac.worker.state.WorkerState`; the engine
never waits on them. The heartbeat record needs a Redis client: the broker's when the broker
is Redis, otherwise the result backend's. Events and remote control travel where Celery's
tools look for them, on the broker: Redis pub/sub, or with ``amqp_url`` RabbitMQ's
``celeryev`` and ``celery.pidbox`` exchanges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celeriac.worker.control import ControlResponder
from celeriac.worker.control_amqp import AmqpControlResponder
from celeriac.worker.events import AmqpEventSink, EventDispatcher
from celeriac.worker.health import HealthServer
from celeriac.worker.heartbeat import Heartbeat
from celeriac.worker.options import WorkerOptions
from celeriac.worker.state import WorkerState

log = logging.getLogger(__name__)


class Services:
    """Everything the worker runs beside its engine; ``start``/``stop`` in that order."""

    def __init__(
        self,
        state: WorkerState,
        options: WorkerOptions,
        redis_client: Any,
        *,
        db: int,
        prefix: str,
        terminate: Callable[[list[str], str], None],
        mark_revoked: Callable[[list[str]], None],
        task_names: Callable[[], list[str]],
        amqp_url: str | None = None,
        amqp_options: dict[str, Any] | None = None,
    ) -> None:
        self.health = HealthServer(state, options.health_port) if options.health_port is not None else None
        self.heartbeat = Heartbeat(redis_client, state, options.heartbeat_interval_s, prefix)
        self.events: EventDispatcher | None = None
        self.control: ControlResponder | AmqpControlResponder
        if amqp_url is not None:
            if options.events:
                self.events = EventDispatcher(AmqpEventSink(amqp_url, amqp_options), state)
            self.control = AmqpControlResponder(
                amqp_url, state, transport_options=amqp_options,
                terminate=terminate, mark_revoked=mark_revoked, task_names=task_names,
            )
        else:
            if options.events:
                self.events = EventDispatcher(redis_client, state, db=db, prefix=prefix)
            self.control = ControlResponder(
                redis_client, state, db=db, prefix=prefix,
                terminate=terminate, mark_revoked=mark_revoked, task_names=task_names,
            )

    def start(self) -> None:
        if self.health is not None:
            self.health.start()
            log.info("health server on port %d (/livez /readyz /metrics)", self.health.port)
        self.heartbeat.start()
        if self.events is not None:
            self.events.start()
        self.control.start()

    def mingle(self, timeout_s: float) -> int:
        """Sync revoked ids with the other workers (Celery's mingle); how many nodes answered."""
        return self.control.mingle(timeout_s)

    def stop(self) -> None:
        for name, part in (("control", self.control), ("events", self.events),
                           ("heartbeat", self.heartbeat), ("health", self.health)):
            if part is None:
                continue
            try:
                part.stop()
            except Exception:  # a failing observer must not block shutdown
                log.exception("stopping the %s service failed", name)

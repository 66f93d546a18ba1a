"""Celery-format events, readable by ``celery events``, Flower and Celery's ``app.events.Receiver``
(wire-protocol §4.2), over Redis pub/sub or an AMQP broker's ``celeryev`` topic exchange.

On Redis the ``celeryev`` exchange is a fanout: each event is ``PUBLISH``ed on
``[prefix]/{db}.celeryev/<routing key>`` (the type with ``-`` turned into ``.``) as kombu's
envelope: JSON body, base64 ``body_encoding``, headers ``{"hostname": node}``, delivery_mode 1.
An event body is ``{hostname, utcoffset, pid, clock, <fields>..., timestamp, type}``.

Task events are buffered and sent as one ``task.multi`` message whose body is a JSON list,
like Celery's prefork worker (at most ``buffer_limit`` per message, flushed every
``flush_interval_s``). Worker events go out at once: ``worker-online`` on start,
``worker-heartbeat`` every ``heartbeat_interval_s`` (2 s, Celery's default) and
``worker-offline`` on stop.

Events are best effort, like Celery's: pub/sub reaches live subscribers only, and a failed
publish is logged, never raised into the worker.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import threading
import time
import uuid
from typing import Any

import redis

from celeriac import __version__, keys
from celeriac.worker.state import WorkerState

log = logging.getLogger(__name__)

EVENT_EXCHANGE = "celeryev"
DEFAULT_HEARTBEAT_INTERVAL_S = 2.0
DEFAULT_BUFFER_LIMIT = 24
DEFAULT_FLUSH_INTERVAL_S = 0.1
SW_IDENT = "py-celery"
"""What monitors key their protocol handling on; we speak Celery's event protocol."""


class LamportClock:
    """Celery's logical clock: ``forward()`` on send, ``adjust(other)`` on receive."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    def adjust(self, other: int) -> int:
        with self._lock:
            self._value = max(self._value, int(other)) + 1
            return self._value


def utcoffset_hours() -> float:
    """Celery 5.7's ``utcoffset()``: hours *west* of UTC, as a float."""
    if time.localtime().tm_isdst:
        return time.altzone / 3600
    return time.timezone / 3600


def kombu_envelope(
    body: Any, *, exchange: str, routing_key: str, headers: dict[str, Any], delivery_mode: int
) -> str:
    """kombu's Redis envelope for a JSON body, with kombu's key order and separators."""
    return json.dumps({
        "body": base64.b64encode(json.dumps(body).encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "delivery_mode": delivery_mode,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def decode_envelope(raw: bytes | str) -> tuple[dict[str, Any], Any]:
    """``(headers, body)`` of a kombu envelope carrying JSON; raises ``ValueError`` otherwise.

    Only ``application/json`` is accepted: a pickle or other payload is refused, never loaded.
    """
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("envelope is not a JSON object")
    content_type = doc.get("content-type")
    if content_type != "application/json":
        raise ValueError(f"refusing content type {content_type!r}; only application/json is accepted")
    body = doc.get("body", "")
    properties = doc.get("properties") or {}
    if properties.get("body_encoding") == "base64":
        body = base64.b64decode(str(body).encode("ascii"), validate=True)
    headers = doc.get("headers") or {}
    return (headers if isinstance(headers, dict) else {}), json.loads(body)


class RedisEventSink:
    """Publishes events on Redis: the ``celeryev`` fanout exchange is pub/sub there."""

    def __init__(self, redis_client: redis.Redis[Any], *, db: int = 0, prefix: str = "") -> None:
        self.redis = redis_client
        self.db = db
        self.prefix = prefix

    def publish_event(self, body: Any, routing_key: str, headers: dict[str, Any]) -> None:
        channel = keys.fanout_channel(EVENT_EXCHANGE, routing_key, self.db, self.prefix)
        payload = kombu_envelope(body, exchange=EVENT_EXCHANGE, routing_key=routing_key, headers=headers,
                                 delivery_mode=1)
        try:
            self.redis.publish(channel, payload)
        except redis.RedisError as exc:
            log.warning("could not publish %s event: %s", routing_key, exc)

    def close(self) -> None:
        """The Redis client belongs to the caller."""


class AmqpEventSink:
    """Publishes events to the ``celeryev`` topic exchange of an AMQP broker (RabbitMQ) via kombu.

    One connection, guarded by a lock (kombu channels are not thread-safe); a failed publish
    drops that event and reconnects on the next one.
    """

    def __init__(self, url: str, transport_options: dict[str, Any] | None = None) -> None:
        import kombu

        self._kombu: Any = kombu
        self.url = url
        self._options = dict(transport_options or {})
        self._exchange: Any = self._kombu.Exchange(EVENT_EXCHANGE, type="topic")
        self._lock = threading.Lock()
        self._conn: Any = None
        self._producer: Any = None

    def publish_event(self, body: Any, routing_key: str, headers: dict[str, Any]) -> None:
        with self._lock:
            try:
                if self._producer is None:
                    self._conn = self._kombu.Connection(self.url, transport_options=self._options)
                    self._producer = self._kombu.Producer(self._conn.channel(), exchange=self._exchange)
                    self._exchange(self._producer.channel).declare()
                self._producer.publish(body, routing_key=routing_key, serializer="json", headers=headers,
                                       delivery_mode=1)
            except Exception as exc:  # kombu raises transport-specific errors; events are best effort
                log.warning("could not publish %s event: %s", routing_key, exc)
                self._reset()

    def _reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception as exc:
                log.debug("closing the events connection failed: %s", exc)
        self._conn = None
        self._producer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


class EventDispatcher:
    """Publishes one worker's Celery events; attach it to the WorkerState to emit task events.

    ``transport`` is a Redis client (events go over pub/sub, ``db`` and ``prefix`` apply) or a
    sink such as :class:`AmqpEventSink`.
    """

    def __init__(
        self,
        transport: redis.Redis[Any] | RedisEventSink | AmqpEventSink,
        state: WorkerState,
        *,
        db: int = 0,
        prefix: str = "",
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        buffer_task_events: bool = True,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        clock: LamportClock | None = None,
    ) -> None:
        self.sink = RedisEventSink(transport, db=db, prefix=prefix) if isinstance(transport, redis.Redis) else transport
        self.state = state
        self.hostname = state.hostname
        self.heartbeat_interval_s = heartbeat_interval_s
        self.buffer_task_events = buffer_task_events
        self.buffer_limit = buffer_limit
        self.flush_interval_s = flush_interval_s
        self.clock = clock or LamportClock()
        self.pid = os.getpid()
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def event(self, type_: str, fields: dict[str, Any]) -> dict[str, Any]:
        """An event body in Celery's field order."""
        body: dict[str, Any] = {
            "hostname": self.hostname, "utcoffset": utcoffset_hours(), "pid": self.pid,
            "clock": self.clock.forward(),
        }
        body.update(fields)
        body["timestamp"] = time.time()
        body["type"] = type_
        return body

    def send(self, type_: str, **fields: Any) -> None:
        """Send (or, for task events when buffering, queue) one event."""
        event = self.event(type_, fields)
        if self.buffer_task_events and type_.startswith("task-"):
            with self._lock:
                self._buffer.append(event)
                full = len(self._buffer) >= self.buffer_limit
            if full:
                if self._thread is not None:
                    self._wake.set()  # the events thread publishes; the engine never waits on I/O
                else:
                    self.flush()
            return
        self._publish(event, type_.replace("-", "."))

    def flush(self) -> None:
        """Send buffered task events as ``task.multi`` messages of at most ``buffer_limit`` events."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        for start in range(0, len(batch), self.buffer_limit):
            self._publish(batch[start : start + self.buffer_limit], "task.multi")

    def worker_fields(self) -> dict[str, Any]:
        snap = self.state.snapshot()
        return {
            "freq": self.heartbeat_interval_s, "active": snap["active"], "processed": snap["processed"],
            "loadavg": _loadavg(), "sw_ident": SW_IDENT, "sw_ver": __version__, "sw_sys": platform.system(),
        }

    def on_state_event(self, kind: str, fields: dict[str, Any]) -> None:
        """A :class:`WorkerState` listener: every task transition becomes a Celery event."""
        self.send(kind, **fields)

    def start(self) -> None:
        """Send ``worker-online``, attach to the state and start heartbeats and flushing."""
        self.send("worker-online", **self.worker_fields())
        self.state.add_listener(self.on_state_event)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="celeriac-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Flush, send ``worker-offline`` and stop the thread."""
        self.state.remove_listener(self.on_state_event)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        self.send("worker-offline", **self.worker_fields())
        self.sink.close()

    def _run(self) -> None:
        next_heartbeat = time.monotonic() + self.heartbeat_interval_s
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.flush()
            if time.monotonic() >= next_heartbeat:
                next_heartbeat += self.heartbeat_interval_s
                self.send("worker-heartbeat", **self.worker_fields())

    def _publish(self, body: Any, routing_key: str) -> None:
        self.sink.publish_event(body, routing_key, {"hostname": self.hostname})


def _loadavg() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return [0.0, 0.0, 0.0]

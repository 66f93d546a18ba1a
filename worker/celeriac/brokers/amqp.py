"""The AMQP broker (RabbitMQ) over kombu's pyamqp transport.

AMQP already has what Redis needs Lua for: the server tracks unacked deliveries per
channel (``basic_qos`` caps them), redelivers them if the connection drops, and
``basic_reject(requeue=True)`` puts one back. So this class is a thin, thread-safe
adapter: one connection and channel guarded by a lock (kombu channels are not
thread-safe), a consumer whose callback buffers messages, and ``fetch`` draining events
in short slices so acks from the engine thread interleave with a waiting fetch.

Dead-lettering publishes the message with the three ``x-celeriac-dead-letter-*`` headers
to the durable queue ``<queue>.dead`` and then acks the original.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import kombu as _kombu

from celeriac import keys
from celeriac.brokers import (
    DEAD_LETTER_QUEUE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_TIME_HEADER,
    Broker,
    BrokerConnectionError,
    Delivery,
    PublishItem,
)
from celeriac.message import Message

log = logging.getLogger(__name__)

kombu: Any = _kombu  # kombu's partial annotations would make every call untyped under --strict

DRAIN_SLICE_S = 0.05
"""Longest time ``fetch`` holds the channel lock while waiting, so acks are never held up longer."""

_PROPERTY_NAMES = ("correlation_id", "reply_to", "delivery_mode", "priority", "expiration")


class AmqpBroker(Broker):
    """A :class:`~celeriac.brokers.Broker` over RabbitMQ. Transport options go to kombu's Connection;
    ``dead_letter_suffix`` (default ``.dead``) names dead-letter queues."""

    def __init__(self, url: str, transport_options: dict[str, Any] | None = None) -> None:
        options = dict(transport_options or {})
        self.dead_letter_suffix = str(options.pop("dead_letter_suffix", keys.DEAD_LETTER_SUFFIX))
        self.url = url
        self._options = options
        self._lock = threading.RLock()
        self._conn: Any = None
        self._channel: Any = None
        self._consumer: Any = None
        self._consuming: tuple[str, ...] = ()
        self._buffer: list[Any] = []
        self._pending: dict[str, Any] = {}
        self._declared: set[str] = set()
        probe = kombu.Connection(url)
        self._recoverable: tuple[type[BaseException], ...] = (
            OSError, *probe.recoverable_connection_errors, *probe.recoverable_channel_errors,
        )
        self._channel_errors: tuple[type[BaseException], ...] = tuple(probe.channel_errors)

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._conn is None:
            conn = kombu.Connection(self.url, transport_options=self._options, connect_timeout=5)
            conn.ensure_connection(max_retries=1)
            self._conn = conn
            self._channel = conn.channel()
        return self._channel

    def _reset(self) -> None:
        """Forget the connection; the server redelivers whatever it had not seen acked."""
        conn, self._conn, self._channel, self._consumer = self._conn, None, None, None
        self._consuming = ()
        self._buffer.clear()
        self._pending.clear()
        self._declared.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # the socket is already broken; nothing to release
                log.debug("closing a broken AMQP connection failed", exc_info=True)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except self._recoverable as exc:
                self._reset()
                raise BrokerConnectionError(f"AMQP broker unavailable while {action}: {exc}") from exc

    # -- publishing ----------------------------------------------------------------------------

    def declare_queue(self, queue: str) -> None:
        with self._errors(f"declaring {queue!r}"):
            self._declare(queue)

    def _declare(self, queue: str) -> None:
        if queue not in self._declared:
            kombu.Queue(queue, kombu.Exchange(queue, "direct"), routing_key=queue, channel=self._connect()).declare()
            self._declared.add(queue)

    def publish_many(self, items: Iterable[PublishItem]) -> None:
        with self._errors("publishing"):
            producer = kombu.Producer(self._connect())
            for item in items:
                if item.queue and not item.exchange:
                    self._declare(item.queue)
                rk = item.routing_key if item.routing_key is not None else (item.queue or "")
                self._send(producer, item.message, item.exchange, rk, item.priority)

    def _send(self, producer: Any, message: Message, exchange: str, routing_key: str, priority: int) -> None:
        properties = {k: v for k, v in message.properties.items() if k in _PROPERTY_NAMES and k != "priority"}
        producer.publish(
            message.body,
            exchange=exchange,
            routing_key=routing_key,
            priority=message.properties.get("priority", priority),
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            headers=dict(message.headers),
            retry=False,
            **properties,
        )

    # -- consuming -----------------------------------------------------------------------------

    def fetch(self, queues: list[str], max_count: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._errors("fetching"):
                self._consume(queues, max_count)
                if not self._buffer:
                    self._drain(min(DRAIN_SLICE_S, max(0.0, deadline - time.monotonic())))
                if self._buffer:
                    while len(self._buffer) < max_count and self._drain(0):
                        pass
                    batch = self._buffer[:max_count]
                    del self._buffer[:max_count]  # in place: the consumer callback appends to this list
                    return [self._delivery(m) for m in batch]
            if time.monotonic() >= deadline:
                return []

    def _consume(self, queues: list[str], prefetch: int) -> None:
        if self._consumer is not None and self._consuming == tuple(queues):
            return
        channel = self._connect()
        for name in queues:
            self._declare(name)
        channel.basic_qos(prefetch_size=0, prefetch_count=prefetch, a_global=False)
        entities = [kombu.Queue(q, kombu.Exchange(q, "direct"), routing_key=q) for q in queues]
        self._consumer = kombu.Consumer(channel, entities, callbacks=[], on_message=self._buffer.append,
                                        accept=None, no_ack=False)
        self._consumer.consume()
        self._consuming = tuple(queues)

    def _drain(self, timeout_s: float) -> bool:
        """Deliver pending frames to the buffer; False when nothing came within ``timeout_s``."""
        try:
            self._conn.drain_events(timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def _delivery(self, raw: Any) -> Delivery:
        tag = str(raw.delivery_tag)
        self._pending[tag] = raw
        info = raw.delivery_info or {}
        props = {k: raw.properties[k] for k in _PROPERTY_NAMES if raw.properties.get(k) is not None}
        headers = dict(raw.headers or {})
        body = raw.body if isinstance(raw.body, bytes) else str(raw.body).encode(raw.content_encoding or "utf-8")
        message = Message(headers=headers, properties=props, body=body,
                          content_type=raw.content_type or "", content_encoding=raw.content_encoding or "")
        queue = str(info.get("routing_key") or "") if not info.get("exchange") else self._queue_of(info)
        return Delivery(
            message=message, queue=queue, exchange=str(info.get("exchange") or ""),
            routing_key=str(info.get("routing_key") or ""), delivery_tag=tag,
            redelivered=bool(info.get("redelivered")), priority=int(props.get("priority") or 0),
        )

    def _queue_of(self, info: dict[str, Any]) -> str:
        """The consumed queue a delivery came from (its consumer tag names one of ours)."""
        rk = str(info.get("routing_key") or "")
        return rk if rk in self._consuming else (self._consuming[0] if self._consuming else rk)

    def _take(self, delivery: Delivery) -> Any:
        return self._pending.pop(delivery.delivery_tag, None)

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        with self._errors("acking"):
            for d in deliveries:
                raw = self._take(d)
                if raw is not None:
                    raw.ack()

    def requeue(self, deliveries: Iterable[Delivery]) -> None:
        with self._errors("requeueing"):
            for d in deliveries:
                raw = self._take(d)
                if raw is not None:
                    raw.requeue()

    def republish(self, deliveries: Iterable[Delivery]) -> None:
        with self._errors("republishing"):
            producer = kombu.Producer(self._connect())
            for d in deliveries:
                headers = {**d.message.headers, "redelivered": True}
                message = Message(headers, d.message.properties, d.message.body, d.message.content_type,
                                  d.message.content_encoding)
                self._send(producer, message, "", d.queue, d.priority)

    def extend_visibility(self, deliveries: Iterable[Delivery]) -> None:
        """Nothing to do: RabbitMQ keeps unacked deliveries for as long as the channel lives."""

    def dead_letter_queue(self, queue: str) -> str:
        return keys.dead_letter_list(queue, self.dead_letter_suffix)

    def reject_to_dead_letter(self, delivery: Delivery, reason: str) -> None:
        target = self.dead_letter_queue(delivery.queue)
        headers = {**delivery.message.headers, DEAD_LETTER_REASON_HEADER: reason,
                   DEAD_LETTER_QUEUE_HEADER: delivery.queue, DEAD_LETTER_TIME_HEADER: time.time()}
        m = delivery.message
        with self._errors("dead-lettering"):
            self._declare(target)
            self._send(kombu.Producer(self._connect()), Message(headers, m.properties, m.body, m.content_type,
                                                           m.content_encoding), "", target, 0)
            raw = self._take(delivery)
            if raw is not None:
                raw.ack()

    def restore_visibility_timeouts(self) -> int:
        """Nothing to sweep: RabbitMQ requeues a dead consumer's deliveries itself."""
        return 0

    # -- inspection ----------------------------------------------------------------------------

    def depth(self, queue: str) -> int:
        with self._errors("reading queue depth"):
            try:
                _, count, _ = self._connect().queue_declare(queue=queue, passive=True)
            except self._channel_errors:  # no such queue: RabbitMQ closed the channel
                self._reset()
                return 0
            return int(count)

    def purge(self, queue: str) -> int:
        with self._errors("purging"):
            try:
                return int(self._connect().queue_purge(queue) or 0)
            except self._channel_errors:  # no such queue: RabbitMQ closed the channel
                self._reset()
                return 0

    def close(self) -> None:
        with self._lock:
            self._reset()

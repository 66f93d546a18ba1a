"""Brokers: move serialized :class:`~celeriac.message.Message` objects between processes.

A broker is a handful of primitives (publish, fetch a batch, ack a batch, requeue,
dead-letter) over one transport. Every transport error a caller may retry is raised as
:class:`BrokerConnectionError`, so the worker has exactly one thing to catch before it
reconnects with backoff.

``connect(url, transport_options)`` picks the transport from the URL scheme:
``redis://``/``rediss://`` (kombu's Redis layout, byte-compatible with Celery) and
``amqp://``/``pyamqp://`` (through kombu's pyamqp transport).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from celeriac.exceptions import RetryableError
from celeriac.message import Message


class BrokerConnectionError(RetryableError):
    """The broker could not be reached or dropped the connection; reconnect and retry."""


@dataclass(frozen=True)
class Delivery:
    """One message taken from a queue and not yet acknowledged.

    ``envelope`` is the transport's raw form (the Redis list element, verbatim), kept so a
    requeue or dead-letter writes back exactly what was read. ``envelope_error`` is set,
    and ``message`` holds the raw bytes as its body, when the envelope itself could not be
    parsed: the worker dead-letters such deliveries without decoding them.
    """

    message: Message
    queue: str
    exchange: str
    routing_key: str
    delivery_tag: str
    redelivered: bool = False
    priority: int = 0
    envelope: bytes = b""
    envelope_error: str | None = None


@dataclass(frozen=True)
class PublishItem:
    """One message for :meth:`Broker.publish_many`; fields mean what ``publish`` takes."""

    message: Message
    queue: str | None = None
    exchange: str = ""
    routing_key: str | None = None
    priority: int = 0


@runtime_checkable
class Broker(Protocol):
    """What the app and the worker need from a transport."""

    def publish(
        self,
        message: Message,
        *,
        queue: str | None = None,
        exchange: str = "",
        routing_key: str | None = None,
        priority: int = 0,
    ) -> None:
        """Send one message: to ``queue`` directly, or through ``exchange`` by ``routing_key``.

        Transports subclass :class:`Broker` and inherit this; they implement ``publish_many``.
        """
        self.publish_many([PublishItem(message, queue, exchange, routing_key, priority)])

    def publish_many(self, items: Iterable[PublishItem]) -> None:
        """Send several messages in one round trip where the transport allows it."""

    def declare_queue(self, queue: str) -> None:
        """Declare ``queue`` bound to the direct exchange of the same name, like Celery does."""

    def fetch(self, queues: list[str], max_count: int, timeout_s: float) -> list[Delivery]:
        """Take up to ``max_count`` messages, waiting at most ``timeout_s`` for the first."""

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Forget deliveries for good (the task ran or started, depending on ack mode)."""

    def requeue(self, deliveries: Iterable[Delivery]) -> None:
        """Put deliveries back at the head of their queue, marked redelivered."""

    def republish(self, deliveries: Iterable[Delivery]) -> None:
        """Put back deliveries already acked (killed by a shutdown after an early ack)."""

    def extend_visibility(self, deliveries: Iterable[Delivery]) -> None:
        """Tell the broker these deliveries are still being worked on (no-op where not needed)."""

    def reject_to_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to its queue's dead-letter queue with ``reason`` in its headers."""

    def restore_visibility_timeouts(self) -> int:
        """Requeue deliveries whose consumer vanished; returns how many were restored."""

    def depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (all priority levels), not counting unacked ones."""

    def purge(self, queue: str) -> int:
        """Delete every waiting message of ``queue``; returns how many were deleted."""

    def close(self) -> None:
        """Release connections; the broker may not be used afterwards."""


DEAD_LETTER_REASON_HEADER = "x-celeriac-dead-letter-reason"
"""Header naming why a message was dead-lettered (e.g. ``unknown task 'x'``)."""
DEAD_LETTER_QUEUE_HEADER = "x-celeriac-dead-letter-queue"
"""Header naming the queue the message was taken from, so ``dlq requeue`` can send it back."""
DEAD_LETTER_TIME_HEADER = "x-celeriac-dead-letter-time"
"""Header holding when the message was dead-lettered (unix seconds, float)."""


def connect(url: str, transport_options: Mapping[str, Any] | None = None) -> Broker:
    """Open a broker for ``url``; ``transport_options`` are kombu's names (``visibility_timeout``...)."""
    options = dict(transport_options or {})
    scheme = url.split("://", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        from celeriac.brokers.redis import RedisBroker

        return RedisBroker(url, options)
    if scheme in {"amqp", "pyamqp", "amqps"}:
        from celeriac.brokers.amqp import AmqpBroker

        return AmqpBroker(url, options)
    raise ValueError(f"unsupported broker URL scheme {scheme!r}; use redis://, rediss:// or amqp://")


__all__ = [
    "DEAD_LETTER_QUEUE_HEADER",
    "DEAD_LETTER_REASON_HEADER",
    "DEAD_LETTER_TIME_HEADER",
    "Broker",
    "BrokerConnectionError",
    "Delivery",
    "PublishItem",
    "connect",
]

"""A serialized message, independent of the transport that carries it.

The body is the serializer's output (JSON bytes by default), never base64: the Redis
transport adds ``body_encoding``, ``delivery_info``, ``delivery_tag`` and ``priority`` to
the properties when it builds kombu's envelope, AMQP maps the fields onto its frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    """Headers, properties and a serialized body, as Celery's protocol v2 defines them.

    ``properties`` holds what the producer sets (``correlation_id``, ``reply_to``,
    ``delivery_mode`` and ``expiration`` when ``expires`` is set), in kombu's order.
    """

    headers: dict[str, Any]
    properties: dict[str, Any]
    body: bytes
    content_type: str = "application/json"
    content_encoding: str = "utf-8"

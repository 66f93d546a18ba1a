"""kombu's Redis envelope: the JSON object that is one element of a queue list.

Layout (wire-protocol §2.1), in this key order, dumped with Python's default separators
and ``ensure_ascii`` exactly like ``kombu.utils.json.dumps``::

    {"body": <base64 str>, "content-encoding": ..., "content-type": ...,
     "headers": {...}, "properties": {<producer properties>..., "delivery_info":
     {"exchange": ..., "routing_key": ...}, "priority": n, "body_encoding": "base64",
     "delivery_tag": <uuid4>}}

Envelopes read back are parsed with the plain ``json`` module (no kombu type hooks), so a
requeue or dead-letter rewrites only the keys it means to change and keeps every other
value, ``{"__type__": ...}`` markers included, as it was.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celeriac.brokers import (
    DEAD_LETTER_QUEUE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_TIME_HEADER,
    Delivery,
)
from celeriac.message import Message

TRANSPORT_PROPERTIES = ("delivery_info", "body_encoding", "delivery_tag")
"""Properties the transport owns; they live on :class:`Delivery`, not on the Message."""

UNPARSEABLE_CONTENT_TYPE = "application/x-celeriac-unparseable-envelope"
"""Content type of a dead-letter envelope that wraps a list element which was not an envelope."""


def dumps(value: Any) -> str:
    """JSON text exactly as ``kombu.utils.json.dumps`` writes plain values."""
    return json.dumps(value)


def new_delivery_tag() -> str:
    return str(uuid.uuid4())


def build_envelope(
    message: Message, exchange: str, routing_key: str, priority: int, delivery_tag: str
) -> dict[str, Any]:
    """The envelope kombu's virtual channel builds in ``prepare_message`` + ``basic_publish``."""
    properties = dict(message.properties)
    delivery_info = dict(properties.get("delivery_info") or {})
    properties["delivery_info"] = delivery_info
    properties.setdefault("priority", priority or 0)
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = delivery_tag
    delivery_info["exchange"] = exchange
    delivery_info["routing_key"] = routing_key
    return {
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": message.content_encoding,
        "content-type": message.content_type,
        "headers": dict(message.headers),
        "properties": properties,
    }


@dataclass(frozen=True)
class ParsedEnvelope:
    """An envelope split into the Message and the transport fields of its Delivery."""

    message: Message
    exchange: str
    routing_key: str
    delivery_tag: str
    redelivered: bool
    priority: int
    error: str | None = None


def parse_envelope(raw: bytes, fallback_tag: str, queue: str) -> ParsedEnvelope:
    """Split ``raw`` into a Message and transport fields; never raises.

    Anything that is not a usable envelope (not JSON, no ``delivery_info``, unknown
    ``body_encoding``, non-base64 body) comes back with ``error`` set and the raw bytes
    as the message body, so the worker can dead-letter it with that reason. Whatever the
    error, the transport fields are the envelope's as far as it has them: its
    ``properties.delivery_tag`` (else ``fallback_tag``) and its ``delivery_info`` exchange and
    routing key (else ``""`` and ``queue``); the Redis broker relies on that when the fetch
    script reports it recorded the envelope's own fields.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return _broken(raw, fallback_tag, queue, f"envelope is not JSON: {exc}")
    if not isinstance(doc, dict):
        return _broken(raw, fallback_tag, queue, "envelope is not a JSON object")
    properties = doc.get("properties")
    if not isinstance(properties, dict):
        return _broken(raw, fallback_tag, queue, "envelope has no properties object or bad headers")
    tag = properties.get("delivery_tag")
    tag = tag if isinstance(tag, str) and tag else fallback_tag
    info = properties.get("delivery_info")
    exchange, routing_key = "", queue
    if isinstance(info, dict):
        exchange = str(info.get("exchange") or "")
        routing_key = str(info.get("routing_key") or queue)
    headers = doc.get("headers") or {}
    if not isinstance(headers, dict):
        return _broken(raw, tag, routing_key, "envelope has no properties object or bad headers", exchange)
    if not isinstance(info, dict):
        return _broken(raw, tag, queue, "envelope has no properties.delivery_info")
    body = doc.get("body", "")
    encoding = properties.get("body_encoding")
    try:
        if encoding == "base64":
            body_bytes = base64.b64decode(str(body).encode("ascii"), validate=True)
        elif encoding is None or str(encoding).lower() == "utf-8":
            body_bytes = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
        else:
            return _broken(raw, tag, routing_key, f"unsupported body_encoding {encoding!r}", exchange)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        error = f"body does not match body_encoding {encoding!r}: {exc}"
        return _broken(raw, tag, routing_key, error, exchange)
    kept = {k: v for k, v in properties.items() if k not in TRANSPORT_PROPERTIES}
    message = Message(
        headers=headers,
        properties=kept,
        body=body_bytes,
        content_type=str(doc.get("content-type") or ""),
        content_encoding=str(doc.get("content-encoding") or ""),
    )
    priority = properties.get("priority")
    return ParsedEnvelope(
        message=message,
        exchange=exchange,
        routing_key=routing_key,
        delivery_tag=tag,
        redelivered=bool(info.get("redelivered") or headers.get("redelivered")),
        priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
    )


def _broken(raw: bytes, tag: str, routing_key: str, error: str, exchange: str = "") -> ParsedEnvelope:
    message = Message(headers={}, properties={}, body=raw, content_type="", content_encoding="")
    return ParsedEnvelope(message, exchange, routing_key, tag, False, 0, error)


def redelivered_envelope(raw: bytes) -> bytes:
    """kombu's restore rewrite: ``headers.redelivered`` and ``delivery_info.redelivered`` true.

    Like kombu, a missing ``headers``/``delivery_info`` is left missing; a list element
    that is not JSON is returned unchanged so it is never lost.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw
    if not isinstance(doc, dict):
        return raw
    headers = doc.get("headers")
    properties = doc.get("properties")
    info = properties.get("delivery_info") if isinstance(properties, dict) else None
    if isinstance(headers, dict) and isinstance(info, dict):
        headers["redelivered"] = True
        info["redelivered"] = True
    return dumps(doc).encode()


def dead_letter_envelope(delivery: Delivery, reason: str, now_s: float | None = None) -> bytes:
    """The envelope pushed to a dead-letter queue: the original plus three headers.

    ``x-celeriac-dead-letter-reason`` (why), ``x-celeriac-dead-letter-queue`` (where it was
    taken from) and ``x-celeriac-dead-letter-time`` (unix seconds). An element that was not
    an envelope at all is wrapped in a fresh one whose base64 body is the raw bytes and
    whose content type is :data:`UNPARSEABLE_CONTENT_TYPE`.
    """
    stamp = {
        DEAD_LETTER_REASON_HEADER: reason,
        DEAD_LETTER_QUEUE_HEADER: delivery.queue,
        DEAD_LETTER_TIME_HEADER: time.time() if now_s is None else now_s,
    }
    try:
        doc = json.loads(delivery.envelope)
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("headers", {}), dict):
        doc.setdefault("headers", {}).update(stamp)
        return dumps(doc).encode()
    wrapper = Message(
        headers=stamp,
        properties={},
        body=delivery.envelope,
        content_type=UNPARSEABLE_CONTENT_TYPE,
        content_encoding="binary",
    )
    envelope = build_envelope(wrapper, "", delivery.queue, 0, delivery.delivery_tag)
    return dumps(envelope).encode()

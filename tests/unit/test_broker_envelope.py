"""kombu's Redis envelope: build, parse, restore and dead-letter rewrites."""

from __future__ import annotations

import base64
import json

from celeriac.brokers import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_TIME_HEADER, Delivery
from celeriac.brokers.envelope import (
    UNPARSEABLE_CONTENT_TYPE,
    build_envelope,
    dead_letter_envelope,
    dumps,
    parse_envelope,
    redelivered_envelope,
)
from celeriac.message import Message

MESSAGE = Message(
    headers={"task": "t", "id": "i"},
    properties={"correlation_id": "i", "reply_to": "r", "delivery_mode": 2},
    body=b'[[1], {}, {}]',
)


def test_envelope_has_kombus_key_order_and_transport_properties_last() -> None:
    envelope = build_envelope(MESSAGE, "", "celery", 5, "tag-1")
    assert list(envelope) == ["body", "content-encoding", "content-type", "headers", "properties"]
    assert list(envelope["properties"]) == [
        "correlation_id", "reply_to", "delivery_mode", "delivery_info", "priority", "body_encoding", "delivery_tag",
    ]
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "celery"}
    assert envelope["properties"]["priority"] == 5
    assert base64.b64decode(envelope["body"]) == MESSAGE.body


def test_parse_round_trips_a_built_envelope_without_transport_properties() -> None:
    raw = dumps(build_envelope(MESSAGE, "ex", "rk", 3, "tag-2")).encode()
    parsed = parse_envelope(raw, "fallback", "q")
    assert parsed.error is None
    assert parsed.message == Message(MESSAGE.headers, {**MESSAGE.properties, "priority": 3}, MESSAGE.body)
    assert (parsed.exchange, parsed.routing_key, parsed.delivery_tag, parsed.priority) == ("ex", "rk", "tag-2", 3)
    assert parsed.redelivered is False


def test_parse_accepts_a_raw_body_without_body_encoding() -> None:
    raw = json.dumps({"body": "[[], {}, {}]", "headers": {}, "content-type": "application/json",
                      "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}}})
    parsed = parse_envelope(raw.encode(), "fallback", "q")
    assert parsed.error is None
    assert parsed.message.body == b"[[], {}, {}]"
    assert parsed.delivery_tag == "fallback"


def test_parse_reports_what_is_wrong_instead_of_raising() -> None:
    assert parse_envelope(b"}{", "t", "q").error is not None
    assert parse_envelope(b"[1]", "t", "q").error == "envelope is not a JSON object"
    no_info = json.dumps({"body": "", "headers": {}, "properties": {}}).encode()
    assert parse_envelope(no_info, "t", "q").error == "envelope has no properties.delivery_info"
    odd = json.dumps({"body": "x", "headers": {}, "properties": {"delivery_info": {}, "body_encoding": "rot13"}})
    assert parse_envelope(odd.encode(), "t", "q").error == "unsupported body_encoding 'rot13'"


def test_restore_marks_headers_and_delivery_info_redelivered_and_keeps_type_markers() -> None:
    envelope = build_envelope(MESSAGE, "", "celery", 0, "tag")
    envelope["headers"]["when"] = {"__type__": "datetime", "__value__": "2026-01-01T00:00:00"}
    restored = json.loads(redelivered_envelope(dumps(envelope).encode()))
    assert restored["headers"]["redelivered"] is True
    assert restored["properties"]["delivery_info"]["redelivered"] is True
    assert restored["headers"]["when"] == {"__type__": "datetime", "__value__": "2026-01-01T00:00:00"}
    assert redelivered_envelope(b"garbage") == b"garbage"


def test_dead_letter_adds_reason_queue_and_time_headers() -> None:
    raw = dumps(build_envelope(MESSAGE, "", "celery", 0, "tag")).encode()
    delivery = Delivery(MESSAGE, "celery", "", "celery", "tag", envelope=raw)
    dead = json.loads(dead_letter_envelope(delivery, "why", now_s=12.5))
    assert dead["headers"][DEAD_LETTER_REASON_HEADER] == "why"
    assert dead["headers"][DEAD_LETTER_QUEUE_HEADER] == "celery"
    assert dead["headers"][DEAD_LETTER_TIME_HEADER] == 12.5
    assert dead["headers"]["id"] == "i"


def test_dead_letter_wraps_an_element_that_was_not_an_envelope() -> None:
    delivery = Delivery(MESSAGE, "celery", "", "celery", "tag", envelope=b"\xff not json")
    dead = json.loads(dead_letter_envelope(delivery, "garbage", now_s=1.0))
    assert dead["content-type"] == UNPARSEABLE_CONTENT_TYPE
    assert base64.b64decode(dead["body"]) == b"\xff not json"
    assert dead["properties"]["delivery_tag"] == "tag"

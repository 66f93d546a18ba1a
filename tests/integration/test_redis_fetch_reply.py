"""The fetch script's slim reply: a Delivery always carries what the script recorded in ``unacked``.

The script returns ``list_key, envelope, meta`` per message; ``meta`` is empty when the envelope's
own tag, exchange and routing key were recorded (Python reads them from the envelope) and is
``[tag, exchange, routing_key]`` otherwise. Ack, requeue and restore find a message by its tag,
so each case checks the Delivery against the ``unacked`` entry and that it can be settled.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis.exceptions
from broker_support import msg

from celeriac.brokers import BrokerConnectionError, Delivery
from celeriac.brokers.envelope import build_envelope, dumps, new_delivery_tag, parse_envelope
from celeriac.brokers.redis import RedisBroker

pytestmark = pytest.mark.integration


def envelope(exchange: str = "", routing_key: str = "q", tag: Any = None, **changes: Any) -> dict[str, Any]:
    """A kombu envelope of a small task message; ``changes`` replace top-level keys."""
    doc = build_envelope(msg("m"), exchange, routing_key, 0, tag if tag is not None else new_delivery_tag())
    doc.update(changes)
    return doc


def recorded(rclient: Any, delivery: Delivery) -> list[Any]:
    """The ``unacked`` entry stored under the Delivery's tag (it must exist)."""
    value = rclient.hget("unacked", delivery.delivery_tag)
    assert value is not None, f"no unacked entry under {delivery.delivery_tag!r}: {rclient.hkeys('unacked')}"
    doc = json.loads(value.decode("utf-8", "surrogateescape"))  # an element may hold any bytes
    assert isinstance(doc, list)
    return doc


def fetch_one(broker: RedisBroker, rclient: Any, raw: bytes) -> Delivery:
    rclient.lpush("q", raw)
    (delivery,) = broker.fetch(["q"], 5, timeout_s=0)
    assert rclient.hlen("unacked") == 1
    return delivery


RECORDED_ROUTE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return nil end
local doc = cjson.decode(value)
return {doc[2], doc[3]}
"""
"""The exchange and routing key of an ``unacked`` entry, read by cjson as kombu's sweep would
read them (Python's json cannot read every envelope the entry may hold)."""


def assert_matches_unacked_and_settles(broker: RedisBroker, rclient: Any, delivery: Delivery) -> None:
    route = rclient.eval(RECORDED_ROUTE, 1, "unacked", delivery.delivery_tag)
    assert route == [delivery.exchange.encode(), delivery.routing_key.encode()]
    broker.reject_to_dead_letter(delivery, "test")
    assert rclient.hlen("unacked") == 0
    assert rclient.zcard("unacked_index") == 0
    assert rclient.llen("q.dead") == 1


def test_well_formed_envelopes_carry_the_recorded_fields_and_round_trip_byte_identical(
    broker_for: Any, rclient: Any
) -> None:
    broker = broker_for()
    docs = [envelope(), envelope("ex", "rk.1"), envelope("tasks", "q")]
    raws = [dumps(doc).encode() for doc in docs]
    rclient.lpush("q", *raws)
    got = broker.fetch(["q"], 10, timeout_s=0)
    assert [d.envelope for d in got] == raws
    for doc, delivery in zip(docs, got, strict=True):
        info = doc["properties"]["delivery_info"]
        assert delivery.delivery_tag == doc["properties"]["delivery_tag"]
        assert (delivery.exchange, delivery.routing_key) == (info["exchange"], info["routing_key"])
        assert recorded(rclient, delivery) == [doc, info["exchange"], info["routing_key"]]
        assert delivery.envelope_error is None
        assert delivery.message.headers["id"] == "m"
    broker.ack(got)
    assert rclient.hlen("unacked") == 0


def test_the_reply_leaves_meta_empty_only_when_the_envelope_holds_what_was_recorded(
    broker_for: Any, rclient: Any
) -> None:
    broker = broker_for()
    plain = envelope()
    no_tag = envelope()
    del no_tag["properties"]["delivery_tag"]
    rclient.lpush("q", dumps(plain).encode(), dumps(no_tag).encode())
    rows = broker._run_fetch(["q"], ["q"], 5, None, None)
    assert len(rows) == 6
    assert rows[0:3] == [b"q", dumps(plain).encode(), b""]
    tag, exchange, routing_key = json.loads(rows[5])
    assert tag.startswith("celeriac-")
    assert (exchange, routing_key) == ("", "q")
    assert json.loads(rclient.hget("unacked", tag)) == [no_tag, "", "q"]


OWN_TAG = "own-tag"


def without_tag() -> dict[str, Any]:
    doc = envelope()
    del doc["properties"]["delivery_tag"]
    return doc


def with_property(name: str, value: Any) -> dict[str, Any]:
    doc = envelope(tag=OWN_TAG)
    doc["properties"][name] = value
    return doc


def with_info(**info: Any) -> dict[str, Any]:
    doc = envelope(tag=OWN_TAG)
    doc["properties"]["delivery_info"] = info
    return doc


def edited(old: str, new: str) -> bytes:
    """A well-formed envelope (tag ``OWN_TAG``) with one piece of its JSON text replaced."""
    text = dumps(envelope(tag=OWN_TAG))
    assert old in text
    return text.replace(old, new).encode()


def deeply_nested(depth: int) -> bytes:
    return edited('"headers": {', '"headers": {"deep": ' + "[" * depth + "]" * depth + ", ")


# case -> (raw list element, start of the envelope_error parse_envelope reports, whether the
# envelope's own tag OWN_TAG is recorded rather than one the script makes up)
UNUSUAL: dict[str, tuple[bytes, str | None, bool]] = {
    "no delivery_tag": (dumps(without_tag()).encode(), None, False),
    "non-string delivery_tag": (dumps(with_property("delivery_tag", 12)).encode(), None, False),
    "empty delivery_tag": (dumps(with_property("delivery_tag", "")).encode(), None, False),
    "non-ASCII delivery_tag": (dumps(with_property("delivery_tag", "t\u00e2g")).encode(), None, False),
    "not JSON": (b"not json at all", "envelope is not JSON", False),
    "JSON but not an object": (b"[1, 2]", "envelope is not a JSON object", False),
    "a JSON string": (b'"just a string"', "envelope is not a JSON object", False),
    "properties not an object": (
        dumps({"body": "", "properties": [1]}).encode(),
        "envelope has no properties object or bad headers",
        False,
    ),
    "missing delivery_info": (
        dumps({"body": "W10=", "headers": {"id": "x"}, "properties": {"delivery_tag": OWN_TAG}}).encode(),
        "envelope has no properties.delivery_info",
        True,
    ),
    "delivery_info without exchange": (dumps(with_info(routing_key="q")).encode(), None, True),
    "empty routing key": (dumps(with_info(exchange="", routing_key="")).encode(), None, True),
    "non-string exchange": (dumps(with_info(exchange=5, routing_key="q")).encode(), None, True),
    "headers not an object": (
        edited('"headers": {"lang": "py", "task": "t", "id": "m"}', '"headers": "oops"'),
        "envelope has no properties object or bad headers",
        True,
    ),
    "unsupported body_encoding": (
        dumps(with_property("body_encoding", "rot13")).encode(),
        "unsupported body_encoding 'rot13'",
        True,
    ),
    # cjson cannot decode these, Python's json can: the script records a tag of its own
    "UTF-16 with a BOM": (dumps(envelope(tag=OWN_TAG)).encode("utf-16"), None, False),
    "UTF-8 with a BOM": (b"\xef\xbb\xbf" + dumps(envelope(tag=OWN_TAG)).encode(), None, False),
    "nested past cjson's depth": (deeply_nested(1200), "envelope is not JSON", False),
    # cjson decodes these, Python's json does not: the script records the envelope's own tag
    "hex number": (edited('"delivery_mode": 2', '"delivery_mode": 0x2'), "envelope is not JSON", True),
    "number ending in a dot": (edited('"delivery_mode": 2', '"delivery_mode": 2.'), "envelope is not JSON", True),
    "raw tab inside a string": (edited('"lang": "py"', '"lang": "p\ty"'), "envelope is not JSON", True),
    "bytes that are not UTF-8": (
        edited('"lang": "py"', '"lang": "pXy"').replace(b"pXy", b"p\xffy"),
        "envelope is not JSON",
        True,
    ),
    "nested past Python's recursion limit": (deeply_nested(990), "envelope is not JSON", True),
}


@pytest.mark.parametrize("case", list(UNUSUAL))
def test_unusual_envelopes_are_delivered_under_the_tag_they_were_recorded_by(
    case: str, broker_for: Any, rclient: Any
) -> None:
    raw, error, own_tag = UNUSUAL[case]
    delivery = fetch_one(broker_for(), rclient, raw)
    assert delivery.envelope == raw
    assert rclient.hkeys("unacked") == [delivery.delivery_tag.encode()]
    expected = parse_envelope(raw, delivery.delivery_tag, "q").error
    assert delivery.envelope_error == expected
    if error is None:
        assert expected is None
    else:
        assert expected is not None
        assert expected.startswith(error)
    if own_tag:
        assert delivery.delivery_tag == OWN_TAG
    else:
        assert delivery.delivery_tag.startswith("celeriac-")
    assert_matches_unacked_and_settles(broker_for(), rclient, delivery)


def test_recorded_fields_follow_the_scripts_rules_not_pythons_coercions(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    odd = fetch_one(broker, rclient, dumps(with_info(exchange=5, routing_key="")).encode())
    assert (odd.exchange, odd.routing_key) == ("", "")
    assert recorded(rclient, odd)[1:] == ["", ""]
    broker.ack([odd])
    missing = fetch_one(broker, rclient, dumps(with_info()).encode())
    assert (missing.exchange, missing.routing_key) == ("", "q")


def test_a_message_popped_by_brpop_is_recorded_and_delivered_like_any_other(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    result: list[Delivery] = []
    thread = threading.Thread(target=lambda: result.extend(broker.fetch(["q"], 10, timeout_s=10)))
    thread.start()
    deadline = time.monotonic() + 10
    while int(rclient.info("clients")["blocked_clients"]) != 1:
        assert time.monotonic() < deadline, "BRPOP did not block"
        time.sleep(0.01)
    doc = without_tag()
    rclient.lpush("q", dumps(doc).encode())
    thread.join(10)
    (delivery,) = result
    assert delivery.delivery_tag.startswith("celeriac-")
    assert delivery.envelope == dumps(doc).encode()
    assert recorded(rclient, delivery) == [doc, "", "q"]


def test_a_brpop_element_whose_script_call_failed_is_recorded_by_the_next_fetch(
    redis_server: Any, broker_for: Any, rclient: Any
) -> None:
    broker = broker_for()
    result: list[BaseException] = []

    def fetch_blocking() -> None:
        try:
            broker.fetch(["q"], 10, timeout_s=10)
        except BaseException as exc:  # the test thread asserts on it
            result.append(exc)

    thread = threading.Thread(target=fetch_blocking)
    thread.start()
    deadline = time.monotonic() + 10
    while int(rclient.info("clients")["blocked_clients"]) != 1:
        assert time.monotonic() < deadline, "BRPOP did not block"
        time.sleep(0.01)
    doc = envelope("ex", "rk")
    raw = dumps(doc).encode()
    # One transaction: BRPOP is served after EXEC, so its script call finds Redis out of memory.
    pipe = rclient.pipeline(transaction=True)
    pipe.lpush("q", raw)
    pipe.config_set("maxmemory", 1)
    pipe.execute()
    thread.join(10)
    assert len(result) == 1
    assert isinstance(result[0], redis.exceptions.OutOfMemoryError)
    assert rclient.llen("q") == 0
    assert rclient.hlen("unacked") == 0
    # and a lost connection in between: the element stays with the broker until Redis is back
    redis_server.stop()
    with pytest.raises(BrokerConnectionError):
        broker.fetch(["q"], 10, timeout_s=0)
    redis_server.start()
    fresh = redis_server.client()
    try:
        (delivery,) = broker.fetch(["q"], 10, timeout_s=0)
        assert delivery.envelope == raw
        assert delivery.delivery_tag == doc["properties"]["delivery_tag"]
        assert (delivery.exchange, delivery.routing_key) == ("ex", "rk")
        assert recorded(fresh, delivery) == [doc, "ex", "rk"]
    finally:
        fresh.close()

"""Our Redis publish path writes what kombu's real Redis transport writes, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.exceptions
from kombu import Connection, Exchange, Queue

from celeriac import keys
from celeriac.brokers import connect
from celeriac.message import Message

pytestmark = pytest.mark.integration

HEADERS: dict[str, Any] = {
    "lang": "py",
    "task": "tasks.add",
    "id": "0b7c1f64-1f0e-4f57-9d6f-6c1a3c3c9b11",
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "root_id": "0b7c1f64-1f0e-4f57-9d6f-6c1a3c3c9b11",
    "parent_id": None,
    "argsrepr": "(2, 3)",
    "kwargsrepr": "{'note': 'caf\u00e9'}",
    "origin": "gen1@host",
    "ignore_result": False,
}
PROPERTIES = {"correlation_id": HEADERS["id"], "reply_to": "4d3c0a6e-0000-3000-8000-000000000000"}
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
BODY = json.dumps([[2, 3], {"note": "caf\u00e9"}, EMBED])


def message() -> Message:
    return Message(headers=dict(HEADERS), properties={**PROPERTIES, "delivery_mode": 2}, body=BODY.encode())


def kombu_publish(url: str, queue: str, priority: int) -> None:
    """Publish like Celery's amqp.send_task_message: declare the queue, anon exchange, rk = queue."""
    with Connection(url) as conn, conn.Producer() as producer:
        producer.publish(
            BODY.encode(),
            exchange="",
            routing_key=queue,
            priority=priority,
            content_type="application/json",
            content_encoding="utf-8",
            headers=dict(HEADERS),
            declare=[Queue(queue, Exchange(queue), routing_key=queue)],
            retry=False,
            **PROPERTIES,
        )


def without_tag(raw: bytes) -> tuple[str, str]:
    doc = json.loads(raw)
    tag = doc["properties"]["delivery_tag"]
    return raw.decode().replace(tag, "TAG"), tag


@pytest.mark.parametrize(("priority", "step"), [(0, 0), (5, 3), (9, 9)])
def test_published_list_element_is_byte_identical_to_kombu(
    redis_server: Any, rclient: Any, priority: int, step: int
) -> None:
    kombu_publish(redis_server.url, "kq", priority)
    broker = connect(redis_server.url, {})
    broker.publish(message(), queue="oq", priority=priority)

    theirs = rclient.lrange(keys.queue_list("kq", step), 0, -1)
    ours = rclient.lrange(keys.queue_list("oq", step), 0, -1)
    assert len(theirs) == 1
    assert len(ours) == 1
    their_text, their_tag = without_tag(theirs[0])
    our_text, our_tag = without_tag(ours[0])
    assert our_text == their_text.replace('"kq"', '"oq"')
    assert our_tag != their_tag
    assert b"\\u00e9" in ours[0]
    assert rclient.smembers("_kombu.binding.oq") == {f"oq{keys.SEP}{keys.SEP}oq".encode()}
    assert rclient.smembers("_kombu.binding_permanent.oq") == {f"oq{keys.SEP}{keys.SEP}oq".encode()}
    assert rclient.smembers("_kombu.binding.kq") == {f"kq{keys.SEP}{keys.SEP}kq".encode()}
    broker.close()


def test_kombu_consumer_reads_our_published_message(redis_server: Any, rclient: Any) -> None:
    broker = connect(redis_server.url, {})
    broker.publish(message(), queue="celery", priority=5)
    received: list[Any] = []
    with Connection(redis_server.url) as conn:
        queue = Queue("celery", Exchange("celery"), routing_key="celery")
        with conn.Consumer(queue, callbacks=[lambda body, msg: received.append(msg)], accept=["json"]):
            conn.drain_events(timeout=5)
        assert len(received) == 1
        got = received[0]
        assert got.headers == HEADERS
        assert got.decode() == json.loads(BODY)
        assert got.delivery_info["routing_key"] == "celery"
        assert got.properties["priority"] == 5
        got.ack()
    assert rclient.hlen("unacked") == 0
    broker.close()


def test_named_exchange_routes_through_kombu_bindings(redis_server: Any, rclient: Any) -> None:
    rclient.sadd("_kombu.binding.tasks", f"a.b{keys.SEP}{keys.SEP}direct_q", f"x{keys.SEP}{keys.SEP}other")
    rclient.sadd("_kombu.binding.topics", f"a.#{keys.SEP}^a\\..*?${keys.SEP}topic_q")
    broker = connect(redis_server.url, {})
    broker.publish(message(), exchange="tasks", routing_key="a.b")
    broker.publish(message(), exchange="topics", routing_key="a.b.c")
    broker.publish(message(), exchange="tasks", routing_key="nobody")
    assert broker.depth("direct_q") == 1
    assert broker.depth("topic_q") == 1
    assert broker.depth("other") == 0
    envelope = json.loads(rclient.lindex("direct_q", 0))
    assert envelope["properties"]["delivery_info"] == {"exchange": "tasks", "routing_key": "a.b"}
    broker.close()


def test_a_publish_rejected_by_redis_raises_and_the_next_publish_succeeds(redis_server: Any, rclient: Any) -> None:
    broker = connect(redis_server.url, {})
    try:
        rclient.set("taken", "not a list")
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            broker.publish(message(), queue="taken")
        broker.publish(message(), queue="q")  # the connection read every reply: still usable
        assert rclient.llen("q") == 1
        assert rclient.sismember(keys.binding_key("q"), keys.binding_member("q", "q"))
    finally:
        broker.close()


def test_a_publish_after_its_connection_was_killed_reconnects_and_sends_once(
    redis_server: Any, rclient: Any
) -> None:
    broker = connect(redis_server.url, {})
    try:
        broker.publish(message(), queue="q")
        rclient.client_kill_filter(_type="normal", skipme=True)  # the broker's pooled connection
        broker.publish(message(), queue="q")
        assert rclient.llen("q") == 2
    finally:
        broker.close()

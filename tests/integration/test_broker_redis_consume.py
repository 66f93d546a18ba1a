"""Batched consumption on Redis: one script per batch, kombu-compatible unacked bookkeeping."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from broker_support import msg
from kombu import Connection, Exchange, Queue

from celeriac import keys
from celeriac.brokers import (
    DEAD_LETTER_QUEUE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    BrokerConnectionError,
    Delivery,
)

pytestmark = pytest.mark.integration


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.message.headers["id"] for d in deliveries]


def wait_for(check: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_fetch_takes_highest_priority_first_and_records_unacked(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    for i, priority in enumerate([9, 0, 5, 0, 9]):
        broker.publish(msg(f"m{i}-p{priority}"), queue="q", priority=priority)
    got = broker.fetch(["q"], 4, timeout_s=0)
    assert ids(got) == ["m1-p0", "m3-p0", "m2-p5", "m0-p9"]
    assert rclient.hlen("unacked") == 4
    assert rclient.zcard("unacked_index") == 4
    value = json.loads(rclient.hget("unacked", got[0].delivery_tag))
    assert value[1:] == ["", "q"]
    assert value[0]["headers"]["id"] == "m1-p0"
    assert json.loads(got[0].envelope) == value[0]
    assert broker.depth("q") == 1
    broker.ack(got)
    assert rclient.hlen("unacked") == 0
    assert rclient.zcard("unacked_index") == 0
    assert ids(broker.fetch(["q"], 10, timeout_s=0)) == ["m4-p9"]


def test_fetch_round_robins_between_queues(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    for i in range(3):
        broker.publish(msg(f"a{i}"), queue="a")
        broker.publish(msg(f"b{i}"), queue="b")
    assert ids(broker.fetch(["a", "b"], 4, timeout_s=0)) == ["a0", "b0", "a1", "b1"]
    assert ids(broker.fetch(["a", "b"], 4, timeout_s=0)) == ["b2", "a2"]


def test_fetch_blocks_until_a_message_arrives_then_takes_the_batch(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    result: list[Delivery] = []
    thread = threading.Thread(target=lambda: result.extend(broker.fetch(["q"], 10, timeout_s=10)))
    thread.start()
    wait_for(lambda: int(rclient.info("clients")["blocked_clients"]) == 1, "BRPOP to block")
    broker.publish(msg("late"), queue="q")
    thread.join(10)
    assert ids(result) == ["late"]
    assert rclient.hlen("unacked") == 1


def test_requeue_puts_messages_back_at_the_head_marked_redelivered(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    for name in ["first", "second", "third"]:
        broker.publish(msg(name), queue="q", priority=3)
    taken = broker.fetch(["q"], 1, timeout_s=0)
    broker.requeue(taken)
    assert rclient.hlen("unacked") == 0
    again = broker.fetch(["q"], 3, timeout_s=0)
    assert ids(again) == ["first", "second", "third"]
    assert again[0].redelivered is True
    assert again[0].delivery_tag == taken[0].delivery_tag
    envelope = json.loads(again[0].envelope)
    assert envelope["headers"]["redelivered"] is True
    assert envelope["properties"]["delivery_info"]["redelivered"] is True
    assert again[1].redelivered is False


def test_requeue_after_a_sweep_restored_it_does_not_duplicate(broker_for: Any, rclient: Any) -> None:
    broker = broker_for(visibility_timeout=0)
    broker.publish(msg("only"), queue="q")
    taken = broker.fetch(["q"], 1, timeout_s=0)
    assert broker.restore_visibility_timeouts() == 1
    broker.requeue(taken)
    assert broker.depth("q") == 1


def test_a_sweep_drops_an_unreadable_unacked_entry_and_restores_the_others(broker_for: Any, rclient: Any) -> None:
    broker = broker_for(visibility_timeout=0)
    broker.publish(msg("good"), queue="q")
    broker.fetch(["q"], 1, timeout_s=0)
    for tag, value in (("not-a-triple", b'{"a": 1}'), ("too-deep", b"[" * 100_000 + b"]" * 100_000)):
        rclient.hset("unacked", tag, value)
        rclient.zadd("unacked_index", {tag: 1.0})
    assert broker.restore_visibility_timeouts() == 1  # never raises: a sweep must not stop the worker
    assert ids(broker.fetch(["q"], 5, timeout_s=0)) == ["good"]
    assert not rclient.hexists("unacked", "too-deep")
    assert not rclient.hexists("unacked", "not-a-triple")


def test_dead_letter_moves_the_envelope_with_its_reason(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    broker.publish(msg("bad"), queue="q")
    rclient.lpush("q", b"not json at all")
    taken = broker.fetch(["q"], 2, timeout_s=0)
    assert [d.envelope_error is None for d in taken] == [True, False]
    for delivery in taken:
        broker.reject_to_dead_letter(delivery, f"reason of {delivery.delivery_tag}")
    assert rclient.hlen("unacked") == 0
    dead = [json.loads(raw) for raw in rclient.lrange("q.dead", 0, -1)][::-1]
    assert len(dead) == 2
    assert dead[0]["headers"]["id"] == "bad"
    assert dead[0]["headers"][DEAD_LETTER_REASON_HEADER] == f"reason of {taken[0].delivery_tag}"
    assert dead[0]["headers"][DEAD_LETTER_QUEUE_HEADER] == "q"
    assert dead[1]["content-type"] == "application/x-celeriac-unparseable-envelope"
    assert dead[1]["headers"][DEAD_LETTER_REASON_HEADER] == f"reason of {taken[1].delivery_tag}"


def test_missing_delivery_info_is_flagged_not_lost(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    rclient.lpush("q", json.dumps({"body": "W10=", "headers": {"task": "t", "id": "x"}, "properties": {}}))
    (delivery,) = broker.fetch(["q"], 5, timeout_s=0)
    assert delivery.envelope_error == "envelope has no properties.delivery_info"
    assert delivery.routing_key == "q"
    assert json.loads(rclient.hget("unacked", delivery.delivery_tag))[1:] == ["", "q"]


def test_our_sweep_restores_what_a_kombu_consumer_abandoned(
    redis_server: Any, broker_for: Any, rclient: Any
) -> None:
    broker = broker_for(visibility_timeout=0)
    broker.publish(msg("abandoned"), queue="celery", priority=6)
    with Connection(redis_server.url) as conn:
        queue = Queue("celery", Exchange("celery"), routing_key="celery")
        got: list[Any] = []
        with conn.Consumer(queue, callbacks=[lambda body, m: got.append(m)], accept=["json"]):
            conn.drain_events(timeout=5)
        assert len(got) == 1
        conn.default_channel.qos._delivered.clear()  # simulate a crash: kombu must not restore at close
    assert rclient.hlen("unacked") == 1
    assert broker.restore_visibility_timeouts() == 1
    (delivery,) = broker.fetch(["celery"], 5, timeout_s=0)
    assert delivery.message.headers["id"] == "abandoned"
    assert delivery.redelivered is True
    assert delivery.priority == 6


def test_kombu_sweep_restores_what_we_abandoned(redis_server: Any, broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    broker.publish(msg("ours"), queue="celery")
    (taken,) = broker.fetch(["celery"], 5, timeout_s=0)
    with Connection(redis_server.url, transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(num=None)
    assert rclient.hlen("unacked") == 0
    (again,) = broker.fetch(["celery"], 5, timeout_s=0)
    assert again.delivery_tag == taken.delivery_tag
    assert again.redelivered is True


def test_depth_counts_all_priorities_and_purge_empties_them(broker_for: Any, rclient: Any) -> None:
    broker = broker_for()
    for priority in [0, 3, 6, 9, 9]:
        broker.publish(msg(f"p{priority}"), queue="q", priority=priority)
    assert broker.depth("q") == 5
    assert broker.purge("q") == 5
    assert broker.depth("q") == 0


def test_connection_loss_raises_a_retryable_error_and_recovers(
    redis_server: Any, broker_for: Any, rclient: Any
) -> None:
    broker = broker_for()
    broker.publish(msg("before"), queue="q")
    redis_server.stop()
    with pytest.raises(BrokerConnectionError):
        broker.fetch(["q"], 1, timeout_s=0)
    redis_server.start()
    broker.publish(msg("after"), queue="q")
    assert ids(broker.fetch(["q"], 5, timeout_s=0)) == ["after"]
    assert rclient.smembers(keys.binding_key("q")) == {f"q{keys.SEP}{keys.SEP}q".encode()}


def test_global_keyprefix_applies_to_every_key_and_kombu_agrees(
    redis_server: Any, broker_for: Any, rclient: Any
) -> None:
    broker = broker_for(global_keyprefix="pfx:")
    broker.publish(msg("prefixed"), queue="celery", priority=9)
    assert rclient.llen(f"pfx:celery{keys.SEP}9") == 1
    assert rclient.smembers("pfx:_kombu.binding.celery") == {f"celery{keys.SEP}{keys.SEP}celery".encode()}
    (delivery,) = broker.fetch(["celery"], 5, timeout_s=0)
    assert delivery.queue == "celery"
    assert rclient.hlen("pfx:unacked") == 1
    broker.requeue([delivery])
    got: list[Any] = []
    options = {"global_keyprefix": "pfx:"}
    with Connection(redis_server.url, transport_options=options) as conn:
        queue = Queue("celery", Exchange("celery"), routing_key="celery")
        with conn.Consumer(queue, callbacks=[lambda body, m: got.append(m)], accept=["json"]):
            conn.drain_events(timeout=5)
        assert [m.headers["id"] for m in got] == ["prefixed"]
        got[0].ack()
    assert rclient.hlen("pfx:unacked") == 0
    broker.reject_to_dead_letter(delivery, "x")
    assert rclient.llen("pfx:celery.dead") == 0

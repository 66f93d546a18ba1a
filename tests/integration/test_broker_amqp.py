"""The Broker protocol over a real RabbitMQ: publish, batched fetch, ack, requeue, dead-letter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from broker_support import msg

from celeriac.brokers import DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER, connect
from celeriac.brokers.amqp import AmqpBroker

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(rabbitmq_server: Any) -> Iterator[AmqpBroker]:
    opened = connect(rabbitmq_server.url, {})
    assert isinstance(opened, AmqpBroker)
    yield opened
    opened.close()


@pytest.fixture
def queue(broker: AmqpBroker) -> Iterator[str]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    yield name
    broker.purge(name)
    broker.purge(f"{name}.dead")


def test_fetch_takes_a_batch_and_ack_removes_it(broker: AmqpBroker, queue: str) -> None:
    for i in range(5):
        broker.publish(msg(f"m{i}"), queue=queue)
    got = broker.fetch([queue], 3, timeout_s=5)
    assert [d.message.headers["id"] for d in got] == ["m0", "m1", "m2"]
    assert got[0].message.body == json.dumps([["m0"], {}, {}]).encode()
    assert got[0].message.properties["correlation_id"] == "m0"
    assert got[0].queue == queue
    broker.ack(got)
    rest = broker.fetch([queue], 10, timeout_s=5)
    assert [d.message.headers["id"] for d in rest] == ["m3", "m4"]
    broker.ack(rest)
    assert broker.fetch([queue], 10, timeout_s=0.2) == []
    assert broker.depth(queue) == 0


def test_requeue_redelivers_marked_redelivered(broker: AmqpBroker, queue: str) -> None:
    broker.publish(msg("again"), queue=queue)
    first = broker.fetch([queue], 1, timeout_s=5)
    broker.requeue(first)
    (second,) = broker.fetch([queue], 1, timeout_s=5)
    assert second.message.headers["id"] == "again"
    assert second.redelivered is True
    broker.ack([second])


def test_dead_letter_publishes_to_the_dead_queue_with_the_reason(broker: AmqpBroker, queue: str) -> None:
    broker.publish(msg("bad"), queue=queue)
    (delivery,) = broker.fetch([queue], 1, timeout_s=5)
    broker.reject_to_dead_letter(delivery, "unknown task 't'")
    (dead,) = broker.fetch([f"{queue}.dead"], 1, timeout_s=5)
    assert dead.message.headers["id"] == "bad"
    assert dead.message.headers[DEAD_LETTER_REASON_HEADER] == "unknown task 't'"
    assert dead.message.headers[DEAD_LETTER_QUEUE_HEADER] == queue
    broker.ack([dead])
    assert broker.depth(queue) == 0


def test_unacked_deliveries_return_when_the_connection_closes(rabbitmq_server: Any, queue: str) -> None:
    first = connect(rabbitmq_server.url, {})
    first.publish(msg("held"), queue=queue)
    assert len(first.fetch([queue], 1, timeout_s=5)) == 1
    first.close()
    second = connect(rabbitmq_server.url, {})
    (again,) = second.fetch([queue], 1, timeout_s=5)
    assert again.message.headers["id"] == "held"
    assert again.redelivered is True
    second.ack([again])
    second.close()

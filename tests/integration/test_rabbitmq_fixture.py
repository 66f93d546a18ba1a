"""The session's RabbitMQ node is real: kombu connects, publishes and gets a message back."""

from __future__ import annotations

import kombu
import pytest

from servers import RabbitMQServer

pytestmark = pytest.mark.integration


def test_kombu_publishes_and_gets_a_message(rabbitmq_server: RabbitMQServer) -> None:
    with kombu.Connection(rabbitmq_server.url, connect_timeout=5) as connection:
        queue = connection.SimpleQueue("celeriac-fixture-check")
        try:
            queue.put({"answer": 42})
            message = queue.get(timeout=10)
            assert message.payload == {"answer": 42}
            assert message.properties["delivery_mode"] == 2
            message.ack()
            assert queue.qsize() == 0
        finally:
            queue.close()
            kombu.Queue("celeriac-fixture-check").bind(connection.default_channel).delete()


def test_node_listens_on_loopback_only_with_its_own_node_name(rabbitmq_server: RabbitMQServer) -> None:
    assert rabbitmq_server.url == f"amqp://guest:guest@127.0.0.1:{rabbitmq_server.port}//"
    assert rabbitmq_server.nodename == f"celeriac-{rabbitmq_server.port}@localhost"
    assert rabbitmq_server.proc is not None
    assert rabbitmq_server.proc.poll() is None

"""Backlog measurement against real brokers: every priority list, unacked deliveries, heartbeats, AMQP.

Counts are checked against kombu's own queue-size view (``queue_declare(passive=True)``, which
kombu's Redis transport answers by summing the priority lists) and against the raw lists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu import pools as kombu_pools
from worker_process import WorkerProcess

from celeriac import keys
from celeriac_operator.autoscaler import Backlog, BrokerUnreachable, measure, measure_amqp, measure_redis
from servers import RabbitMQServer, RedisServer, free_port, wait_until

pytestmark = pytest.mark.integration


def send(client: Celery, queue: str, count: int, task: str = "tests.add") -> None:
    """Publish ``count`` messages to ``queue`` with priorities cycling over 0..9."""
    for i in range(count):
        client.send_task(task, args=(i, i), queue=queue, priority=i % 10)


def kombu_size(url: str, queue: str) -> int:
    """kombu's queue size: a passive declare, answered by summing the priority lists."""
    with Connection(url) as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)


def kombu_prefixed_size(url: str, queue: str, prefix: str) -> int:
    """kombu's size routine under ``global_keyprefix``. (Its passive declare cannot be used there:
    kombu 5.7 checks the queue with an EXISTS it does not prefix, so it reports NOT_FOUND.)"""
    with Connection(url, transport_options={"global_keyprefix": prefix}) as conn:
        return int(conn.default_channel._size(queue))


def now(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


@pytest.fixture
def prefixed_celery_client(redis_server: RedisServer) -> Iterator[Celery]:
    client = Celery("prefixed", broker=redis_server.url)
    client.conf.broker_transport_options = {"global_keyprefix": "pfx:"}
    yield client
    kombu_pools.reset()
    client.close()


def test_queued_adds_every_priority_list_and_agrees_with_kombus_queue_size(
    redis_server: RedisServer, rclient: Any, celery_client: Celery
) -> None:
    send(celery_client, "work", 1000)
    send(celery_client, "other", 7)
    per_list = [rclient.llen(key) for key in keys.queue_lists("work")]
    assert all(per_list), f"expected messages in every priority list, got {per_list}"

    backlog = measure_redis(rclient, ["work"], now_s=now(rclient))

    assert backlog.queued == 1000 == kombu_size(redis_server.url, "work") == sum(per_list)
    assert backlog.by_queue == {"work": 1000}
    assert (backlog.reserved, backlog.active, backlog.busy_workers) == (0, 0, 0)
    assert backlog.total == 1000
    both = measure(redis_server.url, ["work", "other"])
    assert both.by_queue == {"work": 1000, "other": 7}
    assert both.queued == 1007


def test_key_prefix_is_honoured(redis_server: RedisServer, rclient: Any, prefixed_celery_client: Celery) -> None:
    send(prefixed_celery_client, "work", 30)
    assert measure_redis(rclient, ["work"], prefix="pfx:", now_s=now(rclient)).queued == 30
    assert measure_redis(rclient, ["work"], now_s=now(rclient)).queued == 0
    assert measure(redis_server.url, ["work"], prefix="pfx:").queued == 30
    assert kombu_prefixed_size(redis_server.url, "work", "pfx:") == 30

    # Deliveries held unacked by a kombu consumer under the prefix count as reserved there only.
    held: list[Any] = []
    with Connection(redis_server.url, transport_options={"global_keyprefix": "pfx:"}) as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=0)
        with Consumer(channel, [Queue("work")], callbacks=[lambda body, message: held.append(message)]):
            while len(held) < 30:
                conn.drain_events(timeout=10)
        assert rclient.hlen(f"pfx:{keys.UNACKED}") == 30
        prefixed = measure_redis(rclient, ["work"], prefix="pfx:", now_s=now(rclient))
        assert (prefixed.queued, prefixed.reserved, prefixed.total) == (0, 30, 30)
        assert measure_redis(rclient, ["work"], now_s=now(rclient)).reserved == 0
        for message in held:
            message.ack()


def hold_on(worker: WorkerProcess, rclient: Any, tags: list[str]) -> None:
    """Wait until the worker runs the first of ``tags`` (the others stay queued or prefetched)."""
    wait_until(lambda: rclient.lrange("started", 0, -1) == [tags[0].encode()], 30.0,
               f"{worker.hostname} to start {tags[0]}")


def release(rclient: Any, tags: list[str]) -> None:
    for tag in tags:
        rclient.rpush(f"release:{tag}", 1)


@pytest.mark.parametrize("task", ["tests.hold", "tests.hold_late"])
def test_a_worker_holding_prefetched_tasks_is_counted_once_whatever_the_ack_mode(
    redis_server: RedisServer, rclient: Any, celery_client: Celery,
    start_worker: Callable[..., WorkerProcess], task: str,
) -> None:
    # concurrency 1 x prefetch 4: one task runs, three wait in the worker, six stay queued.
    worker = start_worker(queues=["work"], concurrency=1, prefetch_multiplier=4, pool="threads",
                          heartbeat_interval_s=0.2, env={"POD_NAME": "pod-a"})
    tags = [f"t{i}" for i in range(10)]
    for tag in tags:
        celery_client.send_task(task, args=(tag,), queue="work")
    hold_on(worker, rclient, tags)

    def settled() -> Backlog:
        return measure_redis(rclient, ["work"], now_s=now(rclient))

    wait_until(lambda: (settled().active, settled().held, settled().queued) == (1, 3, 6), 30.0,
               "the heartbeat to show 1 running and 3 held")
    backlog = settled()
    # Early ack: the running task left ``unacked`` when it started. Late ack: it is still there.
    assert backlog.reserved == (3 if task == "tests.hold" else 4)
    assert backlog.total == 10
    assert backlog.busy_workers == 1
    assert backlog.busy_pods == frozenset({"pod-a"})

    release(rclient, tags)
    wait_until(lambda: settled() == Backlog(queued=0, reserved=0, active=0, busy_workers=0,
                                            by_queue={"work": 0}), 60.0, "the worker to drain and go idle")


def test_another_pools_queue_its_unacked_messages_and_busy_workers_are_not_counted(
    rclient: Any, celery_client: Celery, start_worker: Callable[..., WorkerProcess],
) -> None:
    other = start_worker(queues=["other"], concurrency=1, prefetch_multiplier=1, pool="threads",
                         heartbeat_interval_s=0.2, env={"POD_NAME": "pod-other"})
    celery_client.send_task("tests.hold", args=("o1",), queue="other")
    celery_client.send_task("tests.hold", args=("o2",), queue="other")
    hold_on(other, rclient, ["o1"])
    send(celery_client, "work", 5)
    wait_until(lambda: measure_redis(rclient, ["other"], now_s=now(rclient)).busy_workers == 1, 30.0,
               "the other worker's heartbeat")

    backlog = measure_redis(rclient, ["work"], now_s=now(rclient))

    assert backlog == Backlog(queued=5, reserved=0, active=0, busy_workers=0, by_queue={"work": 5})
    release(rclient, ["o1", "o2"])


def test_reserved_follows_named_exchange_bindings_across_many_hscan_batches(
    redis_server: RedisServer, rclient: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A kombu consumer that never acks leaves 1,500 entries in ``unacked`` (a hashtable, so HSCAN
    # needs several batches), delivered through a topic exchange whose routing keys are not queue names.
    exchange = Exchange("tasks", type="topic")
    work = Queue("work", exchange, routing_key="jobs.#")
    other = Queue("other", exchange, routing_key="mail.#")
    received: list[Any] = []
    with Connection(redis_server.url) as conn:
        producer = Producer(conn.default_channel)
        for i in range(1500):
            producer.publish({"i": i}, exchange=exchange, routing_key="jobs.urgent", declare=[work, other])
        for i in range(20):
            producer.publish({"i": i}, exchange=exchange, routing_key="mail.daily", declare=[other])
        channel = conn.channel()
        channel.basic_qos(prefetch_count=0)
        with Consumer(channel, [work, other], callbacks=[lambda body, message: received.append(message)]):
            while len(received) < 1520:
                conn.drain_events(timeout=10)
        assert rclient.hlen(keys.UNACKED) == 1520
        entry = json.loads(next(iter(rclient.hvals(keys.UNACKED))))
        assert entry[1] == "tasks"

        assert measure_redis(rclient, ["work"], now_s=now(rclient)).reserved == 1500
        assert measure_redis(rclient, ["other"], now_s=now(rclient)).reserved == 20
        with caplog.at_level(logging.WARNING, logger="celeriac_operator.autoscaler.depth"):
            capped = measure_redis(rclient, ["work", "other"], now_s=now(rclient), max_unacked_scanned=100)
        assert capped.reserved < 1520
        assert "lower bound" in caplog.text
        for message in received:
            message.ack()
    assert measure_redis(rclient, ["work", "other"], now_s=now(rclient)).reserved == 0


def test_amqp_counts_ready_messages_by_passive_declare_and_a_missing_queue_as_zero(
    rabbitmq_server: RabbitMQServer,
) -> None:
    queue = Queue(f"depth-{free_port()}", durable=False, auto_delete=False)
    with Connection(rabbitmq_server.url) as conn:
        producer = Producer(conn.default_channel)
        for i in range(250):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue])
        missing = f"missing-{free_port()}"

        backlog = measure_amqp(rabbitmq_server.url, [missing, queue.name])

        assert backlog.by_queue == {missing: 0, queue.name: 250}
        assert backlog.queued == backlog.total == 250
        assert measure(rabbitmq_server.url, [queue.name]).queued == 250
        assert int(conn.default_channel.queue_declare(queue=queue.name, passive=True).message_count) == 250
        queue(conn.default_channel).delete()


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_unreachable_broker_raises_without_credentials_in_the_message(scheme: str) -> None:
    port = free_port()
    url = f"{scheme}://alice:s3cr3t-pw@127.0.0.1:{port}/0"
    with pytest.raises(BrokerUnreachable) as caught:
        measure(url, ["work"], timeout_s=2.0)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cr3t-pw" not in message
    assert "alice" not in message
    assert caught.value.__cause__ is None


def test_wrong_rabbitmq_password_raises_without_it_in_the_message(rabbitmq_server: RabbitMQServer) -> None:
    url = f"amqp://guest:n0t-the-pw@127.0.0.1:{rabbitmq_server.port}//"
    with pytest.raises(BrokerUnreachable) as caught:
        measure(url, ["work"], timeout_s=5.0)
    assert f"127.0.0.1:{rabbitmq_server.port}" in str(caught.value)
    assert "n0t-the-pw" not in str(caught.value)

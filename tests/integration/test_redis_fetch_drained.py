"""After a fetch that emptied the queue lists, the next blocking fetch goes straight to BRPOP (one
round trip per arriving message, none spent on an empty script call first); after a full batch
it runs the script first, which takes up to a whole batch in one call. Either way every message
is recorded in ``unacked`` under its Delivery's tag and comes out in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from broker_support import msg

from celeriac.brokers import BrokerConnectionError, connect
from celeriac.brokers.redis import RedisBroker

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(redis_server: Any) -> Iterator[RedisBroker]:
    opened = connect(redis_server.url, {})
    assert isinstance(opened, RedisBroker)
    yield opened
    opened.close()


def calls(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("brpop", "evalsha")}


def task_ids(deliveries: list[Any]) -> list[str]:
    return [str(d.message.headers["id"]) for d in deliveries]


def test_a_fetch_after_the_queue_was_emptied_waits_in_brpop_first(broker: RedisBroker, redis_server: Any) -> None:
    client = redis_server.client()
    broker.publish(msg("m0"), queue="q")
    first = broker.fetch(["q"], 4, 1.0)
    assert task_ids(first) == ["m0"]  # fewer than asked: the lists are empty
    first_tag = first[0].delivery_tag
    for name in ("m1", "m2"):
        broker.publish(msg(name), queue="q")
    client.config_resetstat()
    batch = broker.fetch(["q"], 4, 1.0)
    assert task_ids(batch) == ["m1", "m2"]  # BRPOP took m1, the script recorded it and took m2
    assert calls(client) == {"brpop": 1, "evalsha": 1}
    assert {t.decode() for t in client.hkeys("unacked")} == {d.delivery_tag for d in batch} | {first_tag}


def test_a_fetch_after_a_full_batch_runs_the_script_first(broker: RedisBroker, redis_server: Any) -> None:
    client = redis_server.client()
    for index in range(8):
        broker.publish(msg(f"m{index}"), queue="q")
    assert task_ids(broker.fetch(["q"], 4, 1.0)) == ["m0", "m1", "m2", "m3"]
    client.config_resetstat()
    assert task_ids(broker.fetch(["q"], 4, 1.0)) == ["m4", "m5", "m6", "m7"]
    assert calls(client) == {"brpop": 0, "evalsha": 1}
    assert client.hlen("unacked") == 8


def test_a_non_blocking_fetch_never_waits_even_after_the_queue_was_emptied(
    broker: RedisBroker, redis_server: Any
) -> None:
    client = redis_server.client()
    assert broker.fetch(["q"], 4, 1.0) == []  # waited a whole timeout on the empty queue
    broker.publish(msg("m0"), queue="q")
    client.config_resetstat()
    assert task_ids(broker.fetch(["q"], 4, 0.0)) == ["m0"]
    assert calls(client) == {"brpop": 0, "evalsha": 1}


def test_a_fetch_after_the_script_cache_was_flushed_loads_the_script_again(
    broker: RedisBroker, redis_server: Any
) -> None:
    client = redis_server.client()
    broker.publish(msg("m0"), queue="q")
    assert task_ids(broker.fetch(["q"], 4, 0.0)) == ["m0"]
    client.script_flush()  # as after a Redis restart: the fetch script is gone
    broker.publish(msg("m1"), queue="q")
    assert task_ids(broker.fetch(["q"], 4, 0.0)) == ["m1"]
    assert client.hlen("unacked") == 2


def test_a_fetch_after_its_connection_was_killed_reports_it_and_the_next_one_reconnects(
    broker: RedisBroker, redis_server: Any
) -> None:
    client = redis_server.client()
    broker.publish(msg("m0"), queue="q")
    assert task_ids(broker.fetch(["q"], 4, 0.0)) == ["m0"]
    client.client_kill_filter(_type="normal", skipme=True)  # every other connection: the broker's
    broker.publish(msg("m1"), queue="q")
    with pytest.raises(BrokerConnectionError):
        broker.fetch(["q"], 4, 0.0)
    assert task_ids(broker.fetch(["q"], 4, 0.0)) == ["m1"]
    assert client.hlen("unacked") == 2

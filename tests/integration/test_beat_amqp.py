"""Scheduled messages on RabbitMQ: published normally (no broker guard exists), same id every time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from celeriac import Celeriac
from celeriac.beat.entries import Entry
from celeriac.beat.publisher import Publisher, scheduled_task_id
from celeriac.protocol import SCHEDULED_HEADER, decode_task_message
from celeriac.schedules import Every

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_amqp_slot_is_published_with_its_deterministic_id_and_header_but_without_a_guard(
    rabbitmq_server: Any, redis_server: Any
) -> None:
    queue = f"beat-{uuid.uuid4().hex[:8]}"
    entry = Entry(name="tick", task="beat.tick", schedule=Every(timedelta(seconds=1)), queue="ticks",
                  args=(2,), priority=5)
    app = Celeriac("amqp-beat", broker=rabbitmq_server.url, backend=redis_server.url)
    try:
        publisher = Publisher(app, "ns/sched", {"ticks": queue})
        first, second = publisher.publish(entry, SLOT), publisher.publish(entry, SLOT)
        assert (first.published, second.published) == (True, True)  # no guard: the record and worker skip cover it
        got = app.broker.fetch([queue], 10, timeout_s=5)
        app.broker.ack(got)
    finally:
        app.close()
    expected = scheduled_task_id("ns/sched", "tick", SLOT)
    assert [d.message.headers["id"] for d in got] == [expected, expected]
    request = decode_task_message(got[0].message, app.conf.accept)
    assert (request.task, request.args) == ("beat.tick", (2,))
    assert request.headers[SCHEDULED_HEADER] == {"schedule": "ns/sched", "entry": "tick",
                                                 "slot": "2026-06-01T12:00:00+00:00"}
    assert got[0].priority == 5

"""A minimal task message for the Broker protocol tests (Redis and AMQP)."""

from __future__ import annotations

import json

from celeriac.message import Message


def msg(task_id: str) -> Message:
    """A protocol-2 shaped message whose id, correlation id and only argument are ``task_id``."""
    return Message(
        headers={"lang": "py", "task": "t", "id": task_id},
        properties={"correlation_id": task_id, "delivery_mode": 2},
        body=json.dumps([[task_id], {}, {}]).encode(),
    )

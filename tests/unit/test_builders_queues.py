"""Resolving TaskQueue references: broker queue names, one shared Secret, messages that say what to fix."""

from __future__ import annotations

import pytest

from celeriac_operator.errors import Unresolved
from celeriac_operator.models import TaskQueue
from celeriac_operator.queues import resolve


def taskqueue(name: str, secret: str = "broker", key: str = "url", queue_name: str | None = None) -> TaskQueue:
    spec: dict[str, object] = {"broker": {"secretRef": {"name": secret, "key": key}}}
    if queue_name:
        spec["queueName"] = queue_name
    return TaskQueue.from_body({"metadata": {"name": name, "namespace": "ns"}, "spec": spec})


def test_references_map_to_broker_queue_names_and_the_shared_secret() -> None:
    available = {"emails": taskqueue("emails"), "reports": taskqueue("reports", queue_name="reports.v1")}
    resolved = resolve("ns", ["emails", "reports", "emails"], available)
    assert dict(resolved.queue_names) == {"emails": "emails", "reports": "reports.v1"}
    assert resolved.broker_queues == ("emails", "reports.v1")
    assert (resolved.secret_name, resolved.secret_key) == ("broker", "url")


def test_a_missing_taskqueue_is_named_in_the_message() -> None:
    with pytest.raises(Unresolved) as caught:
        resolve("ns", ["emails", "nope"], {"emails": taskqueue("emails")})
    assert caught.value.reason == "TaskQueueNotFound"
    assert "TaskQueue ns/nope not found" in caught.value.message


@pytest.mark.parametrize(("secret", "key"), [("other", "url"), ("broker", "amqp")])
def test_taskqueues_on_different_broker_secrets_are_refused_naming_the_odd_one(secret: str, key: str) -> None:
    available = {"a": taskqueue("a"), "b": taskqueue("b", secret=secret, key=key)}
    with pytest.raises(Unresolved) as caught:
        resolve("ns", ["a", "b"], available)
    assert caught.value.reason == "BrokerMismatch"
    assert f"TaskQueue ns/b uses broker Secret {secret} key '{key}'" in caught.value.message

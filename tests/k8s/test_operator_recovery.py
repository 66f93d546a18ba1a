"""Problems found after admission become conditions and Events saying what to fix, and recover on their own."""

from __future__ import annotations

from typing import Any

import pytest
from manifests_support import apply, broker_secret, condition, example_documents, get, items, wait_for
from operator_support import OperatorProcess

from servers import RedisServer

pytestmark = pytest.mark.k8s


def status_is(type_: str, status: str, reason: str | None = None) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        found = condition(obj, type_)
        return found.get("status") == status and (reason is None or found.get("reason") == reason)

    return check


def events_for(kubectl: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return [event for event in items(kubectl, namespace, "events")
            if event["involvedObject"].get("name") == name]


def test_missing_secret_is_reported_on_the_taskqueue_then_recovers_when_created(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    apply(kubectl, namespace, *example_documents("taskqueues.yaml"))

    queue = wait_for(kubectl, namespace, "taskqueue", "emails", status_is("BrokerReachable", "False", "SecretNotFound"))
    message = condition(queue, "BrokerReachable")["message"]
    assert message == (f"Secret {namespace}/celeriac-broker not found: create it with key 'url' holding the "
                       "broker URL")
    assert condition(queue, "Ready")["status"] == "False"
    assert condition(queue, "BrokerReachable")["observedGeneration"] == queue["metadata"]["generation"]
    warnings = [e for e in events_for(kubectl, namespace, "emails") if e["reason"] == "SecretNotFound"]
    assert warnings
    assert warnings[0]["type"] == "Warning"

    apply(kubectl, namespace, broker_secret(redis_server.url))

    queue = wait_for(kubectl, namespace, "taskqueue", "emails", status_is("BrokerReachable", "True"))
    assert queue["status"]["brokerHost"] == f"127.0.0.1:{redis_server.port}"
    assert condition(queue, "Ready")["status"] == "True"


def test_secret_without_the_key_is_reported_as_key_not_found(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    secret = broker_secret(redis_server.url)
    secret["stringData"] = {"other": redis_server.url}
    apply(kubectl, namespace, secret, *example_documents("taskqueues.yaml"))

    queue = wait_for(kubectl, namespace, "taskqueue", "emails", status_is("BrokerReachable", "False", "KeyNotFound"))
    assert "has no key 'url'" in condition(queue, "BrokerReachable")["message"]


def test_unreachable_broker_names_host_and_port_but_never_the_password(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    port = redis_server.port
    redis_server.stop()
    apply(kubectl, namespace, broker_secret(f"redis://:s3cret-pw@127.0.0.1:{port}/0"),
          *example_documents("taskqueues.yaml"))

    queue = wait_for(kubectl, namespace, "taskqueue", "emails", status_is("BrokerReachable", "False", "Unreachable"))
    message = condition(queue, "BrokerReachable")["message"]
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in str(queue["status"])


def test_unknown_taskqueue_blocks_the_workerpool_with_a_message_then_recovers(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    emails, reports = example_documents("taskqueues.yaml")
    apply(kubectl, namespace, broker_secret(redis_server.url), emails, *example_documents("workerpool.yaml"))

    pool = wait_for(kubectl, namespace, "workerpool", "tasks",
                    status_is("QueuesResolved", "False", "TaskQueueNotFound"))
    assert condition(pool, "QueuesResolved")["message"] == (
        f"TaskQueue {namespace}/reports not found: create it or remove it from the spec")
    assert get(kubectl, namespace, "deployment", "tasks-worker") is None
    assert any(e["reason"] == "TaskQueueNotFound" and e["type"] == "Warning"
               for e in events_for(kubectl, namespace, "tasks"))

    apply(kubectl, namespace, reports)

    wait_for(kubectl, namespace, "workerpool", "tasks", status_is("QueuesResolved", "True"))
    wait_for(kubectl, namespace, "deployment", "tasks-worker")


def test_taskqueues_on_different_secrets_block_the_beatschedule_until_aligned(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    emails, reports = example_documents("taskqueues.yaml")
    reports["spec"]["broker"]["secretRef"]["name"] = "other-broker"
    (schedule,) = example_documents("beatschedule.yaml")
    schedule["spec"]["entries"][0]["queue"] = "emails"  # entries on both TaskQueues, whatever the example uses
    apply(kubectl, namespace, broker_secret(redis_server.url), broker_secret(redis_server.url, "other-broker"),
          emails, reports, schedule)

    found = wait_for(kubectl, namespace, "beatschedule", "housekeeping",
                     status_is("QueuesResolved", "False", "BrokerMismatch"))
    assert f"TaskQueue {namespace}/reports uses broker Secret other-broker" in condition(
        found, "QueuesResolved")["message"]
    assert get(kubectl, namespace, "deployment", "housekeeping-beat") is None

    reports["spec"]["broker"]["secretRef"]["name"] = "celeriac-broker"
    apply(kubectl, namespace, reports)

    wait_for(kubectl, namespace, "beatschedule", "housekeeping", status_is("QueuesResolved", "True"))
    wait_for(kubectl, namespace, "deployment", "housekeeping-beat")


def test_unknown_time_zone_makes_the_beatschedule_not_ready_until_fixed(
    operator: OperatorProcess, kubectl: Any, namespace: str, redis_server: RedisServer,
) -> None:
    (schedule,) = example_documents("beatschedule.yaml")
    schedule["spec"]["timeZone"] = "Mars/Olympus"
    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"), schedule)

    found = wait_for(kubectl, namespace, "beatschedule", "housekeeping", status_is("Ready", "False", "InvalidSchedule"))
    assert "spec.timeZone: unknown time zone 'Mars/Olympus'" in condition(found, "Ready")["message"]
    assert get(kubectl, namespace, "deployment", "housekeeping-beat") is None

    schedule["spec"]["timeZone"] = "Europe/Paris"
    apply(kubectl, namespace, schedule)

    wait_for(kubectl, namespace, "deployment", "housekeeping-beat")
    wait_for(kubectl, namespace, "beatschedule", "housekeeping", status_is("Ready", "False", "BeatNotReady"))

"""The generated CRDs on a real kube-apiserver: the examples apply, the server fills defaults, short names,
the ``celeriac`` category, printer columns and the scale subresource work, and invalid resources are
rejected at admission with a message naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from celeriac_operator.models import BeatSchedule, TaskQueue, WorkerPool

pytestmark = pytest.mark.k8s

MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "manifests"
DELETE = object()
"""A mutation value meaning: remove this field."""


def example(kind: str, index: int = 0) -> dict[str, Any]:
    """The ``index``-th object of ``kind`` in the example manifests (a deep copy)."""
    found = [
        doc for path in sorted(MANIFESTS.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == kind
    ]
    return copy.deepcopy(found[index])


def mutated(kind: str, changes: dict[str, Any]) -> dict[str, Any]:
    """An example of ``kind`` with ``changes`` applied: dotted paths (list indexes as numbers) -> value."""
    obj = example(kind)
    for dotted, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        node: Any = obj
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return obj


def _entry(**fields: Any) -> dict[str, Any]:
    return {"name": "extra", "task": "tasks.add", "queue": "emails", **fields}


# (case id, kind, changes, expected substring of the API server's message: it names the field or says what to fix)
INVALID = [
    ("min-above-max", "WorkerPool", {"spec.autoscaling.minReplicas": 5, "spec.autoscaling.maxReplicas": 3},
     "spec.autoscaling.minReplicas: Invalid value: autoscaling.minReplicas must be <= autoscaling.maxReplicas"),
    ("every-and-cron", "BeatSchedule", {"spec.entries.0.cron": "* * * * *"},
     "every and cron are mutually exclusive"),
    ("neither-every-nor-cron", "BeatSchedule", {"spec.entries.0.every": DELETE}, "set one of every or cron"),
    ("cron-four-fields", "BeatSchedule", {"spec.entries.1.cron": "30 2 * *"}, "cron must have 5"),
    ("cron-unknown-macro", "BeatSchedule", {"spec.entries.1.cron": "@fortnightly"}, "spec.entries[1].cron"),
    ("queue-name-with-space", "TaskQueue", {"spec.queueName": "bad name!"}, "spec.queueName"),
    ("queue-name-dead-suffix", "TaskQueue", {"spec.queueName": "emails.dead"}, "must not end in '.dead'"),
    ("object-name-dead-suffix", "TaskQueue", {"metadata.name": "emails.dead"},
     "spec.queueName: Invalid value: spec.queueName is required when the TaskQueue's name ends in '.dead'"),
    ("dead-letter-is-the-queue", "TaskQueue", {"spec.queueName": "q1", "spec.deadLetter": {"queueName": "q1"}},
     "spec.deadLetter.queueName: Invalid value: spec.deadLetter.queueName must differ"),
    ("dead-letter-is-the-default-queue-name", "TaskQueue", {"spec.deadLetter": {"queueName": "emails"}},
     "spec.deadLetter.queueName must differ from the queue's own broker name"),
    ("env-value-and-value-from", "WorkerPool",
     {"spec.env.0": {"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}},
     "spec.env[0]: Invalid value: set value or valueFrom, not both"),
    ("grace-not-above-drain", "WorkerPool", {"spec.terminationGracePeriodSeconds": 29},
     "spec.terminationGracePeriodSeconds: Invalid value: terminationGracePeriodSeconds must be >= "
     "shutdownTimeoutSeconds + 5"),
    ("unknown-runtime", "WorkerPool", {"spec.runtime": "gevent"}, "spec.runtime"),
    ("unknown-pool", "WorkerPool", {"spec.pool": "eventlet"}, "spec.pool"),
    ("concurrency-zero", "WorkerPool", {"spec.concurrency": 0}, "spec.concurrency"),
    ("poll-interval-zero", "WorkerPool", {"spec.autoscaling.pollIntervalSeconds": 0},
     "spec.autoscaling.pollIntervalSeconds"),
    ("secret-name-missing", "TaskQueue", {"spec.broker.secretRef.name": DELETE}, "spec.broker.secretRef.name"),
    ("queues-empty", "WorkerPool", {"spec.queues": []}, "spec.queues"),
    ("queues-duplicate", "WorkerPool", {"spec.queues": ["emails", "emails"]}, "spec.queues[1]"),
    ("queue-reference-not-a-name", "WorkerPool", {"spec.queues": ["Emails"]}, "spec.queues[0]"),
    ("entry-names-duplicate", "BeatSchedule", {"spec.entries.1.name": "heartbeat-add"}, "spec.entries[1]"),
    ("entry-name-not-a-label", "BeatSchedule", {"spec.entries.0.name": "Heartbeat_Add"}, "spec.entries[0].name"),
    ("renew-not-below-lease", "BeatSchedule",
     {"spec.leaderElection": {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 15}},
     "renewDeadlineSeconds must be < leaseDurationSeconds"),
    ("retry-not-below-renew", "BeatSchedule",
     {"spec.leaderElection": {"renewDeadlineSeconds": 5, "retryPeriodSeconds": 5}},
     "retryPeriodSeconds must be < renewDeadlineSeconds"),
    ("every-bad-unit", "BeatSchedule", {"spec.entries.0.every": "5x"}, "every must be a positive number"),
    ("every-zero-seconds", "BeatSchedule", {"spec.entries.0.every": 0}, "every must be a positive number"),
    ("app-bad-pattern", "WorkerPool", {"spec.app": "tasks-app"}, "spec.app"),
    ("priority-above-nine", "BeatSchedule", {"spec.entries.1.options.priority": 10},
     "spec.entries[1].options.priority"),
    ("beat-replicas-above-five", "BeatSchedule", {"spec.replicas": 6}, "spec.replicas"),
    ("max-priority-above-nine", "TaskQueue", {"spec.maxPriority": 10}, "spec.maxPriority"),
    ("missed-run-policy-unknown", "BeatSchedule", {"spec.entries.1.missedRunPolicy": "always"},
     "spec.entries[1].missedRunPolicy"),
    ("entries-empty", "BeatSchedule", {"spec.entries": []}, "spec.entries"),
    ("entry-missing-queue", "BeatSchedule", {"spec.entries.2": {"name": "x", "task": "t", "every": 5}},
     "spec.entries[2].queue"),
]


@pytest.mark.parametrize("case", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_resource_is_rejected_at_admission_naming_the_field(
    kubectl: Any, namespace: str, celeriac_crds: list[str], case: tuple[str, dict[str, Any], str]
) -> None:
    kind, changes, expected = case
    obj = mutated(kind, changes)
    done = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert done.returncode != 0, f"accepted: {json.dumps(obj)}"
    assert expected in done.stderr, done.stderr


def test_valid_examples_pass_the_same_dry_run_the_invalid_cases_fail(
    kubectl: Any, namespace: str, celeriac_crds: list[str]
) -> None:
    for kind in ("TaskQueue", "WorkerPool", "BeatSchedule"):
        kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(example(kind)))
    for kind, changes in [
        ("BeatSchedule", {"spec.entries.0.every": 30}),
        ("BeatSchedule", {"spec.entries.1.cron": "*/15 9-17 * jan-jun mon-fri"}),
        ("TaskQueue", {"spec.deadLetter": {"queueName": "emails-rejected"}}),
        ("WorkerPool", {"spec.env.0": {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}}),
        ("WorkerPool", {"spec.autoscaling": {"minReplicas": 0, "maxReplicas": 1}}),
    ]:
        kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(mutated(kind, changes)))


@pytest.fixture
def applied(kubectl: Any, namespace: str, celeriac_crds: list[str]) -> str:
    """Every example manifest applied for real in the test's namespace."""
    kubectl("apply", "-n", namespace, "-f", str(MANIFESTS))
    return namespace


def get_json(kubectl: Any, namespace: str, *what: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *what, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]


def test_every_example_manifest_applies_and_parses_into_the_models(kubectl: Any, applied: str) -> None:
    queues = [TaskQueue.from_body(o) for o in get_json(kubectl, applied, "taskqueues")["items"]]
    pools = [WorkerPool.from_body(o) for o in get_json(kubectl, applied, "workerpools")["items"]]
    beats = [BeatSchedule.from_body(o) for o in get_json(kubectl, applied, "beatschedules")["items"]]
    assert {q.name: q.queue_name for q in queues} == {"emails": "emails", "reports": "reports.v1"}
    assert [(p.name, p.spec.queues) for p in pools] == [("tasks", ["emails", "reports"])]
    assert [e.name for e in beats[0].spec.entries] == ["heartbeat-add", "nightly-report", "hourly-roll"]
    assert all(q.namespace == applied and q.uid and q.generation == 1 for q in queues)


def test_api_server_fills_the_defaults(kubectl: Any, applied: str) -> None:
    emails = get_json(kubectl, applied, "tq", "emails")["spec"]
    assert emails["broker"]["secretRef"]["key"] == "url"
    assert (emails["maxPriority"], emails["deadLetter"]) == (0, {"enabled": True})
    pool = get_json(kubectl, applied, "wp", "tasks")["spec"]
    assert (pool["runtime"], pool["prefetchMultiplier"], pool["replicas"], pool["healthPort"]) == (
        "celeriac", 4, 1, 9808)
    assert pool["autoscaling"]["pollIntervalSeconds"] == 2
    assert pool["autoscaling"]["scaleDownMaxStep"] == 2
    assert pool["autoscaling"]["activationBacklog"] == 1
    beat = get_json(kubectl, applied, "bs", "housekeeping")["spec"]
    assert beat["suspend"] is False
    assert beat["leaderElection"] == {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 2}
    heartbeat = beat["entries"][0]
    assert (heartbeat["kwargs"], heartbeat["missedRunPolicy"], heartbeat["maxCatchUp"], heartbeat["suspend"]) == (
        {}, "runOnce", 10, False)


def test_short_names_and_the_celeriac_category_list_every_resource(kubectl: Any, applied: str) -> None:
    listed = kubectl("get", "celeriac", "-n", applied, "-o", "name").stdout.split()
    assert sorted(listed) == sorted([
        "taskqueue.celeriac.io/emails", "taskqueue.celeriac.io/reports",
        "workerpool.celeriac.io/tasks", "beatschedule.celeriac.io/housekeeping",
    ])
    short = kubectl("get", "tq,wp,bs", "-n", applied, "-o", "name").stdout.split()
    assert sorted(short) == sorted(listed)


@pytest.mark.parametrize(("short", "header"), [
    ("tq", ["NAME", "BROKER", "BACKLOG", "READY", "AGE"]),
    ("wp", ["NAME", "QUEUES", "DESIRED", "READY", "BACKLOG", "AGE", "BUSY", "LAST SCALE"]),
    ("bs", ["NAME", "ENTRIES", "LEADER", "LAST RUN", "AGE"]),
])
def test_printer_columns_are_in_the_wide_listing(kubectl: Any, applied: str, short: str, header: list[str]) -> None:
    first_line = kubectl("get", short, "-n", applied, "-o", "wide").stdout.splitlines()[0]
    columns = [c.strip() for c in first_line.split("  ") if c.strip()]
    assert columns == header


def test_kubectl_scale_sets_spec_replicas_through_the_scale_subresource(kubectl: Any, applied: str) -> None:
    kubectl("scale", "wp/tasks", "--replicas=3", "-n", applied)
    assert get_json(kubectl, applied, "wp", "tasks")["spec"]["replicas"] == 3
    scale = json.loads(kubectl(
        "get", "--raw", f"/apis/celeriac.io/v1alpha1/namespaces/{applied}/workerpools/tasks/scale").stdout)
    assert scale["spec"]["replicas"] == 3

"""The CRDs and the docs reference are generated from the models: committed files never drift, every field is
described, the schemas are structural, and the models read the example manifests and the pure helpers hold."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from celeriac_operator import crdgen
from celeriac_operator.models import (
    RESOURCES,
    BeatEntry,
    BeatSchedule,
    BeatScheduleStatus,
    EntryStatus,
    TaskQueue,
    TaskQueueSpec,
    WorkerPool,
)
from celeriac_operator.schema import SchemaError, structural

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "examples" / "manifests"
PARSERS = {r.kind: r for r in RESOURCES}
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "nullable", "uniqueItems", "const", "title"}


def nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node below ``schema`` (properties, items, map values) with its path."""
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


def schemas() -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, crdgen.crd(r)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) for r in RESOURCES]


def examples() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(MANIFESTS.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] in PARSERS
    ]


def test_committed_crds_and_docs_reference_match_what_the_models_generate() -> None:
    assert crdgen.drifted(REPO) == [], "regenerate: python -m celeriac_operator.crdgen"


def test_check_mode_exits_1_naming_each_drifting_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(REPO / crdgen.DOCS_FILE, tmp_path / crdgen.DOCS_FILE)
    assert crdgen.main(["--repo", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--repo", str(tmp_path)]) == 0
    stale = tmp_path / "crds" / "celeriac.io_workerpools.yaml"
    stale.write_text(stale.read_text().replace("default: 9808", "default: 9809"))
    capsys.readouterr()
    assert crdgen.main(["--check", "--repo", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "drift: crds/celeriac.io_workerpools.yaml (regenerate: python -m celeriac_operator.crdgen)"
    ]


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=[k for k, _ in schemas()])
def test_every_field_has_a_description(kind: str, schema: dict[str, Any]) -> None:
    undescribed = [
        path for path, node in nodes(schema)
        if path not in {"", ".metadata"} and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=[k for k, _ in schemas()])
def test_schema_is_structural(kind: str, schema: dict[str, Any]) -> None:
    for path, node in nodes(schema):
        assert not FORBIDDEN & node.keys(), path
        assert node.get("additionalProperties", {}) not in (True, {}) or "additionalProperties" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"), path
        assert "default" not in node or node["default"] is not None, path


@pytest.mark.parametrize(("kind", "schema"), schemas(), ids=[k for k, _ in schemas()])
def test_every_cel_rule_has_a_message_and_bounded_inputs(kind: str, schema: dict[str, Any]) -> None:
    for path, node in nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], path
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: arrays carry maxItems so CEL costs stay bounded"


def test_a_union_other_than_optional_is_refused() -> None:
    from pydantic import BaseModel

    class Bad(BaseModel):
        either: int | list[int]

    with pytest.raises(SchemaError, match="union"):
        structural(Bad)


@pytest.mark.parametrize("doc", examples(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_models_round_trip_the_examples(doc: dict[str, Any]) -> None:
    parsed = PARSERS[doc["kind"]].from_body(doc)
    rendered = parsed.spec.to_json()

    def contains(full: Any, part: Any) -> bool:
        if isinstance(part, dict):
            return isinstance(full, dict) and all(k in full and contains(full[k], v) for k, v in part.items())
        if isinstance(part, list):
            return isinstance(full, list) and len(full) == len(part) and all(map(contains, full, part))
        return bool(full == part)

    assert contains(rendered, doc["spec"]), rendered
    assert type(parsed).from_body({**doc, "spec": rendered}) == parsed


def test_task_queue_names_default_to_the_resource_name_and_dead_letter_to_a_suffix() -> None:
    spec = TaskQueueSpec.model_validate({"broker": {"secretRef": {"name": "b"}}})
    assert spec.broker.secret_ref.key == "url"
    assert (spec.effective_queue_name("emails"), spec.dead_letter_queue_name("emails")) == ("emails", "emails.dead")
    named = TaskQueueSpec.model_validate({
        "queueName": "q1", "broker": {"secretRef": {"name": "b"}}, "deadLetter": {"queueName": "graveyard"}
    })
    assert (named.effective_queue_name("emails"), named.dead_letter_queue_name("emails")) == ("q1", "graveyard")
    off = TaskQueueSpec.model_validate({"broker": {"secretRef": {"name": "b"}}, "deadLetter": {"enabled": False}})
    assert off.dead_letter_queue_name("emails") is None


@pytest.mark.parametrize(("every", "seconds"), [(45, 45), ("45s", 45), ("5m", 300), ("2h", 7200), ("1d", 86400)])
def test_every_converts_to_seconds(every: int | str, seconds: int) -> None:
    entry = BeatEntry.model_validate({"name": "e", "task": "t", "queue": "q", "every": every})
    assert entry.interval_s() == seconds


def test_parsed_resource_carries_identity_and_empty_status_until_written() -> None:
    body = {
        "metadata": {"name": "tasks", "namespace": "ns", "uid": "u-1", "generation": 3, "resourceVersion": "42"},
        "spec": {"queues": ["emails"], "app": "tasks"},
    }
    pool = WorkerPool.from_body(body)
    assert (pool.name, pool.namespace, pool.uid, pool.generation, pool.resource_version) == (
        "tasks", "ns", "u-1", 3, "42")
    assert (pool.autoscaling.poll_interval_seconds, pool.autoscaling.min_replicas) == (2, 1)
    assert pool.status.conditions == []
    assert pool.status.condition("Ready") is None
    assert TaskQueue.from_body({"metadata": {"name": "x.y"}, "spec": {"broker": {"secretRef": {"name": "b"}}},
                                "status": {"backlog": 7, "kopf": {"progress": {}}}}).status.backlog == 7


def test_status_patch_holds_only_the_writers_fields() -> None:
    beat_patch = BeatScheduleStatus(leader="beat-0", entries=[EntryStatus(name="e")]).to_patch()
    assert beat_patch == {"leader": "beat-0", "entries": [{"name": "e"}]}
    parsed = BeatSchedule.from_body({
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"entries": [{"name": "e", "task": "t", "queue": "q", "cron": "@daily"}]},
        "status": {"leader": "beat-0", "entries": [{"name": "e", "lastSlotTime": "2026-11-21T05:00:00Z"}]},
    })
    assert parsed.status.entry("e") is not None
    assert parsed.status.entry("e").last_slot_time.isoformat() == "2026-11-21T05:00:00+00:00"  # type: ignore[union-attr]
    assert parsed.spec.entry("e").interval_s() is None  # type: ignore[union-attr]

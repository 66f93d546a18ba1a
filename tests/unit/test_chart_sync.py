"""The chart's CRDs and RBAC rules come from their one source (crds/ and rbac.py) and cannot drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from celeriac_operator import chartgen, rbac
from celeriac_operator.rbac import Rule
from helm_support import find, render

REPO = Path(__file__).resolve().parents[2]
CHART_LABELS = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                "app.kubernetes.io/component", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                "app.kubernetes.io/part-of"}


def test_committed_chart_copies_match_what_chartgen_generates() -> None:
    assert chartgen.drifted() == [], "run: python -m celeriac_operator.chartgen"


def test_chartgen_check_names_a_drifting_crd_copy_and_a_stale_extra_file(tmp_path: Path) -> None:
    shutil.copytree(REPO / "crds", tmp_path / "crds")
    assert chartgen.main(["--repo", str(tmp_path)]) == 0
    assert chartgen.main(["--check", "--repo", str(tmp_path)]) == 0
    copy = tmp_path / chartgen.CHART_CRDS_DIR / "celeriac.io_taskqueues.yaml"
    copy.write_text(copy.read_text().replace("maxPriority", "maxPriorities"))
    (tmp_path / chartgen.CHART_CRDS_DIR / "old.yaml").write_text("kind: Gone\n")
    assert chartgen.drifted(tmp_path) == [f"{chartgen.CHART_CRDS_DIR}/celeriac.io_taskqueues.yaml",
                                         f"{chartgen.CHART_CRDS_DIR}/old.yaml"]
    assert chartgen.main(["--check", "--repo", str(tmp_path)]) == 1


def _source_crds() -> dict[str, dict[str, object]]:
    docs = {}
    for path in sorted((REPO / "crds").glob("celeriac.io_*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["metadata"]["name"]] = doc
    return docs


def test_rendered_crds_equal_the_crds_directory_plus_only_chart_labels_and_the_keep_annotation() -> None:
    rendered = {o["metadata"]["name"]: o for o in find(render(), "CustomResourceDefinition")}
    source = _source_crds()
    assert set(rendered) == set(source)
    assert len(source) == 3
    for name, crd in rendered.items():
        meta = crd["metadata"]
        assert set(meta.pop("labels")) == CHART_LABELS
        assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert crd == source[name], name


def test_crds_keep_false_renders_them_without_the_keep_annotation_and_disabled_renders_none() -> None:
    crds = find(render({"crds.keep": "false"}), "CustomResourceDefinition")
    assert len(crds) == 3
    assert all("annotations" not in c["metadata"] for c in crds)
    assert find(render({"crds.enabled": "false"}), "CustomResourceDefinition") == []


def test_kopf_peering_crds_are_in_helms_crds_directory_identical_to_the_source() -> None:
    assert (REPO / chartgen.HELM_CRDS_DIR / chartgen.KOPF_CRDS).read_text() == \
        (REPO / "crds" / chartgen.KOPF_CRDS).read_text()


def test_cluster_scope_cluster_role_has_exactly_the_rules_of_rbac_py() -> None:
    (role,) = find(render(), "ClusterRole")
    assert role["rules"] == rbac.cluster_role()["rules"]


def _grants(rules: list[dict[str, list[str]]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_namespaces_scope_role_plus_discovery_grant_everything_but_cluster_peerings() -> None:
    objects = render({"watch.scope": "namespaces"})
    (role,) = find(objects, "Role", "rel-celeriac")
    (discovery,) = find(objects, "ClusterRole")
    everything = _grants(rbac.cluster_role()["rules"])
    cluster_peerings = {g for g in everything if g[1] == "clusterkopfpeerings"}
    assert _grants(role["rules"]) | _grants(discovery["rules"]) == everything - cluster_peerings
    assert not {(g, r) for g, r, _ in _grants(role["rules"])} & chartgen.CLUSTER_SCOPED
    assert {v for _, _, v in _grants(discovery["rules"])} == {"get", "list", "watch"}


def test_a_rule_on_an_unclassified_resource_stops_chartgen_with_the_fix() -> None:
    with pytest.raises(chartgen.UnclassifiedResource, match=r"chartgen\.NAMESPACED nor chartgen\.CLUSTER_SCOPED"):
        chartgen.split_rules((Rule("new", ("batch",), ("jobs",), ("get",)),))

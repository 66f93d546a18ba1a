"""The operator's RBAC: one list of rules, a committed ClusterRole without drift, no wildcards, and
everything the beat's Role grants (Kubernetes forbids granting what you don't hold)."""

from __future__ import annotations

import yaml

from celeriac_operator import rbac
from celeriac_operator.builders import beatschedule
from celeriac_operator.models import BeatSchedule


def test_committed_clusterrole_matches_the_rules_in_rbac_py() -> None:
    assert rbac.OUTPUT.read_text() == rbac.render(), "run: python -m celeriac_operator.rbac"
    assert yaml.safe_load(rbac.OUTPUT.read_text()) == rbac.cluster_role()


def test_no_wildcard_verbs_resources_or_groups() -> None:
    for rule in rbac.RULES:
        assert "*" not in rule.verbs, rule.why
        assert "*" not in rule.resources, rule.why
        assert "*" not in rule.api_groups, rule.why


def test_secrets_are_only_read_by_name_never_listed_or_written() -> None:
    (secrets,) = [rule for rule in rbac.RULES if "secrets" in rule.resources]
    assert secrets.verbs == ("get",)


def test_operator_holds_every_permission_it_grants_the_beat() -> None:
    schedule = BeatSchedule.from_body({
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"entries": [{"name": "a", "task": "t", "queue": "q", "every": 5}]},
    })
    held = {(group, resource, verb) for rule in rbac.RULES
            for group in rule.api_groups for resource in rule.resources for verb in rule.verbs}
    for rule in beatschedule.role_rules(schedule):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (group, resource, verb) in held

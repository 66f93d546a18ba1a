"""The operator process: serves liveness, refuses an unclear watch scope, and pairs active/standby by peering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from manifests_support import apply, broker_secret, example_documents, wait_for
from operator_support import OperatorProcess, start_operator

from control_plane import ControlPlane
from servers import RedisServer, wait_until

pytestmark = pytest.mark.k8s


def test_operator_serves_its_liveness_endpoint_while_watching_a_namespace(operator: OperatorProcess) -> None:
    assert operator.running()
    assert operator.healthy()


def test_operator_refuses_to_start_without_a_watch_scope() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celeriac_operator", "--standalone"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 2
    assert "--namespace NS" in done.stderr


def kopf_peering(namespace: str, name: str) -> str:
    return f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: {name}, namespace: {namespace}}}\n"


def test_two_operators_with_peering_one_is_active_and_the_standby_takes_over_when_it_stops(
    control_plane: ControlPlane, celeriac_crds: list[str], kubectl: Any, namespace: str, *,
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    kubectl("apply", "-f", "-", input=kopf_peering(namespace, "celeriac-operator"))
    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"))
    active = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "active", standalone=False)
    standby = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "standby", standalone=False)
    try:
        # Both start paused (peering is mandatory); the one started first has the higher default priority
        # and resumes, the other stays paused while the first is alive.
        wait_until(lambda: "Resuming operations" in active.logs(), 60, "the first operator to become active")
        wait_until(lambda: "workerpools.v1alpha1.celeriac.io" in standby.logs(), 60, "the standby's paused watch")
        assert "(paused)" in standby.logs()
        (first,) = example_documents("workerpool.yaml")
        apply(kubectl, namespace, first)
        wait_for(kubectl, namespace, "deployment", "tasks-worker")
        assert "workerpool_apply" in active.logs()
        assert "workerpool_apply" not in standby.logs()
        assert "Resuming operations" not in standby.logs()

        active.stop()  # a graceful exit removes it from the peering at once

        wait_until(lambda: "Resuming operations" in standby.logs(), 60, "the standby to resume")
        second = {**first, "metadata": {"name": "second"}}
        apply(kubectl, namespace, second)
        wait_for(kubectl, namespace, "deployment", "second-worker")
        assert "workerpool_apply" in standby.logs()
    finally:
        active.stop()
        standby.stop()


def test_json_log_format_prints_one_json_object_per_line(
    control_plane: ControlPlane, celeriac_crds: list[str], namespace: str, tmp_path: Path,
) -> None:
    import json

    operator = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "json",
                              extra_env={"CELERIAC_OPERATOR_LOG_FORMAT": "json"})
    operator.stop()
    lines = [line for line in operator.logs().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert any("celeriac-operator starting" in record["message"] for record in records)

"""The operator process: starts against the control plane, serves liveness, refuses an unclear watch scope."""

from __future__ import annotations

import subprocess
import sys

import pytest
from operator_support import OperatorProcess

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

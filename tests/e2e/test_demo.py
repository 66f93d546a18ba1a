"""The README's main command runs non-interactively: everything starts, the burst completes, everything stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_demo_runs_the_burst_to_completion_through_the_operator_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, str(DEMO), "up", "--state-dir", str(state), "--burst", "300", "--size", "40000",
         "--stop-when-complete", "--duration", "180"],
        capture_output=True, text=True, timeout=280, check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "demo: installing the operator with the Helm chart" in out
    assert "workers desired 4" in out, "the burst scaled the pool up to maxReplicas"
    assert "burst: 300/300 tasks completed" in out
    assert out.rstrip().endswith("demo stopped")
    assert not state.exists(), "the demo removes its state (and stopped every process it started)"

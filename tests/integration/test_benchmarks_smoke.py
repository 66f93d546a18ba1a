"""``python -m benchmarks run --quick`` runs every suite end to end and prints a complete table.

Behaviour only: the command must finish, drain/answer every task on both sides, and print a row
with a figure for both frameworks and a ratio for every comparison of issue 8 (all three pool
types in both ack modes, enqueue, round trip, result backend, memory, start-up), plus the broker
ceiling, autoscaler and scheduler rows. Speed is never asserted (see docs/benchmarks.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.k8s]

ROOT = Path(__file__).resolve().parents[2]
FIGURE = r"\d[\d,]*(\.\d+)?"


def table(stdout: str) -> dict[tuple[str, str], list[str]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert cells[0] == ["section", "metric", "unit", "better", "celeriac", "celery", "ours/celery"]
    return {(row[0], row[1]): row[2:] for row in cells[1:]}


def test_quick_run_prints_both_figures_and_the_ratio_for_every_comparison_and_the_single_sided_rows() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=280, check=False)
    assert done.returncode == 0, f"benchmarks failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    rows = table(done.stdout)

    compared = [("drain", f"{pool}, {acks} acks") for pool in ("prefork -c 2", "threads -c 8", "solo -c 1")
                for acks in ("early", "late")]
    compared += [("memory", f"{pool}: {what}") for pool in ("prefork -c 2", "threads -c 8", "solo -c 1")
                 for what in ("idle (PSS, all processes)", "peak during drain")]
    compared += [("enqueue", "one producer, delay()"), ("result backend", "publish, run, store, get() all")]
    compared += [("round trip", f"delay().get() {p}, {pool}") for p in ("p50", "p90", "p99")
                 for pool in ("prefork -c 2", "threads -c 8", "solo -c 1")]
    for key in compared:
        assert key in rows, f"missing row {key}"
        _unit, _better, ours, theirs, ratio = rows[key]
        assert re.fullmatch(FIGURE, ours), (key, rows[key])
        assert re.fullmatch(FIGURE, theirs), (key, rows[key])
        assert re.fullmatch(r"\d+\.\d\dx", ratio), (key, rows[key])

    single = [key for key in rows if key[0] in ("broker ceiling", "autoscaler", "scheduler")]
    assert {key[0] for key in single} == {"broker ceiling", "autoscaler", "scheduler"}
    for key in single:
        assert re.fullmatch(FIGURE, rows[key][2]), (key, rows[key])
    assert re.search(r"^- Python 3\.\d+.*celery 5\.\d", done.stdout, re.MULTILINE)
    assert re.search(r"^- load average", done.stdout, re.MULTILINE)

"""The benchmarks run end to end at their smallest size against real Celery and print ratios.

Behaviour only: each script must finish, drain/answer every task on both sides and print its
table and ratio lines. Speed is never asserted here (see benchmarks/README.md for numbers).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RATIO = r"\d+\.\d\dx"


def run_benchmark(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def table_rows(stdout: str) -> list[list[str]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_drain_runs_both_workers_in_both_ack_modes_and_prints_ratios() -> None:
    stdout = run_benchmark("drain.py", "--tasks", "200")

    assert [row[:2] for row in table_rows(stdout)] == [
        ["celeriac", "early"], ["celery", "early"], ["celeriac", "late"], ["celery", "late"],
    ]
    ratios = re.findall(rf"^ratio ours/celery drain (early|late)-ack: tasks/s {RATIO}, worker CPU/msg {RATIO}, "
                        rf"redis CPU/msg {RATIO}$", stdout, re.MULTILINE)
    assert ratios == ["early", "late"]


def test_roundtrip_measures_all_four_client_worker_pairs_and_prints_ratios() -> None:
    stdout = run_benchmark("roundtrip.py", "--rounds", "50", "--warmup", "5")

    assert [row[:2] for row in table_rows(stdout)] == [
        ["celeriac", "celeriac"], ["celery", "celeriac"], ["celeriac", "celery"], ["celery", "celery"],
    ]
    ratios = re.findall(rf"^ratio (\S+) / celery->celery round trip: p50 {RATIO}, p99 {RATIO}$", stdout, re.MULTILINE)
    assert ratios == ["celeriac->celeriac", "celeriac->celery", "celery->celeriac"]


def test_publish_queues_every_call_of_both_clients_and_prints_the_ratio() -> None:
    stdout = run_benchmark("publish.py", "--tasks", "200")

    assert [row[0] for row in table_rows(stdout)] == ["celeriac", "celery"]
    assert len(re.findall(rf"^ratio ours/celery publish: calls/s {RATIO}, client CPU/call {RATIO}$",
                          stdout, re.MULTILINE)) == 1

"""``python -m benchmarks run [--quick] [--repeats N] [--only SUITES] [--markdown FILE]``.

Runs Celeriac and real Celery side by side on one private ``redis-server`` with the same task
module (``bench_tasks.py``), pool and concurrency, alternating which goes first between repeats,
and prints one Markdown table: the median of the repeats, their range in brackets, and the ratio
ours/Celery. The header records versions, the machine and the load average before and after.
Suites: drain (also memory and start-up), publish, roundtrip, results, ceiling, k8s.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from benchmarks.ceiling import ceiling_once
from benchmarks.drain import CONFIGS, DrainRun, drain_once, preload
from benchmarks.harness import IMPLS, redis_server
from benchmarks.publish import publish_once
from benchmarks.report import HIGHER, LOWER, Metric, table_lines
from benchmarks.results import results_once
from benchmarks.roundtrip import roundtrip_once

SUITES = ("drain", "publish", "roundtrip", "results", "ceiling", "k8s")
FULL = {"drain": 20000, "publish": 20000, "rounds": 2000, "warmup": 100, "results": 20000, "ceiling": 20000}
QUICK = {"drain": 300, "publish": 500, "rounds": 100, "warmup": 10, "results": 300, "ceiling": 2000}


def order(repeat: int) -> tuple[str, ...]:
    """A/B on even repeats, B/A on odd ones, so neither side always runs first."""
    return IMPLS if repeat % 2 == 0 else tuple(reversed(IMPLS))


def add(metric: Metric, impl: str, value: float) -> None:
    (metric.ours if impl == "celeriac" else metric.theirs).append(value)


def machine() -> list[str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                   check=False).stdout.split()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        HIREDIS_AVAILABLE = False
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip()
    return [
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}, commit {commit or 'unknown'}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {memory_kib / 1024 / 1024:.1f} GiB, {platform.platform()}",
        f"- Python {platform.python_version()}; celeriac {version('celeriac')}; celery {version('celery')}, "
        f"kombu {version('kombu')}, redis-py {version('redis')} (hiredis: {HIREDIS_AVAILABLE}); "
        f"{' '.join(redis_version[:3]) or 'redis-server ?'}",
    ]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Bench:
    def __init__(self, quick: bool, repeats: int) -> None:
        self.quick = quick
        self.repeats = repeats
        self.sizes = QUICK if quick else FULL
        self.metrics: list[Metric] = []
        self.notes: list[str] = []

    def metric(self, section: str, name: str, unit: str, better: str, comparable: bool = True) -> Metric:
        for found in self.metrics:
            if (found.section, found.name) == (section, name):
                return found
        created = Metric(section, name, unit, better, comparable=comparable)
        self.metrics.append(created)
        return created

    def drain(self, server: object) -> None:
        r = server.client()  # type: ignore[attr-defined]
        bench = preload(server.url, r, server.proc.pid, self.sizes["drain"])  # type: ignore[attr-defined]
        for pool, concurrency in CONFIGS:
            config = f"{pool} -c {concurrency}"
            for acks_late in (False, True):
                acks = "late" if acks_late else "early"
                for repeat in range(self.repeats):
                    for impl in order(repeat):
                        run: DrainRun = drain_once(bench, impl, pool=pool, concurrency=concurrency,
                                                   acks_late=acks_late)
                        add(self.metric("drain", f"{config}, {acks} acks", "tasks/s", HIGHER), impl, run.rate)
                        add(self.metric("drain CPU", f"{config}, {acks} acks: worker", "µs/msg", LOWER), impl,
                            run.per_msg_us(run.worker_cpu_s))
                        add(self.metric("drain CPU", f"{config}, {acks} acks: main process", "µs/msg", LOWER),
                            impl, run.per_msg_us(run.main_cpu_s))
                        add(self.metric("drain CPU", f"{config}, {acks} acks: redis-server", "µs/msg", LOWER),
                            impl, run.per_msg_us(run.redis_cpu_s))
                        if not acks_late:
                            add(self.metric("memory", f"{config}: idle (PSS, all processes)", "MiB", LOWER), impl,
                                run.idle_mib)
                            add(self.metric("memory", f"{config}: peak during drain", "MiB", LOWER), impl,
                                run.peak_mib)
                            add(self.metric("start-up", f"{config}: start to first task done", "s", LOWER), impl,
                                run.startup_s)

    def publish(self, server: object) -> None:
        r = server.client()  # type: ignore[attr-defined]
        for repeat in range(self.repeats):
            for impl in order(repeat):
                run = publish_once(impl, server.url, r, self.sizes["publish"])  # type: ignore[attr-defined]
                add(self.metric("enqueue", "one producer, delay()", "calls/s", HIGHER), impl, run.rate)
                add(self.metric("enqueue", "client CPU per call", "µs/call", LOWER), impl, run.cpu_us)

    def roundtrip(self, server: object) -> None:
        r = server.client()  # type: ignore[attr-defined]
        for pool, concurrency in CONFIGS:
            for repeat in range(self.repeats):
                for impl in order(repeat):
                    found = roundtrip_once(impl, server.url, r, self.sizes["rounds"],  # type: ignore[attr-defined]
                                           warmup=self.sizes["warmup"], pool=pool, concurrency=concurrency)
                    for fraction, label in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
                        add(self.metric("round trip", f"delay().get() {label}, {pool} -c {concurrency}", "ms", LOWER),
                            impl, found[fraction])

    def results(self, server: object) -> None:
        r = server.client()  # type: ignore[attr-defined]
        for repeat in range(self.repeats):
            for impl in order(repeat):
                cycle, gets = results_once(impl, server.url, r, self.sizes["results"])  # type: ignore[attr-defined]
                add(self.metric("result backend", "publish, run, store, get() all", "tasks/s", HIGHER), impl, cycle)
                add(self.metric("result backend", "get() phase alone", "results/s", HIGHER), impl, gets)

    def ceiling(self, server: object) -> None:
        r = server.client()  # type: ignore[attr-defined]
        envelope = preload(server.url, r, 0, 1).envelopes[0]  # type: ignore[attr-defined]
        for _ in range(self.repeats):
            for name, rate in ceiling_once(server.url, r, envelope, self.sizes["ceiling"]).items():  # type: ignore[attr-defined]
                self.metric("broker ceiling", name, "ops/s", HIGHER, comparable=False).ours.append(rate)

    def k8s(self, server: object) -> None:
        from benchmarks.k8s import run_k8s

        found = run_k8s(server, quick=self.quick, repeats=self.repeats)
        scaling, beat = found["autoscaler"], found["scheduler"]
        lease = int(found["election"]["lease"][0])
        rows = [
            ("autoscaler", "backlog queued -> Deployment replicas raised", "s", scaling["up"]),
            ("autoscaler", "backlog queued -> maxReplicas (10)", "s", scaling["up_max"]),
            ("autoscaler", f"queue drained -> first scale-down (window {5 if self.quick else 60} s)", "s",
             scaling["down"]),
            ("autoscaler", "queue drained -> minReplicas (1, steps of 2)", "s", scaling["down_min"]),
            ("scheduler", "fire-time error p50 (1 s slots, BRPOP - slot)", "ms", beat["p50"]),
            ("scheduler", "fire-time error p99", "ms", beat["p99"]),
            ("scheduler", f"failover gap, leader SIGKILL -> next fire (lease {lease} s)", "s", beat["failover"]),
        ]
        for section, name, unit, values in rows:
            self.metric(section, name, unit, LOWER, comparable=False).ours.extend(values)

    def ceiling_notes(self) -> list[str]:
        """The best drain of each side as a fraction of the broker ceiling (un-batched BRPOP)."""
        brpop = next((m for m in self.metrics if m.name.startswith("redis-py BRPOP")), None)
        drains = [m for m in self.metrics if m.section == "drain"]
        if brpop is None or not drains or not brpop.ours:
            return []
        import statistics

        limit = statistics.median(brpop.ours)
        best_ours = max(statistics.median(m.ours) for m in drains)
        best_theirs = max(statistics.median(m.theirs) for m in drains)
        return [f"Best drain as a fraction of one-at-a-time BRPOP ({limit:,.0f}/s): celeriac "
                f"{best_ours / limit:.0%}, celery {best_theirs / limit:.0%}."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks and print the table")
    run.add_argument("--quick", action="store_true", help="small sizes and one repeat: about two minutes")
    run.add_argument("--repeats", type=int, help="repeats per figure (default 3; 1 with --quick)")
    run.add_argument("--only", default=",".join(SUITES), help=f"comma-separated suites ({','.join(SUITES)})")
    run.add_argument("--markdown", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    suites = [s for s in args.only.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    bench = Bench(args.quick, args.repeats or (1 if args.quick else 3))
    header = machine()
    load_before = load()
    started = time.monotonic()
    failed: list[str] = []
    with redis_server() as server:
        for suite in suites:
            print(f"== {suite}", file=sys.stderr, flush=True)
            runner: Callable[[object], None] = getattr(bench, suite)
            try:
                runner(server)
            except Exception:  # keep what the other suites measured; the exit status says it failed
                traceback.print_exc()
                failed.append(suite)
    header.append(f"- load average (1/5/15 min) before: {load_before}, after: {load()}; "
                  f"{bench.repeats} repeat(s), {'--quick' if args.quick else 'full'} sizes "
                  f"({', '.join(f'{k} {v:,}' for k, v in bench.sizes.items())}); "
                  f"took {time.monotonic() - started:.0f} s")
    notes = [*bench.ceiling_notes(), *(f"FAILED: the {suite} suite (traceback on stderr)" for suite in failed)]
    lines = ["# Celeriac vs Celery", "", *header, "", *table_lines(bench.metrics), "", *notes]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

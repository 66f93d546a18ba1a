"""The whole product on the local control plane: the chart's operator, the examples, workers and beat as pods.

One test, in the order a user lives it: ``helm install`` (the operator runs as a pod through the node agent),
apply the examples (the broker Secret points at the test's Redis), send a burst of 5,000 ``tasks.sum_of_squares`` calls.
The WorkerPool scales up, drains the queue and scales back down after its (shortened) stabilization window;
every task ran exactly once and left its SUCCESS result. Meanwhile the BeatSchedule fires every second, and
its leader's process is killed with SIGKILL: no slot is ever published or executed twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from agent_support import Agent
from beat_support import FAST_ELECTION, fired_slots
from chart_support import install_operator
from manifests_support import apply, broker_secret, example_documents, get, wait_for

from celeriac.beat.publisher import scheduled_task_id
from demo import burst_arguments, expected_result
from servers import RedisServer, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BURST = 5000
SIZE = 40_000  # sum_of_squares(40,000+): a millisecond or two of CPU per task, so more workers drain faster
STABILIZATION_S = 10
EXECUTIONS = "examples:executions"  # examples/tasks.py counts executions here (EXAMPLES_COUNT_EXECUTIONS=1)


def workerpool() -> dict[str, Any]:
    """The example WorkerPool, sized for two CPUs and with a short scale-down window."""
    (pool,) = example_documents("workerpool.yaml")
    spec = pool["spec"]
    spec.update({"pool": "threads", "concurrency": 8, "shutdownTimeoutSeconds": 10,
                 "terminationGracePeriodSeconds": 20})
    spec["autoscaling"].update({"minReplicas": 1, "maxReplicas": 4,
                                "scaleDownStabilizationSeconds": STABILIZATION_S})
    spec["env"] = [*spec.get("env", []), {"name": "EXAMPLES_COUNT_EXECUTIONS", "value": "1"}]
    return pool


def beatschedule() -> dict[str, Any]:
    """The example BeatSchedule with its heartbeat entry every second and short leader election timings."""
    (schedule,) = example_documents("beatschedule.yaml")
    schedule["spec"]["leaderElection"] = dict(FAST_ELECTION)
    heartbeat = schedule["spec"]["entries"][0]
    assert heartbeat["name"] == "heartbeat-add"
    heartbeat["every"] = 1
    return schedule


def send_burst(redis_url: str, ids_file: Path) -> list[str]:
    env = {**os.environ, "CELERIAC_BROKER_URL": redis_url, "CELERIAC_RESULT_BACKEND": redis_url}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "burst", "--count", str(BURST),
                           "--size", str(SIZE),
                           "--ids-file", str(ids_file)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    ids: list[str] = json.loads(ids_file.read_text())
    return ids


def st(obj: dict[str, Any]) -> dict[str, Any]:
    """An object's status (empty before the first status write)."""
    return dict(obj.get("status") or {})


def beat_logs(agent: Agent, namespace: str) -> list[str]:
    return [path.read_text(errors="replace") for path in agent.work_dir.glob(f"{namespace}_housekeeping-beat-*/*.log")]


def published_slots(agent: Agent, namespace: str) -> list[datetime]:
    """heartbeat-add slots some beat process logged as published (a repeat would appear twice)."""
    return sorted(slot for log in beat_logs(agent, namespace) for slot, _, sent in fired_slots(log, "heartbeat-add")
                  if sent)


def test_burst_scales_workers_up_runs_every_task_once_scales_down_and_beat_survives_a_leader_kill(
    agent: Agent, control_plane: Any, *, celeriac_crds: list[str], kubectl: Any, kube_api: Any, namespace: str,
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    rclient = redis_server.client()

    install_operator(control_plane.kubeconfig, namespace, "celeriac", worker_image="celeriac-local:0.1.0")
    wait_for(kubectl, namespace, "deployment", "celeriac", lambda d: st(d).get("readyReplicas") == 1,
             timeout_s=90, what="the chart's operator pod Ready (run by the node agent)")

    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"),
          workerpool(), beatschedule())
    wait_for(kubectl, namespace, "workerpool", "tasks", lambda wp: st(wp).get("readyReplicas") == 1,
             timeout_s=90, what="one ready worker (minReplicas 1)")
    schedule = wait_for(kubectl, namespace, "beatschedule", "housekeeping",
                        lambda bs: bool(st(bs).get("leader") and st(bs).get("lastRunTime")),
                        timeout_s=90, what="a beat leader that has fired")

    # The producer's burst; the pool scales up while it drains.
    burst_at_s = time.monotonic()
    ids = send_burst(redis_server.url, tmp_path / "ids.json")
    assert len(set(ids)) == BURST
    seen = {"desired": 0, "ready": 0}

    def drained() -> bool:
        status = (get(kubectl, namespace, "workerpool", "tasks") or {}).get("status", {})
        seen["desired"] = max(seen["desired"], status.get("desiredReplicas") or 0)
        seen["ready"] = max(seen["ready"], status.get("readyReplicas") or 0)
        done = rclient.hlen(EXECUTIONS)
        return done >= BURST and seen["ready"] > 1

    # Kill the beat leader's process (SIGKILL: no clean-up, no lease release) while the burst drains.
    leader = schedule["status"]["leader"]
    leader_pod = core.read_namespaced_pod(leader, namespace)
    pid = int(leader_pod.status.container_statuses[0].container_id.removeprefix("local://"))
    os.kill(pid, signal.SIGKILL)
    killed_at = datetime.now(timezone.utc)

    wait_until(drained, 180, f"{BURST} executions and more than one ready worker", interval_s=0.5)
    drained_at_s = time.monotonic()

    # Exactly once: every burst task ran once and stored its SUCCESS result with the right value.
    ran = {key.decode(): int(n) for key, n in rclient.hgetall(EXECUTIONS).items()}
    assert [i for i in ids if ran.get(i) != 1] == [], "burst tasks not run exactly once"
    wait_until(lambda: sum(rclient.exists(*[f"celery-task-meta-{i}" for i in ids[k:k + 500]])
                           for k in range(0, BURST, 500)) == BURST, 30, "every result stored")
    metas = [json.loads(raw) for k in range(0, BURST, 500)
             for raw in rclient.mget([f"celery-task-meta-{i}" for i in ids[k:k + 500]])]
    assert all(m["status"] == "SUCCESS" for m in metas)
    assert [m["result"] for m in metas] == [expected_result(burst_arguments(i, SIZE)) for i in range(BURST)]
    assert [m["task_id"] for m in metas] == ids

    # Scale back down to minReplicas once the stabilization window has passed with nothing to do.
    wait_for(kubectl, namespace, "workerpool", "tasks",
             lambda wp: [st(wp).get(k) for k in ("desiredReplicas", "readyReplicas", "backlog")] == [1, 1, 0],
             timeout_s=90, what="the pool back at minReplicas")
    wait_until(lambda: len([p for p in core.list_namespaced_pod(namespace).items
                            if p.metadata.name.startswith("tasks-worker-")]) == 1, 60, "surplus worker pods gone")
    print(f"burst of {BURST}: drained {drained_at_s - burst_at_s:.1f}s after the first send "
          f"(max desired {seen['desired']}, max ready {seen['ready']}); back to 1 worker "
          f"{time.monotonic() - drained_at_s:.1f}s later (stabilization {STABILIZATION_S}s)")

    # Beat: firing resumed after the kill (the pod restarted its process, which kept its identity).
    wait_until(lambda: any(s > killed_at for s in published_slots(agent, namespace)), 60,
               "heartbeat slots published after the leader was killed")
    restarted_after_kill = core.read_namespaced_pod(leader, namespace).status.container_statuses[0].restart_count
    # Then the leader pod itself vanishes (force-deleted: the agent SIGKILLs its process, no lease release):
    # the standby replica takes over once the lease expires.
    crashed = st(get(kubectl, namespace, "beatschedule", "housekeeping") or {})["leader"]
    core.delete_namespaced_pod(crashed, namespace, grace_period_seconds=0)
    crashed_at = datetime.now(timezone.utc)
    takeover = wait_for(kubectl, namespace, "beatschedule", "housekeeping",
                        lambda bs: st(bs).get("leader") not in (None, crashed), timeout_s=60,
                        what="the standby beat replica to lead")
    successor = st(takeover)["leader"]

    def successor_slots() -> list[datetime]:
        log = agent.container_log(namespace, successor, "beat")
        return [slot for slot, _, sent in fired_slots(log, "heartbeat-add") if sent and slot > crashed_at]

    wait_until(lambda: bool(successor_slots()), 60, "heartbeat slots published by the new leader")

    # No slot was published or executed twice.
    slots = published_slots(agent, namespace)
    repeats = [slot for slot, n in Counter(slots).items() if n > 1]
    assert not repeats, f"slots published twice: {repeats}"
    beat_ids = [scheduled_task_id(f"{namespace}/housekeeping", "heartbeat-add", slot) for slot in slots]
    wait_until(lambda: all(rclient.hexists(EXECUTIONS, i) for i in beat_ids), 60, "every published slot executed")
    executed = {i: int(rclient.hget(EXECUTIONS, i)) for i in beat_ids}
    assert set(executed.values()) == {1}, f"beat tasks executed more than once: {executed}"
    assert restarted_after_kill >= 1, "the killed beat process was restarted by its pod's restartPolicy"
    after_kill = [slot for slot in slots if slot > killed_at]
    print(f"beat: {len(slots)} heartbeat slots, each published and executed once; after the SIGKILL of "
          f"{leader}'s process the next slot came {after_kill[0] - killed_at} later (same pod, restarted); "
          f"after {crashed} vanished, {successor} fired slot {successor_slots()[0] - crashed_at} after the crash")
    rclient.close()

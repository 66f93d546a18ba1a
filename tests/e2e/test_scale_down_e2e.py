"""A scale-down removes the idle worker and never the one in the middle of a task (pod-deletion-cost).

The operator (installed by the chart, running as a pod) annotates worker pods with
``controller.kubernetes.io/pod-deletion-cost`` from their heartbeats before it lowers the replica count;
the ReplicaSet controller then deletes the cheapest pod, and the node agent stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_support import Agent
from chart_support import install_operator
from manifests_support import apply, broker_secret, example_documents, wait_for

from servers import RedisServer, wait_until

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXECUTIONS = "examples:executions"
SLOW_S = 30
BURST = 1500  # sum_of_squares(200,000): several ms of CPU each, seconds of backlog for one worker
COST = "controller.kubernetes.io/pod-deletion-cost"

PRODUCER = """
import json, sys
from tasks import app, slow_report, sum_of_squares
ids = [slow_report.delay("quarterly", float(sys.argv[1])).id]
ids += [sum_of_squares.delay(200_000).id for _ in range(int(sys.argv[2]))]
app.close()
print(json.dumps(ids))
"""


def st(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def workerpool() -> dict[str, Any]:
    """The example pool: at most 2 workers, one per 2 waiting tasks, a 3 s scale-down window, one pod at a time."""
    (pool,) = example_documents("workerpool.yaml")
    spec = pool["spec"]
    spec.update({"pool": "threads", "concurrency": 2, "prefetchMultiplier": 1, "shutdownTimeoutSeconds": 30,
                 "terminationGracePeriodSeconds": 40})
    spec["autoscaling"].update({"minReplicas": 1, "maxReplicas": 2, "targetBacklogPerReplica": 2,
                                "scaleDownStabilizationSeconds": 3, "scaleDownMaxStep": 1})
    spec["env"] = [*spec.get("env", []), {"name": "EXAMPLES_COUNT_EXECUTIONS", "value": "1"}]
    return pool


def worker_pods(kube_api: Any, namespace: str) -> list[Any]:
    from kubernetes import client

    return [p for p in client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items
            if p.metadata.name.startswith("tasks-worker-") and p.metadata.deletion_timestamp is None]


def test_scale_down_removes_the_idle_worker_and_keeps_the_busy_one_until_its_task_is_done(
    agent: Agent, control_plane: Any, *, celeriac_crds: list[str], kubectl: Any, kube_api: Any, namespace: str,
    redis_server: RedisServer,
) -> None:
    install_operator(control_plane.kubeconfig, namespace, "celeriac", worker_image="celeriac-local:0.1.0")
    apply(kubectl, namespace, broker_secret(redis_server.url), *example_documents("taskqueues.yaml"), workerpool())
    wait_for(kubectl, namespace, "workerpool", "tasks", lambda wp: st(wp).get("readyReplicas") == 1,
             timeout_s=90, what="one ready worker (minReplicas 1)")
    (first,) = worker_pods(kube_api, namespace)

    # The slow report goes first, so the only worker takes it; the burst behind it makes the pool scale to 2.
    env = {**os.environ, "CELERIAC_BROKER_URL": redis_server.url, "CELERIAC_RESULT_BACKEND": redis_server.url,
           "PYTHONPATH": str(EXAMPLES)}
    done = subprocess.run([sys.executable, "-c", PRODUCER, str(SLOW_S), str(BURST)], env=env, cwd=EXAMPLES,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    slow_id, *quick_ids = json.loads(done.stdout)
    rclient = redis_server.client()
    wait_for(kubectl, namespace, "workerpool", "tasks", lambda wp: st(wp).get("readyReplicas") == 2,
             timeout_s=60, what="a second ready worker")
    wait_until(lambda: rclient.hlen(EXECUTIONS) >= 1 + len(quick_ids), 120, "the burst done")

    # Backlog 1 (the slow report, running): the pool goes back to 1 worker while the report still runs.
    wait_until(lambda: len(worker_pods(kube_api, namespace)) == 1, 60, "the pool back at one worker pod")
    assert not rclient.exists(f"celery-task-meta-{slow_id}"), "scaled down before the slow report finished"
    (survivor,) = worker_pods(kube_api, namespace)
    assert survivor.metadata.name == first.metadata.name, "the idle worker was removed, not the busy one"
    assert int(survivor.metadata.annotations[COST]) >= 100, "the busy worker carries a high deletion cost"

    wait_until(lambda: rclient.exists(f"celery-task-meta-{slow_id}") == 1, SLOW_S + 30, "the slow report")
    meta = json.loads(rclient.get(f"celery-task-meta-{slow_id}"))
    assert (meta["status"], meta["result"]) == ("SUCCESS", f"quarterly rendered in {SLOW_S}s")
    assert int(rclient.hget(EXECUTIONS, slow_id)) == 1, "the slow report ran once, never interrupted and redelivered"
    assert survivor.status.container_statuses[0].restart_count == 0
    rclient.close()

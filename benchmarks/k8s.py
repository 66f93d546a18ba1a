"""Operator and scheduler figures on a real control plane (etcd, kube-apiserver, controller-manager).

Started as the k8s tests start them (``scripts/control_plane.py``, ``tests/k8s/operator_support.py``,
``tests/k8s/beat_support.py``): the CRDs from ``crds/`` applied, the real operator process watching
one namespace, real ``celeriac beat`` processes. No kubelet runs, so no pod ever starts; what is
measured is the control loop, which is what these figures are about.

- **Autoscaler reaction**: a WorkerPool (min 1, max 10, 100 messages per replica, poll 2 s) with
  its Deployment at 1 replica; 1,000 messages appear on its queue at once. Measured: from the
  messages being queued to the Deployment's ``spec.replicas`` being raised (and reaching 10),
  then from the queue being emptied to the first scale-down and to ``minReplicas`` (expected:
  the stabilization window, then steps of ``scaleDownMaxStep``).
- **Scheduler precision**: a BeatSchedule with one entry every 1 s run by two ``celeriac beat``
  processes (``--from-resource``, as the operator's Deployment runs them); the benchmark pops
  each message as it is published (``BRPOP``) and compares the time with the slot in its
  ``celeriac_scheduled`` header.
- **Failover gap**: the leader is killed with SIGKILL (a replacement started, as a Deployment
  would); from the kill to the first message of the new leader.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, percentile, poll_until

sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

NAMESPACE = "bench"
BEAT_QUEUE = "beat-q"


@contextlib.contextmanager
def cluster(directory: Path) -> Iterator[tuple[Any, Path, Any]]:
    """``(api client, kubeconfig, operator)``: control plane, CRDs, namespace and operator, all stopped after."""
    import yaml
    from kubernetes import client, config
    from operator_support import start_operator

    from control_plane import ControlPlane

    plane = ControlPlane(directory / "control-plane")
    plane.start()
    operator = None
    try:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        ext = client.ApiextensionsV1Api(api)
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    ext.create_custom_resource_definition(doc)
                    name = doc["metadata"]["name"]
                    poll_until(lambda name=name: any(
                        c.type == "Established" and c.status == "True"
                        for c in ext.read_custom_resource_definition(name).status.conditions or []),
                        30, f"CRD {name} Established", interval_s=0.1)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        operator = start_operator(plane.kubeconfig, [NAMESPACE], directory / "operator")
        yield api, plane.kubeconfig, operator
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()


def _replicas(apps: Any, name: str) -> int | None:
    from kubernetes import client

    try:
        return int(apps.read_namespaced_deployment(name, NAMESPACE).spec.replicas or 0)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _wait_replicas(apps: Any, name: str, check: Any, timeout_s: float, what: str) -> float:
    """Poll the Deployment every 20 ms until ``check(replicas)``; returns when it became true."""
    poll_until(lambda: (n := _replicas(apps, name)) is not None and check(n), timeout_s, what, interval_s=0.02)
    return time.monotonic()


def autoscaler(api: Any, redis: Any, redis_url: str, *, repeats: int, window_s: int) -> dict[str, list[float]]:
    """Seconds from backlog to scale-up and from drain to scale-down, one value per repeat."""
    from celery import Celery
    from kombu import pools as kombu_pools
    from kubernetes import client

    from celeriac import keys
    from celeriac_operator import names

    docs = [
        client.V1Secret(metadata=client.V1ObjectMeta(name="broker"), string_data={"url": redis_url}),
        {"apiVersion": names.API_VERSION, "kind": names.TASKQUEUE_KIND, "metadata": {"name": "work"},
         "spec": {"broker": {"secretRef": {"name": "broker"}}}},
        {"apiVersion": names.API_VERSION, "kind": names.WORKERPOOL_KIND, "metadata": {"name": "pool"},
         "spec": {"queues": ["work"], "app": "bench_tasks:app",
                  "autoscaling": {"minReplicas": 1, "maxReplicas": 10, "targetBacklogPerReplica": 100,
                                  "pollIntervalSeconds": 2, "scaleDownStabilizationSeconds": window_s}}},
    ]
    client.CoreV1Api(api).create_namespaced_secret(NAMESPACE, docs[0])
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    custom.create_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE, names.TASKQUEUE_PLURAL, docs[1])
    custom.create_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE, names.WORKERPOOL_PLURAL, docs[2])
    deployment = "pool-worker"
    _wait_replicas(apps, deployment, lambda n: n == 1, 120, "the Deployment at minReplicas")
    figures: dict[str, list[float]] = {"up": [], "up_max": [], "down": [], "down_min": []}
    producer = Celery("bench-producer", broker=redis_url)
    try:
        for _ in range(repeats):
            with producer.connection_for_write() as conn, conn.Producer() as sender:
                for i in range(1000):
                    producer.send_task("bench.add", args=(i, i), queue="work", producer=sender)
            queued = time.monotonic()
            figures["up"].append(_wait_replicas(apps, deployment, lambda n: n > 1, 120, "scale-up") - queued)
            figures["up_max"].append(_wait_replicas(apps, deployment, lambda n: n == 10, 120, "maxReplicas") - queued)
            redis.delete(*keys.queue_lists("work"))
            drained = time.monotonic()
            timeout_s = window_s + 120
            figures["down"].append(_wait_replicas(apps, deployment, lambda n: n < 10, timeout_s, "scale-down")
                                   - drained)
            figures["down_min"].append(_wait_replicas(apps, deployment, lambda n: n == 1, timeout_s, "minReplicas")
                                       - drained)
            print(f"  autoscaler: up {figures['up'][-1]:.2f} s, down {figures['down'][-1]:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        kombu_pools.reset()
        producer.close()
    return figures


def _pop(redis: Any, timeout_s: float) -> bytes | None:
    """The next beat message, or None after ``timeout_s``: short BRPOPs, each well inside the
    client's socket timeout (a long BRPOP would be cut off by it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        popped = redis.brpop([BEAT_QUEUE], timeout=1)
        if popped is not None:
            return bytes(popped[1])
    return None


def _slot_error_s(raw: bytes) -> tuple[datetime, float]:
    """The slot of a popped beat message and how late (s) it was popped after the slot."""
    popped = time.time()
    headers = json.loads(raw)["headers"]
    slot = datetime.fromisoformat(headers["celeriac_scheduled"]["slot"])
    return slot, popped - slot.timestamp()


def scheduler(api: Any, kubeconfig: Path, redis: Any, redis_url: str, directory: Path, *, slots: int,
              failovers: int, election: dict[str, int]) -> dict[str, list[float]]:
    """Fire-time errors (s) of ``slots`` consecutive 1 s slots, and ``failovers`` kill-to-next-fire gaps (s)."""
    from beat_support import Procs, beat_schedule, create_schedule, lease_holder

    create_schedule(api, NAMESPACE, beat_schedule(
        "tick", [{"name": "tick", "task": "bench.add", "args": [1, 2], "queue": "ticks", "every": 1,
                  "missedRunPolicy": "runOnce"}], leaderElection=election))
    procs = Procs(directory, kubeconfig, redis_url)

    def start(n: int) -> Any:
        return procs.beat(f"beat-{n}", "--from-resource", f"{NAMESPACE}/tick", app=None,
                          CELERIAC_BEAT_QUEUES=json.dumps({"ticks": BEAT_QUEUE}))

    errors_s: list[float] = []
    gaps_s: list[float] = []
    try:
        beats = {f"beat-{n}": start(n) for n in range(2)}
        poll_until(lambda: redis.llen(BEAT_QUEUE) > 0, 120, "the first scheduled message", interval_s=0.05)
        redis.delete(BEAT_QUEUE)  # the first fire may be a catch-up of the start-up
        last_slot = None
        while len(errors_s) < slots:
            popped = _pop(redis, 30)
            if popped is None:
                raise RuntimeError("no scheduled message for 30 s")
            last_slot, error_s = _slot_error_s(popped)
            errors_s.append(error_s)
        for n in range(failovers):
            leader = str(lease_holder(api, NAMESPACE, "tick-beat"))
            beats[leader].kill9()
            killed = time.time()
            beats[f"beat-{n + 2}"] = start(n + 2)
            while True:
                popped = _pop(redis, 120)
                if popped is None:
                    raise RuntimeError("no scheduled message within 120 s of the leader's kill")
                slot, _ = _slot_error_s(popped)
                if last_slot is None or slot > last_slot:
                    break
            gaps_s.append(time.time() - killed)
            last_slot = slot
            print(f"  scheduler failover {n + 1}: {gaps_s[-1]:.2f} s", file=sys.stderr, flush=True)
            # let the new leader settle into its rhythm before the next kill
            for _ in range(3):
                popped = _pop(redis, 30)
                if popped is not None:
                    last_slot, _ = _slot_error_s(popped)
    finally:
        procs.close()
    errors_s.sort()
    print(f"  scheduler: {len(errors_s)} slots, p50 {statistics.median(errors_s) * 1000:.1f} ms",
          file=sys.stderr, flush=True)
    return {"p50": [percentile(errors_s, 0.5) * 1000], "p99": [percentile(errors_s, 0.99) * 1000],
            "failover": gaps_s}


def run_k8s(redis_server: Any, *, quick: bool, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Both operator/scheduler measurements on one control plane and the given Redis."""
    with tempfile.TemporaryDirectory(prefix="celeriac-bench-k8s-") as tmp:
        directory = Path(tmp)
        with cluster(directory) as (api, kubeconfig, _operator):
            redis = redis_server.client()
            redis.flushdb()
            scaling = autoscaler(api, redis, redis_server.url, repeats=repeats, window_s=5 if quick else 60)
            election = ({"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1} if quick
                        else {"leaseDurationSeconds": 15, "renewDeadlineSeconds": 10, "retryPeriodSeconds": 2})
            beat = scheduler(api, kubeconfig, redis, redis_server.url, directory, slots=10 if quick else 300,
                             failovers=1 if quick else 3, election=election)
    return {"autoscaler": scaling, "scheduler": beat, "election": {"lease": [election["leaseDurationSeconds"]]}}

"""The autoscaler end to end: the real operator, a real Redis broker, real ``celeriac worker`` processes.

No kubelet runs here, so worker pods stay Pending; workers run as local processes with ``POD_NAME`` set
to the Deployment's pod names, which is how their heartbeats map to pods. Watches on the Deployment,
the WorkerPool and the pods record what happened and when; the assertions read those records.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import OperatorProcess

from celeriac import keys
from celeriac_operator import names
from servers import RedisServer, stop_process, wait_until

pytestmark = pytest.mark.k8s

TESTS = Path(__file__).resolve().parents[1]
CELERIAC = str(Path(sys.executable).with_name("celeriac"))
POLL_INTERVAL_S = 1
WINDOW_S = 10
MAX_STEP = 2


@dataclass
class Seen:
    """One watch event: when the test received it, its type and the object as a plain dict."""

    at_s: float
    kind: str
    obj: dict[str, Any]


@dataclass
class Recorder:
    """Records every event of one watch in a thread until stopped (restarting the watch as it times out)."""

    list_fn: Callable[..., Any]
    api: Any
    kwargs: dict[str, Any]
    events: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from kubernetes import watch

        version = None
        try:
            while not self._stop.is_set():
                stream = watch.Watch().stream(self.list_fn, timeout_seconds=2, resource_version=version,
                                              **self.kwargs)
                for event in stream:
                    obj = event["object"]
                    obj = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
                    version = obj["metadata"]["resourceVersion"]
                    self.events.append(Seen(time.monotonic(), event["type"], obj))
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._error is not None:
            raise AssertionError(f"watch failed: {self._error!r}") from self._error


def manifests(namespace: str, redis_url: str) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broker", "namespace": namespace},
         "stringData": {"url": redis_url}},
        {"apiVersion": names.API_VERSION, "kind": names.TASKQUEUE_KIND,
         "metadata": {"name": "work", "namespace": namespace},
         "spec": {"broker": {"secretRef": {"name": "broker"}}}},
        {"apiVersion": names.API_VERSION, "kind": names.WORKERPOOL_KIND,
         "metadata": {"name": "pool", "namespace": namespace},
         "spec": {"queues": ["work"], "app": "worker_tasks:app", "concurrency": 4,
                  "autoscaling": {"minReplicas": 1, "maxReplicas": 10, "targetBacklogPerReplica": 100,
                                  "pollIntervalSeconds": POLL_INTERVAL_S,
                                  "scaleDownStabilizationSeconds": WINDOW_S, "scaleDownMaxStep": MAX_STEP}}},
    ]
    return yaml.safe_dump_all(docs)


def start_worker(redis: RedisServer, pod: str, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``celeriac worker`` for the ``work`` queue, standing in for the container of ``pod``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERIAC_")}
    env.update({"POD_NAME": pod, "CELERIAC_BROKER_URL": redis.url, "CELERIAC_RESULT_BACKEND": redis.url,
                "PYTHONPATH": os.pathsep.join([str(TESTS / "integration"), str(TESTS.parent / "worker")])})
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [CELERIAC, "worker", "-A", "worker_tasks:app", "-Q", "work", "-P", "threads", "--health-port", "off",
             "-n", f"celeriac@{pod}", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop_process(proc, timeout_s=30.0)


def replicas_changes(recorder: Recorder) -> list[tuple[float, int]]:
    """(time, spec.replicas) each time the Deployment's replica count changed."""
    changes: list[tuple[float, int]] = []
    for seen in recorder.events:
        replicas = int(seen.obj["spec"].get("replicas") or 0)
        if not changes or changes[-1][1] != replicas:
            changes.append((seen.at_s, replicas))
    return changes


def test_backlog_scales_up_on_the_first_poll_and_drains_down_after_the_window_removing_idle_pods_first(  # noqa: PLR0917
    operator: OperatorProcess, namespace: str, kube_api: Any, kubectl: Any, redis_server: RedisServer,
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    from celery import Celery
    from kombu import pools as kombu_pools
    from kubernetes import client

    apps, core, custom = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.CustomObjectsApi(kube_api)
    rclient = redis_server.client()
    kubectl("apply", "-f", "-", input=manifests(namespace, redis_server.url))

    def deployment() -> Any:
        try:
            return apps.read_namespaced_deployment("pool-worker", namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    wait_until(lambda: deployment() is not None and deployment().spec.replicas == 1, 60,
               "the Deployment at minReplicas")
    selector = ",".join(f"{k}={v}" for k, v in deployment().spec.selector.match_labels.items())
    recorders = {
        "deployment": Recorder(apps.list_namespaced_deployment, kube_api,
                               {"namespace": namespace, "field_selector": "metadata.name=pool-worker"}),
        "pool": Recorder(custom.list_namespaced_custom_object, kube_api,
                         {"group": names.GROUP, "version": names.VERSION, "namespace": namespace,
                          "plural": names.WORKERPOOL_PLURAL}),
        "pods": Recorder(core.list_namespaced_pod, kube_api, {"namespace": namespace, "label_selector": selector}),
    }
    for recorder in recorders.values():
        recorder.start()

    # 1,000 messages over all priorities, plus one task that will keep a worker busy until released.
    celery = Celery("producer", broker=redis_server.url)
    try:
        celery.send_task("tests.hold", args=("busy", 250.0), queue="work", priority=0)
        for i in range(1000):
            celery.send_task("tests.add", args=(i, i), queue="work", priority=i % 10)
    finally:
        kombu_pools.reset()
        celery.close()
    published_s = time.monotonic()
    assert sum(rclient.llen(key) for key in keys.queue_lists("work")) == 1001

    wait_until(lambda: deployment().spec.replicas == 10, 60, "the scale-up to maxReplicas")
    scaled_up_s = time.monotonic()

    def pool_status() -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object_status(
            names.GROUP, names.VERSION, namespace, names.WORKERPOOL_PLURAL, "pool").get("status") or {})

    # The status is written right after the scale.
    wait_until(lambda: pool_status().get("desiredReplicas") == 10, 30, "status.desiredReplicas 10")
    wait_until(lambda: any((seen.obj.get("status") or {}).get("desiredReplicas") == 10
                           for seen in recorders["pool"].events), 30, "the watch to see status.desiredReplicas 10")

    # Scale-up happened on the poll that saw the backlog: no status ever shows the whole backlog
    # with fewer replicas desired.
    statuses = [seen.obj.get("status") or {} for seen in recorders["pool"].events]
    high = [status for status in statuses if int(status.get("backlog") or 0) >= 901]
    assert high, f"no WorkerPool status showed the backlog: {statuses}"
    assert all(int(status.get("desiredReplicas") or 0) == 10 for status in high), high
    ups = [replicas for _, replicas in replicas_changes(recorders["deployment"])]
    assert ups[0] == 1
    assert ups[-1] == 10
    assert ups == sorted(ups), f"replicas went down while the backlog stood: {ups}"

    # Pods are created by the ReplicaSet (and stay Pending). The newest would go first by default; the
    # busy worker runs in the newest pod, the idle one in the second newest.
    def pods() -> list[Any]:
        return core.list_namespaced_pod(namespace, label_selector=selector).items

    wait_until(lambda: len(pods()) == 10, 60, "10 worker pods")
    by_age = sorted(pods(), key=lambda pod: (pod.metadata.creation_timestamp, pod.metadata.name))
    busy_pod, idle_pod = by_age[-1].metadata.name, by_age[-2].metadata.name

    processes.append(start_worker(redis_server, busy_pod, tmp_path / "busy.log", "-c", "1",
                                  "--prefetch-multiplier", "1"))
    wait_until(lambda: rclient.lrange("started", 0, -1) == [b"busy"], 60, "the busy worker to start its task")
    processes.append(start_worker(redis_server, idle_pod, tmp_path / "idle.log", "-c", "8"))
    wait_until(lambda: sum(rclient.llen(key) for key in keys.queue_lists("work")) == 0, 120, "the queue to drain")

    wait_until(lambda: deployment().spec.replicas == 1 and len(pods()) == 1, 180, "the scale-down to one replica")
    for recorder in recorders.values():
        recorder.stop()

    changes = replicas_changes(recorders["deployment"])
    downs = [(at_s, replicas) for at_s, replicas in changes if replicas < 10 and at_s > scaled_up_s]
    # Capped steps down, and never below the one busy worker: e.g. 10 -> 8 -> 6 -> 4 -> 2 -> 1.
    steps = [10] + [replicas for _, replicas in downs]
    assert all(0 < a - b <= MAX_STEP for a, b in itertools.pairwise(steps)), steps
    assert steps[-1] == 1

    # No scale-down inside the window: the first status showing the backlog below 901 comes from
    # the first poll after the last recommendation of 10; the window starts at that poll at the
    # latest one interval earlier.
    first_low_s = next(seen.at_s for seen in recorders["pool"].events
                       if seen.at_s > scaled_up_s and int((seen.obj.get("status") or {}).get("backlog", 1000)) < 901)
    assert downs[0][0] - first_low_s >= WINDOW_S - POLL_INTERVAL_S - 1

    # Idle pods were marked before the scale-down and removed first; the busy worker's pod is the one left.
    deleted = {seen.obj["metadata"]["name"]: seen for seen in recorders["pods"].events if seen.kind == "DELETED"}
    annotations = deleted[idle_pod].obj["metadata"].get("annotations") or {}
    assert annotations.get(names.POD_DELETION_COST) == "0"
    assert deleted[idle_pod].at_s < downs[1][0], "the idle worker's pod was not in the first scale-down"
    [survivor] = pods()
    assert survivor.metadata.name == busy_pod
    assert int((survivor.metadata.annotations or {})[names.POD_DELETION_COST]) > 100
    costs = {name: (seen.obj["metadata"].get("annotations") or {}).get(names.POD_DELETION_COST)
             for name, seen in deleted.items()}
    assert all(cost in {"0", "1"} for cost in costs.values()), costs

    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=pool").items
    messages = [event.message for event in events]
    assert any("1 -> 10" in message for message in messages), messages
    assert any("2 -> 1" in message for message in messages), messages

    rclient.rpush("release:busy", 1)
    print(f"scale-up {scaled_up_s - published_s:.2f}s after publishing (poll interval {POLL_INTERVAL_S}s); "
          f"first scale-down {downs[0][0] - first_low_s:.2f}s after the backlog fell (window {WINDOW_S}s)")
    rclient.close()

"""A local node agent: a tiny kubelet stand-in that runs Pods' containers as local processes.

Why: the local control plane has no kubelet and no Docker, yet the operator's Deployments, the
ReplicaSet controller, pod-deletion-cost and graceful shutdown are what users depend on. This agent
registers a Node, binds Pending unscheduled Pods to it (``pods/binding``, as kube-scheduler would), and
for each container runs its ``command`` + ``args`` (after Kubernetes ``$(VAR)`` expansion) with the Pod's
environment. It is a test and demo tool, not a kubelet. What it does differently, honestly:

* Images are ignored: the agent's own virtualenv provides ``celeriac``, ``celery`` and ``python`` (its
  ``bin`` directory leads ``PATH``); processes run in ``--app-dir`` (``PYTHONPATH`` too), so ``-A tasks``
  imports the examples. Volumes, resources and security contexts are not applied.
* Ports: every Pod would bind the same ``containerPort`` (9808) on one loopback. Each declared
  containerPort is mapped to a free loopback port per Pod, by rewriting the arguments that carry it
  (``--health-port 9808`` or ``--health-port=9808``, any flag whose name contains ``port``); probes use
  the mapped port. The mapping is recorded in the pod annotation ``celeriac.io/local-ports``.
* API credentials: instead of a projected token volume, the agent asks the TokenRequest API for a token of
  the Pod's ServiceAccount and gives the process ``KUBECONFIG`` pointing at a kubeconfig with that token
  (``KUBERNETES_SERVICE_HOST`` is not set), so RBAC applies exactly as in a cluster.
* Probes: only the readiness probe (``httpGet``) is run, on every tick (``--tick-s``); a container without
  one is Ready once started. Liveness probes are not run.
* Restarts: ``Always`` restarts any exit, ``OnFailure`` a non-zero exit, with exponential back-off (1 s
  doubling to 30 s). ``Never``/completed Pods end Succeeded or Failed.
* Deletion: when a Pod gets a ``deletionTimestamp``, each process group gets SIGTERM, then SIGKILL after the
  Pod's ``deletionGracePeriodSeconds``; then the Pod object is deleted with grace 0 so the ReplicaSet sees
  it gone. Stopping the agent (SIGTERM/SIGINT) kills every child.

Usage: ``python scripts/node_agent.py --kubeconfig K --work-dir D [--namespace NS ...] [--app-dir A]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from node_agent_env import PodEnvironment, expand, remap_ports

Obj = dict[str, Any]
PORTS_ANNOTATION = "celeriac.io/local-ports"
MAX_BACKOFF_S = 30.0


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    """One container of a Pod and the local process running it."""

    spec: Obj
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_finished_at: str | None = None
    retry_at_s: float = 0.0
    ready: bool = False
    done: bool = False  # exited and will not be restarted

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class PodRun:
    """A Pod bound to this node: its containers, mapped ports, and termination state."""

    namespace: str
    name: str
    uid: str
    directory: Path
    containers: list[Container]
    ports: dict[int, int]
    kill_at_s: float | None = None
    last_status: Obj = field(default_factory=dict)
    started_at: str = field(default_factory=now_iso)


class NodeAgent:
    """Binds and runs Pods of ``namespaces`` (all when empty) on the Node ``node_name``."""

    def __init__(self, kubeconfig: Path, work_dir: Path, *, node_name: str = "local-node",
                 namespaces: Sequence[str] = (), app_dir: Path | None = None, tick_s: float = 0.5) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.core: Any = client.CoreV1Api(self.api)  # dict bodies throughout: Any, not the model classes
        self.work_dir = work_dir
        self.node_name = node_name
        self.namespaces = list(namespaces)
        self.app_dir = app_dir or Path.cwd()
        self.tick_s = tick_s
        self.pods: dict[str, PodRun] = {}
        self.stopping = threading.Event()
        self.environment = PodEnvironment(self.core, kubeconfig, Path(sys.executable).parent, self.app_dir, node_name)
        work_dir.mkdir(parents=True, exist_ok=True)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Register the Node and reconcile Pods every tick until :meth:`stop`; then kill every child."""
        self.register_node()
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except Exception as exc:  # an API hiccup must not kill every pod's processes
                    print(f"node-agent: tick failed: {exc!r}", file=sys.stderr, flush=True)
                self.stopping.wait(self.tick_s)
        finally:
            self.kill_all()

    def stop(self) -> None:
        self.stopping.set()

    def register_node(self) -> None:
        from kubernetes.client.exceptions import ApiException

        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250"}
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name,
                                                                 "kubernetes.io/os": "linux"}}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        status = {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node_name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "LocalNodeAgentReady",
                            "message": "local node agent is running", "lastHeartbeatTime": now_iso(),
                            "lastTransitionTime": now_iso()}],
        }}
        self.core.patch_node_status(self.node_name, status)

    def list_pods(self, field_selector: str) -> list[Any]:
        if not self.namespaces:
            return list(self.core.list_pod_for_all_namespaces(field_selector=field_selector).items)
        found: list[Any] = []
        for ns in self.namespaces:
            found += self.core.list_namespaced_pod(ns, field_selector=field_selector).items
        return found

    def tick(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for pod in self.list_pods("spec.nodeName="):
            if pod.metadata.deletion_timestamp is None and pod.status.phase == "Pending":
                self.bind(pod)
        seen = set()
        for pod in self.list_pods(f"spec.nodeName={self.node_name}"):
            key = f"{pod.metadata.namespace}/{pod.metadata.name}"
            run = self.pods.get(key)
            if run is not None and run.uid != pod.metadata.uid:  # a new pod with the same name
                self.kill(run)
                self.pods.pop(key)
                run = None
            try:
                if run is None:
                    if pod.metadata.deletion_timestamp is not None:
                        self.delete(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
                        continue
                    if pod.status.phase in ("Succeeded", "Failed"):
                        continue
                    run = self.pods[key] = self.prepare(pod)
                seen.add(key)
                self.drive(run, pod)
            except ApiException as exc:  # the pod went away meanwhile; the next tick sees it
                if exc.status not in (404, 409):
                    raise
        for key in set(self.pods) - seen:  # deleted (or force-deleted) behind our back
            self.kill(self.pods.pop(key))

    def bind(self, pod: Any) -> None:
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.metadata.name, "uid": pod.metadata.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
        self.core.create_namespaced_pod_binding(pod.metadata.name, pod.metadata.namespace, body,
                                                _preload_content=False)

    # -- starting -------------------------------------------------------------------------------

    def prepare(self, pod: Any) -> PodRun:
        directory = self.work_dir / f"{pod.metadata.namespace}_{pod.metadata.name}"
        directory.mkdir(parents=True, exist_ok=True)
        spec = self.api.sanitize_for_serialization(pod.spec)
        ports = {int(p["containerPort"]): free_port() for c in spec["containers"] for p in c.get("ports") or []}
        containers = [Container(c, directory / f"{c['name']}.log") for c in spec["containers"]]
        self.core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, {"metadata": {"annotations": {
            PORTS_ANNOTATION: json.dumps({str(k): v for k, v in ports.items()})}}})
        return PodRun(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, directory, containers, ports)

    def start(self, pod: Any, run: PodRun, container: Container) -> None:
        env = self.environment.env(pod, run, container.spec)
        argv = [expand(a, env) for a in (container.spec.get("command") or []) + (container.spec.get("args") or [])]
        if not argv:
            raise ValueError(f"container {container.name} has no command (images are not run)")
        argv = remap_ports(argv, run.ports)
        with container.log_path.open("ab") as log:
            log.write(f"--- {now_iso()} node-agent starts: {argv}\n".encode())
            log.flush()
            container.proc = subprocess.Popen(argv, cwd=self.app_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True)
        container.started_at = now_iso()
        container.ready = False

    # -- driving --------------------------------------------------------------------------------

    def drive(self, run: PodRun, pod: Any) -> None:
        """Start, restart, probe or stop the Pod's processes, then report its status when it changed."""
        if pod.metadata.deletion_timestamp is not None:
            self.terminate(run, pod)
            return
        policy = pod.spec.restart_policy or "Always"
        for container in run.containers:
            if container.running() or container.done:
                continue
            if container.proc is not None:  # it exited
                code = container.proc.wait()
                container.proc, container.ready = None, False
                container.last_exit, container.last_finished_at = code, now_iso()
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    container.done = True
                    continue
                container.restarts += 1
                container.retry_at_s = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** (container.restarts - 1))
            if time.monotonic() >= container.retry_at_s:
                try:
                    self.start(pod, run, container)
                except Exception as exc:  # missing Secret or ServiceAccount: retry like a kubelet
                    container.restarts += 1
                    container.retry_at_s = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** container.restarts)
                    print(f"node-agent: cannot start {run.namespace}/{run.name}/{container.name}: {exc}",
                          file=sys.stderr, flush=True)
        for container in run.containers:
            container.ready = container.running() and self.probe(run, container)
        self.report(run)

    def probe(self, run: PodRun, container: Container) -> bool:
        probe = (container.spec.get("readinessProbe") or {}).get("httpGet")
        if probe is None:
            return True
        port = probe["port"]
        if isinstance(port, str) and not port.isdigit():
            port = next(p["containerPort"] for p in container.spec.get("ports") or [] if p.get("name") == port)
        local = run.ports.get(int(port), int(port))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{local}{probe.get('path', '/')}", timeout=1) as resp:
                return 200 <= int(resp.status) < 400
        except OSError:
            return False

    def report(self, run: PodRun) -> None:
        statuses = []
        for c in run.containers:
            if c.running():
                state: Obj = {"running": {"startedAt": c.started_at}}
            elif c.done:
                state = {"terminated": {"exitCode": c.last_exit, "finishedAt": c.last_finished_at,
                                        "reason": "Completed" if c.last_exit == 0 else "Error"}}
            else:
                state = {"waiting": {"reason": "CrashLoopBackOff" if c.restarts else "ContainerCreating"}}
            status: Obj = {"name": c.name, "image": c.spec.get("image", ""), "imageID": "",
                           "containerID": f"local://{c.proc.pid}" if c.proc else "", "ready": c.ready,
                           "started": c.running(), "restartCount": c.restarts, "state": state}
            if c.last_exit is not None and not c.done:
                status["lastState"] = {"terminated": {"exitCode": c.last_exit, "finishedAt": c.last_finished_at}}
            statuses.append(status)
        if all(c.done for c in run.containers):
            phase = "Succeeded" if all(c.last_exit == 0 for c in run.containers) else "Failed"
        else:
            phase = "Running" if any(c.started_at for c in run.containers) else "Pending"
        ready = "True" if all(c.ready for c in run.containers) else "False"
        conditions = [{"type": t, "status": s} for t, s in (
            ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", ready), ("Ready", ready))]
        body = {"phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": run.started_at, "containerStatuses": statuses, "conditions": conditions}
        if body == run.last_status:
            return
        run.last_status = json.loads(json.dumps(body))
        now = now_iso()
        for condition in conditions:
            condition["lastTransitionTime"] = now
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": body})
        except Exception:
            run.last_status = {}  # report again on the next tick
            raise
        if phase in ("Succeeded", "Failed"):
            print(f"node-agent: {run.namespace}/{run.name} {phase}", flush=True)

    # -- stopping -------------------------------------------------------------------------------

    def terminate(self, run: PodRun, pod: Any) -> None:
        """SIGTERM now, SIGKILL after the grace period, then delete the Pod object for good."""
        if run.kill_at_s is None:
            grace_s = pod.metadata.deletion_grace_period_seconds
            run.kill_at_s = time.monotonic() + float(30 if grace_s is None else grace_s)
            print(f"node-agent: {run.namespace}/{run.name} deleted: SIGTERM now, SIGKILL after {grace_s} s",
                  flush=True)
            for container in run.containers:
                if container.running():
                    assert container.proc is not None
                    os.killpg(container.proc.pid, signal.SIGTERM)
        if any(c.running() for c in run.containers) and time.monotonic() < run.kill_at_s:
            return
        self.kill(run)
        self.pods.pop(f"{run.namespace}/{run.name}", None)
        self.delete(run.namespace, run.name, run.uid)

    def delete(self, namespace: str, name: str, uid: str) -> None:
        """Remove the Pod object for good (grace 0), as a kubelet does once its containers are gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0,
                                            body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        print(f"node-agent: {namespace}/{name} stopped and deleted", flush=True)

    def kill(self, run: PodRun) -> None:
        for container in run.containers:
            if container.proc is not None:
                if container.running():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(container.proc.pid, signal.SIGKILL)
                container.proc.wait()

    def kill_children_now(self) -> None:
        """SIGKILL every pod process group without touching the bookkeeping (safe from a signal handler,
        even while a tick is blocked on an unreachable API server)."""
        for run in list(self.pods.values()):
            for container in run.containers:
                if container.proc is not None and container.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(container.proc.pid, signal.SIGKILL)

    def kill_all(self) -> None:
        for run in list(self.pods.values()):
            self.kill(run)
        self.pods.clear()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node-agent", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--work-dir", required=True, type=Path, help="per-pod logs, kubeconfigs and homes")
    parser.add_argument("--namespace", "-n", action="append", default=[], help="repeatable; default: all")
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="working directory and PYTHONPATH")
    parser.add_argument("--tick-s", type=float, default=0.5)
    args = parser.parse_args(argv)
    agent = NodeAgent(args.kubeconfig, args.work_dir, node_name=args.node_name, namespaces=args.namespace,
                      app_dir=args.app_dir.resolve(), tick_s=args.tick_s)

    def on_signal(*_: object) -> None:
        agent.stop()
        agent.kill_children_now()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    print(f"node-agent: node {args.node_name} ready; work dir {args.work_dir}", flush=True)
    agent.run()
    print("node-agent: stopped; every child killed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

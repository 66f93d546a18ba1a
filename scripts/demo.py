"""The local demo: Redis, the Kubernetes control plane, the operator, the node agent and the examples.

``scripts/demo`` (the README's main command) runs ``python scripts/demo.py up``. It starts, under
``--state-dir`` (default /tmp/celeriac-demo): Redis, the control plane, the node agent (it runs pods as local
processes, see scripts/node_agent.py) and the operator, installed with the Helm chart so that it runs as a
pod. It applies the CRDs and examples/manifests (the broker Secret points at the demo's Redis; the WorkerPool
is resized for a laptop: threads, at most 4 workers, a 15 s scale-down window), sends a burst of
``tasks.sum_of_squares`` calls and shows a live view every second (backlog, desired and ready workers,
completed tasks, the beat's leader and last run) until Ctrl-C, ``--duration`` seconds, or, with
``--stop-when-complete``, the burst done and the pool back at its minimum. Then it stops everything it
started. ``down`` stops a demo left behind (e.g. after ``kill -9``); ``burst`` only sends a burst to
``CELERIAC_BROKER_URL`` (the e2e tests' producer).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMESPACE = "celeriac-demo"
RELEASE = "celeriac"
DEFAULT_STATE_DIR = Path(os.environ.get("CELERIAC_DEMO_DIR", "/tmp/celeriac-demo"))
LOCAL_IMAGE = "celeriac-local:0.1.0"  # never pulled: the node agent runs the local virtualenv instead
GROUP, VERSION = "celeriac.io", "v1alpha1"


# --- the producer -------------------------------------------------------------------------------


def burst_arguments(index: int, size: int) -> int:
    """The n of the burst's ``index``-th ``sum_of_squares(n)`` call: ``size`` plus a varying 0..999."""
    return size + index % 1000


def expected_result(n: int) -> int:
    """1^2 + ... + n^2 in closed form, to check what the workers computed the slow way."""
    return n * (n + 1) * (2 * n + 1) // 6


def send_burst(count: int, size: int = 40_000, ids_file: Path | None = None) -> list[str]:
    """Send ``count`` ``tasks.sum_of_squares`` calls (about 1-2 ms of CPU each with the default ``size``,
    routed to ``reports.v1``); returns the task ids in order.

    The broker and result backend come from CELERIAC_BROKER_URL / CELERIAC_RESULT_BACKEND.
    """
    sys.path.insert(0, str(EXAMPLES))
    from tasks import app, sum_of_squares  # type: ignore[import-not-found]  # examples/ is not a package

    started_s = time.monotonic()
    try:
        ids = [sum_of_squares.delay(burst_arguments(i, size)).id for i in range(count)]
    finally:
        app.close()
    print(f"sent {count} tasks.sum_of_squares calls in {time.monotonic() - started_s:.1f}s", flush=True)
    if ids_file is not None:
        ids_file.write_text(json.dumps(ids))
    return ids


# --- starting and stopping ----------------------------------------------------------------------


class Demo:
    """Everything one demo started; ``state.json`` in the state directory lets ``down`` stop it later."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.plane: Any = None
        self.redis_url = ""

    def step(self, text: str) -> None:
        print(f"demo: {text}", flush=True)

    def spawn(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with (self.dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, **kwargs)
        self.procs[name] = proc
        self.save()
        return proc

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps({name: p.pid for name, p in self.procs.items()}))

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        from control_plane import K8S

        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)}
        done = subprocess.run([str(K8S.path("kubectl")), *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def helm(self, *args: str) -> None:
        from control_plane import HELM

        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig), "HELM_CACHE_HOME": str(self.dir / "helm"),
               "HELM_CONFIG_HOME": str(self.dir / "helm"), "HELM_DATA_HOME": str(self.dir / "helm")}
        done = subprocess.run([str(HELM.path("helm")), *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")

    def start(self) -> None:
        import socket

        from control_plane import ControlPlane

        self.dir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        redis = shutil.which("redis-server") or "redis-server"
        self.step(f"starting Redis on 127.0.0.1:{port}")
        self.spawn("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                             "--save", "", "--appendonly", "no"])
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.step("starting the Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)")
        self.plane = ControlPlane(self.dir / "control-plane")
        self.plane.start()
        self.step(f"control plane ready in {self.plane.started_s:.1f}s; export KUBECONFIG={self.plane.kubeconfig}")
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.kubectl("create", "namespace", NAMESPACE)
        self.step("starting the node agent (pods run as local processes; logs in pods/)")
        self.spawn("node-agent", [sys.executable, str(ROOT / "scripts" / "node_agent.py"), "--kubeconfig",
                                  str(self.plane.kubeconfig), "--work-dir", str(self.dir / "pods"), "--namespace",
                                  NAMESPACE, "--app-dir", str(EXAMPLES)])
        self.step("installing the operator with the Helm chart (charts/celeriac)")
        self.helm("install", RELEASE, str(ROOT / "charts" / "celeriac"), "--namespace", NAMESPACE,
                  "--set", "watch.scope=namespaces", "--set", "peering.enabled=false", "--set", "crds.enabled=false",
                  "--set", "crds.keep=false", "--set", f"workerImage={LOCAL_IMAGE}",
                  "--set", "operator.recheckIntervalSeconds=2", "--set", "operator.taskqueueCheckIntervalSeconds=2")
        self.kubectl("rollout", "status", f"deployment/{RELEASE}", "-n", NAMESPACE, "--timeout=120s")
        self.step("applying examples/manifests (broker Secret -> the demo's Redis)")
        self.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                          "items": example_objects(self.redis_url)}))

    def stop(self) -> None:
        """Stop the node agent first (it kills every pod process), then the control plane and Redis."""
        for name in ("node-agent", *[n for n in self.procs if n != "node-agent"]):
            proc = self.procs.pop(name, None)
            if proc is not None:
                terminate(proc.pid, proc)
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
        shutil.rmtree(self.dir, ignore_errors=True)


def terminate(pid: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it if it is still there after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.1)
    if proc is not None:
        proc.wait()


def down(state_dir: Path) -> None:
    """Stop a demo another process started (its state.json and control-plane state name the processes)."""
    from control_plane import ControlPlane

    try:
        pids: dict[str, int] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        pids = {}
    for name in sorted(pids, key=lambda n: n != "node-agent"):
        terminate(pids[name])
    plane = ControlPlane.load(state_dir / "control-plane")
    if plane is not None:
        plane.stop()
    shutil.rmtree(state_dir, ignore_errors=True)
    print("demo stopped", flush=True)


def example_objects(redis_url: str) -> list[dict[str, Any]]:
    """examples/manifests with the broker URL set to the demo's Redis and the WorkerPool sized for a laptop."""
    import yaml

    objects = []
    for path in sorted((EXAMPLES / "manifests").glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for obj in objects:
        if obj["kind"] == "Secret":
            obj["stringData"] = {"url": redis_url}
        elif obj["kind"] == "WorkerPool":
            spec = obj["spec"]
            spec.update({"pool": "threads", "concurrency": 8, "shutdownTimeoutSeconds": 10,
                         "terminationGracePeriodSeconds": 20})
            spec["autoscaling"].update({"maxReplicas": 4, "scaleDownStabilizationSeconds": 15})
    return objects


# --- the live view ------------------------------------------------------------------------------


def live_view(demo: Demo, ids: list[str], duration_s: float | None, stop_when_complete: bool) -> int:
    """Print one status line per second; returns how many burst tasks completed."""
    import redis
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(demo.plane.kubeconfig))  # type: ignore[no-untyped-call]
    custom: Any = client.CustomObjectsApi(api)
    rclient = redis.Redis.from_url(demo.redis_url)
    started_s = time.monotonic()
    completed, seen_busy = 0, False
    interactive = sys.stdout.isatty()
    try:
        while duration_s is None or time.monotonic() - started_s < duration_s:
            pool = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workerpools", "tasks")
            beat = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "beatschedules", "housekeeping")
            status, beat_status = pool.get("status") or {}, beat.get("status") or {}
            completed = sum(int(rclient.exists(*[f"celery-task-meta-{i}" for i in ids[k:k + 500]]))
                            for k in range(0, len(ids), 500))
            desired, ready = status.get("desiredReplicas", 0), status.get("readyReplicas", 0)
            seen_busy = seen_busy or desired > pool["spec"]["autoscaling"]["minReplicas"]
            line = (f"[{time.monotonic() - started_s:5.0f}s] backlog {status.get('backlog', 0):5}  "
                    f"workers desired {desired} ready {ready}  completed {completed}/{len(ids)}  "
                    f"beat leader {beat_status.get('leader', '-')} last run {beat_status.get('lastRunTime', '-')}")
            print(f"\r\033[K{line}" if interactive else line, end="" if interactive else "\n", flush=True)
            if stop_when_complete and completed == len(ids) and seen_busy and desired == ready == \
                    pool["spec"]["autoscaling"]["minReplicas"]:
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        rclient.close()
        api.close()
    print(f"\nburst: {completed}/{len(ids)} tasks completed", flush=True)
    return completed


def up(args: argparse.Namespace) -> int:
    if (args.state_dir / "state.json").exists():
        print("demo: stopping the previous demo first", flush=True)
        down(args.state_dir)
    demo = Demo(args.state_dir)
    interrupted = False
    try:
        demo.start()
        os.environ.update(CELERIAC_BROKER_URL=demo.redis_url, CELERIAC_RESULT_BACKEND=demo.redis_url)
        demo.step(f"sending a burst of {args.burst} tasks; Ctrl-C stops the demo")
        ids = send_burst(args.burst, args.size)
        completed = live_view(demo, ids, args.duration, args.stop_when_complete)
    except KeyboardInterrupt:
        interrupted, completed, ids = True, 0, []
    finally:
        demo.step("cleaning up (node agent and its pods, operator, control plane, Redis)")
        demo.stop()
        print("demo stopped", flush=True)
    return 0 if interrupted or completed == len(ids) else 1


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="logs, pod logs and state (default /tmp/celeriac-demo or $CELERIAC_DEMO_DIR)")
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", parents=[common], help="start everything, send a burst, show the live view (default)")
    p_up.add_argument("--burst", type=int, default=2000, help="tasks to send (default 2000)")
    p_up.add_argument("--size", type=int, default=200_000, help="n of sum_of_squares(n): CPU per task (~6 ms)")
    p_up.add_argument("--duration", type=float, help="stop after this many seconds instead of Ctrl-C")
    p_up.add_argument("--stop-when-complete", action="store_true",
                      help="stop once the burst is done and the pool is back at minReplicas")
    sub.add_parser("down", parents=[common], help="stop a demo left running and remove its state")
    p_burst = sub.add_parser("burst", help="send a burst of tasks.sum_of_squares calls to CELERIAC_BROKER_URL")
    p_burst.add_argument("--count", type=int, default=2000)
    p_burst.add_argument("--size", type=int, default=40_000, help="n of sum_of_squares(n): CPU per task")
    p_burst.add_argument("--ids-file", type=Path)
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in ("up", "down", "burst", "-h", "--help"):
        words.insert(0, "up")
    args = parser.parse_args(words)
    if args.command == "burst":
        send_burst(args.count, args.size, args.ids_file)
        return 0
    if args.command == "down":
        down(args.state_dir)
        return 0
    return up(args)


if __name__ == "__main__":
    sys.exit(main())

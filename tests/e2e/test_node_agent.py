"""The local node agent runs a Deployment's pods as processes, as a kubelet would (in what matters here)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from agent_support import Agent

from servers import wait_until

pytestmark = pytest.mark.e2e

# A tiny HTTP server: answers GET with its greeting (from a Secret) and port; on SIGTERM it records the
# signal in $MARKER_DIR/<pod name> and exits, unless IGNORE_TERM is set (then only SIGKILL ends it).
SERVER = """
import http.server, os, signal, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
marker = os.path.join(os.environ["MARKER_DIR"], os.environ["POD_NAME"])
def on_term(*_):
    open(marker, "w").write("TERM")
    if not os.environ.get("IGNORE_TERM"):
        os._exit(0)
signal.signal(signal.SIGTERM, on_term)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ['GREETING']} from {os.environ['POD_NAME']} in {os.environ['POD_NAMESPACE']}".encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def deployment(name: str, marker_dir: Path, grace_s: int, ignore_term: bool = False) -> dict[str, Any]:
    env = [{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "MARKER_DIR", "value": str(marker_dir)}]
    if ignore_term:
        env.append({"name": "IGNORE_TERM", "value": "1"})
    labels = {"app": name}
    container = {
        "name": "web", "image": "unused:1", "command": ["python", "-c", SERVER], "args": ["--port", "8080"],
        "env": env, "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": grace_s}}}}


def pods(kube_api: Any, namespace: str, app: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
        return str(response.read().decode())


def setup(kube_api: Any, namespace: str, body: dict[str, Any]) -> None:
    from kubernetes import client

    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "greeting"}, "stringData": {"text": "hello"}})
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, body)


def running_ready(kube_api: Any, namespace: str, app: str, count: int) -> bool:
    found = [p for p in pods(kube_api, namespace, app) if p.metadata.deletion_timestamp is None]
    return len(found) == count and all(p.status.phase == "Running" and ready(p) for p in found)


def test_deployment_pods_run_as_processes_with_their_env_and_mapped_ports_and_stop_on_sigterm(
    agent: Agent, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    setup(kube_api, namespace, deployment("web", tmp_path, grace_s=30))
    wait_until(lambda: running_ready(kube_api, namespace, "web", 2), 60, "2 web pods Running and Ready")
    apps = client.AppsV1Api(kube_api)
    wait_until(lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 2, 30,
               "the Deployment to count 2 ready replicas")

    first, second = pods(kube_api, namespace, "web")
    local = [json.loads(p.metadata.annotations["celeriac.io/local-ports"])["8080"] for p in (first, second)]
    assert local[0] != local[1], "two pods declaring containerPort 8080 get different local ports"
    for pod, port in zip((first, second), local, strict=True):
        assert pod.spec.node_name == agent.node_name
        assert pod.status.pod_ip == "127.0.0.1"
        assert get(port) == f"hello from {pod.metadata.name} in {namespace}"

    victim = first.metadata.name
    client.CoreV1Api(kube_api).delete_namespaced_pod(victim, namespace)
    wait_until((tmp_path / victim).exists, 30, "the deleted pod's process to receive SIGTERM")
    assert (tmp_path / victim).read_text() == "TERM"
    wait_until(lambda: victim not in {p.metadata.name for p in pods(kube_api, namespace, "web")}, 30,
               "the deleted pod object to be gone")
    wait_until(lambda: running_ready(kube_api, namespace, "web", 2), 60, "the ReplicaSet's replacement Ready")


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    agent: Agent, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    setup(kube_api, namespace, deployment("stubborn", tmp_path, grace_s=5, ignore_term=True))
    wait_until(lambda: running_ready(kube_api, namespace, "stubborn", 2), 60, "2 pods Running and Ready")
    pod = pods(kube_api, namespace, "stubborn")[0]
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("local://"))
    client.CoreV1Api(kube_api).delete_namespaced_pod(pod.metadata.name, namespace)
    marker = tmp_path / pod.metadata.name
    wait_until(marker.exists, 30, "SIGTERM delivered")
    os.kill(pid, 0)  # it ignored SIGTERM and still runs inside its grace period
    wait_until(lambda: pod.metadata.name not in {p.metadata.name for p in pods(kube_api, namespace, "stubborn")},
               60, "the pod object to be gone after SIGKILL")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert f"{namespace}/{pod.metadata.name} deleted: SIGTERM now, SIGKILL after 5 s" in agent.logs()

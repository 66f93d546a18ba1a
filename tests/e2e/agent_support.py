"""Run ``scripts/node_agent.py`` as a subprocess for one test (see its docstring for what it does).

:func:`start_agent` starts it for the given namespaces under a node name unique to the test; ``stop()``
sends SIGTERM (the agent kills every pod process it started) and deletes the Node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "scripts" / "node_agent.py"


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    node_name: str
    work_dir: Path
    log_path: Path
    kube_api: Any

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pod_logs(self) -> str:
        """Every container log the agent wrote (newest last), for failure reports."""
        parts = []
        for path in sorted(self.work_dir.glob("*/*.log"), key=lambda p: p.stat().st_mtime):
            parts.append(f"===== {path.parent.name}/{path.name} =====\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        path = self.work_dir / f"{namespace}_{pod}" / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        stop_process(self.proc, timeout_s=30.0)
        core = client.CoreV1Api(self.kube_api)
        # Like a node that is gone for good: its pods are removed (no kubelet will ever confirm their
        # deletion, so without this the test namespace would stay Terminating).
        for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node_name}").items:
            try:
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            core.delete_node(self.node_name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def start_agent(kubeconfig: Path, kube_api: Any, namespaces: list[str], work_dir: Path, *, node_name: str,
                app_dir: Path | None = None) -> Agent:
    """Start the agent and wait until its Node is registered and Ready."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    work_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(AGENT), "--kubeconfig", str(kubeconfig), "--work-dir", str(work_dir),
            "--node-name", node_name, "--app-dir", str(app_dir or ROOT / "examples")]
    for ns in namespaces:
        args += ["--namespace", ns]
    log_path = work_dir / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERIAC_", "KUBERNETES_"))}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    agent = Agent(proc, node_name, work_dir, log_path, kube_api)
    core = client.CoreV1Api(kube_api)

    def node_ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"node agent exited with {proc.returncode}:\n{agent.logs()}")
        try:
            node = core.read_node(node_name)
        except ApiException:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    try:
        wait_until(node_ready, 30, f"node {node_name} Ready")
    except BaseException:
        agent.stop()
        raise
    return agent

"""How the node agent builds a container's process environment: what a kubelet would inject, done locally.

``PodEnvironment.env`` assembles ``PATH`` (the agent's virtualenv first), ``PYTHONPATH`` (the app directory),
``KUBECONFIG`` (a token of the Pod's ServiceAccount instead of a projected volume), then ``envFrom`` and
``env`` in order, with ``$(VAR)`` expansion, Secret/ConfigMap references and the downward API fields
``metadata.name/namespace/uid``, ``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP/hostIP``
(both 127.0.0.1). :func:`remap_ports` moves declared containerPorts to per-pod loopback ports.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node_agent import PodRun

Obj = dict[str, Any]
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, unknown ones kept, ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(one, value)


def remap_ports(argv: list[str], ports: dict[int, int]) -> list[str]:
    """Rewrite the values of ``--*port*`` flags that name a declared containerPort to its local port."""
    result: list[str] = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        previous = argv[i - 1] if i > 0 else ""
        if eq and flag.startswith("-") and "port" in flag and value.isdigit() and int(value) in ports:
            result.append(f"{flag}={ports[int(value)]}")
        elif previous.startswith("-") and "port" in previous and "=" not in previous and arg.isdigit() \
                and int(arg) in ports:
            result.append(str(ports[int(arg)]))
        else:
            result.append(arg)
    return result


class PodEnvironment:
    """Builds containers' environments for pods on one node, reading Secrets and ConfigMaps through ``core``."""

    def __init__(self, core: Any, kubeconfig: Path, bin_dir: Path, app_dir: Path, node_name: str) -> None:
        self.core = core
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.app_dir = app_dir
        self.node_name = node_name

    def env(self, pod: Any, run: PodRun, container: Obj) -> dict[str, str]:
        env = {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "HOME": str(run.directory), "PYTHONPATH": str(self.app_dir), "PYTHONUNBUFFERED": "1",
               "HOSTNAME": run.name, "KUBECONFIG": str(self.token_kubeconfig(pod, run))}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self.core.read_namespaced_secret(source["secretRef"]["name"], run.namespace).data or {}
                env.update({prefix + k: base64.b64decode(v).decode() for k, v in data.items()})
            elif "configMapRef" in source:
                data = self.core.read_namespaced_config_map(source["configMapRef"]["name"], run.namespace).data
                env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
            elif "valueFrom" in var:
                env[var["name"]] = self.value_from(pod, run, var["valueFrom"])
            else:
                env[var["name"]] = ""
        return env

    def value_from(self, pod: Any, run: PodRun, source: Obj) -> str:
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = self.core.read_namespaced_secret(ref["name"], run.namespace).data or {}
            return base64.b64decode(data[ref["key"]]).decode()
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str((self.core.read_namespaced_config_map(ref["name"], run.namespace).data or {})[ref["key"]])
        path = source.get("fieldRef", {}).get("fieldPath", "")
        fields = {"metadata.name": run.name, "metadata.namespace": run.namespace, "metadata.uid": run.uid,
                  "spec.nodeName": self.node_name, "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
                  "spec.serviceAccountName": pod.spec.service_account_name or "default"}
        if path not in fields:
            raise ValueError(f"unsupported env source {source}")
        return fields[path]

    def token_kubeconfig(self, pod: Any, run: PodRun) -> Path:
        """A kubeconfig authenticating as the Pod's ServiceAccount (a TokenRequest token bound to the Pod)."""
        from kubernetes import client

        account = pod.spec.service_account_name
        # Bound to the Pod when it names its account; this control plane runs without the ServiceAccount
        # admission plugin, so a Pod naming none has no account to bind to and gets `default`'s token.
        bound = None if not account else client.V1BoundObjectReference(kind="Pod", api_version="v1",
                                                                       name=run.name, uid=run.uid)
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=86400, bound_object_ref=bound))
        account = account or "default"
        token = self.core.create_namespaced_service_account_token(account, run.namespace, request).status.token
        config = json.loads(self.kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": token}
        target = run.directory / "kubeconfig"
        target.write_text(json.dumps(config))
        target.chmod(0o600)
        return target

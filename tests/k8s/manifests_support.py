"""The example manifests (examples/manifests/) adapted to a test: broker Secret pointing at the test's Redis,
plus small kubectl helpers that read objects as JSON and wait for them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from servers import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "manifests"

Kubectl = Callable[..., Any]


def example_documents(filename: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / filename).read_text()) if doc]


def broker_secret(redis_url: str, name: str = "celeriac-broker") -> dict[str, Any]:
    """The example Secret with its URL replaced by the test's Redis."""
    (secret,) = example_documents("broker-secret.yaml")
    secret["metadata"]["name"] = name
    secret["stringData"] = {"url": redis_url}
    return secret


def apply(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> None:
    """``kubectl apply`` the documents (as one YAML stream) into ``namespace``."""
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    done = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if done.returncode != 0:
        if "NotFound" in done.stderr or "not found" in done.stderr:
            return None
        raise AssertionError(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def items(kubectl: Kubectl, namespace: str, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    found: list[dict[str, Any]] = json.loads(kubectl(*args).stdout)["items"]
    return found


def wait_for(kubectl: Kubectl, namespace: str, kind: str, name: str,
             check: Callable[[dict[str, Any]], bool] = lambda _: True, *, timeout_s: float = 60.0,
             what: str = "") -> dict[str, Any]:
    """Poll until ``kind/name`` exists and ``check(obj)`` holds; returns the object."""
    seen: dict[str, Any] = {}

    def ready() -> bool:
        obj = get(kubectl, namespace, kind, name)
        if obj is None:
            return False
        seen["obj"] = obj
        return check(obj)

    try:
        wait_until(ready, timeout_s, what or f"{kind}/{name} in {namespace}", interval_s=0.2)
    except TimeoutError as exc:
        last = json.dumps(seen.get("obj", {}).get("status"), indent=1)
        raise AssertionError(f"{exc}; last status: {last}") from None
    return seen["obj"]


def wait_gone(kubectl: Kubectl, namespace: str, kind: str, name: str, timeout_s: float = 60.0) -> None:
    wait_until(lambda: get(kubectl, namespace, kind, name) is None, timeout_s, f"{kind}/{name} deleted",
               interval_s=0.2)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """The status condition of ``type_`` (empty dict when absent)."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return {}

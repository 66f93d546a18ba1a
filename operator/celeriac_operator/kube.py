"""The one module that talks to the Kubernetes API (besides kopf's own watching and Events).

Everything goes through :class:`Kube`, a thin layer over the official client's HTTP machinery with plain
dicts in and out (builders produce dicts; no generated model classes below the handlers):

* :meth:`Kube.apply` -- server-side apply (``application/apply-patch+yaml``) with ``force=true`` and the
  field manager ``names.FIELD_MANAGER``; idempotent by deterministic name, which is what makes operator
  restarts safe (no duplicates, no orphans);
* :meth:`Kube.scale` -- applies only ``spec.replicas`` of a Deployment as ``names.FIELD_MANAGER_AUTOSCALER``,
  so reconciles (which leave ``spec.replicas`` out when autoscaling) and scales never fight;
* :meth:`Kube.patch_status` -- JSON merge patch of the status subresource of our custom resources;
* reads: Secrets (one key, decoded), TaskQueues, Deployments, Pods; pod annotations (deletion cost).

HTTP 409 and 5xx / connection failures become :class:`RetryableError`; 404 on reads becomes None.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from celeriac_operator import names
from celeriac_operator.errors import FatalError, RetryableError, Unresolved

Obj = dict[str, Any]

_PLURALS = {
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Secret": "secrets",
    "Pod": "pods",
    names.TASKQUEUE_KIND: names.TASKQUEUE_PLURAL,
    names.WORKERPOOL_KIND: names.WORKERPOOL_PLURAL,
    names.BEATSCHEDULE_KIND: names.BEATSCHEDULE_PLURAL,
}
_API_VERSIONS = {
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
    "ServiceAccount": "v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "Secret": "v1",
    "Pod": "v1",
    names.TASKQUEUE_KIND: names.API_VERSION,
    names.WORKERPOOL_KIND: names.API_VERSION,
    names.BEATSCHEDULE_KIND: names.API_VERSION,
}


def object_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a namespaced object (or of its collection when ``name`` is None)."""
    api_version = _API_VERSIONS[kind]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{root}/namespaces/{quote(namespace)}/{_PLURALS[kind]}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class Kube:
    """A Kubernetes API session; thread-safe for the operator's sync handlers and daemons."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster credentials when running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
        from kubernetes import client, config

        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return cls(client.ApiClient(configuration))
        api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
        return cls(api)

    # --- transport ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                 query: Sequence[tuple[str, str]] = ()) -> Obj | None:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            params = self._api.param_serialize(
                method=method, resource_path=path, query_params=list(query), header_params=headers,
                body=body, auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*params)
            data = response.read()
        except ApiException as exc:  # raised by the client for some transport failures
            raise RetryableError(f"{method} {path}: {exc.reason}") from exc
        except OSError as exc:
            raise RetryableError(f"{method} {path}: API server unreachable: {exc}") from exc
        status = response.status
        if status == 404:
            return None
        text = data.decode("utf-8", "replace") if data else ""
        if status in {409, 429} or status >= 500:
            raise RetryableError(f"{method} {path}: HTTP {status}: {_message(text)}")
        if status >= 400:
            raise FatalError(f"{method} {path}: HTTP {status}: {_message(text)}")
        return json.loads(text) if text else {}

    # --- writes -----------------------------------------------------------------------------------

    def apply(self, obj: Obj, *, field_manager: str = names.FIELD_MANAGER) -> Obj:
        """Server-side apply ``obj`` (kind, namespace and name from the object itself), forcing conflicts."""
        meta = obj["metadata"]
        path = object_path(obj["kind"], meta["namespace"], meta["name"])
        result = self._request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                               query=[("fieldManager", field_manager), ("force", "true")])
        if result is None:
            raise RetryableError(f"apply {obj['kind']} {meta['namespace']}/{meta['name']}: namespace gone?")
        return result

    def scale(self, namespace: str, deployment: str, replicas: int) -> Obj:
        """Set ``spec.replicas`` of a Deployment as the autoscaler's field manager (owns only that field)."""
        partial = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        return self.apply(partial, field_manager=names.FIELD_MANAGER_AUTOSCALER)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete if present (background propagation); True when something was deleted."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        return self._request("DELETE", object_path(kind, namespace, name), body=body) is not None

    def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """JSON merge patch ``{"status": patch}`` on the status subresource; a gone object is ignored."""
        self._request("PATCH", object_path(kind, namespace, name, "status"), body={"status": dict(patch)},
                      content_type="application/merge-patch+json")

    def annotate_pod(self, namespace: str, pod: str, annotations: Mapping[str, str | None]) -> None:
        """Merge ``annotations`` into a Pod's metadata (None removes one); a gone Pod is ignored."""
        self._request("PATCH", object_path("Pod", namespace, pod),
                      body={"metadata": {"annotations": dict(annotations)}},
                      content_type="application/merge-patch+json")

    # --- reads ------------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._request("GET", object_path(kind, namespace, name))

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[Obj]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._request("GET", object_path(kind, namespace), query=query) or {}
        return list(result.get("items") or [])

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of ``key`` in Secret ``namespace/name``.

        Raises Unresolved (reason SecretNotFound or KeyNotFound) with a message saying what to create.
        """
        secret = self.get("Secret", namespace, name)
        if secret is None:
            raise Unresolved(
                "SecretNotFound",
                f"Secret {namespace}/{name} not found: create it with key '{key}' holding the broker URL",
            )
        data = secret.get("data") or {}
        if key not in data:
            raise Unresolved(
                "KeyNotFound",
                f"Secret {namespace}/{name} has no key '{key}': add it, holding the broker URL",
            )
        try:
            return base64.b64decode(data[key]).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise Unresolved("KeyNotFound", f"Secret {namespace}/{name} key '{key}' is not UTF-8 text") from None


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:500]

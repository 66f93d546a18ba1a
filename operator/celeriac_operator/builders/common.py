"""Labels, owner references, environment and security contexts shared by every object the operator builds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac_operator import names
from celeriac_operator.models.common import Resource

Obj = dict[str, Any]

RUN_AS_ID = 10001
"""Non-root user and group of every container the operator starts (matches the image's user)."""

TMP_VOLUME = "tmp"


def selector_labels(owner_label: str, owner_name: str, component: str) -> dict[str, str]:
    """The labels a Deployment selects its pods by: never change after creation (a selector is immutable)."""
    return {owner_label: owner_name, names.LABEL_COMPONENT: component}


def labels(owner_label: str, owner_name: str, component: str) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels plus the selector labels."""
    return {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_INSTANCE: owner_name,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_PART_OF: names.APP_NAME,
        **selector_labels(owner_label, owner_name, component),
    }


def selector_string(selector: Mapping[str, str]) -> str:
    """``k=v,k=v`` (sorted), for a status ``selector`` and label-selector queries."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def owner_reference(owner: Resource) -> Obj:
    """A controller owner reference: deleting ``owner`` garbage-collects the object."""
    return {
        "apiVersion": names.API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Resource, name: str, object_labels: Mapping[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(object_labels),
        "ownerReferences": [owner_reference(owner)],
    }


def downward_env() -> list[Obj]:
    """``POD_NAME`` and ``POD_NAMESPACE`` from the downward API (heartbeats and leases name the pod)."""
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def secret_env(name: str, secret_name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}


def pod_security_context() -> Obj:
    """Non-root with a fixed uid/gid, group-owned volumes and the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Obj:
    """No privilege escalation, a read-only root filesystem (``/tmp`` is an emptyDir) and no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def tmp_volume() -> Obj:
    return {"name": TMP_VOLUME, "emptyDir": {}}


def tmp_mount() -> Obj:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}

"""Pieces shared by the three custom resources: base model config, CEL rule helpers, typed
Kubernetes fragments (Secret key references, conditions, resource requirements, env vars) and the
``from_body`` parser every handler uses at its boundary.

The models are the single source of the CRDs (``celeriac_operator.crdgen`` renders them). So every
field carries a ``description`` (it becomes the OpenAPI description and the docs reference), bounds
live in ``Field(...)`` and CEL rules in :func:`cel`. Specs and statuses ignore unknown fields: the
API server has already validated and pruned what it stored, and a newer CRD must not break an older
operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

__all__ = [
    "K8S_NAME_PATTERN",
    "AnyValue",
    "CelRule",
    "Condition",
    "EnvVar",
    "FreeForm",
    "IntOrString",
    "Model",
    "Resource",
    "ResourceRequirements",
    "ResourceStatus",
    "SecretKeyRef",
    "SecretRef",
    "cel",
    "rule",
]

K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A Kubernetes object name (DNS-1123 subdomain): what TaskQueue names in other resources must be."""

CelRule = dict[str, str]

IntOrString = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]
"""An integer or a string (Kubernetes quantities, durations like ``30s``)."""

FreeForm = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]
"""A JSON object the API server stores as given (Kubernetes types we pass through, task kwargs)."""

AnyValue = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
"""Any JSON value (a task argument)."""


def rule(expression: str, message: str, *, field_path: str | None = None) -> CelRule:
    """One ``x-kubernetes-validations`` entry; the message tells the user what to fix.

    ``field_path`` points the error at a field below the rule's node. (No ``messageExpression``: string
    building from integers blows the CEL cost budget of kube-apiserver 1.36 by over 100x.)
    """
    entry = {"rule": expression, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def cel(*rules: CelRule, **extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` for a model or a field: its CEL rules (plus any other schema keys)."""
    return {"x-kubernetes-validations": list(rules), **extra}


class Model(BaseModel):
    """Base of every spec/status model: frozen, camelCase aliases, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True, extra="ignore"
    )

    def to_json(self) -> dict[str, Any]:
        """The Kubernetes (camelCase, JSON-typed) form, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_patch(self) -> dict[str, Any]:
        """Only the fields given explicitly, in Kubernetes form: a JSON merge patch body.

        Status has two writers (BeatSchedule: the beat and the operator); a patch built from a model
        constructed with just one writer's fields never resets the other's (``conditions: []`` included).
        """
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class SecretKeyRef(Model):
    """A key of a Secret in the resource's own namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=K8S_NAME_PATTERN,
        description="Name of the Secret, in the same namespace as this resource.",
    )
    key: str = Field(
        default="url", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key inside the Secret whose value is the URL.",
    )


class SecretRef(Model):
    """Where a URL with credentials comes from: never plain text in the spec."""

    secret_ref: SecretKeyRef = Field(description="The Secret key holding the URL (with its credentials).")


class Condition(Model):
    """The standard ``metav1.Condition`` shape."""

    type: str = Field(max_length=316, description="Condition type, e.g. `Ready`.")
    status: Literal["True", "False", "Unknown"] = Field(description="`True`, `False` or `Unknown`.")
    reason: str = Field(default="", max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field(
        default="", max_length=32768, description="Human-readable detail: what is wrong and how to fix it.",
    )
    last_transition_time: datetime | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` this condition was computed from."
    )


class ResourceRequirements(Model):
    """Kubernetes container resources (requests and limits by resource name)."""

    requests: dict[str, IntOrString] | None = Field(
        default=None, description="Minimum resources, e.g. `{cpu: 100m, memory: 128Mi}`."
    )
    limits: dict[str, IntOrString] | None = Field(
        default=None, description="Maximum resources, e.g. `{memory: 512Mi}`.",
    )


class EnvVar(Model):
    """A Kubernetes container environment variable (``value`` or ``valueFrom``)."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            rule("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both"),
        )
    }

    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None, description="A Kubernetes `EnvVarSource` (secretKeyRef, configMapKeyRef, fieldRef, ...)."
    )


class ResourceStatus(Model):
    """Fields every status carries (written by the operator)."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The `metadata.generation` the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16,
        description="Standard conditions, each with `observedGeneration`.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


R = TypeVar("R", bound="Resource")


class Resource(BaseModel):
    """A parsed custom resource: identity plus typed spec and status (subclasses narrow their types).

    Handlers call ``<Kind>.from_body(body)`` once and pass the result down; nothing below the handler
    sees a raw dict.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ClassVar[str]
    plural: ClassVar[str]
    summary: ClassVar[str]
    """One line: what the resource is (the CRD's description)."""
    root_rules: ClassVar[tuple[CelRule, ...]] = ()
    """CEL rules on the whole object (they may read ``self.metadata.name``)."""

    name: str
    namespace: str
    uid: str = ""
    generation: int = 0
    resource_version: str = ""

    @classmethod
    def from_body(cls: type[R], body: Mapping[str, Any]) -> R:
        """Parse a resource as the API server (or kopf) delivers it."""
        metadata = body.get("metadata") or {}
        return cls.model_validate({
            "name": metadata.get("name", ""),
            "namespace": metadata.get("namespace", ""),
            "uid": metadata.get("uid", ""),
            "generation": metadata.get("generation", 0),
            "resource_version": metadata.get("resourceVersion", ""),
            "spec": body.get("spec") or {},
            "status": body.get("status") or {},
        })

"""Pydantic JSON schema -> Kubernetes structural OpenAPI v3 schema (pure functions).

A CRD schema must be *structural*: every node has a ``type`` (or is int-or-string / preserves unknown
fields), no ``$ref``, no ``nullable``-style ``anyOf: [X, null]``, no ``uniqueItems``. Pydantic emits all
of those, so :func:`structural` inlines ``$defs``, collapses optionals to the non-null branch, drops
titles and ``null`` defaults, and concatenates CEL rules a field and its model both carry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["SchemaError", "structural", "walk_properties"]

_DROPPED = {"title", "$defs"}
_FORBIDDEN = {"oneOf", "allOf", "not", "uniqueItems", "const", "nullable", "$ref", "anyOf", "discriminator"}
_VALIDATIONS = "x-kubernetes-validations"
_NULL = {"type": "null"}


class SchemaError(ValueError):
    """A model uses a construct a structural schema cannot express; change the model."""


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of ``model`` (camelCase names, defaults, bounds, CEL rules inlined)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), path=model.__name__)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override``'s keys win, except CEL rules, which accumulate (the model's then the field's)."""
    merged = {**base, **override}
    rules = base.get(_VALIDATIONS, []) + override.get(_VALIDATIONS, [])
    if rules:
        merged[_VALIDATIONS] = rules
    return merged


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROPPED}
    if node.get("default", 0) is None:
        del node["default"]
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return _convert(_merge(target, node), defs, path)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b != _NULL]
        if len(branches) != 1:
            raise SchemaError(f"{path}: a union other than Optional[X] cannot be a structural schema")
        return _convert(_merge(branches[0], node), defs, path)
    bad = _FORBIDDEN & node.keys()
    if bad:
        raise SchemaError(f"{path}: {sorted(bad)} not allowed in a structural schema")
    if "properties" in node:
        node["properties"] = {
            name: _convert(sub, defs, f"{path}.{name}") for name, sub in node["properties"].items()
        }
    if isinstance(node.get("items"), dict):
        node["items"] = _convert(node["items"], defs, f"{path}[]")
    additional = node.get("additionalProperties")
    if additional is True or additional == {}:
        raise SchemaError(f"{path}: free-form maps must use common.FreeForm (x-kubernetes-preserve-unknown-fields)")
    if isinstance(additional, dict):
        node["additionalProperties"] = _convert(additional, defs, f"{path}{{}}")
    elif additional is False:
        del node["additionalProperties"]
    if "type" not in node and not (
        node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise SchemaError(f"{path}: no type")
    return node


def walk_properties(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """Every field below ``schema`` as (dotted path, its schema, required), depth first in schema order.

    List items appear as ``path[]``; map values as ``path.<key>``.
    """
    rows: list[tuple[str, dict[str, Any], bool]] = []
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        rows.append((path, sub, name in required))
        rows.extend(_children(sub, path))
    return rows


def _children(sub: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any], bool]]:
    if "properties" in sub:
        return walk_properties(sub, path)
    items = sub.get("items")
    if isinstance(items, dict) and "properties" in items:
        return walk_properties(items, f"{path}[]")
    return []

"""Pure helpers for ``status.conditions`` (the standard ``metav1.Condition`` shape).

Only the operator writes ``conditions`` (a list: a merge patch replaces it whole), so it computes the full
new list from the current one: a condition keeps its ``lastTransitionTime`` while its status is
unchanged, and every condition carries the ``observedGeneration`` it was computed from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# Condition types
READY = "Ready"
QUEUES_RESOLVED = "QueuesResolved"
BROKER_REACHABLE = "BrokerReachable"
AUTOSCALING = "Autoscaling"


@dataclass(frozen=True)
class Condition:
    """One condition as the operator decides it (the transition time is filled in by :func:`merge`)."""

    type: str
    status: str
    reason: str
    message: str = ""

    @classmethod
    def of(cls, type_: str, ok: bool, reason: str, message: str = "") -> Condition:
        return cls(type_, TRUE if ok else FALSE, reason, message)


def timestamp(now: datetime) -> str:
    """RFC 3339 with seconds precision, as Kubernetes writes ``metav1.Time``."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    current: Sequence[Mapping[str, Any]] | None, updates: Iterable[Condition], *, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """The new ``status.conditions``: ``current`` with ``updates`` applied, in a stable order.

    ``lastTransitionTime`` changes only when a condition's status changes; conditions not in ``updates``
    are kept as they are.
    """
    by_type: dict[str, dict[str, Any]] = {str(c.get("type")): dict(c) for c in current or () if c.get("type")}
    for update in updates:
        previous = by_type.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": timestamp(now) if changed or previous is None
            else previous.get("lastTransitionTime") or timestamp(now),
            "observedGeneration": generation,
        }
    return [by_type[key] for key in sorted(by_type)]


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_`` in a status' list, if present."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == TRUE

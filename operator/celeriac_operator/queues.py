"""Pure resolution of TaskQueue references: which broker queues and which one broker Secret a consumer uses.

A WorkerPool (or the entries of a BeatSchedule) names TaskQueues in its namespace. All of them must exist
and share one broker Secret (name and key), because one process holds one broker connection. Problems
become :class:`~celeriac_operator.errors.Unresolved` with a reason and a message saying what to fix;
the handlers turn that into ``QueuesResolved=False`` and an Event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from celeriac_operator.errors import Unresolved
from celeriac_operator.models import TaskQueue

REASON_NOT_FOUND = "TaskQueueNotFound"
REASON_BROKER_MISMATCH = "BrokerMismatch"
REASON_RESOLVED = "Resolved"


@dataclass(frozen=True)
class ResolvedQueues:
    """The broker side of a set of TaskQueue references."""

    queue_names: Mapping[str, str]
    """TaskQueue name -> broker queue name, in reference order."""
    secret_name: str
    secret_key: str

    @property
    def broker_queues(self) -> tuple[str, ...]:
        """Broker queue names in reference order, without duplicates."""
        return tuple(dict.fromkeys(self.queue_names.values()))


def resolve(namespace: str, references: Sequence[str], available: Mapping[str, TaskQueue]) -> ResolvedQueues:
    """Map ``references`` (TaskQueue names) through ``available`` (TaskQueues of ``namespace`` by name)."""
    wanted = list(dict.fromkeys(references))
    missing = [name for name in wanted if name not in available]
    if missing:
        listed = ", ".join(f"{namespace}/{name}" for name in missing)
        raise Unresolved(REASON_NOT_FOUND, f"TaskQueue {listed} not found: create it or remove it from the spec")
    first = available[wanted[0]]
    secret = (first.spec.broker.secret_ref.name, first.spec.broker.secret_ref.key)
    for name in wanted[1:]:
        other = available[name].spec.broker.secret_ref
        if (other.name, other.key) != secret:
            raise Unresolved(
                REASON_BROKER_MISMATCH,
                f"TaskQueue {namespace}/{name} uses broker Secret {other.name} key '{other.key}' but "
                f"TaskQueue {namespace}/{wanted[0]} uses {secret[0]} key '{secret[1]}': one process has one "
                "broker connection, so use the same Secret and key in all of them",
            )
    return ResolvedQueues(
        queue_names={name: available[name].queue_name for name in wanted},
        secret_name=secret[0],
        secret_key=secret[1],
    )

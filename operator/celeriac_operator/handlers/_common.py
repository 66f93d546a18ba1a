"""What every handler module shares: status writes with conditions, error translation for kopf, TaskQueues."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import kopf

from celeriac_operator import conditions
from celeriac_operator.errors import FatalError, RetryableError
from celeriac_operator.kube import Kube
from celeriac_operator.models import TaskQueue
from celeriac_operator.models.common import Resource
from celeriac_operator.queues import REASON_RESOLVED


def now() -> datetime:
    return datetime.now(timezone.utc)


def write_status(
    kube: Kube, kind: str, namespace: str, name: str, *, generation: int | None,
    fields: Mapping[str, Any] | None = None, updates: Iterable[conditions.Condition] = (),
) -> dict[str, Any] | None:
    """Merge-patch ``fields`` and the ``updates`` to ``conditions`` into the status; returns the new conditions.

    Conditions are merged into a freshly read list (not the handler's possibly stale body), so the
    reconcile handlers and the autoscaler daemon, which own different condition types, don't undo each other.
    """
    patch: dict[str, Any] = dict(fields or {})
    updates = list(updates)
    if updates or generation is not None:
        current = kube.get(kind, namespace, name)
        if current is None:
            return None
        status = current.get("status") or {}
        if generation is None:
            generation = int((current.get("metadata") or {}).get("generation") or 0)
        if updates:
            merged = conditions.merge(status.get("conditions"), updates, generation=generation, now=now())
            if merged != status.get("conditions"):
                patch["conditions"] = merged
    if patch:
        kube.patch_status(kind, namespace, name, patch)
    return patch


@contextmanager
def kopf_errors(retry_delay_s: float) -> Iterator[None]:
    """Turn our retryable/fatal errors into kopf's TemporaryError (retried after ``retry_delay_s``, e.g. on
    an HTTP 409 conflict) and PermanentError."""
    try:
        yield
    except RetryableError as exc:
        raise kopf.TemporaryError(str(exc), delay=retry_delay_s) from exc
    except FatalError as exc:
        raise kopf.PermanentError(str(exc)) from exc


def on_change_and_every(
    registry: kopf.OperatorRegistry, resource: tuple[str, str, str], *, apply_id: str, timer_id: str,
    interval_s: float, retry_delay_s: float, reconcile: Callable[[Mapping[str, Any]], None],
) -> None:
    """Run ``reconcile(body)`` on resume, create and update (handler ``apply_id``) and every ``interval_s``
    seconds (timer ``timer_id``), our errors translated for kopf: the reconcile registration every kind shares."""

    def handler(body: kopf.Body, **_: Any) -> None:
        with kopf_errors(retry_delay_s):
            reconcile(body)

    for on_event in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on_event(*resource, registry=registry, id=apply_id)(handler)
    kopf.timer(*resource, interval=interval_s, registry=registry, id=timer_id)(handler)


def taskqueues(kube: Kube, namespace: str) -> dict[str, TaskQueue]:
    """Every TaskQueue of ``namespace`` by name (parsed)."""
    return {item["metadata"]["name"]: TaskQueue.from_body(item) for item in kube.list("TaskQueue", namespace)}


def changed_condition(
    body: Mapping[str, Any], type_: str, status: str, reason: str,
) -> bool:
    """True when ``body``'s condition ``type_`` differs in status or reason (to post an Event once per change)."""
    found = conditions.find((body.get("status") or {}).get("conditions"), type_)
    return found is None or found.get("status") != status or found.get("reason") != reason


def post(body: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """An Event about the resource ``body`` (kopf posts it in the background; safe from daemon threads)."""
    target: Any = body
    (kopf.warn if warning else kopf.info)(target, reason=reason, message=message)


def report_problem(
    kube: Kube, resource: Resource, body: Mapping[str, Any], *, reason: str, message: str,
    condition_types: Iterable[str], fields: Mapping[str, Any],
) -> None:
    """Set ``condition_types`` False with ``reason`` and ``message``; a Warning Event only when the first changes."""
    types = list(condition_types)
    if changed_condition(body, types[0], conditions.FALSE, reason):
        post(body, reason=reason, message=message, warning=True)
    write_status(kube, resource.kind, resource.namespace, resource.name, generation=resource.generation,
                 fields=fields, updates=[conditions.Condition.of(type_, False, reason, message) for type_ in types])


def post_queues_recovered(body: Mapping[str, Any]) -> None:
    """A Normal Event when ``QueuesResolved`` turns True after it was reported otherwise (not on first success)."""
    was_reported = conditions.find((body.get("status") or {}).get("conditions"), conditions.QUEUES_RESOLVED)
    if was_reported and changed_condition(body, conditions.QUEUES_RESOLVED, conditions.TRUE, REASON_RESOLVED):
        post(body, reason=REASON_RESOLVED, message="All TaskQueues resolved")

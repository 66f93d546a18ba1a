"""Leader election over a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

* A candidate takes the Lease when it is free (no holder, or released) or when its record has
  not changed for ``leaseDurationSeconds`` as observed on *our* monotonic clock since we last
  saw it change. Remote wall clocks (``renewTime``) are never trusted.
* Writes carry the ``resourceVersion`` read just before (optimistic concurrency); a 409 means
  another candidate won the race.
* The leader renews every ``retry_period_s``. :meth:`LeaderElector.is_leading` turns False as
  soon as ``renew_deadline_s`` has passed since the last successful renewal (measured from
  *before* that request was sent), so a leader that cannot renew stops firing before any other
  candidate can take the Lease (renew deadline < lease duration).
* Candidates re-read the Lease four times per retry period, and exactly when the Lease they
  observe would expire, so failover takes the lease duration plus at most a quarter period.
* :meth:`LeaderElector.release` clears the holder on shutdown, so a rollout fails over at once.

The Kubernetes calls sit behind :class:`LeaseClient` (:class:`KubeLeaseClient` is the real
one); the state machine above is plain code driven by an injectable clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from celeriac.beat import BeatApiError, BeatError
from celeriac.beat.entries import LeaseTimings

log = logging.getLogger(__name__)

CANDIDATE_POLLS_PER_PERIOD = 4
"""How often per retry period a candidate re-reads the Lease (bounds failover lag)."""


class LeaseConflict(BeatError):
    """The Lease changed (409) or already exists: another candidate wrote first."""


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease the election reads and writes."""

    holder: str | None = None
    lease_duration_s: int | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None


class LeaseClient(Protocol):
    """Read, create and conditionally replace one Lease."""

    def get(self) -> LeaseRecord | None:
        """The Lease, or None when it does not exist; :class:`BeatApiError` on transient failure."""

    def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create it; :class:`LeaseConflict` when it exists already."""

    def update(self, record: LeaseRecord) -> LeaseRecord:
        """Replace it if ``record.resource_version`` is current; :class:`LeaseConflict` otherwise."""


def _wall() -> datetime:
    return datetime.now(timezone.utc)


class LeaderElector:
    """One candidate; thread-safe. Run :meth:`run` in a thread, ask :meth:`is_leading` before acting."""

    def __init__(
        self,
        client: LeaseClient,
        identity: str,
        timings: LeaseTimings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _wall,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self.wall = wall
        self.on_change = on_change
        self._lock = threading.RLock()
        self._leading = False
        self._renewed_at_s = 0.0
        self._observed: tuple[str | None, str | None] | None = None
        self._observed_at_s = 0.0
        self._observed_duration_s = timings.lease_duration_s

    # -- queries ------------------------------------------------------------------------------------

    def is_leading(self) -> bool:
        """True while we hold the Lease and renewed it less than ``renew_deadline_s`` ago.

        Lock-free on purpose: an API call stuck in the election thread must not block the
        scheduler loop, and the answer turns False by the clock alone.
        """
        return self._leading and self.clock() - self._renewed_at_s < self.timings.renew_deadline_s

    def next_attempt_in_s(self) -> float:
        """Seconds until the next acquire/renew attempt."""
        with self._lock:
            if self._leading:
                return self.timings.retry_period_s
            poll_s = self.timings.retry_period_s / CANDIDATE_POLLS_PER_PERIOD
            if self._observed is not None and self._observed[0]:
                expires_in_s = self._observed_at_s + self._observed_duration_s - self.clock()
                if expires_in_s > 0:
                    poll_s = min(poll_s, expires_in_s + 0.001)
            return max(poll_s, 0.001)

    # -- one attempt --------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One client-go style attempt; returns whether we lead afterwards."""
        with self._lock:
            started_s = self.clock()
            try:
                current = self.client.get()
                if current is None:
                    created = self.client.create(replace(self._claim(LeaseRecord(), was_holder=False), transitions=0))
                    return self._renewed(created, started_s)
                self._observe(current, started_s)
                if current.holder and current.holder != self.identity:
                    if started_s < self._observed_at_s + self._observed_duration_s:
                        self._set_leading(False, f"the Lease is held by {current.holder}")
                        return False
                    log.info("Lease held by %s expired (unchanged for %.1fs); taking it",
                             current.holder, started_s - self._observed_at_s)
                updated = self.client.update(self._claim(current, was_holder=current.holder == self.identity))
                return self._renewed(updated, started_s)
            except LeaseConflict:
                self._observed = None  # re-read before deciding again
                self._check_deadline("another candidate wrote the Lease first")
                return self.is_leading()
            except BeatApiError as exc:
                log.warning("Lease %s failed: %s", "renewal" if self._leading else "acquisition", exc)
                self._check_deadline(f"could not renew the Lease within {self.timings.renew_deadline_s}s")
                return self.is_leading()

    def _claim(self, current: LeaseRecord, was_holder: bool) -> LeaseRecord:
        now = self.wall()
        return replace(
            current,
            holder=self.identity,
            lease_duration_s=int(self.timings.lease_duration_s),
            acquire_time=current.acquire_time if was_holder and current.acquire_time else now,
            renew_time=now,
            transitions=current.transitions if was_holder else current.transitions + 1,
        )

    def _observe(self, record: LeaseRecord, now_s: float) -> None:
        key = (record.holder, record.resource_version)
        if key != self._observed:
            self._observed = key
            self._observed_at_s = now_s
            self._observed_duration_s = float(record.lease_duration_s or self.timings.lease_duration_s)

    def _renewed(self, record: LeaseRecord, started_s: float) -> bool:
        self._observe(record, started_s)
        self._renewed_at_s = started_s
        self._set_leading(True, "acquired the Lease")
        return True

    def _check_deadline(self, reason: str) -> None:
        if self._leading and self.clock() - self._renewed_at_s >= self.timings.renew_deadline_s:
            self._set_leading(False, reason)

    def _set_leading(self, leading: bool, reason: str) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            log.info("%s is now the leader (%s)", self.identity, reason)
        else:
            log.warning("%s stopped leading: %s", self.identity, reason)
        if self.on_change is not None:
            self.on_change(leading)

    # -- writes by the leader -----------------------------------------------------------------------

    def read_annotation(self, key: str) -> str | None:
        """An annotation of the Lease as stored now."""
        record = self.client.get()
        return None if record is None else record.annotations.get(key)

    def write_annotation(self, key: str, value: str, attempts: int = 3) -> bool:
        """Set an annotation while we lead, with the Lease's resourceVersion; False if we do not lead."""
        with self._lock:
            for _ in range(attempts):
                if not self.is_leading():
                    return False
                current = self.client.get()
                if current is None or current.holder != self.identity:
                    self._set_leading(False, "the Lease changed hands")
                    return False
                try:
                    updated = self.client.update(replace(current, annotations={**current.annotations, key: value}))
                except LeaseConflict:
                    continue
                self._observe(updated, self.clock())
                return True
            raise BeatApiError(f"could not write Lease annotation {key} after {attempts} conflicts")

    def release(self) -> None:
        """Give the Lease up (clear the holder) if we hold it, so another candidate takes it at once."""
        with self._lock:
            was_leading = self._leading
            self._set_leading(False, "released the Lease")
            if not was_leading:
                return
            try:
                current = self.client.get()
                if current is not None and current.holder == self.identity:
                    self.client.update(replace(current, holder=None, lease_duration_s=1, renew_time=self.wall()))
                    log.info("%s released the Lease", self.identity)
            except (BeatApiError, LeaseConflict) as exc:
                log.warning("could not release the Lease (it will expire instead): %s", exc)

    # -- the thread ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Acquire and renew until ``stop`` is set (the caller then calls :meth:`release`)."""
        while not stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception:  # never let the election thread die silently
                log.exception("unexpected error in leader election")
            stop.wait(self.next_attempt_in_s())


class KubeLeaseClient:
    """:class:`LeaseClient` over the Kubernetes API (``CoordinationV1Api``)."""

    def __init__(self, api_client: Any, namespace: str, name: str, request_timeout_s: float = 5.0) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.request_timeout_s = request_timeout_s

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(f"Lease {self.namespace}/{self.name} changed while {what}") from exc
            if exc.status == 404 and what == "reading":
                return None
            if exc.status in (401, 403):
                raise BeatApiError(
                    f"not allowed to {what.rstrip('ing')} Lease {self.namespace}/{self.name} ({exc.status}): "
                    "grant get/create/update on leases.coordination.k8s.io to the scheduler's ServiceAccount"
                ) from exc
            raise BeatApiError(f"Kubernetes API error while {what} Lease {self.namespace}/{self.name}: "
                               f"{exc.status} {exc.reason}") from exc
        except Exception as exc:  # urllib3 / socket errors: the API server is unreachable
            raise BeatApiError(f"Kubernetes API unreachable while {what} Lease: {exc}") from exc

    def get(self) -> LeaseRecord | None:
        lease = self._call("reading", lambda: self.api.read_namespaced_lease(
            self.name, self.namespace, _request_timeout=self.request_timeout_s))
        return None if lease is None else self._record(lease)

    def create(self, record: LeaseRecord) -> LeaseRecord:
        body = self._lease(record)
        return self._record(self._call("creating", lambda: self.api.create_namespaced_lease(
            self.namespace, body, _request_timeout=self.request_timeout_s)))

    def update(self, record: LeaseRecord) -> LeaseRecord:
        body = self._lease(record)
        return self._record(
            self._call("updating", lambda: self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.request_timeout_s))
        )

    def _lease(self, record: LeaseRecord) -> Any:
        from kubernetes import client

        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=record.resource_version,
                annotations=dict(record.annotations) or None,
            ),
            spec=client.V1LeaseSpec(
                holder_identity=record.holder or None,
                lease_duration_seconds=record.lease_duration_s,
                acquire_time=record.acquire_time,
                renew_time=record.renew_time,
                lease_transitions=record.transitions,
            ),
        )

    @staticmethod
    def _record(lease: Any) -> LeaseRecord:
        spec = lease.spec
        return LeaseRecord(
            holder=spec.holder_identity or None if spec else None,
            lease_duration_s=spec.lease_duration_seconds if spec else None,
            acquire_time=spec.acquire_time if spec else None,
            renew_time=spec.renew_time if spec else None,
            transitions=(spec.lease_transitions or 0) if spec else 0,
            annotations=dict(lease.metadata.annotations or {}),
            resource_version=lease.metadata.resource_version,
        )

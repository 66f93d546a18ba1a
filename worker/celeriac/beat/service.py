"""The scheduler loop: while leading, fire every due slot once, record it, sleep until the next one.

One thread runs :meth:`BeatService.run`; the Lease election runs in a second thread, and in
resource mode a third watches the BeatSchedule. Either of them wakes the loop at once (a new
leader, a lost Lease, a changed spec). Per slot the loop checks it still leads (renewed within
the renew deadline), publishes (once per slot on Redis), then records the slot. Transient
Kubernetes or broker errors are logged and retried; they never end the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Protocol

from celeriac.beat import BeatApiError, BeatError
from celeriac.beat.entries import LeaseTimings, ScheduleSpec
from celeriac.beat.leader import LeaderElector
from celeriac.beat.policy import decide
from celeriac.beat.publisher import Publisher
from celeriac.beat.state import EntryRecord, Records, SlotStore
from celeriac.brokers import BrokerConnectionError

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


class Source(Protocol):
    """Where entries come from; ``generation`` changes whenever the spec does."""

    generation: int

    def current(self) -> ScheduleSpec | None:
        """The spec to run now, or None (resource deleted or never valid: fire nothing)."""

    def start(self, wake: Callable[[], None]) -> None:
        """Begin following changes; call ``wake`` after each one."""


class StaticSource:
    """Config mode: the app's ``beat_schedule``, read once."""

    def __init__(self, spec: ScheduleSpec) -> None:
        self.spec = spec
        self.generation = 1

    def current(self) -> ScheduleSpec | None:
        return self.spec

    def start(self, wake: Callable[[], None]) -> None:
        return None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BeatService:
    """Fires the entries of ``source`` through ``publisher`` while ``elector`` (None: standalone) leads."""

    def __init__(
        self,
        *,
        source: Source,
        publisher: Publisher,
        store: SlotStore,
        identity: str,
        timings: LeaseTimings,
        elector: LeaderElector | None = None,
        timings_from_spec: bool = False,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.source = source
        self.publisher = publisher
        self.store = store
        self.identity = identity
        self.timings = timings
        self.elector = elector
        self.timings_from_spec = timings_from_spec
        self.now = now
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._records: Records | None = None
        self._anchors: dict[str, datetime] = {}
        self._leader_since: datetime | None = None
        self._seen_generation = 0
        self._dirty = False
        self._backoff_s = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return (signal handlers call this)."""
        self.stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Run until :meth:`stop`; releases the Lease on the way out."""
        self.source.start(self._wake.set)
        thread = None
        if self.elector is not None:
            self.elector.on_change = lambda _leading: self._wake.set()
            thread = threading.Thread(target=self.elector.run, args=(self.stopping,), name="beat-election",
                                      daemon=True)
            thread.start()
        try:
            while not self.stopping.is_set():
                self._wake.clear()
                try:
                    wait_s = self.step()
                except BeatError as exc:
                    wait_s = self._backoff(f"scheduler step failed: {exc}")
                except Exception:  # a bug or an unexpected client error must not end the scheduler
                    log.exception("unexpected error in the scheduler loop")
                    wait_s = self._backoff("scheduler step failed")
                self._wake.wait(max(wait_s, 0.0))
        finally:
            if thread is not None and self.elector is not None:
                thread.join(timeout=self.timings.retry_period_s + 5)
                self.elector.release()
            log.info("scheduler %s stopped", self.identity)

    def _backoff(self, reason: str) -> float:
        self._backoff_s = min(max(self._backoff_s * 2, 0.5), MAX_BACKOFF_S)
        log.warning("%s; retrying in %.1fs", reason, self._backoff_s)
        return self._backoff_s

    def _leading(self) -> bool:
        return self.elector.is_leading() if self.elector is not None else True

    # -- one pass -----------------------------------------------------------------------------------

    def step(self) -> float:
        """Fire what is due now; returns how long to sleep (unless woken earlier)."""
        spec = self.source.current()
        self._apply_timings(spec)
        idle_s = self.timings.retry_period_s
        if spec is None or not self._leading():
            if self._records is not None:
                log.info("%s is not leading any more; firing stops", self.identity)
                self._records, self._anchors, self._leader_since = None, {}, None
            return idle_s
        if self._records is None:
            self._records = self.store.load()
            self._leader_since = self.now()
            self._anchors = {}
            self._dirty = True
            log.info("%s leads the schedule; resuming from %d recorded entr%s", self.identity,
                     len(self._records), "y" if len(self._records) == 1 else "ies")
        if self.source.generation != self._seen_generation:
            self._seen_generation = self.source.generation
            self._dirty = True
        now = self.now()
        grace_s = self.timings.retry_period_s
        next_runs: dict[str, datetime] = {}
        retry_in_s: float | None = None
        for entry in spec.entries:
            record = self._records.get(entry.name, EntryRecord())
            if spec.suspend or entry.suspend:
                self._anchors[entry.name] = now  # suspended: fire nothing, record nothing, no catch-up later
                continue
            anchor = self._anchors.get(entry.name) or record.last_slot or now
            if record.last_slot is not None and anchor < record.last_slot:
                anchor = record.last_slot
            decision = decide(entry, anchor, now, grace_s)
            if decision.missed:
                log.info("entry %s: %d missed slot(s) not fired (missedRunPolicy %s)", entry.name,
                         decision.missed, entry.missed_run_policy)
            failed = False
            for slot in decision.fire if retry_in_s is None else ():
                if not self._leading():
                    return 0.0  # not recorded: a deposed leader must not write status; the guard covers it
                try:
                    fired = self.publisher.publish(entry, slot)
                except BrokerConnectionError as exc:
                    retry_in_s = self._backoff(f"could not publish entry {entry.name} slot {slot.isoformat()}: {exc}")
                    failed = True
                    break
                except Exception:  # this entry's message cannot be built or sent; the others go on
                    log.exception("entry %s slot %s could not be published; skipping that slot",
                                  entry.name, slot.isoformat())
                    anchor = slot
                    continue
                self._backoff_s = 0.0
                log.info("fired entry %s slot %s as task %s%s", entry.name, slot.isoformat(), fired.task_id,
                         "" if fired.published else " (already published by another leader: not sent again)")
                self._records[entry.name] = EntryRecord(slot, fired.published_at, fired.task_id)
                anchor = slot
                self._dirty = True
            if not failed and retry_in_s is None and decision.latest is not None and decision.latest > anchor:
                anchor = decision.latest
            self._anchors[entry.name] = anchor
            next_runs[entry.name] = entry.schedule.next_after(max(anchor, now))
        if self._dirty:
            self._save(spec, next_runs)
        if retry_in_s is not None:
            return retry_in_s
        wait_s = idle_s
        if next_runs:
            due_in_s = (min(next_runs.values()) - self.now()).total_seconds() + 0.001
            wait_s = min(wait_s, due_in_s)
        return wait_s

    def _save(self, spec: ScheduleSpec, next_runs: dict[str, datetime]) -> None:
        if self._records is None or self._leader_since is None:
            return
        out = {e.name: replace(self._records.get(e.name, EntryRecord()), next_run=next_runs.get(e.name))
               for e in spec.entries}
        try:
            stored = self.store.save(out, self.identity, self._leader_since)
        except BeatApiError as exc:
            log.warning("could not record fired slots (will retry): %s", exc)
            return
        self._dirty = False
        for name, record in stored.items():
            self._records[name] = record
            anchor = self._anchors.get(name)
            if record.last_slot is not None and (anchor is None or anchor < record.last_slot):
                self._anchors[name] = record.last_slot  # another leader recorded a later slot

    def _apply_timings(self, spec: ScheduleSpec | None) -> None:
        if not self.timings_from_spec or spec is None or spec.timings is None or spec.timings == self.timings:
            return
        log.info("leader election timings now lease %.0fs, renew deadline %.0fs, retry %.0fs",
                 spec.timings.lease_duration_s, spec.timings.renew_deadline_s, spec.timings.retry_period_s)
        self.timings = spec.timings
        if self.elector is not None:
            self.elector.timings = spec.timings


"""Where the leader records the last fired slot of each entry, so a new leader resumes from it.

* :class:`MemoryStore` (``--standalone``): process memory, lost on restart; one replica only.
* :class:`LeaseAnnotationStore` (config mode): JSON in the annotation :data:`STATE_ANNOTATION`
  on the election Lease, written by the leader with the Lease's resourceVersion.
* :class:`celeriac.beat.resource.StatusStore` (resource mode): the BeatSchedule's status.

Every store's :meth:`~SlotStore.save` returns the records as stored, merged with what another
writer stored in between (per entry, the later ``last_slot`` wins), so the loop re-decides from
the newest slots after a conflict.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from celeriac.beat.leader import LeaderElector
from celeriac.protocol import parse_iso

log = logging.getLogger(__name__)

STATE_ANNOTATION = "celeriac.io/beat-state"
"""Lease annotation holding config mode's per-entry state:
``{"<entry>": {"lastSlotTime": iso, "lastRunTime": iso, "lastTaskId": id}, ...}``."""


@dataclass(frozen=True)
class EntryRecord:
    """What was last fired for one entry; ``next_run`` is informational (status only)."""

    last_slot: datetime | None = None
    last_run: datetime | None = None
    last_task_id: str | None = None
    next_run: datetime | None = None


Records = dict[str, EntryRecord]


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _when(value: Any) -> datetime | None:
    try:
        return parse_iso(value, "time") if isinstance(value, str) and value else None
    except Exception:
        return None


def record_to_json(name: str, record: EntryRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name}
    for key, value in (("lastSlotTime", iso(record.last_slot)), ("lastRunTime", iso(record.last_run)),
                       ("nextRunTime", iso(record.next_run)), ("lastTaskId", record.last_task_id)):
        if value is not None:
            doc[key] = value
    return doc


def record_from_json(doc: Mapping[str, Any]) -> EntryRecord:
    task_id = doc.get("lastTaskId")
    return EntryRecord(_when(doc.get("lastSlotTime")), _when(doc.get("lastRunTime")),
                       task_id if isinstance(task_id, str) else None, _when(doc.get("nextRunTime")))


def merge(ours: Records, theirs: Records) -> Records:
    """Per entry of ``ours``, the record with the later ``last_slot`` (ours on a tie).

    Entries only ``theirs`` knows are dropped: ``ours`` always names every current entry, so
    an entry removed from the schedule disappears from the record.
    """
    merged: Records = {}
    for name, record in ours.items():
        other = theirs.get(name)
        if other is None or other.last_slot is None or (
            record.last_slot is not None and record.last_slot >= other.last_slot
        ):
            merged[name] = record
        else:
            merged[name] = EntryRecord(other.last_slot, other.last_run, other.last_task_id, record.next_run)
    return merged


class SlotStore(Protocol):
    def load(self) -> Records:
        """The stored records (empty when nothing was recorded yet)."""

    def save(self, records: Records, leader: str, leader_since: datetime) -> Records:
        """Store ``records`` with an optimistic-concurrency write; returns what is stored now."""


class MemoryStore:
    """State in this process only (``--standalone``)."""

    def __init__(self) -> None:
        self.records: Records = {}

    def load(self) -> Records:
        return dict(self.records)

    def save(self, records: Records, leader: str, leader_since: datetime) -> Records:
        self.records = merge(records, self.records)
        return dict(self.records)


class LeaseAnnotationStore:
    """Config mode: the records as JSON in the election Lease's :data:`STATE_ANNOTATION`."""

    def __init__(self, elector: LeaderElector) -> None:
        self.elector = elector

    def load(self) -> Records:
        text = self.elector.read_annotation(STATE_ANNOTATION)
        if not text:
            return {}
        try:
            doc = json.loads(text)
        except ValueError:
            log.warning("ignoring unreadable %s annotation on the Lease: %r", STATE_ANNOTATION, text[:200])
            return {}
        if not isinstance(doc, dict):
            return {}
        return {str(name): record_from_json(value) for name, value in doc.items() if isinstance(value, dict)}

    def save(self, records: Records, leader: str, leader_since: datetime) -> Records:
        merged = merge(records, self.load())
        body = {name: {k: v for k, v in record_to_json(name, r).items() if k not in ("name", "nextRunTime")}
                for name, r in sorted(merged.items())}
        if not self.elector.write_annotation(STATE_ANNOTATION, json.dumps(body, sort_keys=True)):
            log.warning("not leading any more; the last fired slots were not recorded on the Lease")
        return merged

"""The scheduler loop's decisions with a fake clock, an in-memory store and a recording publisher.

Pure logic: no broker and no API server; ``step()`` is called directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celeriac.beat.entries import Entry, LeaseTimings, ScheduleSpec
from celeriac.beat.publisher import Fired, scheduled_task_id
from celeriac.beat.service import BeatService, StaticSource
from celeriac.beat.state import EntryRecord, MemoryStore
from celeriac.brokers import BrokerConnectionError
from celeriac.schedules import Every

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=timezone.utc)
TIMINGS = LeaseTimings(4, 3, 1)


class Now:
    def __init__(self) -> None:
        self.value = T0 + timedelta(milliseconds=100)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, datetime]] = []

    def publish(self, entry: Entry, slot: datetime) -> Fired:
        self.sent.append((entry.name, slot))
        return Fired(entry.name, slot, scheduled_task_id("ns/s", entry.name, slot), True, slot)


class Leadership:
    def __init__(self) -> None:
        self.leading = True

    def is_leading(self) -> bool:
        return self.leading


def tick(name: str = "tick", every_s: int = 1, **fields: object) -> Entry:
    return Entry(name=name, task="t", schedule=Every(timedelta(seconds=every_s)), **fields)  # type: ignore[arg-type]


def service(spec: ScheduleSpec, now: Now, store: MemoryStore | None = None,
            leadership: Leadership | None = None) -> tuple[BeatService, RecordingPublisher, MemoryStore]:
    publisher, store = RecordingPublisher(), store or MemoryStore()
    beat = BeatService(source=StaticSource(spec), publisher=publisher, store=store,  # type: ignore[arg-type]
                       identity="me", timings=TIMINGS, elector=leadership, now=now)  # type: ignore[arg-type]
    return beat, publisher, store


def test_a_new_entry_starts_from_now_and_fires_each_slot_once() -> None:
    now = Now()
    beat, publisher, store = service(ScheduleSpec((tick(),)), now)
    wait_s = beat.step()
    assert publisher.sent == []
    assert wait_s == pytest.approx(0.901)  # sleeps until the next slot
    now.advance(1)
    beat.step()
    beat.step()
    assert publisher.sent == [("tick", T0 + timedelta(seconds=1))]
    assert store.records["tick"].last_slot == T0 + timedelta(seconds=1)
    assert store.records["tick"].next_run == T0 + timedelta(seconds=2)
    assert store.records["tick"].last_task_id == scheduled_task_id("ns/s", "tick", T0 + timedelta(seconds=1))


def test_a_new_leader_resumes_after_the_recorded_slot_per_policy() -> None:
    now = Now()
    store = MemoryStore()
    store.records = {"all": EntryRecord(last_slot=T0 - timedelta(seconds=3)),
                     "once": EntryRecord(last_slot=T0 - timedelta(seconds=3))}
    spec = ScheduleSpec((tick("all", missed_run_policy="runAll"), tick("once")))
    beat, publisher, _ = service(spec, now, store)
    beat.step()
    assert [slot - T0 for name, slot in publisher.sent if name == "all"] == \
        [timedelta(seconds=s) for s in (-2, -1, 0)]
    assert [slot - T0 for name, slot in publisher.sent if name == "once"] == [timedelta(seconds=-1), timedelta(0)]


def test_a_follower_fires_nothing_and_a_lost_leader_stops_at_once() -> None:
    now = Now()
    leadership = Leadership()
    leadership.leading = False
    beat, publisher, _ = service(ScheduleSpec((tick(),)), now, leadership=leadership)
    now.advance(5)
    beat.step()
    assert publisher.sent == []
    leadership.leading = True
    beat.step()
    now.advance(1)
    beat.step()
    assert len(publisher.sent) == 1
    leadership.leading = False
    now.advance(1)
    beat.step()
    assert len(publisher.sent) == 1


def test_suspended_entries_and_schedules_fire_and_record_nothing_and_resume_from_now() -> None:
    now = Now()
    beat, publisher, store = service(ScheduleSpec((tick("on"), tick("off", suspend=True))), now)
    beat.step()
    now.advance(3)
    beat.step()
    assert {name for name, _ in publisher.sent} == {"on"}
    assert store.records["off"].last_slot is None
    beat.source = StaticSource(ScheduleSpec((tick("on"), tick("off")), suspend=True))
    sent = len(publisher.sent)
    now.advance(3)
    beat.step()
    assert len(publisher.sent) == sent
    beat.source = StaticSource(ScheduleSpec((tick("on"), tick("off"))))
    beat.step()
    assert len(publisher.sent) == sent  # resumed: nothing from the suspended period
    now.advance(1)
    beat.step()
    assert sorted(name for name, _ in publisher.sent[sent:]) == ["off", "on"]


def test_a_later_slot_recorded_by_another_leader_moves_the_anchor() -> None:
    now = Now()
    store = MemoryStore()
    beat, publisher, _ = service(ScheduleSpec((tick(),)), now, store)
    beat.step()
    store.records = {"tick": EntryRecord(last_slot=T0 + timedelta(seconds=2))}  # written by an overlapping leader
    now.advance(1)
    beat.step()  # fires slot +1, then the save merges in the later slot
    now.advance(1)
    beat.step()
    assert publisher.sent == [("tick", T0 + timedelta(seconds=1))]


class FlakyPublisher(RecordingPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.broker_down = False

    def publish(self, entry: Entry, slot: datetime) -> Fired:
        if self.broker_down:
            raise BrokerConnectionError("broker unavailable")
        if entry.name == "broken":
            raise TypeError("kwargs are not JSON serializable")
        return super().publish(entry, slot)


def test_broker_outage_backs_off_then_fires_what_is_due_per_policy() -> None:
    now = Now()
    publisher = FlakyPublisher()
    beat = BeatService(source=StaticSource(ScheduleSpec((tick(missed_run_policy="runOnce"),))),
                       publisher=publisher, store=MemoryStore(), identity="me", timings=TIMINGS,  # type: ignore[arg-type]
                       now=now)
    beat.step()
    publisher.broker_down = True
    now.advance(1)
    assert beat.step() == 0.5  # first backoff
    now.advance(4)
    assert beat.step() == 1.0  # doubled
    publisher.broker_down = False
    beat.step()
    assert publisher.sent == [("tick", T0 + timedelta(seconds=4)), ("tick", T0 + timedelta(seconds=5))]


def test_an_entry_that_cannot_be_published_does_not_stop_the_others() -> None:
    now = Now()
    publisher = FlakyPublisher()
    store = MemoryStore()
    beat = BeatService(source=StaticSource(ScheduleSpec((tick("broken"), tick("fine")))), publisher=publisher,
                       store=store, identity="me", timings=TIMINGS, now=now)  # type: ignore[arg-type]
    beat.step()
    now.advance(1)
    beat.step()
    now.advance(1)
    beat.step()
    assert [name for name, _ in publisher.sent] == ["fine", "fine"]
    assert store.records["broken"].last_slot is None

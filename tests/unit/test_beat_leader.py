"""The Lease election state machine with a fake clock and an in-memory Lease (pure logic).

The in-memory Lease keeps resourceVersion semantics (a write with a stale version is a
conflict), which is all the state machine relies on; the real API is covered in tests/k8s.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from celeriac.beat import BeatApiError
from celeriac.beat.entries import LeaseTimings
from celeriac.beat.leader import LeaderElector, LeaseConflict, LeaseRecord

TIMINGS = LeaseTimings(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class MemoryLease:
    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BeatApiError("API server unreachable")

    def get(self) -> LeaseRecord | None:
        self._check()
        return self.record

    def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._store(record)

    def update(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflict("stale resourceVersion")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


def wall() -> datetime:
    return datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lease() -> MemoryLease:
    return MemoryLease()


def candidate(lease: MemoryLease, clock: Clock, name: str) -> LeaderElector:
    return LeaderElector(lease, name, TIMINGS, clock=clock, wall=wall)


def test_first_candidate_creates_the_lease_and_leads(lease: MemoryLease, clock: Clock) -> None:
    a = candidate(lease, clock, "a")
    assert a.try_acquire_or_renew() is True
    assert a.is_leading()
    assert lease.record is not None
    assert (lease.record.holder, lease.record.lease_duration_s, lease.record.transitions) == ("a", 15, 0)


def test_second_candidate_waits_a_full_lease_duration_on_its_own_clock(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    assert b.try_acquire_or_renew() is False  # b first observes the record now
    clock.advance(14.9)
    assert b.try_acquire_or_renew() is False
    clock.advance(0.2)
    assert b.try_acquire_or_renew() is True
    assert lease.record is not None
    assert (lease.record.holder, lease.record.transitions) == ("b", 1)


def test_renewals_keep_other_candidates_out(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    for _ in range(20):
        clock.advance(2)
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
    assert a.is_leading()
    assert not b.is_leading()


def test_remote_renew_time_is_not_trusted_only_record_changes(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    assert lease.record is not None
    lease.record = replace(lease.record, renew_time=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert b.try_acquire_or_renew() is False  # an ancient renewTime does not make it expired


def test_leader_stops_leading_at_the_renew_deadline_before_the_lease_can_expire(
    lease: MemoryLease, clock: Clock
) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    lease.down = True
    clock.advance(9.9)
    assert a.try_acquire_or_renew() is True  # still within the renew deadline
    clock.advance(0.1)
    assert a.is_leading() is False
    assert a.try_acquire_or_renew() is False
    lease.down = False
    clock.advance(4.9)  # 14.9 s after b saw a's last change: b must still wait
    assert b.try_acquire_or_renew() is False
    clock.advance(0.2)
    assert b.try_acquire_or_renew() is True


def test_is_leading_turns_false_by_the_clock_alone(lease: MemoryLease, clock: Clock) -> None:
    a = candidate(lease, clock, "a")
    a.try_acquire_or_renew()
    clock.advance(10)
    assert a.is_leading() is False


def test_conflicting_write_loses_the_race(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    lease.record = LeaseRecord(holder=None, resource_version="0")  # released: both may take it
    real_update = lease.update

    def a_writes_first(record: LeaseRecord) -> LeaseRecord:
        lease.update = real_update  # type: ignore[method-assign]
        assert a.try_acquire_or_renew() is True  # a writes between b's read and b's write
        return real_update(record)

    lease.update = a_writes_first  # type: ignore[method-assign]
    assert b.try_acquire_or_renew() is False
    assert lease.record is not None
    assert lease.record.holder == "a"
    assert a.is_leading()
    assert not b.is_leading()


def test_released_lease_is_taken_at_once(lease: MemoryLease, clock: Clock) -> None:
    changes: list[bool] = []
    a = LeaderElector(lease, "a", TIMINGS, clock=clock, wall=wall, on_change=changes.append)
    b = candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    a.release()
    assert lease.record is not None
    assert lease.record.holder is None
    assert changes == [True, False]
    assert b.try_acquire_or_renew() is True


def test_candidate_polls_faster_than_the_retry_period_and_wakes_at_expiry(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    assert a.next_attempt_in_s() == 2
    assert b.next_attempt_in_s() == 0.5
    clock.advance(14.8)
    assert b.next_attempt_in_s() == pytest.approx(0.201)


def test_annotation_is_written_only_by_the_holder(lease: MemoryLease, clock: Clock) -> None:
    a, b = candidate(lease, clock, "a"), candidate(lease, clock, "b")
    a.try_acquire_or_renew()
    assert a.write_annotation("k", "v") is True
    assert b.write_annotation("k", "other") is False
    assert b.read_annotation("k") == "v"
    assert a.try_acquire_or_renew() is True  # renewing keeps the annotation
    assert lease.record is not None
    assert lease.record.annotations == {"k": "v"}

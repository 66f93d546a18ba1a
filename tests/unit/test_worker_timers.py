"""The engine's timer heap, on a fake clock."""

from __future__ import annotations

from celeriac.worker.timers import Timers


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_due_timers_fire_in_deadline_order_and_others_wait() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    timers.add(5, "five")
    timers.add(1, "one")
    timers.add(1, "one-again")
    timers.add(-3, "overdue")
    fired: list[str] = []
    clock.now = 1.0
    assert timers.fire_due(fired.append) == 3
    assert fired == ["overdue", "one", "one-again"]
    assert timers.seconds_to_next() == 4.0
    assert len(timers) == 1


def test_empty_heap_reports_a_long_wait() -> None:
    assert Timers(FakeClock()).seconds_to_next() == 3600.0

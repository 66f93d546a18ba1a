"""Celery's retry backoff formula: ``min(maximum, factor * 2**retries)`` with optional full jitter."""

from __future__ import annotations

from celeriac.task import backoff_interval


def test_backoff_doubles_per_retry_from_the_factor() -> None:
    assert [backoff_interval(1, n, 600) for n in range(5)] == [1, 2, 4, 8, 16]
    assert [backoff_interval(3, n, 600) for n in range(3)] == [3, 6, 12]


def test_backoff_is_capped_at_the_maximum() -> None:
    assert backoff_interval(1, 20, 600) == 600


def test_full_jitter_draws_uniformly_between_zero_and_the_countdown() -> None:
    drawn: list[int] = []

    def rng(bound: int) -> int:
        drawn.append(bound)
        return bound - 1

    assert backoff_interval(2, 3, 600, full_jitter=True, rng=rng) == 16
    assert drawn == [17]
    assert backoff_interval(2, 3, 600, full_jitter=True, rng=lambda bound: 0) == 0

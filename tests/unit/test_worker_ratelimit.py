"""Rate strings and the token bucket, on a fake clock."""

from __future__ import annotations

import pytest

from celeriac.worker.ratelimit import TokenBucket, parse_rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("10/s", 10.0), ("120/m", 2.0), ("3600/h", 1.0), ("5", 5.0), (2.5, 2.5), (None, None), ("0/s", None), ("", None)],
)
def test_parse_rate_understands_celery_rate_strings(text: object, per_s: float | None) -> None:
    assert parse_rate(text) == per_s  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["10/d", "fast/s", "1/"])
def test_parse_rate_rejects_unknown_units_with_a_fix(bad: str) -> None:
    with pytest.raises(ValueError, match="bad rate limit"):
        parse_rate(bad)


def test_bucket_starts_full_then_spaces_tokens_by_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock)
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_bucket_of_one_per_minute_runs_one_now_and_the_next_a_minute_later() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1 / 60, clock=clock)
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(60.0)
    clock.now += 59.0
    assert bucket.take() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_bucket_never_saves_more_than_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, capacity=2, clock=clock)
    clock.now += 1000
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]

"""WorkerOptions validates what the CLI passes and normalises it."""

from __future__ import annotations

import pytest

from celeriac.worker import WorkerOptions


def test_solo_always_runs_one_task_at_a_time() -> None:
    assert WorkerOptions(pool="solo", concurrency=8).concurrency == 1


def test_queues_become_a_tuple() -> None:
    assert WorkerOptions(queues=["a", "b"]).queues == ("a", "b")  # type: ignore[arg-type]


def test_a_single_queue_string_is_rejected_rather_than_split_into_letters() -> None:
    with pytest.raises(TypeError, match="sequence of names"):
        WorkerOptions(queues="celery")  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("pool", "gevent", "pool must be one of prefork, threads, solo"),
    ("concurrency", 0, "concurrency must be at least 1"),
])
def test_bad_values_say_what_is_allowed(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerOptions(**{field: value})  # type: ignore[arg-type]


def test_defaults_fit_a_pod() -> None:
    options = WorkerOptions()
    assert (options.pool, options.health_port, options.shutdown_timeout_s) == ("prefork", 9808, 25.0)
    assert options.shutdown_timeout_s < 30


def test_mingle_is_off_unless_asked_for_on_the_command_line() -> None:
    from celeriac.cli import build_parser

    parse = build_parser().parse_args
    assert WorkerOptions().mingle is False
    assert parse(["worker"]).mingle is False
    assert parse(["worker", "--mingle"]).mingle is True
    assert parse(["worker", "--mingle", "--without-mingle"]).mingle is False

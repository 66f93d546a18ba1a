"""WorkerOptions validates what the CLI passes and normalises it."""

from __future__ import annotations

import pytest

from celeriac.config import DEFAULTS, Settings
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


def test_from_conf_takes_celery_worker_settings_and_flags_win() -> None:
    conf = Settings({"worker_concurrency": 3, "worker_max_tasks_per_child": 50, "worker_send_task_events": True,
                     "worker_shutdown_timeout_s": 10.0, "worker_prefetch_multiplier": 2})
    options = WorkerOptions.from_conf(conf, concurrency=None, events=None, health_port=None, pool="threads")
    assert (options.concurrency, options.max_tasks_per_child, options.events) == (3, 50, True)
    assert (options.shutdown_timeout_s, options.prefetch_multiplier) == (10.0, 2)
    assert options.health_port is None  # None means "no health server" here, not "unset"
    flagged = WorkerOptions.from_conf(conf, concurrency=1, shutdown_timeout_s=5.0, events=False)
    assert (flagged.concurrency, flagged.shutdown_timeout_s, flagged.events) == (1, 5.0, False)


def test_from_conf_defaults_match_the_documented_settings() -> None:
    options = WorkerOptions.from_conf(Settings())
    assert options.shutdown_timeout_s == DEFAULTS["worker_shutdown_timeout_s"] == 25.0
    assert options.prefetch_multiplier == DEFAULTS["worker_prefetch_multiplier"]
    assert options.events is False

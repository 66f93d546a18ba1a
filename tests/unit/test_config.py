"""Settings: Celery's names, attribute and item access, loading, and environment overrides."""

from __future__ import annotations

import types
from datetime import timedelta

import pytest

from celeriac.config import DEFAULT_URL, Settings, as_seconds
from celeriac.exceptions import ImproperlyConfigured


def test_defaults_match_celery_and_point_at_local_redis() -> None:
    conf = Settings()
    assert (conf.broker_url, conf.result_backend) == (DEFAULT_URL, DEFAULT_URL)
    assert (conf.task_serializer, conf.accept_content, conf.task_default_queue) == ("json", ["json"], "celery")
    assert (conf.worker_prefetch_multiplier, conf.result_expires_s, conf.worker_shutdown_timeout_s) == (4, 86400, 25.0)
    assert conf.accept == frozenset({"application/json"})


def test_attribute_and_item_access_are_the_same_setting() -> None:
    conf = Settings()
    conf.task_acks_late = True
    conf["task_default_queue"] = "work"
    conf.update(result_expires=60)
    assert (conf["task_acks_late"], conf.task_default_queue, conf.result_expires_s) == (True, "work", 60)
    with pytest.raises(AttributeError, match="no setting named 'nope'"):
        _ = conf.nope


def test_environment_overrides_win_over_code(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = Settings({"broker_url": "redis://code:6379/1", "result_backend": "redis://code:6379/2"})
    monkeypatch.setenv("CELERIAC_BROKER_URL", "redis://env:6379/3")
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "redis://env:6379/4")
    assert (conf.broker_url, conf["result_backend"]) == ("redis://env:6379/3", "redis://env:6379/4")


def test_config_from_object_reads_lower_case_names_only() -> None:
    conf = Settings()
    conf.from_object(types.SimpleNamespace(task_default_queue="q1", BROKER_URL="ignored", _private=1))
    assert conf.task_default_queue == "q1"
    assert conf.broker_url == DEFAULT_URL
    assert "_private" not in conf


def test_config_from_object_with_namespace_reads_prefixed_upper_case_names() -> None:
    conf = Settings()
    conf.from_object({"CELERY_TASK_DEFAULT_QUEUE": "q2", "OTHER": 1}, namespace="CELERY")
    assert conf.task_default_queue == "q2"
    assert "other" not in conf


def test_config_from_object_accepts_an_import_path() -> None:
    conf = Settings()
    conf.from_object("datetime:timezone")  # an importable object whose lower-case names become settings
    assert conf["utc"] is not None


def test_durations_accept_seconds_or_timedelta() -> None:
    assert as_seconds(timedelta(hours=1), "x") == 3600
    assert as_seconds(0, "x") is None
    with pytest.raises(ImproperlyConfigured, match="result_expires must be seconds"):
        as_seconds("1h", "result_expires")


def test_mutable_defaults_are_not_shared_between_apps() -> None:
    first, second = Settings(), Settings()
    first.broker_transport_options["visibility_timeout"] = 10
    assert second.broker_transport_options == {}

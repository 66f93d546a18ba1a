"""Operator settings from CELERIAC_OPERATOR_* variables: parsed, validated with messages naming the variable."""

from __future__ import annotations

import pytest

from celeriac_operator.errors import SettingsError
from celeriac_operator.settings import Settings


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.worker_image.startswith("ghcr.io/celeriac/")
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert settings.namespaces == ()


def test_every_kind_of_field_is_read_from_its_variable() -> None:
    settings = Settings.from_env({
        "CELERIAC_OPERATOR_WORKER_IMAGE": "me/worker:2",
        "CELERIAC_OPERATOR_NAMESPACES": "a, b,",
        "CELERIAC_OPERATOR_STANDALONE": "true",
        "CELERIAC_OPERATOR_LIVENESS_PORT": "0",
        "CELERIAC_OPERATOR_RECHECK_INTERVAL_S": "2.5",
        "CELERIAC_OPERATOR_LOG_FORMAT": "json",
    })
    assert settings.worker_image == "me/worker:2"
    assert settings.namespaces == ("a", "b")
    assert settings.standalone is True
    assert settings.liveness_endpoint is None
    assert settings.recheck_interval_s == 2.5
    assert settings.log_format == "json"


@pytest.mark.parametrize(("variable", "value"), [
    ("CELERIAC_OPERATOR_LIVENESS_PORT", "http"),
    ("CELERIAC_OPERATOR_STANDALONE", "maybe"),
    ("CELERIAC_OPERATOR_LOG_FORMAT", "xml"),
    ("CELERIAC_OPERATOR_RECHECK_INTERVAL_S", "0"),
])
def test_unusable_values_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_flags_override_the_environment_but_none_keeps_it() -> None:
    settings = Settings.from_env({"CELERIAC_OPERATOR_PEERING_NAME": "env"})
    assert settings.with_overrides(peering_name=None).peering_name == "env"
    assert settings.with_overrides(peering_name="flag").peering_name == "flag"


def test_default_peering_priority_prefers_the_replica_started_first() -> None:
    settings = Settings.from_env({})
    assert settings.effective_priority(1_000.0) > settings.effective_priority(1_000.001) > 0
    assert Settings.from_env({"CELERIAC_OPERATOR_PRIORITY": "7"}).effective_priority(1_000.0) == 7

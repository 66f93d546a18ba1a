"""Serializers and Celery's exception format, including the safe rebuild of exceptions."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from celeriac.exceptions import (
    ChordError,
    ContentDisallowed,
    SerializationError,
    TaskError,
    TaskRevokedError,
    TimeLimitExceeded,
)
from celeriac.serialization import JSON, PICKLE, accept_set, dict_to_exception, dumps, exception_to_dict, loads


class LocalError(Exception):
    pass


def test_json_uses_kombu_type_markers_for_datetime_decimal_and_uuid() -> None:
    body, content_type, encoding = dumps([datetime(2026, 1, 2, tzinfo=timezone.utc), Decimal("1.5"), uuid.UUID(int=1)])
    assert (content_type, encoding) == (JSON, "utf-8")
    assert body == (
        b'[{"__type__": "datetime", "__value__": "2026-01-02T00:00:00+00:00"}, '
        b'{"__type__": "decimal", "__value__": "1.5"}, '
        b'{"__type__": "uuid", "__value__": {"hex": "00000000000000000000000000000001"}}]'
    )
    assert loads(body, JSON, {JSON}) == [datetime(2026, 1, 2, tzinfo=timezone.utc), Decimal("1.5"), uuid.UUID(int=1)]


def test_json_escapes_non_ascii_like_kombu() -> None:
    assert dumps({"t": "caf\u00e9"})[0] == b'{"t": "caf\\u00e9"}'


def test_pickle_is_refused_unless_accepted() -> None:
    body, content_type, _ = dumps({"a": 1}, "pickle")
    assert content_type == PICKLE
    with pytest.raises(ContentDisallowed):
        loads(body, content_type, accept_set(["json"]))
    assert loads(body, content_type, accept_set(["json", "pickle"])) == {"a": 1}


def test_msgpack_round_trips_when_accepted() -> None:
    body, content_type, encoding = dumps({"a": [1, 2]}, "msgpack")
    assert (content_type, encoding) == ("application/x-msgpack", "binary")
    assert loads(body, content_type, accept_set(["msgpack"])) == {"a": [1, 2]}


def test_unknown_serializer_and_unencodable_values_are_clear_errors() -> None:
    with pytest.raises(SerializationError, match="unknown serializer 'yaml2'"):
        dumps(1, "yaml2")
    with pytest.raises(SerializationError, match="cannot encode object"):
        dumps(object())


def test_exception_is_stored_as_type_args_and_module() -> None:
    assert exception_to_dict(ValueError("bad", 7)) == {"exc_type": "ValueError", "exc_message": ["bad", 7],
                                                       "exc_module": "builtins"}  # fmt: skip
    assert exception_to_dict(LocalError("x"))["exc_type"] == "LocalError"


def test_our_exceptions_with_celery_namesakes_are_stored_under_celery_exceptions() -> None:
    assert exception_to_dict(TaskRevokedError("terminated")) == {
        "exc_type": "TaskRevokedError", "exc_message": ["terminated"], "exc_module": "celery.exceptions",
    }  # fmt: skip
    stored = {"exc_type": "TimeLimitExceeded", "exc_message": [30], "exc_module": "celery.exceptions"}
    rebuilt = dict_to_exception(stored)
    assert isinstance(rebuilt, TimeLimitExceeded)


def test_chord_error_round_trips_as_celerys_and_reads_back_as_ours() -> None:
    stored = exception_to_dict(ChordError("Dependency t1 raised ValueError('x')"))
    assert stored == {
        "exc_type": "ChordError", "exc_message": ["Dependency t1 raised ValueError('x')"],
        "exc_module": "celery.exceptions",
    }  # fmt: skip
    rebuilt = dict_to_exception(stored)
    assert isinstance(rebuilt, ChordError)
    assert str(rebuilt) == "Dependency t1 raised ValueError('x')"


def test_importable_exception_types_are_rebuilt_with_their_args() -> None:
    rebuilt = dict_to_exception({"exc_type": "KeyError", "exc_message": ["k"], "exc_module": "builtins"})
    assert isinstance(rebuilt, KeyError)
    assert rebuilt.args == ("k",)
    local = dict_to_exception(exception_to_dict(LocalError("x", 1)))
    assert type(local) is LocalError


def test_unknown_exception_type_becomes_task_error_naming_it() -> None:
    rebuilt = dict_to_exception({"exc_type": "Boom", "exc_message": ["x"], "exc_module": "nowhere.mod"})
    assert isinstance(rebuilt, TaskError)
    assert (rebuilt.exc_type, rebuilt.exc_module, rebuilt.exc_args) == ("Boom", "nowhere.mod", ("x",))
    assert str(rebuilt) == "nowhere.mod.Boom('x',)"


def test_non_exception_targets_are_never_called() -> None:
    payload = {"exc_type": "system", "exc_message": ["touch /tmp/pwned"], "exc_module": "os"}
    rebuilt = dict_to_exception(payload)
    assert isinstance(rebuilt, TaskError)
    assert rebuilt.exc_type == "system"


def test_task_error_is_stored_under_the_remote_type_it_names() -> None:
    assert exception_to_dict(TaskError("Boom", "nowhere.mod", ["x"])) == {
        "exc_type": "Boom", "exc_message": ["x"], "exc_module": "nowhere.mod",
    }  # fmt: skip


def test_unserializable_exception_args_are_stored_as_their_repr() -> None:
    assert exception_to_dict(ValueError(object))["exc_message"] == ["<class 'object'>"]

"""The JSON codec's shortcuts (no per-object hook, one reused encoder) give exactly kombu's results."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
from kombu.utils import json as kombu_json

from celeriac.serialization import JSON, accept_set, dumps, loads

ACCEPT = accept_set(["json"])


def _outcome(fun: Any, value: Any) -> Any:
    try:
        result = fun(value)
    except Exception as exc:
        return type(exc)
    return result, type(result)


@pytest.mark.parametrize(
    "text",
    [
        '[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]',
        '{"__type__": "datetime", "__value__": "2026-01-02T03:04:05+00:00"}',
        '{"\\u005f_type__": "bytes", "__value__": "spelled with an escape"}',
        '{"__type__": "bytes", "__value__": "an extra key keeps it a dict", "x": 1}',
        '[{"__type__": "no-such-type", "__value__": 1}]',
        '{"text": "caf\\u00e9 \\/ \\n"}',
        '{"__value__": 1}',
    ],
)
def test_json_loads_gives_what_kombu_gives(text: str) -> None:
    data = text.encode("utf-8")
    assert _outcome(lambda raw: loads(raw, JSON, ACCEPT), data) == _outcome(kombu_json.loads, data)


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf[1]", "[1]".encode("utf-16"), b"\xff", b"[1,"])
def test_json_loads_refuses_what_kombu_refuses(data: bytes) -> None:
    expected = _outcome(kombu_json.loads, data)
    assert isinstance(expected, type)
    assert _outcome(lambda raw: loads(raw, JSON, ACCEPT), data) == expected


@pytest.mark.parametrize(
    "value",
    [
        [[1, 2], {}, {"callbacks": None}],
        {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "amount": decimal.Decimal("1.50")},
        {"id": uuid.UUID(int=7), "raw": b"\xff\x00", "text": b"utf-8", "name": "caf\u00e9"},
        float("nan"),
    ],
)
def test_json_dumps_writes_what_kombu_writes(value: Any) -> None:
    assert dumps(value, "json")[0] == kombu_json.dumps(value).encode("utf-8")  # type: ignore[no-untyped-call]

"""Every golden message captured from Celery 5.7 decodes with our decoder and re-encodes identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from celeriac.message import Message
from celeriac.protocol import TaskRequest, build_task_message, decode_task_message
from celeriac.serialization import accept_set
from golden.cases import record_body_bytes

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "golden" / "celery-5.7-messages.json").read_text())
MESSAGES: dict[str, dict[str, Any]] = {
    **{name: record for name, record in GOLDEN["client"].items() if name != "protocol_v1"},
    "worker_retry": GOLDEN["worker"]["worker_retry"],
}
TRANSPORT_PROPERTIES = ("delivery_info", "priority", "body_encoding", "delivery_tag")
ACCEPT = accept_set(["json"])


def as_message(record: dict[str, Any]) -> Message:
    envelope = record["envelope"]
    properties = {k: v for k, v in envelope["properties"].items() if k not in TRANSPORT_PROPERTIES}
    return Message(
        dict(envelope["headers"]),
        properties,
        record_body_bytes(record),
        envelope["content-type"],
        envelope["content-encoding"],
    )


def reencode(request: TaskRequest) -> Message:
    headers = request.headers
    return build_task_message(
        request.id,
        request.task,
        request.args,
        request.kwargs,
        eta=headers["eta"],
        expires=headers["expires"],
        group_id=request.group,
        group_index=request.group_index,
        retries=request.retries,
        time_limit=request.time_limit,
        soft_time_limit=request.soft_time_limit,
        root_id=request.root_id,
        parent_id=request.parent_id,
        shadow=request.shadow,
        callbacks=request.callbacks,
        errbacks=request.errbacks,
        chain=request.chain,
        chord=request.chord,
        origin=request.origin,
        ignore_result=request.ignore_result,
        reply_to=request.reply_to or "",
        headers={k: v for k, v in request.custom_headers.items() if k != "compression"},
        stamped_headers=request.stamped_headers,
        stamps=request.stamps,
        replaced_task_nesting=request.replaced_task_nesting,
        compression="gzip" if "compression" in headers else None,
    )


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_message_reencodes_to_the_same_headers_body_and_properties(name: str) -> None:
    original = as_message(MESSAGES[name])
    request = decode_task_message(original, ACCEPT)
    rebuilt = reencode(request)
    assert list(rebuilt.headers.items()) == list(original.headers.items())
    assert rebuilt.body == original.body
    expected_properties = {k: v for k, v in original.properties.items() if k != "origin"}
    assert list(rebuilt.properties.items())[:3] == list(expected_properties.items())[:3]
    # ``expiration`` is "ms from now": present exactly when the original has it, as digits.
    assert ("expiration" in rebuilt.properties) == ("expiration" in original.properties)
    assert all(str(p.get("expiration", "0")).isdigit() for p in (rebuilt.properties, original.properties))
    assert (rebuilt.content_type, rebuilt.content_encoding) == (original.content_type, original.content_encoding)


def test_golden_typed_args_decode_to_python_types() -> None:
    request = decode_task_message(as_message(MESSAGES["typed_args"]), ACCEPT)
    when, amount, ident = request.args
    assert when.isoformat() == "2026-01-02T03:04:05.600000+00:00"
    assert str(amount) == "1.50"
    assert ident.hex == "12345678123456781234567812345678"
    assert request.kwargs["text"] == "caf\u00e9"


def test_golden_time_limits_decode_as_hard_then_soft() -> None:
    request = decode_task_message(as_message(MESSAGES["time_limits"]), ACCEPT)
    assert (request.time_limit, request.soft_time_limit) == (30, 20)


def test_golden_custom_headers_are_flat_and_reported_as_custom() -> None:
    request = decode_task_message(as_message(MESSAGES["custom_headers"]), ACCEPT)
    assert request.custom_headers == {"trace_id": "abc", "attempt": 1}


def test_golden_link_and_link_error_land_in_callbacks_and_errbacks() -> None:
    linked = decode_task_message(as_message(MESSAGES["link"]), ACCEPT)
    errback = decode_task_message(as_message(MESSAGES["link_error"]), ACCEPT)
    assert linked.callbacks == [
        {"task": "golden.add", "args": [10], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}
    ]
    assert errback.errbacks is not None
    assert errback.errbacks[0]["task"] == "golden.on_error"


def test_golden_worker_retry_carries_same_id_next_retry_count_and_self_as_parent() -> None:
    request = decode_task_message(as_message(MESSAGES["worker_retry"]), ACCEPT)
    assert (request.id, request.retries, request.parent_id, request.root_id) == (
        "00000000-0000-4000-8000-000000000103",
        1,
        "00000000-0000-4000-8000-000000000103",
        "00000000-0000-4000-8000-000000000103",
    )


def test_golden_send_task_of_unregistered_name_has_null_ignore_result() -> None:
    request = decode_task_message(as_message(MESSAGES["send_task_unregistered"]), ACCEPT)
    assert request.ignore_result is None


def test_golden_protocol_1_message_decodes_to_the_same_call() -> None:
    request = decode_task_message(as_message(GOLDEN["client"]["protocol_v1"]), ACCEPT)
    assert (request.protocol, request.task, request.id, request.args, request.kwargs) == (
        1, "golden.add", "00000000-0000-4000-8000-000000000091", (2, 3), {"z": 1},
    )  # fmt: skip
    assert request.eta is not None
    assert request.eta.isoformat() == "2030-01-01T00:00:00+00:00"

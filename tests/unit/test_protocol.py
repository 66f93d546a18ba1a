"""Building and decoding protocol v2 task messages, and rejecting what cannot run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from celeriac.exceptions import ContentDisallowed, MalformedMessage
from celeriac.message import Message
from celeriac.protocol import build_task_message, decode_task_message, origin_nodename, saferepr
from celeriac.serialization import accept_set

ACCEPT = accept_set(["json"])
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
CELERY_HEADER_ORDER = [
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit", "root_id",
    "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting", "stamped_headers",
    "stamps",
]  # fmt: skip


def raw(body: object, headers: dict[str, object] | None = None, content_type: str = "application/json") -> Message:
    encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(headers if headers is not None else {"task": "t.add", "id": "x"}, {}, encoded, content_type)


def test_headers_come_in_celery_order_with_custom_headers_last() -> None:
    message = build_task_message("id-1", "t.add", (1,), {}, headers={"trace": "a"})
    assert list(message.headers) == [*CELERY_HEADER_ORDER, "trace"]
    assert message.headers["root_id"] == "id-1"
    assert message.headers["origin"] == origin_nodename()
    assert list(message.properties) == ["correlation_id", "reply_to", "delivery_mode"]


def test_countdown_becomes_an_absolute_utc_eta() -> None:
    message = build_task_message("id", "t.add", countdown=90, now=NOW)
    assert message.headers["eta"] == "2026-01-01T12:01:30+00:00"


def test_numeric_expires_becomes_absolute_and_sets_expiration_in_ms() -> None:
    message = build_task_message("id", "t.add", expires=60, now=NOW)
    assert message.headers["expires"] == "2026-01-01T12:01:00+00:00"
    assert message.properties["expiration"] == "60000"


def test_datetime_expires_in_the_past_gives_zero_expiration() -> None:
    message = build_task_message("id", "t.add", expires=NOW - timedelta(seconds=5), now=NOW)
    assert message.properties["expiration"] == "0"


def test_time_limits_are_sent_hard_then_soft() -> None:
    assert build_task_message("id", "t", time_limit=30, soft_time_limit=20).headers["timelimit"] == [30, 20]


def test_body_is_args_kwargs_embed_with_python_json_separators() -> None:
    message = build_task_message("id", "t", (2, 3), {"z": 1})
    assert message.body == b'[[2, 3], {"z": 1}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'


def test_argsrepr_is_capped_at_1024_characters() -> None:
    assert len(saferepr("x" * 5000)) == 1024
    assert saferepr((2, 3)) == "(2, 3)"


def test_non_sequence_args_are_refused_when_building() -> None:
    with pytest.raises(TypeError, match="list or tuple"):
        build_task_message("id", "t", "ab")  # type: ignore[arg-type]


def test_built_message_decodes_back_to_the_same_call() -> None:
    message = build_task_message("id-9", "t.add", (1, 2), {"k": "v"}, retries=2, parent_id="p", root_id="r",
                                 group_id="g", group_index=3, countdown=5, now=NOW)  # fmt: skip
    request = decode_task_message(message, ACCEPT)
    assert (request.id, request.task, request.args, request.kwargs) == ("id-9", "t.add", (1, 2), {"k": "v"})
    assert (request.retries, request.parent_id, request.root_id, request.group, request.group_index) == (
        2, "p", "r", "g", 3,
    )  # fmt: skip
    assert request.eta == NOW + timedelta(seconds=5)
    assert request.protocol == 2


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (raw([[1], {}]), "must be \\[args, kwargs, embed\\], got 2"),
        (raw(b"{not json"), "does not decode"),
        (raw([[1], {}, {}], headers={"id": "x", "task": ""}), "no task name"),
        (raw([[1], {}, {}], headers={"task": "t"}), "no task id"),
        (raw(["a", {}, {}]), "args must be a list"),
        (raw([[1], [], {}]), "kwargs must be a mapping"),
        (raw([[1], {}, []]), "embed must be a mapping"),
        (raw([[1], {}, {}], headers={"task": "t", "id": "x", "timelimit": [1]}), "timelimit"),
        (raw([[1], {}, {}], headers={"task": "t", "id": "x", "eta": "tomorrow"}), "eta 'tomorrow'"),
        (raw([[1], {}, {}], headers={"task": "t", "id": "x", "retries": "2"}), "retries"),
        (raw([[1], {}, {"callbacks": "x"}]), "callbacks"),
        (raw(["not", "a", "v1", "dict"], headers={}), "no 'task' header"),
    ],
)
def test_undecodable_messages_raise_malformed_message_with_a_reason(message: Message, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode_task_message(message, ACCEPT)


def test_content_type_outside_accept_content_is_refused_before_decoding() -> None:
    with pytest.raises(ContentDisallowed, match="application/x-python-serialize"):
        decode_task_message(raw(b"\x80\x04.", content_type="application/x-python-serialize"), ACCEPT)


def test_empty_embed_and_naive_eta_are_accepted_as_utc() -> None:
    message = raw([[1], {}, {}], headers={"task": "t", "id": "x", "eta": "2026-01-01T10:00:00"})
    request = decode_task_message(message, ACCEPT)
    assert request.eta == datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
    assert request.callbacks is None


def test_protocol_v1_body_is_decoded() -> None:
    body = {"task": "t.add", "id": "v1", "args": [1, 2], "kwargs": {}, "retries": 1, "eta": None,
            "expires": None, "utc": True, "callbacks": [{"task": "t.cb", "args": []}], "errbacks": None,
            "timelimit": [10, 5], "taskset": "grp", "chord": None}  # fmt: skip
    request = decode_task_message(raw(body, headers={}), ACCEPT)
    assert (request.id, request.task, request.args, request.retries, request.group) == ("v1", "t.add", (1, 2), 1, "grp")
    assert request.timelimit == (10, 5)
    assert request.callbacks == [{"task": "t.cb", "args": []}]
    assert request.protocol == 1


def test_hybrid_message_headers_override_body_fields() -> None:
    body = {"task": "t.old", "id": "h", "args": [1], "kwargs": {}}
    request = decode_task_message(raw(body, headers={"id": "h", "retries": 4}), ACCEPT)
    assert (request.task, request.retries) == ("t.old", 4)


def test_compressed_message_round_trips_with_kombus_compression_header() -> None:
    message = build_task_message("id", "t", (1,), headers={"h": 1}, compression="gzip")
    assert list(message.headers)[-2:] == ["h", "compression"]
    assert message.headers["compression"] == "application/x-gzip"
    assert decode_task_message(message, ACCEPT).args == (1,)


def test_body_that_does_not_decompress_is_malformed() -> None:
    message = raw([[1], {}, {}], headers={"task": "t", "id": "x", "compression": "application/x-gzip"})
    with pytest.raises(MalformedMessage, match="does not decompress"):
        decode_task_message(message, ACCEPT)

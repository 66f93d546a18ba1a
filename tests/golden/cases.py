"""The calls captured as golden messages, written once so that Celery's client and ours
can replay exactly the same call (see capture.py and the tests that read the fixtures).

Task ids are fixed so the captured messages need no id normalisation.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

ADD = "golden.add"
ON_ERROR = "golden.on_error"
RETRY_ONCE = "golden.retry_once"
FAIL = "golden.fail"


def task_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


# name -> (task name, args, kwargs, apply_async options). ``link``/``link_error`` hold
# signature dicts; each side turns them into its own signature objects.
CASES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]] = {
    "args_kwargs": (ADD, (2, 3), {"z": 1}, {}),
    "countdown": (ADD, (1, 1), {}, {"countdown": 30}),
    "expires": (ADD, (1, 1), {}, {"expires": 60}),
    "priority_0": (ADD, (1, 1), {}, {"priority": 0}),
    "priority_5": (ADD, (1, 1), {}, {"priority": 5}),
    "priority_9": (ADD, (1, 1), {}, {"priority": 9}),
    "custom_queue": (ADD, (1, 1), {}, {"queue": "other"}),
    "custom_headers": (ADD, (1, 1), {}, {"headers": {"trace_id": "abc", "attempt": 1}}),
    "time_limits": (ADD, (1, 1), {}, {"time_limit": 30, "soft_time_limit": 20}),
    "link": (ADD, (1, 1), {}, {"link": {"task": ADD, "args": [10], "kwargs": {}, "options": {},
                                         "subtask_type": None, "immutable": False}}),
    "link_error": (ADD, (1, 1), {}, {"link_error": {"task": ON_ERROR, "args": [], "kwargs": {}, "options": {},
                                                     "subtask_type": None, "immutable": False}}),
    "compression_gzip": (ADD, (1, 1), {}, {"compression": "gzip"}),
    "typed_args": (
        ADD,
        (datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc), Decimal("1.50"),
         uuid.UUID("12345678-1234-5678-1234-567812345678")),
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "text": "caf\u00e9"},
        {},
    ),
}  # fmt: skip

for _number, _name in enumerate(CASES, start=1):
    CASES[_name][3]["task_id"] = task_id(_number)

SEND_TASK_UNREGISTERED = ("golden.not_registered", (1,), {}, {"task_id": task_id(90)})
"""``app.send_task`` of a name the client does not know: ``ignore_result`` is null."""

NORMALISED = "<normalised>"
NORMALISED_TIME = "2030-01-01T00:00:00.000000+00:00"
"""Absolute times (eta, expires) are replaced by this fixed, still parseable, value."""
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")


def normalise_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """Replace what differs between runs (origin, oid, tag, absolute times) with a marker."""
    headers = dict(envelope["headers"])
    if "origin" in headers:
        headers["origin"] = NORMALISED
    for key in ("eta", "expires"):
        if headers.get(key) is not None:
            if not ISO_UTC.match(headers[key]):
                raise ValueError(f"{key} {headers[key]!r} is not ISO-8601 UTC with +00:00")
            headers[key] = NORMALISED_TIME
    properties = dict(envelope["properties"])
    properties["reply_to"] = NORMALISED
    properties["delivery_tag"] = NORMALISED
    if "origin" in properties:
        properties["origin"] = NORMALISED
    return {**envelope, "headers": headers, "properties": properties}


def body_record(body: bytes, headers: dict[str, Any]) -> dict[str, str]:
    """The body as stored in the fixtures: text, or base64 when compressed (binary)."""
    if headers.get("compression"):
        return {"body_base64": base64.b64encode(body).decode("ascii")}
    return {"body": body.decode("utf-8")}


def record_body_bytes(record: dict[str, Any]) -> bytes:
    if "body_base64" in record:
        return base64.b64decode(record["body_base64"])
    return str(record["body"]).encode("utf-8")

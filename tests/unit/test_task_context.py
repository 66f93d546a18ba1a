"""``self.request`` built from a decoded message."""

from __future__ import annotations

from celeriac.protocol import build_task_message, decode_task_message
from celeriac.serialization import accept_set
from celeriac.task import Context


def test_custom_headers_become_attributes_but_never_shadow_known_fields() -> None:
    message = build_task_message("id-1", "t", (1,), headers={"trace_id": "abc", "hostname": "spoofed"})
    request = decode_task_message(message, accept_set(["json"]))
    context = Context.from_request(request, {"routing_key": "celery"}, "worker@host")
    assert (context.trace_id, context.hostname, context.headers["hostname"]) == ("abc", "worker@host", "spoofed")  # type: ignore[attr-defined]
    assert (context.id, context.args, context.delivery_info, context.called_directly) == (
        "id-1", (1,), {"routing_key": "celery"}, False,
    )  # fmt: skip

"""Golden: the canvas messages our client writes are Celery 5.7's, key for key, in the same order.

Both clients send the same workflow to the same Redis; every Redis key is then compared
after normalising what is unique per run (uuids, the origin's pid and host).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from celery import canvas as celery_canvas

import celeriac as ours
from celeriac import Celeriac, Signature
from servers import RedisServer

pytestmark = pytest.mark.integration

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ORIGIN = re.compile(r"gen\d+@[^\"]+")


def normalise(text: str) -> str:
    return ORIGIN.sub("gen<pid>@<host>", UUID.sub("<uuid>", text))


def snapshot(server: RedisServer) -> dict[str, Any]:
    """Every key: lists as decoded envelopes (body decoded), strings with their TTL."""
    client = server.client()
    found: dict[str, Any] = {}
    for key in sorted(client.keys()):
        if key.startswith(b"_kombu.binding"):
            continue  # the broker's queue declarations, not the canvas (covered by the broker tests)
        kind = client.type(key)
        name = normalise(key.decode())
        if kind == b"list":
            items = []
            for raw in client.lrange(key, 0, -1):
                envelope = json.loads(raw)
                envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
                if envelope["headers"]["task"].startswith("celery."):
                    # Display-only reprs of the builtin map/starmap kwargs: Celery's shows tuples.
                    envelope["headers"]["kwargsrepr"] = "<display only>"
                items.append(json.loads(normalise(json.dumps(envelope))))
            found[name] = items
        elif kind == b"string":
            found[name] = (client.get(key), client.ttl(key))
        elif kind == b"set":
            found[name] = sorted(client.smembers(key))
    return found


Workflow = Callable[[Callable[..., Any], Any], Any]
"""``(s, canvas_module) -> result``: builds and sends one workflow with either runtime's canvas."""

WORKFLOWS: dict[str, Workflow] = {
    "chain": lambda s, c: c.chain(s("add", 1, 1), s("add", 2), s("add", 3)).apply_async(),
    "group": lambda s, c: c.group(s("add", 1, 1), s("add", 2, 2)).apply_async(),
    "chord": lambda s, c: c.chord([s("add", 1, 1), s("add", 2, 2)], s("tsum")).apply_async(),
    "chain_with_group_then_task": lambda s, c: c.chain(
        s("add", 1, 1), c.group(s("add", 1), s("add", 2)), s("tsum")
    ).apply_async(),
    "chain_group_chain": lambda s, c: c.chain(
        s("add", 1, 1), c.group(c.chain(s("add", 1), s("add", 2)), s("add", 3))
    ).apply_async(),
    "chord_with_chain_body": lambda s, c: c.chord(
        [s("add", 1, 1), s("add", 2, 2)], c.chain(s("tsum"), s("add", 10))
    ).apply_async(),
    "group_leading_a_chain": lambda s, c: c.chain(c.group(s("add", 1, 1), s("add", 2, 2)), s("tsum")).apply_async(),
    "chunks": lambda s, c: c.chunks(s("add"), [(1, 2), (3, 4), (5, 6)], 2).apply_async(),
    "map": lambda s, c: c.xmap(s("tsum"), [[1, 2], [3]]).apply_async(),
    "starmap": lambda s, c: c.xstarmap(s("add"), [(1, 2), (3, 4)]).apply_async(),
    "link_error": lambda s, c: s("add", 1, 2).on_error(s("tsum", [1]).set(immutable=True)).apply_async(),
}


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_canvas_messages_match_celery(redis_server: RedisServer, workflow: str) -> None:
    celery_app = Celery("golden_canvas", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    our_app = Celeriac("golden_canvas", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    try:
        celery_signature = celery_app.signature
        WORKFLOWS[workflow](lambda name, *args: celery_signature(f"t.{name}", args), _Bound(celery_canvas, celery_app))
        theirs = snapshot(redis_server)
        redis_server.client().flushdb()
        WORKFLOWS[workflow](lambda name, *args: Signature(f"t.{name}", args, app=our_app), _Bound(ours, our_app))
        assert snapshot(redis_server) == theirs
    finally:
        our_app.close()
        celery_app.close()


class _Bound:
    """A canvas module whose constructors get ``app=`` (Celery's chunks/xmap need it outside a task)."""

    def __init__(self, module: Any, app: Any) -> None:
        self._module = module
        self._app = app

    def __getattr__(self, name: str) -> Any:
        made = getattr(self._module, name)
        return lambda *args, **kwargs: made(*args, app=self._app, **kwargs)

"""Our client publishes, for the same call, exactly the Redis list element Celery 5.7 writes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac, signature
from golden.cases import CASES, SEND_TASK_UNREGISTERED, body_record, normalise_envelope
from servers import RedisServer

pytestmark = pytest.mark.integration

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "golden" / "celery-5.7-messages.json").read_text())


def make_app(url: str) -> Celeriac:
    app = Celeriac("golden", broker=url, backend=url)

    @app.task(name="golden.add")
    def add(x: Any, y: Any, *rest: Any, **kwargs: Any) -> Any:
        return x + y

    @app.task(name="golden.on_error")
    def on_error(*args: Any) -> None:
        return None

    return app


def only_message(client: Any) -> dict[str, Any]:
    lists = [key for key in client.keys("*") if client.type(key) == b"list"]
    assert len(lists) == 1
    assert client.llen(lists[0]) == 1
    envelope = json.loads(client.lindex(lists[0], 0))
    body = base64.b64decode(envelope.pop("body"))
    return {
        "list_key": lists[0].decode("utf-8"),
        "envelope": normalise_envelope(envelope),
        **body_record(body, envelope["headers"]),
    }


def test_apply_async_writes_the_same_list_element_as_celery_for_every_golden_case(redis_server: RedisServer) -> None:
    app = make_app(redis_server.url)
    client = redis_server.client()
    mismatched = []
    for name, (task_name, args, kwargs, case_options) in CASES.items():
        client.flushdb()
        options = dict(case_options)
        for key in ("link", "link_error"):
            if key in options:
                options[key] = signature(options[key], app=app)
        app.tasks[task_name].apply_async(args, kwargs, **options)
        ours = only_message(client)
        expected = GOLDEN["client"][name]
        if json.dumps(ours) != json.dumps(expected):  # key order matters too
            mismatched.append((name, ours, expected))
    assert mismatched == []
    app.close()


def test_send_task_of_an_unregistered_name_writes_what_celery_writes(redis_server: RedisServer) -> None:
    app = make_app(redis_server.url)
    task_name, args, kwargs, options = SEND_TASK_UNREGISTERED
    app.send_task(task_name, args, kwargs, **options)
    assert json.dumps(only_message(redis_server.client())) == json.dumps(GOLDEN["client"]["send_task_unregistered"])
    app.close()


def test_publishing_declares_the_queue_binding_like_kombu(redis_server: RedisServer) -> None:
    app = make_app(redis_server.url)
    app.tasks["golden.add"].apply_async((1, 2), queue="other")
    client = redis_server.client()
    assert client.smembers("_kombu.binding.other") == {b"other\x06\x16\x06\x16other"}
    app.close()

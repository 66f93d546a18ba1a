"""The Redis chord counter against real Redis: Celery 5.7's keys, dedupe, claim and cleanup.

Header members are joined by calling :func:`celeriac.chord.on_chord_part_return` directly
with decoded requests, as the worker's trace does; the body lands in the real broker queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from celery import Celery

from celeriac import Celeriac, Signature, states
from celeriac.chord_counter import ChordError, on_chord_part_return, set_chord_size
from celeriac.protocol import TaskRequest
from servers import RedisServer

pytestmark = pytest.mark.integration

GID = "g-1"


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celeriac]:
    app = Celeriac("counter", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    yield app
    app.close()


def member(index: int, body: Signature, task_id: str | None = None) -> TaskRequest:
    return TaskRequest(id=task_id or f"t-{index}", task="canvas.echo", args=(index,), kwargs={},
                       chord=dict(body), group=GID, group_index=index, root_id="root")  # fmt: skip


def body_messages(redis_server: RedisServer) -> list[list[object]]:
    """The body calls pushed to the default queue, as their decoded ``[args, kwargs, embed]``."""
    import base64

    raw = redis_server.client().lrange("celery", 0, -1)
    return [json.loads(base64.b64decode(json.loads(item)["body"])) for item in raw]


def make_body(app: Celeriac) -> Signature:
    body = Signature("canvas.tsum", app=app)
    body.freeze(group_id=GID)
    return body


def test_producer_deletes_the_claim_and_writes_the_size_with_the_result_expiry(
    app: Celeriac, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.set(f"celery-taskset-meta-{GID}.c", "done")
    set_chord_size(app.backend, GID, 3)
    assert client.get(f"celery-taskset-meta-{GID}.c") is None
    assert client.get(f"celery-taskset-meta-{GID}.s") == b"3"
    assert client.ttl(f"celery-taskset-meta-{GID}.s") == 86400


def test_last_member_sends_the_body_once_with_results_ordered_by_group_index(
    app: Celeriac, redis_server: RedisServer
) -> None:
    body = make_body(app)
    set_chord_size(app.backend, GID, 3)
    for index in (2, 0, 1):
        on_chord_part_return(app, member(index, body), states.SUCCESS, index * 10)
    assert [message[0] for message in body_messages(redis_server)] == [[[0, 10, 20]]]
    client = redis_server.client()
    assert client.get(f"celery-taskset-meta-{GID}.c") == b"done"
    assert client.ttl(f"celery-taskset-meta-{GID}.c") == 300
    assert [client.exists(f"celery-taskset-meta-{GID}.{suffix}") for suffix in "jsdt"] == [0, 0, 0, 0]


def test_a_redelivered_member_counts_once_and_late_duplicates_do_nothing(
    app: Celeriac, redis_server: RedisServer
) -> None:
    body = make_body(app)
    set_chord_size(app.backend, GID, 2)
    on_chord_part_return(app, member(0, body), states.SUCCESS, "a")
    on_chord_part_return(app, member(0, body), states.SUCCESS, "a-again")
    assert body_messages(redis_server) == []
    assert redis_server.client().zcard(f"celery-taskset-meta-{GID}.j") == 1
    on_chord_part_return(app, member(1, body), states.SUCCESS, "b")
    on_chord_part_return(app, member(1, body), states.SUCCESS, "b-late")
    assert [message[0] for message in body_messages(redis_server)] == [[["a", "b"]]]


def test_member_json_is_celerys_and_celery_reads_our_entries(app: Celeriac, redis_server: RedisServer) -> None:
    body = make_body(app)
    set_chord_size(app.backend, GID, 2)
    on_chord_part_return(app, member(0, body), states.SUCCESS, {"x": 1})
    [raw] = redis_server.client().zrange(f"celery-taskset-meta-{GID}.j", 0, -1)
    assert json.loads(raw) == [1, "t-0", "SUCCESS", {"x": 1}]
    celery_app = Celery("reader", backend=redis_server.url, set_as_current=False)
    try:
        assert celery_app.backend._unpack_chord_result(raw, celery_app.backend.decode) == {"x": 1}
    finally:
        celery_app.close()


def test_failed_member_fails_the_body_with_chord_error_and_sends_nothing(
    app: Celeriac, redis_server: RedisServer
) -> None:
    body = make_body(app)
    set_chord_size(app.backend, GID, 2)
    on_chord_part_return(app, member(0, body), states.FAILURE, ValueError("bad"))
    on_chord_part_return(app, member(1, body), states.SUCCESS, 1)
    assert body_messages(redis_server) == []
    meta = app.backend.get_meta(str(body.id))
    assert meta["status"] == states.FAILURE
    assert meta["result"] == {
        "exc_type": "ChordError",
        "exc_message": ["Dependency t-0 raised ValueError('bad')"],
        "exc_module": "celery.exceptions",
    }
    assert redis_server.client().exists(f"celery-taskset-meta-{GID}.s") == 0
    assert str(ChordError("x")) == "x"


def test_unordered_mode_uses_a_list_like_celery(redis_server: RedisServer) -> None:
    app = Celeriac("counter", broker=redis_server.url, backend=redis_server.url, set_as_current=False,
                   result_backend_transport_options={"result_chord_ordered": False})  # fmt: skip
    try:
        body = make_body(app)
        set_chord_size(app.backend, GID, 2)
        on_chord_part_return(app, member(0, body), states.SUCCESS, 1)
        assert redis_server.client().type(f"celery-taskset-meta-{GID}.j") == b"list"
        on_chord_part_return(app, member(1, body), states.SUCCESS, 2)
        assert [message[0] for message in body_messages(redis_server)] == [[[1, 2]]]
    finally:
        app.close()

"""Mixed-runtime canvas: one chord's tasks split between a real Celery 5.7 worker and ours.

Tasks are routed per queue: ``theirs`` is consumed by Celery's worker, ``ours`` by ours.
``canvas.where`` records which runtime ran it, so the split is proven, not assumed.
"""

from __future__ import annotations

import gc
import subprocess
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from canvas_support import start_celery_worker, start_our_worker
from celery import Celery

from celeriac import Celeriac, ChordError, Signature, states
from celeriac.canvas import chain, chord, group
from servers import RedisServer, stop_process, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server(module_redis_server: RedisServer) -> Iterator[RedisServer]:
    """The module's Redis; Celery's leftovers are collected before it stops (its fixture tears down after)."""
    yield module_redis_server
    collect_celery_leftovers()


def collect_celery_leftovers() -> None:
    """Collect Celery's client objects while Redis still runs (its results unsubscribe on collection).

    Celery's client pools (and the tests' throwaway ``server.client()`` connections) leave sockets
    for the collector to close; that ResourceWarning is about test clients, not the code under test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def workers(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    logs = tmp_path_factory.mktemp("logs")
    celery_log = logs / "celery.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_our_worker(server.url, logs / "ours.log", queues="ours"))
        procs.append(start_celery_worker(server.url, celery_log, queues="theirs"))
        wait_until(lambda: b"ready." in celery_log.read_bytes(), 60, f"celery worker (log {celery_log})")
        yield
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.fixture
def client(server: RedisServer, workers: None) -> Iterator[Celeriac]:
    server.client().delete("ran", "errbacks")
    app = Celeriac("interop_client", broker=server.url, backend=server.url, set_as_current=False)
    yield app
    app.close()


def on(app: Celeriac, queue: str, name: str, *args: Any) -> Signature:
    return Signature(f"canvas.{name}", args, options={"queue": queue}, app=app)


def ran(server: RedisServer) -> list[str]:
    return sorted(item.decode() for item in server.client().lrange("ran", 0, -1))


def assert_chord_cleaned(server: RedisServer, group_id: str) -> None:
    client = server.client()
    wait_until(lambda: client.get(f"celery-taskset-meta-{group_id}.c") == b"done", TIMEOUT_S, "chord cleanup")
    assert [client.exists(f"celery-taskset-meta-{group_id}.{suffix}") for suffix in "jsdt"] == [0, 0, 0, 0]


def test_header_on_celery_body_on_ours(client: Celeriac, server: RedisServer) -> None:
    result = chord([on(client, "theirs", "where", i) for i in range(4)], on(client, "ours", "where")).apply_async()
    assert result.get(timeout=TIMEOUT_S) == [0, 1, 2, 3]
    assert ran(server) == ["celeriac:[0, 1, 2, 3]", "celery:0", "celery:1", "celery:2", "celery:3"]
    assert result.parent is not None
    assert_chord_cleaned(server, result.parent.id)


def test_header_on_ours_body_on_celery(client: Celeriac, server: RedisServer) -> None:
    result = chord([on(client, "ours", "where", i) for i in range(4)], on(client, "theirs", "where")).apply_async()
    assert result.get(timeout=TIMEOUT_S) == [0, 1, 2, 3]
    assert ran(server) == ["celeriac:0", "celeriac:1", "celeriac:2", "celeriac:3", "celery:[0, 1, 2, 3]"]


def test_header_split_across_both_runtimes_runs_the_body_once_with_ordered_results(
    client: Celeriac, server: RedisServer
) -> None:
    header = [on(client, "theirs" if i % 2 else "ours", "where", i) for i in range(10)]
    result = chord(header, on(client, "ours", "where")).apply_async()
    assert result.get(timeout=TIMEOUT_S) == list(range(10))
    assert_chord_cleaned(server, result.parent.id if result.parent is not None else "")
    bodies = [entry for entry in ran(server) if entry.endswith("]")]
    assert bodies == ["celeriac:[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    assert sum(1 for entry in ran(server) if entry.startswith("celery:")) == 5


def test_header_failure_on_celery_fails_our_body_with_chord_error(client: Celeriac, server: RedisServer) -> None:
    failing = on(client, "theirs", "fail", "x")
    failing.freeze()
    body = on(client, "ours", "tsum")
    body.link_error(on(client, "ours", "errback"))
    result = chord([on(client, "ours", "add", 1, 1), failing], body).apply_async()
    with pytest.raises(ChordError) as raised:
        result.get(timeout=TIMEOUT_S)
    assert f"Dependency {failing.id} raised" in str(raised.value)
    assert result.state == states.FAILURE
    redis_client = server.client()
    wait_until(lambda: redis_client.lrange("errbacks", 0, -1) == [result.id.encode()], TIMEOUT_S, "body errback")


@pytest.fixture
def celery_client(server: RedisServer, workers: None) -> Iterator[Celery]:
    server.client().delete("ran")
    app = Celery("interop_celery_client", broker=server.url, backend=server.url, set_as_current=False)
    yield app
    collect_celery_leftovers()
    app.backend.result_consumer.stop()  # Celery's close() leaves the result subscriber open
    app.backend.client.connection_pool.disconnect()
    app.close()


def test_celery_client_nested_canvas_runs_on_our_worker(celery_client: Celery) -> None:
    """chain ⊃ group ⊃ chain and a chord whose body is a chain, sent by Celery's client, run by ours."""
    from celery import chain as celery_chain
    from celery import chord as celery_chord
    from celery import group as celery_group

    def s(name: str, *args: Any) -> Any:
        return celery_client.signature(f"canvas.{name}", args, queue="ours")

    nested = celery_chain(s("add", 1, 1), celery_group(celery_chain(s("add", 1), s("add", 2)), s("add", 3)))
    assert nested.apply_async().get(timeout=TIMEOUT_S) == [5, 5]
    upgraded = celery_chain(s("add", 1, 1), celery_group(s("add", 1), s("add", 2)), s("tsum"))
    assert upgraded.apply_async().get(timeout=TIMEOUT_S) == 7
    body_chain = celery_chord([s("add", 1, 1), s("add", 2, 2)], celery_chain(s("tsum"), s("add", 10)))
    assert body_chain.apply_async().get(timeout=TIMEOUT_S) == 16
    from celery.canvas import chunks as celery_chunks

    chunked = celery_chunks(s("add"), [(1, 2), (3, 4), (5, 6)], 2, app=celery_client).apply_async(queue="ours")
    assert chunked.get(timeout=TIMEOUT_S) == [[3, 7], [11]]


def test_our_nested_canvas_runs_on_a_celery_worker(client: Celeriac) -> None:
    def s(name: str, *args: Any) -> Signature:
        return on(client, "theirs", name, *args)

    assert chain(s("add", 1, 1), group(s("add", 1) | s("add", 2), s("add", 3))).apply_async().get(
        timeout=TIMEOUT_S
    ) == [5, 5]
    assert (s("add", 1, 1) | group(s("add", 1), s("add", 2)) | s("tsum")).apply_async().get(timeout=TIMEOUT_S) == 7
    assert chord([s("add", 1, 1), s("add", 2, 2)], s("tsum") | s("add", 10)).apply_async().get(timeout=TIMEOUT_S) == 16


def parked_body(server: RedisServer) -> dict[str, Any]:
    """The one chord body message waiting in the unconsumed ``parked`` queue, decoded and normalised."""
    import base64
    import json
    import re

    client = server.client()
    wait_until(lambda: client.llen("parked") == 1, TIMEOUT_S, "the chord body in the parked queue")
    envelope = json.loads(client.lpop("parked") or b"{}")
    envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", json.dumps(envelope))
    normalised: dict[str, Any] = json.loads(re.sub(r'"origin": "[^"]*"', '"origin": "<node>"', text))
    return normalised


def test_chord_body_message_sent_by_our_worker_matches_the_one_celery_sends(
    client: Celeriac, server: RedisServer
) -> None:
    bodies = []
    for queue in ("theirs", "ours"):
        header = [on(client, queue, "echo", i) for i in range(3)]
        chord(header, on(client, "parked", "tsum")).apply_async()
        bodies.append(parked_body(server))
    theirs, ours = bodies
    assert ours["body"] == theirs["body"] == [[[0, 1, 2]], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                                 "chord": None}]  # fmt: skip
    assert ours == theirs


def test_two_hundred_member_chord_split_across_runtimes_runs_its_body_exactly_once(
    client: Celeriac, server: RedisServer
) -> None:
    header = [on(client, "theirs" if i % 2 else "ours", "echo", i) for i in range(200)]
    result = chord(header, on(client, "ours", "where")).apply_async()
    assert result.get(timeout=60) == list(range(200))
    assert result.parent is not None
    assert_chord_cleaned(server, result.parent.id)
    assert ran(server) == [f"celeriac:{list(range(200))}"]

"""Canvas primitives end to end: our client, real Redis, our worker (threads pool, 2 slots)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from canvas_support import start_our_worker

from celeriac import Celeriac, ChordError, GroupResult, Signature, states
from celeriac.canvas import chain, chord, group
from servers import RedisServer, stop_process, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server(module_redis_server: RedisServer) -> RedisServer:
    return module_redis_server


@pytest.fixture(scope="module")
def worker(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("ours") / "worker.log"
    proc = start_our_worker(server.url, log)
    try:
        yield proc
    finally:
        stop_process(proc)


@pytest.fixture
def client(server: RedisServer, worker: Any) -> Iterator[Celeriac]:
    app = Celeriac("canvas_client", broker=server.url, backend=server.url, set_as_current=False)
    yield app
    app.close()


def sig(app: Celeriac, name: str, *args: Any, immutable: bool = False) -> Signature:
    return Signature(f"canvas.{name}", args, app=app, immutable=immutable)


def test_chain_passes_each_result_as_the_first_argument_of_the_next(client: Celeriac) -> None:
    result = (sig(client, "add", 1, 1) | sig(client, "add", 2) | sig(client, "add", 3)).apply_async()
    assert result.get(timeout=TIMEOUT_S) == 7
    assert result.parent is not None
    assert result.parent.get(timeout=TIMEOUT_S) == 4


def test_immutable_step_ignores_the_previous_result(client: Celeriac) -> None:
    result = chain(sig(client, "add", 1, 1), sig(client, "add", 10, 5, immutable=True)).apply_async()
    assert result.get(timeout=TIMEOUT_S) == 15


def test_group_results_come_back_in_order_and_save_restore_roundtrips(client: Celeriac) -> None:
    result = group(sig(client, "add", i, i) for i in range(6)).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=TIMEOUT_S) == [0, 2, 4, 6, 8, 10]
    assert (result.ready(), result.successful(), result.failed(), result.completed_count()) == (True, True, False, 6)
    assert [member.get(timeout=TIMEOUT_S) for member in result] == [0, 2, 4, 6, 8, 10]
    result.save()
    restored = GroupResult.restore(result.id, app=client)
    assert restored is not None
    assert [member.id for member in restored.results] == [member.id for member in result.results]
    assert restored.join(timeout=TIMEOUT_S) == [0, 2, 4, 6, 8, 10]


def test_chord_body_gets_ordered_header_results_and_cleans_up_keys(client: Celeriac, server: RedisServer) -> None:
    result = chord([sig(client, "echo", i) for i in range(5)])(sig(client, "echo"))
    assert result.get(timeout=TIMEOUT_S) == [0, 1, 2, 3, 4]
    assert result.parent is not None
    gid = result.parent.id
    redis_client = server.client()
    wait_until(lambda: redis_client.get(f"celery-taskset-meta-{gid}.c") == b"done", TIMEOUT_S, "chord cleanup")
    assert [redis_client.exists(f"celery-taskset-meta-{gid}.{s}") for s in "jsdt"] == [0, 0, 0, 0]


def test_chunks_map_and_starmap_run_on_the_builtin_tasks(client: Celeriac) -> None:
    add = sig(client, "add")
    from celeriac import chunks, xmap, xstarmap

    assert chunks(add, [(1, 2), (3, 4), (5, 6)], 2, app=client).apply_async().get(timeout=TIMEOUT_S) == [[3, 7], [11]]
    assert xmap(sig(client, "tsum"), [[1, 2], [3]], app=client).apply_async().get(timeout=TIMEOUT_S) == [3, 3]
    assert xstarmap(add, [(1, 2), (3, 4)], app=client).apply_async().get(timeout=TIMEOUT_S) == [3, 7]


def test_chain_containing_a_group_containing_a_chain(client: Celeriac) -> None:
    inner = sig(client, "add", 1) | sig(client, "add", 2)
    result = chain(sig(client, "add", 1, 1), group(inner, sig(client, "add", 3))).apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=TIMEOUT_S) == [5, 5]


def test_group_inside_a_chain_becomes_a_chord_with_the_next_step_as_body(client: Celeriac) -> None:
    workflow = sig(client, "add", 1, 1) | group(sig(client, "add", 1), sig(client, "add", 2)) | sig(client, "tsum")
    assert workflow.apply_async().get(timeout=TIMEOUT_S) == 7


def test_chord_whose_body_is_a_chain(client: Celeriac) -> None:
    body = sig(client, "tsum") | sig(client, "add", 10)
    result = chord([sig(client, "add", 1, 1), sig(client, "add", 2, 2)], body).apply_async()
    assert result.get(timeout=TIMEOUT_S) == 16


def test_failing_header_fails_the_chord_naming_the_task_and_runs_the_body_errback(
    client: Celeriac, server: RedisServer
) -> None:
    failing = sig(client, "fail", "boom")
    failing.freeze()
    body = sig(client, "tsum")
    body.link_error(sig(client, "errback"))
    result = chord([sig(client, "add", 1, 1), failing], body).apply_async()
    with pytest.raises(ChordError) as raised:
        result.get(timeout=TIMEOUT_S)
    assert f"Dependency {failing.id} raised ValueError" in str(raised.value)
    assert result.state == states.FAILURE
    redis_client = server.client()
    wait_until(lambda: result.id.encode() in redis_client.lrange("errbacks", 0, -1), TIMEOUT_S, "body errback")
    assert redis_client.lrange("errbacks", 0, -1).count(result.id.encode()) == 1


def test_link_error_runs_when_the_task_fails(client: Celeriac, server: RedisServer) -> None:
    failing = sig(client, "fail", 1)
    failing.link_error(sig(client, "errback"))
    result = failing.apply_async()
    with pytest.raises(ValueError, match="failed with"):
        result.get(timeout=TIMEOUT_S)
    redis_client = server.client()
    wait_until(lambda: result.id.encode() in redis_client.lrange("errbacks", 0, -1), TIMEOUT_S, "errback")


def test_failing_chain_step_stops_the_chain_and_marks_the_rest_failed(client: Celeriac) -> None:
    workflow = sig(client, "add", 1, 1) | sig(client, "fail") | sig(client, "add", 1) | sig(client, "add", 2)
    result = workflow.apply_async()
    with pytest.raises(ValueError, match=r"failed with \[2\]"):
        result.get(timeout=TIMEOUT_S)
    steps = []
    node: Any = result
    while node is not None:
        steps.append(node)
        node = node.parent
    assert [step.state for step in steps] == [states.FAILURE, states.FAILURE, states.FAILURE, states.SUCCESS]
    assert steps[-1].get(timeout=TIMEOUT_S) == 2


def test_thousand_task_group(client: Celeriac) -> None:
    result = group(sig(client, "add", i, 1) for i in range(1000)).apply_async()
    assert result.get(timeout=60) == [i + 1 for i in range(1000)]
    assert result.completed_count() == 1000


def test_thousand_task_chord(client: Celeriac, server: RedisServer) -> None:
    result = chord([sig(client, "echo", i) for i in range(1000)], sig(client, "tsum")).apply_async()
    assert result.get(timeout=60) == sum(range(1000))


def test_expired_header_member_is_revoked_and_fails_the_chord(client: Celeriac) -> None:
    expired = sig(client, "add", 1, 1).set(expires=datetime.now(timezone.utc) - timedelta(seconds=5))
    expired.freeze()
    result = chord([sig(client, "add", 2, 2), expired], sig(client, "tsum")).apply_async()
    with pytest.raises(ChordError) as raised:
        result.get(timeout=TIMEOUT_S)
    assert f"Dependency {expired.id} raised" in str(raised.value)
    assert client.AsyncResult(str(expired.id)).state == states.REVOKED


def test_group_sent_inside_a_task_is_listed_in_its_children(client: Celeriac) -> None:
    result = sig(client, "fanout", 3).apply_async()
    assert result.get(timeout=TIMEOUT_S) == 3
    [children] = client.backend.get_meta(result.id)["children"]
    (group_id, parent), members = children
    assert parent is None
    assert len(members) == 3
    restored = GroupResult(group_id, [client.AsyncResult(member[0][0]) for member in members], app=client)
    assert restored.get(timeout=TIMEOUT_S) == [0, 1, 2]


def test_chord_header_member_that_is_a_chain_joins_with_its_last_step(client: Celeriac) -> None:
    header = [sig(client, "add", 1, 1) | sig(client, "add", 1), sig(client, "add", 5, 5)]
    assert chord(header, sig(client, "echo")).apply_async().get(timeout=TIMEOUT_S) == [3, 10]


def test_chord_body_that_is_a_group_gives_every_member_the_results(client: Celeriac) -> None:
    result = chord([sig(client, "echo", 1), sig(client, "echo", 2)], group(sig(client, "echo"), sig(client, "tsum")))
    sent = result.apply_async()
    assert isinstance(sent, GroupResult)
    assert sent.get(timeout=TIMEOUT_S) == [[1, 2], 3]

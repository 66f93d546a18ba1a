"""The Redis result backend: Celery's documents and keys, the SUCCESS guard, expiry, pub/sub wake-up."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from celeriac import AsyncResult, Celeriac, GroupResult, states
from celeriac.backend import RedisBackend
from celeriac.exceptions import TimeoutError
from golden.cases import NORMALISED
from servers import RedisServer, wait_until

pytestmark = pytest.mark.integration

GOLDEN = json.loads((Path(__file__).resolve().parent.parent / "golden" / "celery-5.7-messages.json").read_text())


def normalised(raw: bytes) -> dict[str, Any]:
    meta = json.loads(raw)
    meta["date_done"] = NORMALISED if meta["date_done"] is not None else None
    meta["traceback"] = NORMALISED if meta["traceback"] is not None else None
    return meta


def first_message(pubsub: Any) -> Any:
    """The first message on ``pubsub`` within about 5 s, or None."""
    message = None
    for _ in range(50):
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            break
    return message


def test_success_and_failure_documents_match_celerys_byte_layout(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    client = redis_server.client()
    success, failure = GOLDEN["worker"]["result_success"], GOLDEN["worker"]["result_failure"]
    backend.store_result(success["task_id"], 5, states.SUCCESS)
    backend.store_result(failure["task_id"], ValueError("boom", 42), states.FAILURE, traceback="Traceback...")
    for golden in (success, failure):
        assert json.dumps(normalised(client.get(f"celery-task-meta-{golden['task_id']}"))) == json.dumps(golden)


def test_a_stored_success_is_never_overwritten(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    backend.store_result("t1", 1, states.SUCCESS)
    backend.store_result("t1", ValueError("late duplicate"), states.FAILURE)
    backend.store_result("t1", None, states.STARTED)
    assert (backend.get_meta("t1")["status"], backend.get_meta("t1")["result"]) == (states.SUCCESS, 1)


def test_results_expire_after_result_expires_and_can_be_kept_forever(redis_server: RedisServer) -> None:
    client = redis_server.client()
    RedisBackend(redis_server.url, expires_s=100).store_result("short", 1, states.SUCCESS)
    RedisBackend(redis_server.url, expires_s=None).store_result("forever", 1, states.SUCCESS)
    assert client.ttl("celery-task-meta-short") == 100
    assert client.ttl("celery-task-meta-forever") == -1


def test_every_write_is_published_on_the_key_channel(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("celery-task-meta-pub")
    backend.store_result("pub", {"a": 1}, states.SUCCESS)
    message = first_message(pubsub)
    assert message is not None
    assert json.loads(message["data"])["result"] == {"a": 1}
    pubsub.close()


def test_get_is_woken_by_pubsub_when_the_result_arrives_later(redis_server: RedisServer) -> None:
    app = Celeriac("wake", backend=redis_server.url, set_as_current=False)
    client = redis_server.client()
    outcome: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: outcome.update(value=AsyncResult("late", app=app).get(timeout=30)))
    waiter.start()
    wait_until(lambda: client.pubsub_numsub("celery-task-meta-late")[0][1] == 1, 10, "the waiter to subscribe")
    app.backend.store_result("late", "here", states.SUCCESS)
    waiter.join(timeout=30)
    assert outcome == {"value": "here"}
    app.close()


def test_get_returns_at_once_for_a_result_stored_before_it_subscribed(redis_server: RedisServer) -> None:
    app = Celeriac("early", backend=redis_server.url, set_as_current=False)
    app.backend.store_result("early", [1, 2], states.SUCCESS)
    assert app.AsyncResult("early").get(timeout=1) == [1, 2]
    app.close()


def test_get_times_out_on_a_pending_task(redis_server: RedisServer) -> None:
    app = Celeriac("pending", backend=redis_server.url, set_as_current=False)
    result = app.AsyncResult("never")
    with pytest.raises(TimeoutError, match=r"not ready after 0\.2s"):
        result.get(timeout=0.2)
    assert (result.state, result.ready(), result.result) == (states.PENDING, False, None)
    app.close()


def test_forget_deletes_the_result(redis_server: RedisServer) -> None:
    app = Celeriac("forget", backend=redis_server.url, set_as_current=False)
    app.backend.store_result("gone", 1, states.SUCCESS)
    result = app.AsyncResult("gone")
    assert result.get(timeout=1) == 1
    result.forget()
    assert (result.state, redis_server.client().exists("celery-task-meta-gone")) == (states.PENDING, 0)
    app.close()


def test_global_keyprefix_is_applied_with_celerys_underscore_rule(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, transport_options={"global_keyprefix": "rp"})
    backend.store_result("p1", 1, states.SUCCESS)
    assert redis_server.client().exists("rp_celery-task-meta-p1") == 1
    assert backend.get_meta("p1")["result"] == 1


def test_store_many_writes_every_result_in_one_pipeline_sending_the_script_once(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    client = redis_server.client()
    client.config_resetstat()
    backend.store_many([(f"m{n}", n, states.SUCCESS, None, None) for n in range(3)])
    client.script_flush()  # as after a restart: the next batch must load the script again
    backend.store_many([(f"m{n}", n, states.SUCCESS, None, None) for n in range(3, 6)])
    assert [backend.get_meta(f"m{n}")["result"] for n in range(6)] == list(range(6))
    stats = client.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] == 2
    assert stats["cmdstat_evalsha"]["calls"] == 6
    assert "cmdstat_eval" not in stats


def test_custom_states_are_stored_and_read_with_their_meta(redis_server: RedisServer) -> None:
    app = Celeriac("custom", backend=redis_server.url, set_as_current=False)

    @app.task(bind=True)
    def progress(self: Any) -> None:
        self.update_state(task_id="c1", state="PROGRESS", meta={"done": 3})

    progress()
    result = app.AsyncResult("c1")
    assert (result.state, result.info, result.ready()) == ("PROGRESS", {"done": 3}, False)
    app.close()


def test_revoke_broadcasts_the_same_pidbox_message_as_celery(redis_server: RedisServer) -> None:
    app = Celeriac("rev", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("/0.celery.pidbox")
    app.AsyncResult("abc-2").revoke(terminate=True, signal="SIGKILL")
    message = first_message(pubsub)
    assert message is not None
    envelope = json.loads(message["data"])
    body = json.loads(base64.b64decode(envelope.pop("body")))
    assert body == {
        "method": "revoke",
        "arguments": {"task_id": "abc-2", "terminate": True, "signal": "SIGKILL"},
        "destination": None,
        "pattern": None,
        "matcher": None,
    }
    assert list(envelope) == ["content-encoding", "content-type", "headers", "properties"]
    assert list(envelope["headers"]) == ["clock", "expires"]
    assert list(envelope["properties"]) == [
        "delivery_mode", "delivery_info", "priority", "body_encoding", "delivery_tag",
    ]  # fmt: skip
    assert envelope["properties"]["delivery_info"] == {"exchange": "celery.pidbox", "routing_key": ""}
    pubsub.close()
    app.close()


def test_waits_in_one_thread_reuse_one_subscriber_connection(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    writer = RedisBackend(redis_server.url)
    client = redis_server.client()
    ids = ["w1", "w2", "w3"]
    seen: list[Any] = []
    writer.get_meta("warm-up")  # the writer's own connection exists before we count
    waiter = threading.Thread(target=lambda: seen.extend(backend.wait_for(i, 30)["result"] for i in ids))
    waiter.start()
    subscribers = []
    for task_id in ids:
        wait_until(lambda t=task_id: client.pubsub_numsub(f"celery-task-meta-{t}")[0][1] == 1, 10, "a subscription")
        # The connections holding subscriptions (not a count of all connections, which a
        # fallback GET opening its pooled connection a moment later would change).
        subscribers.append([c["id"] for c in client.client_list() if int(c["sub"]) > 0])
        # A late publish on an earlier key's channel must not be taken for this key's result.
        if task_id != "w1":
            client.publish("celery-task-meta-w1", json.dumps({"status": "FAILURE", "result": None, "task_id": "w1"}))
        writer.store_result(task_id, task_id, states.SUCCESS)
    waiter.join(timeout=30)
    assert seen == ids
    assert len(subscribers[0]) == 1
    assert subscribers[0] == subscribers[1] == subscribers[2]


CELERY_GROUP_SCRIPT = """
import json, sys
from celery import Celery
from celery.result import GroupResult
app = Celery("groups", broker=sys.argv[1], backend=sys.argv[1])
theirs = GroupResult.restore("ours", app=app)
celerys = app.GroupResult("celerys", [app.AsyncResult("g-1"), app.AsyncResult("g-0")])
celerys.save()
print(json.dumps({"ids": [r.id for r in theirs.results], "values": [r.result for r in theirs.results]}))
"""


def test_group_results_saved_by_either_side_are_restored_by_the_other(redis_server: RedisServer) -> None:
    app = Celeriac("groups", backend=redis_server.url, set_as_current=False)
    for n in range(2):
        app.backend.store_result(f"g-{n}", n * 10, states.SUCCESS)
    GroupResult("ours", [app.AsyncResult("g-0"), app.AsyncResult("g-1")], app=app).save()
    # Celery's side runs in its own process: its result objects keep subscriptions alive past a test.
    celery_side = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CELERY_GROUP_SCRIPT, redis_server.url],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(celery_side.stdout) == {"ids": ["g-0", "g-1"], "values": [0, 10]}
    restored = GroupResult.restore("celerys", app=app)
    assert restored is not None
    assert [r.id for r in restored.results] == ["g-1", "g-0"]
    assert (restored.get(timeout=5), restored.ready(), restored.completed_count()) == ([10, 0], True, 2)
    assert GroupResult.restore("missing", app=app) is None
    app.close()


def test_results_are_stored_again_after_redis_restarts(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    backend.store_result("before", 1, states.SUCCESS)
    redis_server.restart()  # the server forgets its script cache: NOSCRIPT must be recovered from
    backend.store_result("after", 2, states.SUCCESS)
    with backend.client.pipeline(transaction=False) as pipe:
        backend.store_result("piped", 3, states.SUCCESS, pipe=pipe)
        pipe.execute()
    assert [backend.get_meta(t)["result"] for t in ("after", "piped")] == [2, 3]


def test_get_survives_a_redis_restart_while_waiting(redis_server: RedisServer) -> None:
    app = Celeriac("restart", backend=redis_server.url, set_as_current=False)
    client = redis_server.client()
    outcome: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: outcome.update(value=app.AsyncResult("r1").get(timeout=60)))
    waiter.start()
    subscribed = lambda: client.pubsub_numsub("celery-task-meta-r1")[0][1] == 1  # noqa: E731
    wait_until(subscribed, 10, "the waiter to subscribe")
    redis_server.restart()
    wait_until(subscribed, 30, "the waiter to subscribe again after the restart")
    RedisBackend(redis_server.url).store_result("r1", "made it", states.SUCCESS)
    waiter.join(timeout=60)
    assert outcome == {"value": "made it"}
    app.close()


def test_extended_result_document_matches_celerys(redis_server: RedisServer) -> None:
    golden = GOLDEN["worker"]["result_extended"]
    request = types.SimpleNamespace(
        task="golden.add", args=(2, 3), kwargs={"z": 1}, hostname="celery@host", retries=0,
        delivery_info={"routing_key": "celery"}, group=None, parent_id=None,
    )  # fmt: skip
    RedisBackend(redis_server.url, extended=True).store_result(golden["task_id"], 5, states.SUCCESS, request=request)
    meta = json.loads(redis_server.client().get(f"celery-task-meta-{golden['task_id']}"))
    meta["date_done"] = meta["worker"] = NORMALISED
    assert json.dumps(meta) == json.dumps(golden)


def test_msgpack_results_round_trip_when_accepted(redis_server: RedisServer) -> None:
    app = Celeriac("mp", backend=redis_server.url, set_as_current=False, result_serializer="msgpack",
                   accept_content=["json", "msgpack"])  # fmt: skip
    app.backend.store_result("mp-1", {"values": [1, 2]}, states.SUCCESS)
    app.backend.store_result("mp-2", KeyError("k"), states.FAILURE)
    assert app.AsyncResult("mp-1").get(timeout=5) == {"values": [1, 2]}
    with pytest.raises(KeyError):
        app.AsyncResult("mp-2").get(timeout=5)
    app.close()

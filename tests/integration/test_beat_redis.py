"""``celeriac beat`` against a real Redis: publish-once, envelopes, a real worker and a Celery peer."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cli_support import CELERIAC, cli_env, start_celery_peer

from celeriac import Celeriac, keys
from celeriac.beat.entries import Entry
from celeriac.beat.publisher import Publisher, scheduled_task_id
from celeriac.protocol import SCHEDULED_HEADER
from celeriac.schedules import Every
from servers import RedisServer, stop_process, wait_until

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
ENTRY = Entry(name="tick", task="beat.tick", schedule=Every(timedelta(seconds=1)), queue="beat-q",
              args=(1,), kwargs={"k": "v"}, priority=None, headers={"team": "ops"})

BEAT_APP = """
import os
import redis
from celeriac import Celeriac

url = os.environ["BEAT_TEST_REDIS"]
app = Celeriac("beatapp", broker=url, backend=url)
app.conf.beat_schedule = {
    "tick": {"task": "beat.tick", "schedule": 1.0, "options": {"queue": "beat-q"}, "missed_run_policy": "runAll"},
}
_redis = redis.Redis.from_url(url)


@app.task(name="beat.tick", bind=True)
def tick(self, *args, **kwargs):
    _redis.rpush("beat:executions", self.request.id)
    return self.request.id
"""

CELERY_PEER = """
import redis
from celery import Celery

url = {url!r}
app = Celery("peer", broker=url, backend=url)
app.conf.task_default_queue = "beat-q"  # the peer consumes the beat entry's queue
_redis = redis.Redis.from_url(url)


@app.task(name="beat.tick", bind=True)
def tick(self, *args, **kwargs):
    _redis.rpush("beat:executions", self.request.id)
    return [list(args), kwargs, self.request.get("celeriac_scheduled")]
"""


def app_for(redis_server: RedisServer) -> Celeriac:
    return Celeriac("client", broker=redis_server.url, backend=redis_server.url)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop_process(proc)


def spawn(tmp_path: Path, redis_server: RedisServer, name: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**cli_env(tmp_path), "BEAT_TEST_REDIS": redis_server.url}
    with (tmp_path / f"{name}.log").open("ab") as log:
        return subprocess.Popen([CELERIAC, *args], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def executions(rclient: Any) -> list[str]:
    return [raw.decode() for raw in rclient.lrange("beat:executions", 0, -1)]


def test_publish_once_publishes_a_slot_exactly_once_under_concurrent_callers(
    redis_server: RedisServer, rclient: Any
) -> None:
    apps = [app_for(redis_server) for _ in range(8)]
    barrier = threading.Barrier(len(apps))
    outcomes: list[bool] = []

    def fire(app: Celeriac) -> None:
        publisher = Publisher(app, "ns/sched")
        barrier.wait()
        outcomes.append(publisher.publish(ENTRY, SLOT).published)

    threads = [threading.Thread(target=fire, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for app in apps:
        app.close()
    assert sorted(outcomes) == [False] * 7 + [True]
    assert rclient.llen("beat-q") == 1
    task_id = scheduled_task_id("ns/sched", "tick", SLOT)
    assert rclient.get(keys.beat_fired(task_id)) == b"1"
    assert 3600 - 5 <= rclient.ttl(keys.beat_fired(task_id)) <= 3600


def test_publish_once_writes_the_same_envelope_and_declaration_as_the_normal_publish(
    redis_server: RedisServer, rclient: Any
) -> None:
    app = app_for(redis_server)
    publisher = Publisher(app, "ns/sched")
    message, queue, priority = publisher.message(ENTRY, SLOT)
    app.broker.publish(message, queue="normal-q", priority=priority)
    normal_bindings = (rclient.smembers(keys.binding_key("normal-q")),
                       rclient.smembers(keys.binding_permanent_key("normal-q")))
    publisher._publish_once_redis(app.broker, message, queue, priority, 1.0)
    app.close()
    normal = json.loads(rclient.lindex("normal-q", 0))
    once = json.loads(rclient.lindex("beat-q", 0))
    for doc in (normal, once):
        doc["properties"].pop("delivery_tag")
        doc["properties"]["delivery_info"].pop("routing_key")
    assert once == normal
    assert list(once) == list(normal)  # same key order: the element is byte-compatible with kombu's
    assert (rclient.smembers(keys.binding_key("beat-q")), rclient.smembers(keys.binding_permanent_key("beat-q"))) \
        == tuple({m.replace(b"normal-q", b"beat-q") for m in members} for members in normal_bindings)
    headers = once["headers"]
    assert headers["id"] == scheduled_task_id("ns/sched", "tick", SLOT)
    assert headers[SCHEDULED_HEADER] == {"schedule": "ns/sched", "entry": "tick", "slot": "2026-06-01T12:00:00+00:00"}
    assert headers["team"] == "ops"


def test_standalone_beat_and_a_real_worker_run_a_one_second_entry_with_deterministic_ids(
    redis_server: RedisServer, rclient: Any, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "beatapp.py").write_text(BEAT_APP)
    processes.append(spawn(tmp_path, redis_server, "worker", "-A", "beatapp", "worker", "-Q", "beat-q",
                           "-P", "solo", "--health-port", "off", "-l", "info"))
    beat = spawn(tmp_path, redis_server, "beat", "-A", "beatapp", "beat", "--standalone")
    processes.append(beat)
    wait_until(lambda: len(executions(rclient)) >= 3, 60, "three executions of the 1 s entry")
    beat.send_signal(signal.SIGTERM)
    assert beat.wait(timeout=30) == 0
    wait_until(lambda: rclient.llen("beat-q") == 0 and rclient.hlen("unacked") == 0, 30, "the queue to drain")
    ran = executions(rclient)
    fired = [line for line in (tmp_path / "beat.log").read_text().splitlines() if "fired entry tick" in line]
    slots = [datetime.fromisoformat(line.split(" slot ")[1].split(" ")[0]) for line in fired]
    assert ran == [scheduled_task_id("default/celeriac-beat", "tick", slot) for slot in slots]
    assert len(set(ran)) == len(ran)
    assert all(later - earlier == timedelta(seconds=1) for earlier, later in itertools.pairwise(slots))


def test_worker_acks_without_running_a_scheduled_duplicate_whose_id_already_succeeded(
    redis_server: RedisServer, rclient: Any, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "beatapp.py").write_text(BEAT_APP)
    processes.append(spawn(tmp_path, redis_server, "worker", "-A", "beatapp", "worker", "-Q", "beat-q",
                           "-P", "solo", "--health-port", "off", "-l", "info"))
    app = app_for(redis_server)
    message, queue, priority = Publisher(app, "ns/sched").message(ENTRY, SLOT)
    task_id = str(message.headers["id"])
    app.broker.publish(message, queue=queue, priority=priority)  # bypasses the guard: a failover duplicate
    wait_until(lambda: app.AsyncResult(task_id).state == "SUCCESS", 60, "the first copy to succeed")
    app.broker.publish(message, queue=queue, priority=priority)
    wait_until(lambda: "already succeeded" in (tmp_path / "worker.log").read_text(), 60, "the duplicate skip")
    wait_until(lambda: rclient.llen("beat-q") == 0 and rclient.hlen("unacked") == 0, 30, "the queue to drain")
    assert executions(rclient) == [task_id]
    # an ordinary message (no scheduled header) is never looked up: the same id runs again
    plain = type(message)({k: v for k, v in message.headers.items() if k != SCHEDULED_HEADER},
                          message.properties, message.body, message.content_type, message.content_encoding)
    app.broker.publish(plain, queue=queue, priority=priority)
    wait_until(lambda: len(executions(rclient)) == 2, 60, "the plain copy to run")
    app.close()


def test_celery_worker_runs_a_beat_message(
    redis_server: RedisServer, rclient: Any, tmp_path: Path
) -> None:
    (tmp_path / "peer.py").write_text(CELERY_PEER.format(url=redis_server.url))
    app = app_for(redis_server)
    fired = Publisher(app, "ns/sched").publish(ENTRY, SLOT)
    assert fired.published
    with (tmp_path / "celery.log").open("wb") as log:
        peer = start_celery_peer(tmp_path, "peer", "celery@peer", log)
    try:
        wait_until(lambda: app.AsyncResult(fired.task_id).state == "SUCCESS" or peer.poll() is not None, 60,
                   "the Celery worker to run the scheduled message")
        assert peer.poll() is None, (tmp_path / "celery.log").read_text()
        result = app.AsyncResult(fired.task_id).get(timeout=10)
    finally:
        stop_process(peer)
        app.close()
    assert result == [[1], {"k": "v"}, {"schedule": "ns/sched", "entry": "tick", "slot": "2026-06-01T12:00:00+00:00"}]
    assert executions(rclient) == [fired.task_id]

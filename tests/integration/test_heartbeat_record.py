"""The heartbeat record in a real Redis: written, expiring, removed on stop, read back by the operator."""

from __future__ import annotations

import json
import time

import pytest

from celeriac import keys
from celeriac.worker.heartbeat import Heartbeat, read_workers
from celeriac.worker.state import WorkerState
from servers import RedisServer

pytestmark = pytest.mark.integration


def busy_state(hostname: str, pod_name: str | None = None) -> WorkerState:
    state = WorkerState(hostname, ["celery", "emails"], 8, pod_name=pod_name)
    state.on_received({"id": "a", "name": "proj.add"})
    state.on_received({"id": "b", "name": "proj.add"})
    state.on_started("a", 1)
    state.set_prefetched(1)
    return state


def test_beat_writes_the_documented_record_with_a_ttl(redis_server: RedisServer) -> None:
    client = redis_server.client(decode_responses=True)
    state = busy_state("celery@w1", pod_name="pod-1")
    before = time.time()
    Heartbeat(client, state, interval_s=2.0).beat()
    record = client.hgetall(keys.worker_record("celery@w1"))
    assert set(record) == {"worker_id", "hostname", "pod_name", "pid", "queues", "concurrency", "active",
                           "reserved", "prefetched", "processed", "last_seen", "started_at", "interval_s"}
    assert record["worker_id"] == "celery@w1"
    assert record["pod_name"] == "pod-1"
    assert json.loads(record["queues"]) == ["celery", "emails"]
    assert record["concurrency"] == "8"
    assert record["active"] == "1"
    assert record["reserved"] == "1"
    assert record["prefetched"] == "1"
    assert record["processed"] == "0"
    assert record["interval_s"] == "2.0"
    assert float(record["last_seen"]) >= before
    assert client.ttl(keys.worker_record("celery@w1")) == 6
    assert client.zscore(keys.workers_index(), "celery@w1") == float(record["last_seen"])


def test_thread_writes_pod_name_from_env_and_stop_removes_the_record(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAME", "worker-pod-xyz")
    client = redis_server.client(decode_responses=True)
    heartbeat = Heartbeat(client, busy_state("celery@w2"), interval_s=0.2, prefix="pfx:")
    heartbeat.start()
    key = keys.worker_record("celery@w2", "pfx:")
    deadline = time.monotonic() + 10
    while not client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.hget(key, "pod_name") == "worker-pod-xyz"
    heartbeat.stop()
    assert client.exists(key) == 0
    assert client.zcard(keys.workers_index("pfx:")) == 0


def test_read_workers_returns_fresh_records_and_skips_stale_ones(redis_server: RedisServer) -> None:
    client = redis_server.client()
    Heartbeat(client, busy_state("celery@busy"), interval_s=5.0).beat()
    Heartbeat(client, WorkerState("celery@idle", ["celery"], 2), interval_s=5.0).beat()
    # A worker whose last write was long ago: its index entry remains, its record is stale.
    client.hset(keys.worker_record("celery@old"), mapping={"last_seen": "1000.0", "active": "3"})
    client.zadd(keys.workers_index(), {"celery@old": 1000.0, "celery@gone": time.time()})
    now_s = time.time()
    records = read_workers(client, "", now_s=now_s, stale_after_s=30.0)
    assert [record.worker_id for record in records] == ["celery@busy", "celery@idle"]
    busy, idle = records
    assert busy.busy is True
    assert (busy.active, busy.reserved, busy.prefetched, busy.concurrency) == (1, 1, 1, 8)
    assert busy.queues == ("celery", "emails")
    assert idle.busy is False
    assert idle.pod_name is None
    assert idle.queues == ("celery",)
    assert read_workers(client, "", now_s=now_s + 60.0, stale_after_s=30.0) == []


def test_heartbeat_survives_a_redis_restart(redis_server: RedisServer) -> None:
    client = redis_server.client(decode_responses=True)
    heartbeat = Heartbeat(client, busy_state("celery@w3"), interval_s=0.1)
    heartbeat.start()
    key = keys.worker_record("celery@w3")
    redis_server.restart()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if client.exists(key):
                break
        except Exception:  # the connection is re-established on the next command
            pass
        time.sleep(0.05)
    assert client.exists(key) == 1
    heartbeat.stop()
    assert client.exists(key) == 0

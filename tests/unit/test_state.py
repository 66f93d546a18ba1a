"""WorkerState: the one record health, metrics, heartbeats, events and control read."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from celeriac.worker.state import REVOKED_LIMIT, WorkerState


def make_state() -> WorkerState:
    return WorkerState("w1@host", ["celery", "other"], 4, pod_name="pod-a")


def info(task_id: str, name: str = "proj.add", **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id, "name": name, "args": [2, 3], "kwargs": {"z": 1},
        "delivery_info": {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False},
        "acknowledged": True, **extra,
    }


def sample(state: WorkerState, name: str, labels: dict[str, str] | None = None) -> float | None:
    return state.metrics.registry.get_sample_value(name, labels or {})


def test_started_task_is_listed_as_celery_inspect_active_entry() -> None:
    state = make_state()
    state.on_received(info("t1"))
    state.on_started("t1", 4242)
    [entry] = state.active_requests()
    assert set(entry) == {"id", "name", "args", "kwargs", "type", "hostname", "time_start",
                          "acknowledged", "delivery_info", "worker_pid"}
    assert entry["id"] == "t1"
    assert entry["name"] == "proj.add"
    assert entry["type"] == "proj.add"
    assert entry["args"] == [2, 3]
    assert entry["kwargs"] == {"z": 1}
    assert entry["hostname"] == "w1@host"
    assert entry["worker_pid"] == 4242
    assert entry["acknowledged"] is True
    assert isinstance(entry["time_start"], float)
    assert entry["delivery_info"] == {"exchange": "", "routing_key": "celery", "priority": 0,
                                      "redelivered": False}


def test_received_task_is_reserved_not_active_until_started() -> None:
    state = make_state()
    state.on_received(info("t1"))
    assert state.active_requests() == []
    assert [entry["id"] for entry in state.reserved_requests()] == ["t1"]
    state.on_started("t1", 1)
    assert state.reserved_requests() == []
    assert state.active_count() == 1


def test_outcomes_are_counted_by_task_name() -> None:
    state = make_state()
    for task_id in ("a", "b", "c", "d"):
        state.on_received(info(task_id, name="proj.add" if task_id != "d" else "proj.mul"))
        state.on_started(task_id, 1)
    state.on_finished("a", "proj.add", "SUCCESS", 0.5)
    state.on_finished("b", "proj.add", "FAILURE", 0.25)
    state.on_retried("c", "proj.add")
    state.on_finished("c", "proj.add", "RETRY", 0.125)
    state.on_finished("d", "proj.mul", "SUCCESS", 2.0)
    add = {"task": "proj.add"}
    assert sample(state, "celeriac_tasks_received_total", add) == 3.0
    assert sample(state, "celeriac_tasks_succeeded_total", add) == 1.0
    assert sample(state, "celeriac_tasks_failed_total", add) == 1.0
    assert sample(state, "celeriac_tasks_retried_total", add) == 1.0
    assert sample(state, "celeriac_task_runtime_seconds_count", add) == 3.0
    assert sample(state, "celeriac_task_runtime_seconds_sum", add) == 0.875
    assert sample(state, "celeriac_tasks_succeeded_total", {"task": "proj.mul"}) == 1.0
    assert sample(state, "celeriac_tasks_active") == 0.0
    assert state.processed_count() == 4


def test_finishing_twice_counts_once() -> None:
    state = make_state()
    state.on_received(info("a"))
    state.on_started("a", 1)
    state.on_finished("a", "proj.add", "SUCCESS", 0.1)
    state.on_finished("a", "proj.add", "SUCCESS", 0.1)
    assert sample(state, "celeriac_tasks_succeeded_total", {"task": "proj.add"}) == 1.0
    assert state.processed_count() == 1


def test_active_and_prefetched_gauges_follow_the_engine() -> None:
    state = make_state()
    state.set_prefetched(7)
    state.on_received(info("a"))
    state.on_received(info("b"))
    state.on_started("a", 1)
    state.on_started("b", 2)
    assert sample(state, "celeriac_tasks_prefetched") == 7.0
    assert sample(state, "celeriac_tasks_active") == 2.0
    state.on_finished("a", "proj.add", "SUCCESS", 0.1)
    assert sample(state, "celeriac_tasks_active") == 1.0


def test_each_state_has_its_own_registry() -> None:
    one, two = make_state(), make_state()
    one.on_received(info("a"))
    assert sample(one, "celeriac_tasks_received_total", {"task": "proj.add"}) == 1.0
    assert sample(two, "celeriac_tasks_received_total", {"task": "proj.add"}) is None


def test_revoke_remembers_ids_and_returns_the_running_ones() -> None:
    state = make_state()
    state.on_received(info("running"))
    state.on_started("running", 1)
    assert state.revoke(["running", "queued"], terminate=True, signal="SIGKILL") == ["running"]
    assert state.revoke("single") == []
    assert state.is_revoked("running")
    assert state.is_revoked("queued")
    assert state.is_revoked("single")
    assert not state.is_revoked("other")
    assert state.revoked_ids() == ["running", "queued", "single"]


def test_revoked_ids_are_bounded_oldest_first() -> None:
    state = make_state()
    state.revoke([f"id{i}" for i in range(REVOKED_LIMIT + 2)])
    assert len(state.revoked_ids()) == REVOKED_LIMIT
    assert not state.is_revoked("id0")
    assert not state.is_revoked("id1")
    assert state.is_revoked("id2")


def test_liveness_follows_ticks_and_readiness_follows_the_consumer() -> None:
    state = make_state()
    state.tick()
    assert state.is_alive(stale_after_s=60.0)
    assert not state.is_alive(stale_after_s=-1.0)
    assert not state.is_ready()
    state.set_consumer_ready(True)
    assert state.is_ready()
    state.set_consumer_ready(False)
    assert not state.is_ready()


def test_snapshot_reports_counts_for_heartbeats() -> None:
    state = make_state()
    state.set_prefetched(3)
    state.on_received(info("a"))
    state.on_received(info("b"))
    state.on_started("a", 1)
    state.on_received(info("c"))
    state.on_started("c", 1)
    state.on_finished("c", "proj.add", "SUCCESS", 0.1)
    snap = state.snapshot()
    assert snap["hostname"] == "w1@host"
    assert snap["pod_name"] == "pod-a"
    assert snap["queues"] == ["celery", "other"]
    assert snap["concurrency"] == 4
    assert snap["active"] == 1
    assert snap["reserved"] == 1
    assert snap["prefetched"] == 3
    assert snap["processed"] == 1
    assert snap["consumer_ready"] is False


def test_listeners_receive_task_events_with_celery_fields() -> None:
    state = make_state()
    seen: list[tuple[str, dict[str, Any]]] = []
    state.add_listener(lambda kind, fields: seen.append((kind, fields)))
    state.on_received(info("a", root_id="a", retries=1, argsrepr="(2, 3)"))
    state.on_started("a", 99)
    state.on_finished("a", "proj.add", "SUCCESS", 0.5, result_repr="5")
    state.on_received(info("b"))
    state.on_started("b", 99)
    state.on_finished("b", "proj.add", "FAILURE", 0.5, exception_repr="KeyError('x')", traceback="tb")
    assert [kind for kind, _ in seen] == ["task-received", "task-started", "task-succeeded",
                                          "task-received", "task-started", "task-failed"]
    received = seen[0][1]
    assert received == {"uuid": "a", "name": "proj.add", "args": "(2, 3)", "kwargs": "{'z': 1}",
                        "root_id": "a", "parent_id": None, "retries": 1, "eta": None, "expires": None}
    assert seen[2][1] == {"uuid": "a", "result": "5", "runtime": 0.5}
    assert seen[5][1] == {"uuid": "b", "exception": "KeyError('x')", "traceback": "tb"}


def test_request_info_without_id_is_refused() -> None:
    with pytest.raises(ValueError, match="'id'"):
        make_state().on_received({"name": "x"})


def test_concurrent_updates_are_not_lost() -> None:
    state = make_state()

    def run(prefix: str) -> None:
        for i in range(500):
            task_id = f"{prefix}{i}"
            state.on_received(info(task_id))
            state.on_started(task_id, 1)
            state.on_finished(task_id, "proj.add", "SUCCESS", 0.0)

    threads = [threading.Thread(target=run, args=(p,)) for p in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.processed_count() == 2000
    assert sample(state, "celeriac_tasks_succeeded_total", {"task": "proj.add"}) == 2000.0
    assert state.active_count() == 0


def test_requeued_task_stops_counting_as_active_without_being_processed() -> None:
    state = make_state()
    state.on_received(info("a"))
    state.on_started("a", 1)
    state.on_received(info("b"))
    state.on_requeued("a")
    state.on_requeued("b")
    assert state.active_requests() == []
    assert state.reserved_requests() == []
    assert state.processed_count() == 0
    assert sample(state, "celeriac_tasks_active") == 0.0
    state.on_finished("a", "proj.add", "SUCCESS", 0.1)
    assert state.processed_count() == 0


def test_revoked_event_says_whether_it_was_terminated_or_expired() -> None:
    state = make_state()
    seen: list[dict[str, Any]] = []
    state.add_listener(lambda kind, fields: seen.append(fields) if kind == "task-revoked" else None)
    for task_id, reason in (("a", "revoked"), ("b", "terminated"), ("c", "expired")):
        state.on_received(info(task_id))
        state.on_finished(task_id, "proj.add", "REVOKED", 0.0, revoke_reason=reason)
    assert seen == [
        {"uuid": "a", "terminated": False, "signum": None, "expired": False},
        {"uuid": "b", "terminated": True, "signum": None, "expired": False},
        {"uuid": "c", "terminated": False, "signum": None, "expired": True},
    ]
    assert sample(state, "celeriac_task_runtime_seconds_count", {"task": "proj.add"}) is None


def test_future_eta_tasks_are_scheduled_not_reserved() -> None:
    state = make_state()
    state.on_received(info("later", eta="2999-01-01T00:00:00+00:00"))
    state.on_received(info("due", eta="2000-01-01T00:00:00+00:00"))
    state.on_received(info("now"))
    assert [entry["id"] for entry in state.reserved_requests()] == ["due", "now"]
    [scheduled] = state.scheduled_requests()
    assert scheduled["eta"] == "2999-01-01T00:00:00+00:00"
    assert scheduled["priority"] == 0
    assert scheduled["request"]["id"] == "later"

"""The live record of one worker: what it holds, what runs, what was revoked, whether it is alive.

The worker engine reports every step of a task's life here; health checks, metrics, the
heartbeat record, events and remote control all read from this one object, so they never
disagree. Every method is thread-safe (one lock, held briefly, never across I/O).

Life of a task, as the engine reports it::

    on_received(info)                 message accepted (prefetched, or held for its ETA)
    on_started(task_id, pid)          execution began in a pool process (or thread)
    on_retried(task_id, name)         execution asked for a retry (then on_finished with "RETRY")
    on_finished(task_id, name, state, runtime_s, ...)   execution over: SUCCESS, FAILURE, RETRY, REVOKED...
    on_requeued(task_id)              message given back unfinished (not counted as processed)

``info`` passed to :meth:`WorkerState.on_received` is a dict with the keys Celery's
``inspect active`` shows plus those task-received events carry; missing keys default sensibly:
``id``, ``name``, ``args``, ``kwargs``, ``delivery_info`` (``exchange``, ``routing_key``,
``priority``, ``redelivered``), ``acknowledged``, ``root_id``, ``parent_id``, ``retries``,
``eta``, ``expires``, ``argsrepr``, ``kwargsrepr``.

Listeners (the event dispatcher) registered with :meth:`WorkerState.add_listener` are called
after each change, outside the lock, with ``(kind, fields)``; kinds are ``task-received``,
``task-started``, ``task-succeeded``, ``task-failed``, ``task-retried``, ``task-revoked``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from celeriac.worker.metrics import WorkerMetrics

REVOKED_LIMIT = 50_000
"""Revoked ids remembered (oldest forgotten first), Celery's ``REVOKES_MAX``."""

Listener = Callable[[str, dict[str, Any]], None]

_SUCCESS = "SUCCESS"
_FAILURE = "FAILURE"
_RETRY = "RETRY"
_REVOKED = "REVOKED"


class WorkerState:
    """Thread-safe record of one worker, shared by the engine and the observability parts."""

    def __init__(
        self, hostname: str, queues: list[str], concurrency: int, pod_name: str | None = None
    ) -> None:
        self.hostname = hostname
        self.queues = list(queues)
        self.concurrency = concurrency
        self.pod_name = pod_name
        self.pid = os.getpid()
        self.metrics = WorkerMetrics()
        self._lock = threading.Lock()
        self._reserved: dict[str, dict[str, Any]] = {}
        self._active: dict[str, dict[str, Any]] = {}
        self._revoked: OrderedDict[str, None] = OrderedDict()
        self._listeners: list[Listener] = []
        self._prefetched = 0
        self._processed = 0
        self._consumer_ready = False
        self._last_tick = time.monotonic()
        self._started_at = time.time()

    # -- listeners ---------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(kind, fields)`` after every task transition (used by events)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, fields)

    def _listened(self) -> bool:
        """Whether anyone listens, so that nobody builds event fields for nobody (a racy read,
        as harmless as a listener added just after the event)."""
        return bool(self._listeners)

    # -- task life ---------------------------------------------------------------------------
    def on_received(self, request_info: dict[str, Any]) -> None:
        """A task message was accepted; ``request_info`` as described in the module docstring."""
        info = _normalise_info(request_info, self.hostname)
        with self._lock:
            self._reserved[info["id"]] = info
        self.metrics.for_task(self.metrics.received, info["name"]).inc()
        if self._listened():
            self._notify("task-received", {
                "uuid": info["id"], "name": info["name"],
                "args": info["argsrepr"], "kwargs": info["kwargsrepr"],
                "root_id": info["root_id"], "parent_id": info["parent_id"],
                "retries": info["retries"], "eta": info["eta"], "expires": info["expires"],
            })

    def on_started(self, task_id: str, pid: int) -> None:
        """Execution of ``task_id`` began in process ``pid``."""
        with self._lock:
            info = self._reserved.pop(task_id, None) or _normalise_info({"id": task_id}, self.hostname)
            info["time_start"] = time.time()
            info["worker_pid"] = pid
            self._active[task_id] = info
            active = len(self._active)
        self.metrics.active.set(active)
        if self._listened():
            self._notify("task-started", {"uuid": task_id, "pid": pid})

    def on_retried(self, task_id: str, task_name: str, *, exception_repr: str = "",
                   traceback: str = "") -> None:
        """Execution of ``task_id`` asked for a retry (counted here, not in :meth:`on_finished`)."""
        self.metrics.for_task(self.metrics.retried, task_name).inc()
        self._notify("task-retried", {"uuid": task_id, "exception": exception_repr, "traceback": traceback})

    def on_finished(
        self,
        task_id: str,
        task_name: str,
        state: str,
        runtime_s: float,
        *,
        result_repr: str = "",
        exception_repr: str = "",
        traceback: str = "",
        revoke_reason: str = "revoked",
    ) -> None:
        """Execution of ``task_id`` ended in ``state`` after ``runtime_s`` seconds.

        Also used for a reserved task that never ran (expired or revoked: ``state`` REVOKED,
        ``revoke_reason`` one of ``revoked``, ``terminated``, ``expired``, as Celery names them).
        Calling it twice for one id counts it once.
        """
        with self._lock:
            known = self._active.pop(task_id, None) or self._reserved.pop(task_id, None)
            if known is None:
                return
            self._processed += 1
            active = len(self._active)
        metrics = self.metrics
        metrics.active.set(active)
        if state != _REVOKED:
            metrics.for_task(metrics.runtime, task_name).observe(runtime_s)
        listened = self._listened()
        if state == _SUCCESS:
            metrics.for_task(metrics.succeeded, task_name).inc()
            if listened:
                self._notify("task-succeeded", {"uuid": task_id, "result": result_repr, "runtime": runtime_s})
        elif state == _FAILURE:
            metrics.for_task(metrics.failed, task_name).inc()
            if listened:
                self._notify("task-failed",
                             {"uuid": task_id, "exception": exception_repr, "traceback": traceback})
        elif state == _REVOKED and listened:
            self._notify("task-revoked", {"uuid": task_id, "terminated": revoke_reason == "terminated",
                                          "signum": None, "expired": revoke_reason == "expired"})

    def on_requeued(self, task_id: str) -> None:
        """The message of ``task_id`` went back to its queue unfinished (shutdown, worker lost).

        It stops counting as reserved or active, and is not counted as processed.
        """
        with self._lock:
            self._active.pop(task_id, None)
            self._reserved.pop(task_id, None)
            active = len(self._active)
        self.metrics.active.set(active)

    def set_prefetched(self, n: int) -> None:
        """Messages held by the worker and not yet running (prefetched plus ETA-held)."""
        with self._lock:
            self._prefetched = n
        self.metrics.prefetched.set(n)

    # -- liveness and readiness ----------------------------------------------------------------
    def set_consumer_ready(self, ready: bool) -> None:
        """Whether the consumer is attached to the broker (drives ``/readyz``)."""
        with self._lock:
            self._consumer_ready = ready

    def tick(self) -> None:
        """The engine's event loop is alive; call it every loop iteration (drives ``/livez``)."""
        self._last_tick = time.monotonic()

    def is_alive(self, stale_after_s: float) -> bool:
        """True while the last :meth:`tick` is at most ``stale_after_s`` seconds old."""
        return time.monotonic() - self._last_tick <= stale_after_s

    def is_ready(self) -> bool:
        with self._lock:
            return self._consumer_ready

    def seconds_since_tick(self) -> float:
        return time.monotonic() - self._last_tick

    # -- revokes -------------------------------------------------------------------------------
    def revoke(self, ids: Iterable[str], terminate: bool = False, signal: str = "SIGTERM") -> list[str]:
        """Remember ``ids`` as revoked; return those of them running now (to terminate if asked).

        The engine drops a revoked task when it comes to run it. ``terminate``/``signal`` are
        acted on by the caller: the control responder passes the returned ids to the engine's
        terminate callback.
        """
        wanted = [ids] if isinstance(ids, str) else list(ids)
        with self._lock:
            for task_id in wanted:
                self._revoked.pop(task_id, None)
                self._revoked[task_id] = None
            while len(self._revoked) > REVOKED_LIMIT:
                self._revoked.popitem(last=False)
            running = [task_id for task_id in wanted if task_id in self._active]
        return running

    def is_revoked(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._revoked

    def revoked_ids(self) -> list[str]:
        with self._lock:
            return list(self._revoked)

    # -- views ---------------------------------------------------------------------------------
    def active_requests(self) -> list[dict[str, Any]]:
        """Running tasks as Celery's ``inspect active`` entries."""
        with self._lock:
            return [_active_entry(info) for info in self._active.values()]

    def reserved_requests(self) -> list[dict[str, Any]]:
        """Received, due and not yet running tasks, as Celery's ``inspect reserved`` entries."""
        now_s = time.time()
        with self._lock:
            return [_active_entry(info) for info in self._reserved.values() if not _in_future(info["eta"], now_s)]

    def scheduled_requests(self) -> list[dict[str, Any]]:
        """Tasks held for a future ETA, as Celery's ``inspect scheduled`` entries."""
        now_s = time.time()
        with self._lock:
            return [
                {"eta": info["eta"], "priority": info["delivery_info"]["priority"], "request": _active_entry(info)}
                for info in self._reserved.values() if _in_future(info["eta"], now_s)
            ]

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def processed_count(self) -> int:
        with self._lock:
            return self._processed

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters, for heartbeat records and events."""
        with self._lock:
            return {
                "hostname": self.hostname,
                "pod_name": self.pod_name,
                "pid": self.pid,
                "queues": list(self.queues),
                "concurrency": self.concurrency,
                "active": len(self._active),
                "reserved": len(self._reserved),
                "prefetched": self._prefetched,
                "processed": self._processed,
                "consumer_ready": self._consumer_ready,
                "started_at": self._started_at,
            }


def _normalise_info(raw: dict[str, Any], hostname: str) -> dict[str, Any]:
    if not raw.get("id"):
        raise ValueError("request_info needs a non-empty 'id'")
    args = raw.get("args", [])
    kwargs = raw.get("kwargs", {})
    delivery = dict(raw.get("delivery_info") or {})
    return {
        "id": str(raw["id"]),
        "name": str(raw.get("name") or "unknown"),
        "args": args,
        "kwargs": kwargs,
        "argsrepr": raw.get("argsrepr") if raw.get("argsrepr") is not None else repr(args),
        "kwargsrepr": raw.get("kwargsrepr") if raw.get("kwargsrepr") is not None else repr(kwargs),
        "type": str(raw.get("type") or raw.get("name") or "unknown"),
        "hostname": hostname,
        "time_start": None,
        "acknowledged": bool(raw.get("acknowledged", False)),
        "delivery_info": {
            "exchange": delivery.get("exchange", ""),
            "routing_key": delivery.get("routing_key", ""),
            "priority": delivery.get("priority", 0),
            "redelivered": bool(delivery.get("redelivered", False)),
        },
        "worker_pid": None,
        "root_id": raw.get("root_id"),
        "parent_id": raw.get("parent_id"),
        "retries": int(raw.get("retries") or 0),
        "eta": raw.get("eta"),
        "expires": raw.get("expires"),
    }


def _in_future(eta: Any, now_s: float) -> bool:
    """Whether an ETA (ISO-8601 text, as in the message header) is later than ``now_s``."""
    if not eta:
        return False
    try:
        moment = datetime.fromisoformat(str(eta))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() > now_s


def _active_entry(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "args", "kwargs", "type", "hostname", "time_start", "acknowledged",
            "delivery_info", "worker_pid")
    return {key: info[key] for key in keys}

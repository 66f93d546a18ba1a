"""The worker's heartbeat record in Redis, which the operator reads to know who is busy.

Every ``interval_s`` a daemon thread writes, in one MULTI:

* ``HSET celeriac.worker.<worker_id>`` (``keys.worker_record``) with the fields below, and
  ``EXPIRE`` it after ``ttl_intervals * interval_s`` seconds, so a killed worker's record vanishes;
* ``ZADD celeriac.workers <last_seen> <worker_id>`` (``keys.workers_index``), and drop index
  members older than the TTL (their records have expired).

A clean :meth:`Heartbeat.stop` deletes both. The record (all HASH values are strings):

============== ==========================================================
field          value
============== ==========================================================
worker_id      the worker's node name, e.g. ``celery@pod-7f9c``
hostname       same as worker_id (Celery's ``hostname`` of the node)
pod_name       env ``POD_NAME`` (downward API) or ``""``
pid            the worker's main process id
queues         JSON list of consumed queue names
concurrency    pool size
active         tasks running now
reserved       tasks received and not yet running
prefetched     messages held (prefetched plus ETA-held)
processed      executions finished since start
last_seen      unix seconds (float) of this write
started_at     unix seconds (float) the worker started
interval_s     seconds between writes
============== ==========================================================

:func:`read_workers` is the reader: it never writes, and ignores records older than
``stale_after_s``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from celeriac import keys
from celeriac.worker.state import WorkerState

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
DEFAULT_TTL_INTERVALS = 3
"""The record expires after this many missed writes."""


@dataclass(frozen=True)
class WorkerRecord:
    """One worker's heartbeat as read back from Redis."""

    worker_id: str
    hostname: str
    pod_name: str | None
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    active: int
    reserved: int
    prefetched: int
    processed: int
    last_seen_s: float
    started_at_s: float
    interval_s: float

    @property
    def busy(self) -> bool:
        """True while the worker runs or holds any task (do not scale it away)."""
        return self.active > 0 or self.reserved > 0 or self.prefetched > 0


def record_fields(state: WorkerState, now_s: float, interval_s: float) -> dict[str, str]:
    """The HASH fields for ``state`` at ``now_s`` (see the module docstring)."""
    snap = state.snapshot()
    return {
        "worker_id": snap["hostname"],
        "hostname": snap["hostname"],
        "pod_name": snap["pod_name"] or "",
        "pid": str(snap["pid"]),
        "queues": json.dumps(snap["queues"]),
        "concurrency": str(snap["concurrency"]),
        "active": str(snap["active"]),
        "reserved": str(snap["reserved"]),
        "prefetched": str(snap["prefetched"]),
        "processed": str(snap["processed"]),
        "last_seen": repr(now_s),
        "started_at": repr(snap["started_at"]),
        "interval_s": repr(interval_s),
    }


class Heartbeat:
    """Writes ``state``'s record every ``interval_s`` seconds until stopped."""

    def __init__(
        self,
        redis_client: redis.Redis[Any],
        state: WorkerState,
        interval_s: float = DEFAULT_INTERVAL_S,
        prefix: str = "",
        ttl_intervals: int = DEFAULT_TTL_INTERVALS,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval_s must be positive, got {interval_s}")
        self.redis = redis_client
        self.state = state
        self.interval_s = interval_s
        self.prefix = prefix
        self.ttl_s = max(1, round(interval_s * ttl_intervals))
        self.worker_id = state.hostname
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Write the record once (the thread calls this; tests may too)."""
        now_s = time.time()
        record_key = keys.worker_record(self.worker_id, self.prefix)
        index_key = keys.workers_index(self.prefix)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record_key, mapping=record_fields(self.state, now_s, self.interval_s))  # type: ignore[arg-type]
        pipe.expire(record_key, self.ttl_s)
        pipe.zadd(index_key, {self.worker_id: now_s})
        pipe.zremrangebyscore(index_key, "-inf", f"({now_s - self.ttl_s}")
        pipe.execute()

    def start(self) -> None:
        self.state.pod_name = self.state.pod_name or os.environ.get("POD_NAME") or None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="celeriac-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop writing and remove the record (a clean exit is not a dead worker)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(keys.worker_record(self.worker_id, self.prefix))
            pipe.zrem(keys.workers_index(self.prefix), self.worker_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not remove heartbeat record of %s: %s", self.worker_id, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat write failed (will retry in %.1fs): %s", self.interval_s, exc)
            self._stop.wait(self.interval_s)


def read_workers(
    redis_client: redis.Redis[Any], prefix: str, now_s: float, stale_after_s: float
) -> list[WorkerRecord]:
    """Workers whose last heartbeat is at most ``stale_after_s`` seconds before ``now_s``.

    Sorted by worker id. Never writes; records that expired between the two reads are skipped.
    """
    ids = redis_client.zrangebyscore(keys.workers_index(prefix), now_s - stale_after_s, "+inf")
    worker_ids = sorted(_text(worker_id) for worker_id in ids)
    pipe = redis_client.pipeline(transaction=False)
    for worker_id in worker_ids:
        pipe.hgetall(keys.worker_record(worker_id, prefix))
    records = []
    for worker_id, raw in zip(worker_ids, pipe.execute(), strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields:
            continue
        record = _parse_record(worker_id, fields)
        if now_s - record.last_seen_s <= stale_after_s:
            records.append(record)
    return records


def _parse_record(worker_id: str, fields: dict[str, str]) -> WorkerRecord:
    def number(name: str) -> float:
        try:
            return float(fields.get(name, "0"))
        except ValueError:
            return 0.0

    try:
        queues: Any = json.loads(fields.get("queues", "[]"))
    except ValueError:
        queues = []
    return WorkerRecord(
        worker_id=worker_id,
        hostname=fields.get("hostname", worker_id),
        pod_name=fields.get("pod_name") or None,
        pid=int(number("pid")),
        queues=tuple(str(queue) for queue in queues) if isinstance(queues, list) else (),
        concurrency=int(number("concurrency")),
        active=int(number("active")),
        reserved=int(number("reserved")),
        prefetched=int(number("prefetched")),
        processed=int(number("processed")),
        last_seen_s=number("last_seen"),
        started_at_s=number("started_at"),
        interval_s=number("interval_s"),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

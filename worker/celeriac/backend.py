"""Redis result backend, in Celery's key layout and document format (wire-protocol §3).

A result is the STRING ``celery-task-meta-<id>`` holding the meta JSON, published on a
channel of the same name when it changes, so ``get()`` waits on pub/sub instead of
polling. Celery guards a stored SUCCESS against later writes with a GET before its
MULTI(SETEX, PUBLISH); we do the same guard, write and publish in one Lua script, which
is atomic (no window between GET and SET) and can be pipelined: ``store_many`` writes
any number of results in one round trip.

Early subscription: a thread that has waited for a result before keeps a subscriber
connection; when it publishes a task, :meth:`RedisBackend.subscribe_early` writes SUBSCRIBE
for that task's channel before the task message leaves, so its ``get()`` skips the GETs
and the confirmation round trip. At most one such subscription per thread is outstanding.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import redis

from celeriac import keys, states
from celeriac.exceptions import BackendError, TaskRevokedError, TimeoutError
from celeriac.protocol import TaskRequest
from celeriac.serialization import JSON, codec, dumps, exception_to_dict, loads

_STORE_SCRIPT = """
-- KEYS[i]: celery-task-meta-<id>.  ARGV[2i-1]: its meta document.  ARGV[2i]: its TTL in seconds, 0 = none.
-- Each write is skipped when the stored document is already SUCCESS (Celery's dedupe guard).
local stored = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  local done = false
  if current then
    local ok, doc = pcall(cjson.decode, current)
    done = ok and type(doc) == 'table' and doc['status'] == 'SUCCESS'
  end
  if not done then
    local document, ttl = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
    if ttl > 0 then
      redis.call('SETEX', key, ttl, document)
    else
      redis.call('SET', key, document)
    end
    redis.call('PUBLISH', key, document)
    stored = stored + 1
  end
end
return stored
"""

_STORE_SCRIPT_WIRE = "\n".join(
    line.strip() for line in _STORE_SCRIPT.splitlines() if line.strip() and not line.strip().startswith("--")
)
"""The script as sent (comments stripped: SCRIPT LOAD and the EVAL fallback send it whole)."""

_STORE_SHA = hashlib.sha1(_STORE_SCRIPT_WIRE.encode()).hexdigest()  # Redis names scripts by SHA-1

_LOADED_ATTR = "_celeriac_store_script_loaded"


class PreparedResult(NamedTuple):
    """A result document ready to write: its key, encoded meta document and TTL (0 = none)."""

    key: str
    document: bytes
    ttl_s: int


MAX_VALUE_BYTES = 512 * 1024 * 1024
"""Redis's limit on a string value."""


def now_iso() -> str:
    """``date_done`` as Celery writes it: ISO-8601 UTC with ``+00:00``."""
    return datetime.now(timezone.utc).isoformat()


def result_tuple(task_id: str, parent: Any = None) -> list[Any]:
    """An AsyncResult as Celery stores it in ``children``: ``[[id, parent|null], null]``."""
    return [[task_id, parent], None]


class RedisBackend:
    """Store and read task results; safe to use from forked children (one client per pid)."""

    def __init__(
        self,
        url: str,
        *,
        serializer: str = "json",
        accept: frozenset[str] = frozenset({JSON}),
        expires_s: int | None = 86400,
        transport_options: Mapping[str, Any] | None = None,
        extended: bool = False,
    ) -> None:
        self.url = url
        self.serializer = serializer
        self.accept = accept
        self.expires_s = expires_s
        self.extended = extended
        options = dict(transport_options or {})
        self.prefix = keys.result_prefix(str(options.pop("global_keyprefix", "") or ""))
        self._client_options = options
        self.transport_options: dict[str, Any] = dict(options)
        """``result_backend_transport_options`` minus the key prefix (e.g. ``result_chord_ordered``)."""
        self._client: Any = None
        self._pid = -1
        self._store_sha: str | None = None
        self._local = threading.local()
        self.app: Any = None
        """The app that opened this backend: chord members that fail outside the trace join through it."""
        codec(serializer)  # fail early on an unknown serializer

    @property
    def client(self) -> Any:
        """A redis client for this process (a forked child gets its own connections)."""
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            self._client = redis.Redis.from_url(self.url, health_check_interval=25)
            self._local = threading.local()  # never share a parent's subscriber socket
            self._pid = pid
        return self._client

    def key_for(self, task_id: str) -> str:
        return keys.task_meta(task_id, self.prefix)

    # Writing
    def meta_document(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
    ) -> dict[str, Any]:
        """The meta dict in Celery's field order (``task_id`` always last)."""
        if isinstance(result, BaseException) and self.serializer != "pickle":
            result = exception_to_dict(result)
        children = [
            child.as_tuple() if hasattr(child, "as_tuple") else child
            for child in (getattr(request, "children", None) or ())
        ]
        meta: dict[str, Any] = {
            "status": state,
            "result": result,
            "traceback": traceback,
            "children": children,
            "date_done": now_iso() if state in states.READY_STATES else None,
        }
        group = getattr(request, "group", None)
        if group:
            meta["group_id"] = group
        parent_id = getattr(request, "parent_id", None)
        if parent_id:
            meta["parent_id"] = parent_id
        if self.extended and request is not None:
            delivery_info = getattr(request, "delivery_info", None) or {}
            meta["name"] = getattr(request, "task", None)
            meta["args"] = list(getattr(request, "args", None) or ())
            meta["kwargs"] = getattr(request, "kwargs", None)
            meta["worker"] = getattr(request, "hostname", None)
            meta["retries"] = getattr(request, "retries", None)
            meta["queue"] = delivery_info.get("routing_key")
        meta["task_id"] = task_id
        return meta

    def encode(self, meta: Mapping[str, Any]) -> bytes:
        body, _, _ = dumps(meta, self.serializer)
        if len(body) > MAX_VALUE_BYTES:
            raise BackendError(f"result of {len(body)} bytes is over Redis's 512 MB value limit")
        return body

    def _ttl_for(self, state: str) -> int:
        return self.expires_s or 0

    def store_result(  # noqa: PLR0917 - Celery's positional signature
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        pipe: Any = None,
    ) -> None:
        """Store a result unless SUCCESS is already stored; into ``pipe`` if one is given.

        A chord member stored as FAILURE or REVOKED straight from a decoded message (revoked,
        expired, time limit, lost worker) also joins its chord, as Celery's
        ``mark_as_failure``/``mark_as_revoked`` do; the trace joins everything else itself.
        """
        self.store_prepared([self.prepare_result(task_id, result, state, traceback, request)], pipe)
        joins = isinstance(request, TaskRequest) and bool(request.chord) and state in states.PROPAGATE_STATES
        if joins and self.app is not None:
            from celeriac.chord_counter import on_chord_part_return  # lazily: chord publishes through the app

            try:
                on_chord_part_return(self.app, request, state, result)
            except redis.exceptions.RedisError as exc:
                raise BackendError(f"cannot join chord {request.group} in {self._where()}: {exc}") from exc

    def prepare_result(
        self, task_id: str, result: Any, state: str, traceback: str | None = None, request: Any = None
    ) -> PreparedResult:
        """What :meth:`store_result` writes, encoded: a prefork child builds it where the task ran,
        so the parent process, which batches the writes, only queues the bytes."""
        document = self.encode(self.meta_document(task_id, result, state, traceback, request))
        return PreparedResult(self.key_for(task_id), document, self._ttl_for(state))

    def store_prepared(self, prepared: Sequence[PreparedResult], pipe: Any = None) -> None:
        """Write :meth:`prepare_result` documents (each unless SUCCESS is already stored) with one
        script call; into ``pipe`` if given."""
        if prepared:
            self._queue_store(pipe, [p.key for p in prepared], [a for p in prepared for a in (p.document, p.ttl_s)])

    def store_many(self, items: Iterable[tuple[str, Any, str, str | None, Any]]) -> None:
        """Store ``(task_id, result, state, traceback, request)`` items in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for task_id, result, state, traceback, request in items:
                self.store_result(task_id, result, state, traceback, request, pipe=pipe)
            self._execute(pipe)

    def _queue_store(self, pipe: Any, result_keys: list[str], args: list[Any]) -> None:
        if pipe is not None:
            # A pipeline cannot recover from NOSCRIPT (a Redis restart), so its first store loads
            # the script and every store after it in the same pipeline finds it: one script text
            # per batch instead of one EVAL with the whole text per result.
            if not getattr(pipe, _LOADED_ATTR, False):
                pipe.script_load(_STORE_SCRIPT_WIRE)
                setattr(pipe, _LOADED_ATTR, True)
            pipe.evalsha(_STORE_SHA, len(result_keys), *result_keys, *args)
            return
        try:
            if self._store_sha is None:
                self._store_sha = str(self.client.script_load(_STORE_SCRIPT_WIRE))
            try:
                self.client.evalsha(self._store_sha, len(result_keys), *result_keys, *args)
            except redis.exceptions.NoScriptError:
                self._store_sha = None
                self.client.eval(_STORE_SCRIPT_WIRE, len(result_keys), *result_keys, *args)
        except redis.exceptions.ConnectionError as exc:
            raise BackendError(f"cannot store result in {self._where()}: {exc}") from exc

    def _execute(self, pipe: Any) -> None:
        try:
            pipe.execute()
        except redis.exceptions.ConnectionError as exc:
            raise BackendError(f"cannot store results in {self._where()}: {exc}") from exc

    def mark_as_started(self, task_id: str, pid: int, hostname: str, request: Any = None) -> None:
        self.store_result(task_id, {"pid": pid, "hostname": hostname}, states.STARTED, request=request)

    def mark_as_revoked(self, task_id: str, reason: str = "revoked", request: Any = None) -> None:
        self.store_result(task_id, TaskRevokedError(reason), states.REVOKED, request=request)

    # Reading
    def decode(self, raw: bytes | None, task_id: str) -> dict[str, Any]:
        if raw is None:
            return pending_meta(task_id)
        content_type = codec(self.serializer).content_type
        meta = loads(raw, content_type, self.accept | {content_type})
        if not isinstance(meta, dict):
            raise BackendError(f"result of {task_id} is not a meta document: {meta!r}")
        return meta

    def get_meta(self, task_id: str) -> dict[str, Any]:
        """The stored meta dict; a PENDING document when nothing is stored."""
        try:
            raw = self.client.get(self.key_for(task_id))
        except redis.exceptions.ConnectionError as exc:
            raise BackendError(f"cannot read result from {self._where()}: {exc}") from exc
        return self.decode(raw, task_id)

    def wait_for(self, task_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Block until the task is ready and return its meta, woken by pub/sub (no polling).

        A ready result costs one GET. Otherwise this thread's long-lived subscriber
        subscribes to the key's channel and GETs again (a result stored in between is seen
        by that GET, a later one arrives as a message). A task this thread published with
        an early subscription (:meth:`subscribe_early`) skips both GETs: its SUBSCRIBE
        reached Redis before the task message did, so the result's publish cannot precede
        it; still, each empty wait slice GETs, so a lost message costs one slice, never a
        hang. A lost connection is reopened up to :attr:`WAIT_RECONNECTS` times within the
        timeout. Raises :class:`TimeoutError`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        early = self._claim_early(task_id)
        failures = 0
        while True:
            try:
                return self._wait_once(task_id, deadline, timeout_s, early=early)
            except BackendError:
                early = False  # the subscription went with the connection: the full path again
                failures += 1
                out_of_time = deadline is not None and time.monotonic() >= deadline
                if failures > self.WAIT_RECONNECTS or out_of_time:
                    raise
                time.sleep(min(0.05 * 2**failures, 1.0))  # back off before reconnecting

    WAIT_RECONNECTS = 5
    """How many lost connections one ``wait_for`` survives (Redis restarts, failovers)."""

    WAIT_SLICE_S = 1.0
    """Longest single wait for a message; after an empty one an early-subscribed wait GETs."""

    def _wait_once(
        self, task_id: str, deadline: float | None, timeout_s: float | None, *, early: bool = False
    ) -> dict[str, Any]:
        if early:
            meta = pending_meta(task_id)  # the subscription predates the task: no GET needed
        else:
            meta = self.get_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
        key = self.key_for(task_id)
        channel = key.encode("utf-8")
        pubsub = self._pubsub()
        try:
            if not early:
                pubsub.subscribe(key)
            # The GET below runs on another connection: only once Redis has confirmed the
            # subscription is a publish after that GET certain to reach us. An early
            # subscription's confirmation is usually already buffered.
            self._await_confirmation(pubsub, channel, deadline)
            if not early:
                meta = self.get_meta(task_id)
            while meta["status"] not in states.READY_STATES:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    pubsub.unsubscribe(key)
                    state = meta["status"]
                    raise TimeoutError(f"task {task_id} not ready after {timeout_s}s (state {state})")
                slice_s = self.WAIT_SLICE_S if remaining is None else min(remaining, self.WAIT_SLICE_S)
                message = pubsub.get_message(timeout=slice_s)
                # Messages for keys this thread waited on before may still arrive: skip them.
                if message is None:
                    if early:
                        meta = self.get_meta(task_id)  # safety net: a missed message costs one slice
                elif message.get("type") == "message" and message["channel"] == channel:
                    meta = self.decode(message["data"], task_id)
            pubsub.unsubscribe(key)
        except (redis.exceptions.ConnectionError, BackendError) as exc:
            self._drop_pubsub()
            raise BackendError(f"lost {self._where()} while waiting for {task_id}: {exc}") from exc
        return meta

    def subscribe_early(self, task_id: str) -> None:
        """Before ``task_id`` is published: SUBSCRIBE to its channel, without waiting for Redis.

        Only a thread that already has a subscriber connection (it has waited for a result
        before) and no early subscription outstanding does so: a producer that never waits
        costs nothing, and one that publishes many tasks holds one subscription, not many.
        The subscription ends in the next :meth:`wait_for` (for this id or another), on a
        timeout or a lost connection.
        """
        if self._client is None or self._pid != os.getpid():
            return  # no connection of this process yet (or only a parent's): nothing to reuse
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None or getattr(self._local, "early", None) is not None:
            return
        try:
            pubsub.subscribe(self.key_for(task_id))
        except redis.exceptions.RedisError:
            self._drop_pubsub()  # the next wait opens a new connection and takes the full path
            return
        self._local.early = task_id

    def _claim_early(self, task_id: str) -> bool:
        """Whether ``task_id`` is this thread's early subscription; any other one is ended."""
        self.client  # noqa: B018 - resets per-process state after a fork
        pending = getattr(self._local, "early", None)
        if pending is None:
            return False
        self._local.early = None
        if pending == task_id:
            return True
        try:
            self._local.pubsub.unsubscribe(self.key_for(pending))
        except redis.exceptions.RedisError:
            self._drop_pubsub()
        return False

    SUBSCRIBE_CONFIRM_S = 10.0
    """How long to wait for Redis to confirm a subscription before reconnecting."""

    def _await_confirmation(self, pubsub: Any, channel: bytes, deadline: float | None) -> None:
        limit = time.monotonic() + self.SUBSCRIBE_CONFIRM_S
        if deadline is not None:
            limit = min(limit, max(deadline, time.monotonic() + 0.5))
        while time.monotonic() < limit:
            message = pubsub.get_message(timeout=max(limit - time.monotonic(), 0.0))
            # Earlier keys' unsubscribe confirmations and late messages are skipped here.
            if message is not None and message.get("type") == "subscribe" and message["channel"] == channel:
                return
        raise BackendError(f"{self._where()} did not confirm the subscription to {channel.decode()}")

    def _pubsub(self) -> Any:
        """This thread's subscriber connection, kept between waits (a connect costs more than a wait)."""
        self.client  # noqa: B018 - resets per-process state after a fork
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._local.pubsub = self.client.pubsub()
        return pubsub

    def _drop_pubsub(self) -> None:
        pubsub = getattr(self._local, "pubsub", None)
        self._local.pubsub = None
        self._local.early = None  # its subscription goes with the connection
        if pubsub is not None:
            with contextlib.suppress(redis.exceptions.RedisError):
                pubsub.close()

    def save_group(self, group_id: str, group_tuple: list[Any]) -> None:
        """Celery's saved GroupResult: ``{"result": [[gid, parent], [members...]]}``, expiring like results."""
        key = keys.group_meta(group_id, self.prefix)
        document = self.encode({"result": group_tuple})
        with self.client.pipeline(transaction=True) as pipe:
            if self.expires_s:
                pipe.execute_command("SETEX", key, self.expires_s, document)  # Celery's command
            else:
                pipe.set(key, document)
            pipe.publish(key, document)
            self._execute(pipe)

    def get_group(self, group_id: str) -> Any:
        """The saved group tuple, or None when no group is saved under ``group_id``."""
        raw = self.client.get(keys.group_meta(group_id, self.prefix))
        if raw is None:
            return None
        return self.decode(raw, group_id).get("result")

    def delete_group(self, group_id: str) -> None:
        self.client.delete(keys.group_meta(group_id, self.prefix))

    def forget(self, task_id: str) -> None:
        self.client.delete(self.key_for(task_id))

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._drop_pubsub()
            self._client.close()
        self._client = None

    def _where(self) -> str:
        return f"result backend {self.url.split('@')[-1]}"


def pending_meta(task_id: str) -> dict[str, Any]:
    """What an unknown (or not yet stored) task reads as."""
    return {
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": task_id,
    }

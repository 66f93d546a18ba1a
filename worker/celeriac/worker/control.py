"""Celery remote control (kombu's "pidbox") over Redis: a worker-side responder and a client.

Wire format (wire-protocol §4.1), all names taking the broker's ``global_keyprefix``:

* Commands are published on the fanout exchange ``celery.pidbox``: ``PUBLISH /{db}.celery.pidbox``
  with a kombu envelope (headers ``{clock, expires}``), body ``{method, arguments,
  destination, pattern, matcher}`` plus ``ticket`` and ``reply_to {exchange, routing_key=<oid>}``
  when replies are wanted. Every node receives every command and filters on ``destination``
  (or ``pattern`` with matcher ``glob``/``pcre``) itself.
* Replies go through the direct exchange ``reply.celery.pidbox``: the node looks the client's
  queue up in ``_kombu.binding.reply.celery.pidbox`` (member ``<oid>SEPSEP<oid>.reply.celery.pidbox``,
  written by the client) and ``LPUSH``es an envelope with headers ``{ticket, clock}`` and body
  ``{<node>: <reply>}``. No binding, no reply: exactly kombu's behaviour.

:class:`ControlResponder` answers ``ping``, ``active``, ``reserved``, ``scheduled``, ``revoked``,
``revoke``, ``hello``, ``stats`` and ``registered`` from a :class:`WorkerState`;
:class:`~celeriac.worker.control_amqp.AmqpControlResponder` does the same on RabbitMQ. :func:`broadcast`
is the client used by ``celeriac inspect`` and ``AsyncResult.revoke``, over Redis or AMQP; it works
against Celery workers too.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import redis

from celeriac import keys
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.events import LamportClock, decode_envelope, kombu_envelope
from celeriac.worker.state import WorkerState

log = logging.getLogger(__name__)

CONTROL_EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"

COMMANDS = ("ping", "active", "reserved", "scheduled", "revoked", "revoke", "hello", "stats", "registered")

Terminate = Callable[[list[str], str], None]
"""``terminate(running_task_ids, signal_name)``: the engine kills those tasks' executions."""


class ControlCommands:
    """What a node answers, independent of the transport that carries commands and replies.

    ``terminate`` is called for ``revoke(terminate=True)`` with the revoked ids that are running;
    ``mark_revoked`` (optional) lets the app store REVOKED for the others, as Celery 5.7 does;
    ``task_names`` feeds ``registered``.
    """

    def __init__(
        self,
        state: WorkerState,
        *,
        terminate: Terminate | None = None,
        mark_revoked: Callable[[list[str]], None] | None = None,
        task_names: Callable[[], list[str]] | None = None,
        clock: LamportClock | None = None,
        transport: str = "redis",
    ) -> None:
        self.state = state
        self.hostname = state.hostname
        self.terminate = terminate
        self.mark_revoked = mark_revoked
        self.task_names = task_names
        self.clock = clock or LamportClock()
        self.transport = transport
        self._started_monotonic = time.monotonic()

    def addressed_to_me(self, body: dict[str, Any]) -> bool:
        """kombu's filter: ``destination`` list, else ``pattern`` with matcher glob/pcre, else all."""
        destination = body.get("destination")
        if destination:
            return self.hostname in destination
        pattern, matcher = body.get("pattern"), body.get("matcher")
        if pattern and matcher:
            if matcher == "glob":
                return fnmatch.fnmatch(self.hostname, str(pattern))
            if matcher == "pcre":
                return re.search(str(pattern), self.hostname) is not None
            return False
        return True

    def dispatch(self, method: str, arguments: dict[str, Any]) -> Any:
        """Run one command and return its reply value, as a Celery worker would.

        An unknown command raises ``KeyError(method)``; the reply is then Celery's
        ``{"error": "KeyError('<method>')"}``.
        """
        state = self.state
        handlers: dict[str, Callable[[], Any]] = {
            "ping": lambda: {"ok": "pong"},
            "active": state.active_requests,
            "reserved": state.reserved_requests,
            "scheduled": state.scheduled_requests,
            "revoked": state.revoked_ids,
            "revoke": lambda: self._revoke(arguments),
            "hello": lambda: self._hello(arguments),
            "stats": self._stats,
            "registered": lambda: sorted(self.task_names()) if self.task_names else [],
        }
        return handlers[method]()

    def _hello(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        if arguments.get("from_node") == self.hostname:
            return None
        self.state.revoke([str(task_id) for task_id in arguments.get("revoked") or []])
        return {"revoked": self.state.revoked_ids(), "clock": self.clock.forward()}

    def hello_arguments(self) -> dict[str, Any]:
        """The arguments of the ``hello`` this node sends when it mingles."""
        return {"from_node": self.hostname, "revoked": self.state.revoked_ids()}

    def merge_hello_replies(self, replies: list[dict[str, Any]]) -> int:
        """Remember the revoked ids other nodes sent back to our ``hello``; how many nodes replied."""
        nodes = 0
        for reply in replies:
            for node, answer in reply.items():
                if node == self.hostname or not isinstance(answer, dict):
                    continue
                nodes += 1
                self.state.revoke([str(task_id) for task_id in answer.get("revoked") or []])
                clock = answer.get("clock")
                self.clock.adjust(clock if isinstance(clock, int) else 0)
        return nodes

    def _revoke(self, arguments: dict[str, Any]) -> dict[str, str]:
        raw_ids = arguments.get("task_id") or []
        ids = [str(raw_ids)] if isinstance(raw_ids, str) else [str(task_id) for task_id in raw_ids]
        terminate = bool(arguments.get("terminate"))
        signal = str(arguments.get("signal") or "SIGTERM")
        running = self.state.revoke(ids, terminate=terminate, signal=signal)
        waiting = [task_id for task_id in ids if task_id not in running]
        if self.mark_revoked is not None and waiting:
            self.mark_revoked(waiting)
        if terminate:
            if running and self.terminate is not None:
                self.terminate(running, signal)
                return {"ok": "terminate: " + ", ".join(running)}
            return {"ok": "terminate: tasks unknown"}
        return {"ok": f"tasks {set(ids)!r} flagged as revoked"}

    def _stats(self) -> dict[str, Any]:
        snap = self.state.snapshot()
        return {
            "pid": snap["pid"],
            "clock": str(self.clock.forward()),
            "uptime": int(time.monotonic() - self._started_monotonic),
            "pool": {"max-concurrency": snap["concurrency"]},
            "prefetch_count": snap["prefetched"],
            "total": {"processed": snap["processed"]},
            "broker": {"transport": self.transport},
            "sw_ident": "celeriac",
        }


class ControlResponder:
    """Answers pidbox commands addressed to ``state.hostname`` over Redis until stopped.

    ``terminate``, ``mark_revoked`` and ``task_names`` are :class:`ControlCommands`'.
    """

    def __init__(
        self,
        redis_client: redis.Redis[Any],
        state: WorkerState,
        *,
        db: int = 0,
        prefix: str = "",
        terminate: Terminate | None = None,
        mark_revoked: Callable[[list[str]], None] | None = None,
        task_names: Callable[[], list[str]] | None = None,
        clock: LamportClock | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.redis = redis_client
        self.state = state
        self.hostname = state.hostname
        self.db = db
        self.prefix = prefix
        self.commands = ControlCommands(
            state, terminate=terminate, mark_revoked=mark_revoked, task_names=task_names, clock=clock
        )
        self.clock = self.commands.clock
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def channel(self) -> str:
        return keys.fanout_channel(CONTROL_EXCHANGE, "", self.db, self.prefix)

    def start(self) -> None:
        """Subscribe in a daemon thread; returns once subscribed (commands sent after are seen)."""
        self._stop.clear()
        self._subscribed.clear()
        self._thread = threading.Thread(target=self._run, name="celeriac-control", daemon=True)
        self._thread.start()
        self._subscribed.wait(timeout=10.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        backoff_s = 0.1
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(self.channel)
                self._subscribed.set()
                backoff_s = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=self.poll_interval_s)
                    if message is not None and message["type"] == "pmessage":
                        self.handle_raw(message["data"])
            except redis.RedisError as exc:
                log.warning("remote control connection lost (retrying in %.1fs): %s", backoff_s, exc)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            finally:
                pubsub.close()

    def mingle(self, timeout_s: float = 1.0) -> int:
        """Celery's startup sync: ask every node for its revoked ids and remember them.

        Returns how many nodes replied. Takes ``timeout_s`` when nobody answers, so the engine
        decides whether it is worth the start-up time (Celery does it by default).
        """
        replies = broadcast(self.redis, "hello", self.commands.hello_arguments(), timeout_s=timeout_s,
                            prefix=self.prefix)  # fmt: skip
        return self.commands.merge_hello_replies(replies)

    def handle_raw(self, raw: bytes | str) -> Any:
        """Handle one published command; returns the reply (``None`` if not for this node)."""
        try:
            headers, body = decode_envelope(raw)
        except (ValueError, TypeError) as exc:
            log.warning("ignored an undecodable remote control message: %s", exc)
            return None
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            log.warning("ignored a remote control message without a method")
            return None
        clock = headers.get("clock")
        self.clock.adjust(clock if isinstance(clock, int) else 0)
        if not self.commands.addressed_to_me(body):
            return None
        arguments = body.get("arguments") or {}
        try:
            reply = self.dispatch(body["method"], arguments if isinstance(arguments, dict) else {})
        except KeyError as exc:
            log.warning("remote control command %r is not supported", body["method"])
            reply = {"error": repr(exc)}
        except Exception as exc:
            log.exception("remote control command %s failed", body["method"])
            reply = {"error": repr(exc)}
        reply_to = body.get("reply_to")
        if isinstance(reply_to, dict) and reply_to.get("routing_key"):
            self._reply({self.hostname: reply}, str(reply_to["routing_key"]), body.get("ticket"))
        return reply

    def dispatch(self, method: str, arguments: dict[str, Any]) -> Any:
        return self.commands.dispatch(method, arguments)

    def _reply(self, body: dict[str, Any], oid: str, ticket: Any) -> None:
        binding = keys.binding_key(REPLY_EXCHANGE, self.prefix)
        payload = kombu_envelope(
            body, exchange=REPLY_EXCHANGE, routing_key=oid,
            headers={"ticket": ticket, "clock": self.clock.forward()}, delivery_mode=1,
        )
        try:
            for member in self.redis.smembers(binding):
                text = member.decode() if isinstance(member, bytes) else str(member)
                parts = text.split(keys.SEP)
                if len(parts) == 3 and parts[0] == oid:
                    self.redis.lpush(keys.queue_list(parts[2], 0, self.prefix), payload)
        except redis.RedisError as exc:
            log.warning("could not send remote control reply: %s", exc)


def connection_for(app_or_redis: Any) -> tuple[redis.Redis[Any], int, str, bool]:
    """``(client, db, global_keyprefix, owned)`` for a redis client or an app whose broker is Redis.

    ``owned`` is true when the client was opened here (the caller closes it).
    """
    if isinstance(app_or_redis, redis.Redis):
        db = int(app_or_redis.connection_pool.connection_kwargs.get("db", 0) or 0)
        return app_or_redis, db, "", False
    conf = app_or_redis.conf
    url = str(conf.broker_url)
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            f"remote control needs a Redis or AMQP broker; broker_url is {parsed.scheme}://..."
        )
    options = conf.broker_transport_options or {}
    client: redis.Redis[Any] = redis.Redis.from_url(url)
    db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
    return client, db, str(options.get("global_keyprefix") or ""), True


def broadcast(
    app_or_redis: Any,
    method: str,
    arguments: dict[str, Any] | None = None,
    *,
    destination: list[str] | None = None,
    timeout_s: float = 1.0,
    limit: int | None = None,
    reply: bool = True,
    prefix: str | None = None,
) -> list[dict[str, Any]]:
    """Send a remote control command; return the replies ``[{node: reply}, ...]``.

    ``app_or_redis`` is a Redis client, or an app whose ``broker_url`` is Redis or AMQP.

    Collects until ``limit`` replies arrived (default: one per ``destination`` node, else
    unlimited) or no reply came for ``timeout_s`` seconds. ``reply=False`` only sends.
    ``prefix`` overrides the key prefix (``global_keyprefix``) found on the app.
    """
    url = "" if isinstance(app_or_redis, redis.Redis) else str(app_or_redis.conf.broker_url)
    if urlparse(url).scheme in {"amqp", "amqps", "pyamqp"}:
        from celeriac.worker.control_amqp import broadcast_amqp  # kombu's pidbox only when AMQP is used

        return broadcast_amqp(url, app_or_redis.conf.broker_transport_options, method, arguments,
                              destination=destination, timeout_s=timeout_s, limit=limit, reply=reply)
    client, db, found_prefix, owned = connection_for(app_or_redis)
    try:
        return _broadcast(client, db, found_prefix if prefix is None else prefix, method, arguments,
                          destination=destination, timeout_s=timeout_s, limit=limit, reply=reply)
    finally:
        if owned:
            client.close()


def _broadcast(
    client: redis.Redis[Any], db: int, prefix: str, method: str, arguments: dict[str, Any] | None, *,
    destination: list[str] | None, timeout_s: float, limit: int | None, reply: bool,
) -> list[dict[str, Any]]:
    clock = LamportClock()
    if limit is None and destination:
        limit = len(destination)
    oid = str(uuid.uuid4())
    ticket = str(uuid.uuid4()) if reply else None
    reply_queue = f"{oid}.{REPLY_EXCHANGE}"
    member = keys.binding_member(oid, reply_queue)
    body: dict[str, Any] = {
        "method": method, "arguments": arguments or {}, "destination": destination,
        "pattern": None, "matcher": None,
    }
    if reply:
        body["ticket"] = ticket
        body["reply_to"] = {"exchange": REPLY_EXCHANGE, "routing_key": oid}
        client.sadd(keys.binding_key(REPLY_EXCHANGE, prefix), member)
    headers = {"clock": clock.forward(), "expires": time.time() + timeout_s if timeout_s else 0}
    payload = kombu_envelope(body, exchange=CONTROL_EXCHANGE, routing_key="", headers=headers,
                             delivery_mode=2)
    client.publish(keys.fanout_channel(CONTROL_EXCHANGE, "", db, prefix), payload)
    if not reply:
        return []
    try:
        return _collect(client, keys.queue_lists(reply_queue, prefix), ticket, limit=limit, timeout_s=timeout_s,
                        clock=clock)
    finally:
        client.srem(keys.binding_key(REPLY_EXCHANGE, prefix), member)
        client.srem(keys.binding_permanent_key(REPLY_EXCHANGE, prefix), member)
        client.delete(*keys.queue_lists(reply_queue, prefix))


def _collect(
    client: redis.Redis[Any], lists: list[str], ticket: str | None, *, limit: int | None,
    timeout_s: float, clock: LamportClock,
) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    while limit is None or len(replies) < limit:
        popped = client.brpop(lists, timeout=max(timeout_s, 0.01))
        if popped is None:
            break
        try:
            headers, body = decode_envelope(popped[1])
        except (ValueError, TypeError) as exc:
            log.warning("ignored an undecodable remote control reply: %s", exc)
            continue
        reply_clock = headers.get("clock")
        clock.adjust(reply_clock if isinstance(reply_clock, int) else 0)
        if headers.get("ticket", ticket) == ticket and isinstance(body, dict):
            replies.append(body)
    return replies

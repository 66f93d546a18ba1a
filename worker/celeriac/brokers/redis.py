"""The Redis broker: kombu's Redis-transport key layout, with batched consumption.

Publishing writes exactly the list element kombu writes (see :mod:`.envelope`), and the
queue declaration Celery performs (``_kombu.binding.<queue>`` and, as kombu 5.7 does,
``_kombu.binding_permanent.<queue>``), once per queue per broker.

Consuming differs from kombu on purpose, to be fast and safe:

* ``fetch`` runs one Lua script (:data:`.redis_scripts.FETCH`) that pops up to N messages
  across the priority lists of several queues (highest priority first, round-robin
  between queues) *and* writes their ``unacked``/``unacked_index`` entries in the same
  atomic step: one round trip per batch, and no crash window between pop and record.
  Its reply is three strings per message (list key, envelope, and a ``meta`` that is empty
  unless the tag, exchange or routing key recorded differ from the envelope's own), since
  each string costs redis-py's parser microseconds and the envelope is parsed anyway.
* Only when the queues are empty does it block, with ``BRPOP`` over the same lists for at
  most ``timeout_s``; the message BRPOP returns is handed to the script at once, which
  records it and takes the rest of the batch. That one message per idle period shares
  kombu's crash window (a process crash between the BRPOP reply and the script call); a
  lost connection there does not lose it: it is recorded on the next fetch, or pushed back
  on close. A busy consumer never calls BRPOP at all.
* ``ack`` removes a whole batch with one ``ZREM`` + one ``HDEL`` in one MULTI.
* ``requeue``/``reject_to_dead_letter`` run :data:`.redis_scripts.SETTLE`, which pushes
  only if the unacked entry still exists, so a message restored by a sweep is never
  pushed twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis
import redis.exceptions

from celeriac import keys
from celeriac.brokers import Broker, BrokerConnectionError, Delivery, PublishItem
from celeriac.brokers import redis_scripts as scripts
from celeriac.brokers.envelope import (
    build_envelope,
    dead_letter_envelope,
    dumps,
    new_delivery_tag,
    parse_envelope,
    redelivered_envelope,
)
from celeriac.exceptions import FatalError

log = logging.getLogger(__name__)

RECOVERABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    OSError,
)
"""redis-py errors after which a reconnect may help (kombu's ``connection_errors``)."""

DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
DEFAULT_MUTEX_EXPIRE_S = 300.0
_QUEUE_CACHE_SIZE = 1024
"""Most list keys whose queue name is kept (a consumer reads ``len(queues) * 4`` lists)."""


class RedisBroker(Broker):
    """A :class:`~celeriac.brokers.Broker` over Redis; thread-safe (redis-py connection pool).

    Transport options (kombu's names): ``visibility_timeout`` (seconds, default 3600; keep
    it at least as large as every Celery peer's), ``global_keyprefix`` (default ``""``),
    ``unacked_mutex_expire`` (seconds, default 300), ``dead_letter_suffix`` (default
    ``.dead``), ``socket_timeout`` (seconds, default 30, must exceed fetch timeouts).
    """

    def __init__(self, url: str, transport_options: dict[str, Any] | None = None) -> None:
        options = dict(transport_options or {})
        self.url = url
        self.prefix = str(options.get("global_keyprefix") or "")
        self.visibility_timeout_s = float(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S))
        self.mutex_expire_s = float(options.get("unacked_mutex_expire", DEFAULT_MUTEX_EXPIRE_S))
        self.dead_letter_suffix = str(options.get("dead_letter_suffix", keys.DEAD_LETTER_SUFFIX))
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=float(options.get("socket_timeout", 30.0)),
            socket_connect_timeout=float(options.get("socket_connect_timeout", 5.0)),
            health_check_interval=int(options.get("health_check_interval", 25)),
        )
        self.unacked_key = f"{self.prefix}{options.get('unacked_key', keys.UNACKED)}"
        self.unacked_index_key = f"{self.prefix}{options.get('unacked_index_key', keys.UNACKED_INDEX)}"
        self.unacked_mutex_key = f"{self.prefix}{options.get('unacked_mutex_key', keys.UNACKED_MUTEX)}"
        self._fetch_sha = hashlib.sha1(scripts.FETCH.encode()).hexdigest()  # Redis names scripts by SHA-1
        self._settle = self.client.register_script(scripts.SETTLE)
        self._claim = self.client.register_script(scripts.CLAIM_RESTORE)
        self._meta = self.client.register_script(scripts.ENVELOPE_META)
        self._declared: set[str] = set()
        self._rotation = 0
        self._carry: tuple[Any, Any] | None = None
        self._drained = False
        """The last fetch took fewer messages than it could: the lists were empty then."""
        self._queue_of: dict[bytes, str] = {}
        self._lists: dict[tuple[str, ...], list[str]] = {}
        """The lists of each queue order fetched (every priority list of every queue), built once."""
        self._fetch_lock = threading.Lock()
        self._fetch_conn: Any = None
        """A connection of the client's pool kept for fetching: see :meth:`_fetch_call`."""

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Map redis-py's recoverable errors to BrokerConnectionError; forget declares (Redis may be new)."""
        try:
            yield
        except RECOVERABLE as exc:
            self._declared.clear()
            raise BrokerConnectionError(f"Redis broker unavailable while {action}: {exc}") from exc

    # -- publishing ---------------------------------------------------------------------

    def declare_queue(self, queue: str) -> None:
        with self._errors(f"declaring queue {queue!r}"):
            self._round_trip(self._declare(queue))
        self._declared.add(queue)

    def _declare(self, queue: str) -> list[tuple[Any, ...]]:
        member = keys.binding_member(queue, queue)
        return [("SADD", keys.binding_key(queue, self.prefix), member),
                ("SADD", keys.binding_permanent_key(queue, self.prefix), member)]

    def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands``, sent together on a pool connection with the connection's
        retry policy; through redis-py's connection calls rather than a client pipeline, whose
        layer added ~10 µs of CPU to every ``delay()`` here (~140 µs)."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: _send_and_read(conn, commands), lambda _error: conn.disconnect())
        finally:
            pool.release(conn)

    def publish_many(self, items: Iterable[PublishItem]) -> None:
        """LPUSH every item (declaring new queues first) in one round trip."""
        batch = list(items)
        declared: set[str] = set()
        commands: list[tuple[Any, ...]] = []
        with self._errors("publishing"):
            for item in batch:
                rk = item.routing_key if item.routing_key is not None else (item.queue or "")
                targets = [item.queue] if item.queue else self._route(item.exchange, rk)
                if not targets:
                    log.warning("no queue bound to %r for routing key %r; dropped", item.exchange, rk)
                    continue
                envelope = build_envelope(item.message, item.exchange, rk, item.priority, new_delivery_tag())
                raw = dumps(envelope)
                for queue in targets:
                    if queue not in self._declared and queue not in declared and not item.exchange:
                        commands += self._declare(queue)
                        declared.add(queue)
                    commands.append(("LPUSH", keys.queue_list(queue, envelope["properties"]["priority"], self.prefix),
                                     raw))
            if commands:
                self._round_trip(commands)
        self._declared |= declared

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        """Queues bound to ``exchange`` for ``routing_key`` (kombu's direct/topic lookup)."""
        if not exchange:
            return [routing_key] if routing_key else []
        members = self.client.smembers(keys.binding_key(exchange, self.prefix))
        found: list[str] = []
        for raw in members:
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            parts = text.split(keys.SEP)
            if len(parts) != 3:
                continue
            key, pattern, queue = parts
            matched = re.match(pattern, routing_key) is not None if pattern else key == routing_key
            if matched and queue not in found:
                found.append(queue)
        return found

    # -- consuming ----------------------------------------------------------------------

    def fetch(self, queues: list[str], max_count: int, timeout_s: float) -> list[Delivery]:
        """Up to ``max_count`` deliveries in one script call; BRPOP only when all lists are empty.

        After a fetch that emptied the lists, a blocking fetch goes straight to BRPOP (which
        returns at once if something arrived since): an idle worker spends one round trip per
        message arriving, not two, and none on the way to waiting for the next one.
        """
        if not queues or max_count <= 0:
            return []
        order = self._rotated(queues)
        lists = self._lists.get(tuple(order))
        if lists is None:
            if len(self._lists) >= _QUEUE_CACHE_SIZE:
                self._lists.clear()
            lists = self._lists[tuple(order)] = [keys.queue_list(q, step, self.prefix)
                                                 for step in keys.PRIORITY_STEPS for q in order]
        with self._errors("fetching"):
            rows: list[Any] = []
            if not (self._drained and timeout_s > 0 and self._carry is None):
                rows = self._run_fetch(lists, order, max_count, *(self._carry or (None, None)))
                self._carry = None
            if not rows and timeout_s > 0:
                popped = self._fetch_call("BRPOP", *lists, timeout_s)
                if popped is not None:
                    # Held here until the script has recorded it: if the script call fails
                    # (connection lost), the next fetch records it, or close() pushes it back.
                    self._carry = popped
                    rows = self._run_fetch(lists, order, max_count, *popped)
                    self._carry = None
        deliveries = self._deliveries(rows)
        self._drained = len(deliveries) < max_count
        if deliveries:
            self._rotation += 1
        return deliveries

    def _rotated(self, queues: list[str]) -> list[str]:
        shift = self._rotation % len(queues)
        return queues[shift:] + queues[:shift]

    def _run_fetch(self, lists: list[str], order: list[str], max_count: int, carry_key: Any, carry: Any) -> list[Any]:
        call = ("EVALSHA", self._fetch_sha, 2 + len(lists), self.unacked_key, self.unacked_index_key, *lists,
                max_count, repr(time.time()), len(order), carry_key or "", carry or "", *order)
        try:
            result = self._fetch_call(*call)
        except redis.exceptions.NoScriptError:  # a new, restarted or flushed Redis: load it (again)
            self._fetch_call("SCRIPT", "LOAD", scripts.FETCH)
            result = self._fetch_call(*call)
        return list(result or [])

    def _fetch_call(self, *command: Any) -> Any:
        """``command``'s reply, on the connection kept for fetching (one fetch at a time).

        The worker's most frequent calls go through redis-py's connection directly: its client
        layer (pool checkout, retry wrapper, reply callbacks) costs more CPU per call than the
        fetch reply's own parsing. A connection left in an unknown state by an error is closed
        (:func:`_send_and_read`); the next call reconnects.
        """
        with self._fetch_lock:
            conn = self._fetch_conn
            if conn is None:
                conn = self._fetch_conn = self.client.connection_pool.get_connection()
            return _send_and_read(conn, [command])[0]

    def _deliveries(self, rows: list[Any]) -> list[Delivery]:
        """Deliveries from the script's reply: ``list_key, envelope, meta`` per message.

        An empty ``meta`` means the script recorded the envelope's own tag, exchange and
        routing key, which :func:`.envelope.parse_envelope` reads the same way (even from an
        envelope it reports broken, once it has found the tag); if Python's json cannot read
        what cjson did, :data:`.redis_scripts.ENVELOPE_META` says what was recorded. Otherwise
        ``meta`` is ``[tag, exchange, routing_key]`` as recorded. Either way a Delivery carries
        the tag its ``unacked`` entry is stored under (ack, requeue and restore find it by that).
        """
        queues = self._queue_of
        deliveries = []
        for list_key, envelope, meta in zip(rows[0::3], rows[1::3], rows[2::3], strict=True):
            queue = queues.get(list_key)
            if queue is None:
                queue = self._remember_queue(list_key)
            if meta:
                tag, exchange, routing_key = _loads_meta(meta)
                parsed = parse_envelope(envelope, tag, queue)
            else:
                parsed = parse_envelope(envelope, "", queue)
                tag, exchange, routing_key = parsed.delivery_tag, parsed.exchange, parsed.routing_key
                if not tag:  # cjson read an envelope Python's json cannot (e.g. a number 0x10)
                    tag, exchange, routing_key = self._envelope_meta(envelope)
            deliveries.append(
                Delivery(
                    message=parsed.message,
                    queue=queue,
                    exchange=exchange,
                    routing_key=routing_key,
                    delivery_tag=tag,
                    redelivered=parsed.redelivered,
                    priority=parsed.priority,
                    envelope=envelope,
                    envelope_error=parsed.error,
                )
            )
        return deliveries

    def _envelope_meta(self, envelope: bytes) -> tuple[str, str, str]:
        """The tag, exchange and routing key the script recorded from ``envelope``'s own fields."""
        with self._errors("fetching"):
            meta = self._meta(args=[envelope])
        tag, exchange, routing_key = _loads_meta(meta)
        if not tag:
            raise FatalError(f"the fetch script recorded no tag of its own for envelope {envelope[:200]!r}")
        return tag, exchange, routing_key

    def _remember_queue(self, list_key: bytes) -> str:
        """The queue of ``list_key``, kept for the next fetch (the lists of the queues consumed)."""
        if len(self._queue_of) >= _QUEUE_CACHE_SIZE:
            self._queue_of.clear()
        queue = self._queue_of[list_key] = keys.queue_of_list(list_key.decode(), self.prefix)
        return queue

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        tags = [d.delivery_tag for d in deliveries]
        if not tags:
            return
        with self._errors("acking"):
            pipe = self.client.pipeline(transaction=True)
            self.queue_ack(pipe, tags)
            pipe.execute()

    def queue_ack(self, pipe: Any, tags: list[str]) -> None:
        """Add the ack of ``tags`` to ``pipe`` (two commands: ``ZREM`` the index, ``HDEL`` the entries).

        Outside a MULTI the two may be split by a lost connection; either half alone is harmless:
        an index entry without its hash entry is dropped by the sweep, and a hash entry without
        its index entry is never restored (the message was acked).
        """
        pipe.zrem(self.unacked_index_key, *tags)
        pipe.hdel(self.unacked_key, *tags)

    def shares_server(self, client: Any) -> bool:
        """``client`` (a redis-py client) talks to this broker's Redis server and database, so
        one pipeline of it can carry our acks along with other writes (one round trip)."""
        mine, theirs = self.client.connection_pool, getattr(client, "connection_pool", None)
        if theirs is None or mine.connection_class is not theirs.connection_class:
            return False
        fields = ("host", "port", "path", "db", "username", "password")
        return all(mine.connection_kwargs.get(f) == theirs.connection_kwargs.get(f) for f in fields)

    def extend_visibility(self, deliveries: Iterable[Delivery]) -> None:
        """Refresh the ``unacked_index`` score of deliveries still held, so no sweep restores them.

        Long ETA holds and long late-ack tasks would otherwise pass ``visibility_timeout``
        and run twice (kombu#337); only existing entries are touched (``ZADD XX``).
        """
        tags = [d.delivery_tag for d in deliveries]
        if not tags:
            return
        now = time.time()
        with self._errors("extending visibility"):
            self.client.zadd(self.unacked_index_key, dict.fromkeys(tags, now), xx=True)

    def requeue(self, deliveries: Iterable[Delivery]) -> None:
        """kombu's restore: RPUSH to the head of the list, marked redelivered, in one pipeline."""
        batch = list(deliveries)
        if not batch:
            return
        with self._errors("requeueing"):
            pipe = self.client.pipeline(transaction=False)
            for d in batch:
                target = keys.queue_list(d.queue, d.priority, self.prefix)
                envelope = redelivered_envelope(d.envelope)
                self._settle(
                    keys=[self.unacked_key, self.unacked_index_key, target],
                    args=[d.delivery_tag, envelope, "RPUSH"],
                    client=pipe,
                )
            pipe.execute()

    def republish(self, deliveries: Iterable[Delivery]) -> None:
        """Put back deliveries that were already acked (a task killed by shutdown after an early ack)."""
        batch = list(deliveries)
        if not batch:
            return
        with self._errors("republishing"):
            pipe = self.client.pipeline(transaction=False)
            for d in batch:
                pipe.rpush(keys.queue_list(d.queue, d.priority, self.prefix), redelivered_envelope(d.envelope))
            pipe.execute()

    def dead_letter_queue(self, queue: str) -> str:
        """The list a dead-lettered message of ``queue`` goes to (``<queue>.dead`` by default)."""
        return keys.dead_letter_list(queue, self.dead_letter_suffix, self.prefix)

    def reject_to_dead_letter(self, delivery: Delivery, reason: str) -> None:
        envelope = dead_letter_envelope(delivery, reason)
        with self._errors("dead-lettering"):
            self._settle(
                keys=[self.unacked_key, self.unacked_index_key, self.dead_letter_queue(delivery.queue)],
                args=[delivery.delivery_tag, envelope, "LPUSH"],
            )

    def restore_visibility_timeouts(self) -> int:
        """kombu's sweep: under ``unacked_mutex``, restore every delivery older than the timeout."""
        restored = 0
        with self._errors("restoring timed-out deliveries"):
            lock = self.client.lock(self.unacked_mutex_key, timeout=self.mutex_expire_s)
            if not lock.acquire(blocking=False):
                return 0
            try:
                ceil = time.time() - self.visibility_timeout_s
                # kombu 5.7's selection: ZRANGE <index> <ceil> 0 BYSCORE REV
                index = self.unacked_index_key
                rows = self.client.execute_command("ZRANGE", index, ceil, 0, "BYSCORE", "REV")
                for tag in rows:
                    restored += self._restore_tag(tag.decode() if isinstance(tag, bytes) else str(tag))
            finally:
                with suppress(redis.exceptions.LockError):
                    lock.release()
        return restored

    def _restore_tag(self, tag: str) -> int:
        value = self._claim(keys=[self.unacked_key, self.unacked_index_key], args=[tag])
        if value is None:
            return 0
        try:
            envelope, exchange, routing_key = _loads_unacked(value)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than json can read
            log.error("cannot restore unacked %s (%s); dropping its entry", tag, exc)
            self.client.hdel(self.unacked_key, tag)
            return 0
        raw = dumps(envelope).encode() if not isinstance(envelope, str) else envelope.encode()
        queues = self._route(exchange, routing_key) or [routing_key]
        properties = envelope.get("properties") if isinstance(envelope, dict) else None
        priority = properties.get("priority", 0) if isinstance(properties, dict) else 0
        pushed = 0
        for queue in queues:
            target = keys.queue_list(queue, priority, self.prefix)
            pushed += int(
                self._settle(
                    keys=[self.unacked_key, self.unacked_index_key, target],
                    args=[tag, redelivered_envelope(raw), "RPUSH"],
                )
            )
        return pushed

    # -- inspection ---------------------------------------------------------------------

    def depth(self, queue: str) -> int:
        with self._errors("reading queue depth"):
            pipe = self.client.pipeline(transaction=False)
            for name in keys.queue_lists(queue, self.prefix):
                pipe.llen(name)
            return int(sum(pipe.execute()))

    def unacked_count(self) -> int:
        """Deliveries taken by any consumer on this Redis and not yet acked."""
        with self._errors("counting unacked"):
            return int(self.client.hlen(self.unacked_key))

    def purge(self, queue: str) -> int:
        with self._errors("purging"):
            pipe = self.client.pipeline(transaction=True)
            for name in keys.queue_lists(queue, self.prefix):
                pipe.llen(name)
                pipe.delete(name)
            return int(sum(pipe.execute()[::2]))

    def ping(self) -> bool:
        with self._errors("pinging"):
            return bool(self.client.ping())

    def close(self) -> None:
        """Close connections; a message popped by BRPOP but never recorded is pushed back first."""
        if self._carry is not None:
            list_key, envelope = self._carry
            try:
                self.client.rpush(list_key, envelope)
                self._carry = None
            except RECOVERABLE as exc:
                log.error("could not push back a message popped from %s before closing: %s", list_key, exc)
        with self._fetch_lock:
            if self._fetch_conn is not None:
                self.client.connection_pool.release(self._fetch_conn)
                self._fetch_conn = None
        self.client.close()


def _send_and_read(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` on ``conn`` at once and read every reply; the first error reply is raised
    once all are read (the connection stays usable), anything else closes the connection."""
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()
        raise
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
    return replies


def _loads_meta(meta: bytes) -> tuple[str, str, str]:
    """The script's ``[tag, exchange, routing_key]``; exchange and routing key are taken from
    the envelope and may hold bytes that are not UTF-8 (replaced; the tag never does)."""
    tag, exchange, routing_key = json.loads(meta.decode("utf-8", "replace"))
    return str(tag), str(exchange), str(routing_key)


def _loads_unacked(value: Any) -> tuple[Any, str, str]:
    """Parse an ``unacked`` value ``[envelope, exchange, routing_key]`` (plain json, no hooks)."""
    doc = json.loads(value)
    if not isinstance(doc, list) or len(doc) != 3:
        raise ValueError("unacked value is not [envelope, exchange, routing_key]")
    return doc[0], str(doc[1] or ""), str(doc[2] or "")

"""Measure a WorkerPool's backlog on its broker: the I/O half of the autoscaler.

Redis (kombu's layout, see :mod:`celeriac.keys`), one poll:

* **queued**: ``LLEN`` of every priority list of every queue (kombu keeps priorities 0, 3, 6
  and 9 in separate lists; a depth that reads only ``<queue>`` misses most of a prioritised
  backlog), in one pipeline together with ``HLEN unacked``;
* **reserved**: entries of the ``unacked`` HASH (delivered, not yet acked) whose exchange and
  routing key lead to one of the queues; read with ``HSCAN`` in batches of
  :data:`HSCAN_BATCH`, at most :data:`MAX_UNACKED_SCANNED` entries per poll, and skipped
  entirely when the hash is empty;
* **active**, **held** and **busy_workers**: from the heartbeats of workers consuming any of
  the queues (``celeriac.worker.heartbeat.read_workers``).

RabbitMQ: ``queue.declare(passive=True)`` per queue gives the ready-message count (a missing
queue counts 0). Messages delivered but unacked are not in it and are not visible without
the management API, so ``reserved``, ``active`` and ``busy_workers`` are 0 there.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp.exceptions
import kombu as _kombu
import redis
import redis.exceptions

from celeriac import keys
from celeriac.worker.heartbeat import WorkerRecord, read_workers
from celeriac_operator.errors import OperatorError, RetryableError

log = logging.getLogger(__name__)

kombu: Any = _kombu  # kombu's partial annotations would make every call untyped under --strict

HSCAN_BATCH = 1000
"""``HSCAN COUNT`` per round trip over the ``unacked`` hash."""
MAX_UNACKED_SCANNED = 20_000
"""Stop counting reserved messages after this many ``unacked`` entries (all queues of the broker
share the hash). At 2 s polls this bounds the cost; past it the count is a lower bound and a
warning is logged. Prefetch limits keep the hash far smaller in normal operation."""
DEFAULT_TIMEOUT_S = 5.0
"""Connect and read timeout for one measurement."""
DEFAULT_STALE_AFTER_S = 15.0
"""Heartbeats older than this are ignored (the worker writes every 2 s by default, so several missed writes)."""
DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}


class AutoscalerError(OperatorError):
    """The autoscaler's errors (under the operator's one root)."""


class BrokerUnreachable(AutoscalerError, RetryableError):
    """The broker could not be reached or answered with an error; retry on the next poll.

    The message names the broker by ``host:port`` only, never with credentials.
    """


@dataclass(frozen=True)
class Backlog:
    """One measurement of a WorkerPool's queues."""

    queued: int
    """Messages waiting in the broker, all priority lists of all the queues."""
    reserved: int
    """Delivered to a worker and not yet acked, for these queues (Redis ``unacked``)."""
    active: int
    """Tasks running now, from the heartbeats of workers consuming these queues."""
    busy_workers: int
    """Workers (pods) running or holding any task, from the same heartbeats."""
    by_queue: Mapping[str, int]
    """``queued`` per queue."""
    held: int = 0
    """Tasks received by those workers and not yet running (prefetched or ETA-held), from heartbeats."""
    busy_pods: frozenset[str] = field(default_factory=frozenset)
    """The ``POD_NAME`` of every busy worker that reported one."""

    @property
    def total(self) -> int:
        """The backlog the policy sees: ``queued + max(reserved, active + held)``.

        A message a worker holds is in ``unacked`` until it is acked: with Celery's default
        early ack, until its task starts (then it is ``active`` in the heartbeat); with
        ``acks_late``, until it finishes (so it is in both). Adding ``reserved + active`` would
        count late-acked running tasks twice; the heartbeat's ``active + held`` is everything
        our workers have in hand either way, and ``reserved`` stands in for workers without
        heartbeats (Celery's own). Taking the larger never counts one message twice.
        """
        return self.queued + max(self.reserved, self.active + self.held)


def measure(
    broker_url: str,
    queues: Sequence[str],
    *,
    now_s: float | None = None,
    prefix: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> Backlog:
    """Measure ``queues`` on the broker at ``broker_url`` (redis, rediss, amqp, amqps).

    ``prefix`` is kombu's Redis ``global_keyprefix`` (not part of the URL); heartbeats older than
    ``stale_after_s`` are ignored. Opens and closes
    one connection per call. Raises :class:`BrokerUnreachable` on connection errors and
    ``ValueError`` for an unsupported scheme.
    """
    scheme = urlsplit(broker_url).scheme.lower()
    if scheme in ("redis", "rediss"):
        client = redis.Redis.from_url(broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            with _unreachable_on_error(broker_url, redis.exceptions.RedisError, OSError):
                return measure_redis(client, queues, prefix=prefix, stale_after_s=stale_after_s,
                                     now_s=time.time() if now_s is None else now_s)
        finally:
            client.close()
    if scheme in ("amqp", "amqps"):
        return measure_amqp(broker_url, queues, timeout_s=timeout_s)
    raise ValueError(f"unsupported broker URL scheme {scheme!r} for {broker_host(broker_url)}: "
                     "use redis://, rediss://, amqp:// or amqps://")


def measure_redis(
    client: redis.Redis[Any],
    queues: Sequence[str],
    *,
    prefix: str = "",
    now_s: float,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    max_unacked_scanned: int = MAX_UNACKED_SCANNED,
) -> Backlog:
    """Measure ``queues`` on a Redis broker (see the module docstring). Redis errors propagate."""
    wanted = list(dict.fromkeys(queues))
    pipe = client.pipeline(transaction=False)
    for queue in wanted:
        for key in keys.queue_lists(queue, prefix):
            pipe.llen(key)
    pipe.hlen(f"{prefix}{keys.UNACKED}")
    replies = pipe.execute()
    steps = len(keys.PRIORITY_STEPS)
    by_queue = {queue: sum(int(n) for n in replies[i * steps:(i + 1) * steps]) for i, queue in enumerate(wanted)}
    unacked_size = int(replies[-1])
    reserved = _count_reserved(client, set(wanted), prefix, max_unacked_scanned) if unacked_size else 0

    workers = [record for record in read_workers(client, prefix, now_s, stale_after_s)
               if set(record.queues) & set(wanted)]
    busy = [record for record in workers if record.busy]
    return Backlog(
        queued=sum(by_queue.values()),
        reserved=reserved,
        active=sum(record.active for record in workers),
        busy_workers=len({record.pod_name or record.worker_id for record in busy}),
        by_queue=by_queue,
        held=sum(_held(record) for record in workers),
        busy_pods=frozenset(record.pod_name for record in busy if record.pod_name),
    )


def measure_amqp(url: str, queues: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Backlog:
    """Ready messages per queue by passive declare; a queue that does not exist counts 0."""
    by_queue: dict[str, int] = {}
    connection = kombu.Connection(url, connect_timeout=timeout_s)
    with connection, _unreachable_on_error(url, *connection.connection_errors, amqp.exceptions.AMQPError, OSError):
        connection.connect()
        for queue in dict.fromkeys(queues):
            # A 404 closes the channel, so each queue gets its own.
            channel = connection.channel()
            try:
                by_queue[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except amqp.exceptions.NotFound:
                by_queue[queue] = 0
            finally:
                _close_quietly(channel)
    return Backlog(queued=sum(by_queue.values()), reserved=0, active=0, busy_workers=0, by_queue=by_queue)


def broker_host(url: str) -> str:
    """``host:port`` of a broker URL, without credentials (for status and messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return "<unparsable broker URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


# -- reserved ------------------------------------------------------------------------------------


def _count_reserved(client: Any, wanted: set[str], prefix: str, max_scanned: int) -> int:
    bindings = _Bindings(client, prefix)
    count = scanned = 0
    cursor = 0
    while True:
        cursor, batch = client.hscan(f"{prefix}{keys.UNACKED}", cursor, count=HSCAN_BATCH)
        for value in batch.values():
            if _destination(value, bindings) & wanted:
                count += 1
        scanned += len(batch)
        if not cursor:
            return count
        if scanned >= max_scanned:
            log.warning("counted reserved messages over the first %d unacked entries only; "
                        "the backlog is a lower bound", scanned)
            return count


def _destination(value: bytes | str, bindings: _Bindings) -> set[str]:
    """The queues an unacked entry ``[envelope, exchange, routing_key]`` was delivered from."""
    try:
        _, exchange, routing_key = json.loads(value)
    except (ValueError, TypeError):
        return set()
    if not isinstance(exchange, str) or not isinstance(routing_key, str):
        return set()
    if not exchange:  # Celery's direct routing: the anonymous exchange, routing key = queue
        return {routing_key}
    return bindings.lookup(exchange, routing_key) or {routing_key}


class _Bindings:
    """kombu's binding tables, read once per measurement and per exchange."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._tables: dict[str, list[tuple[str, str, str]]] = {}

    def lookup(self, exchange: str, routing_key: str) -> set[str]:
        table = self._tables.get(exchange)
        if table is None:
            table = self._tables[exchange] = self._read(exchange)
        found = set()
        for key, pattern, queue in table:
            if (pattern and re.match(pattern, routing_key)) or (not pattern and key == routing_key):
                found.add(queue)
        return found

    def _read(self, exchange: str) -> list[tuple[str, str, str]]:
        members = self.client.smembers(keys.binding_key(exchange, self.prefix))
        table = []
        for member in members:
            text = member.decode() if isinstance(member, bytes) else member
            parts = text.split(keys.SEP)
            if len(parts) == 3:
                table.append((parts[0], parts[1], parts[2]))
        return table


def _held(record: WorkerRecord) -> int:
    # Both count received-but-not-running tasks (``prefetched`` adds ETA-held ones); take the larger.
    return max(record.reserved, record.prefetched)


# -- errors --------------------------------------------------------------------------------------


@contextmanager
def _unreachable_on_error(url: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn connection errors into :class:`BrokerUnreachable` with a credential-free message.

    Not chained (``from None``): the original exception's text may repeat the URL.
    """
    try:
        yield
    except errors as exc:
        host = broker_host(url)
        detail = _scrub(f"{type(exc).__name__}: {exc}", url)
        raise BrokerUnreachable(f"broker {host} unreachable ({detail}); check the broker URL in the "
                                "TaskQueue's Secret and that the broker is up") from None


def _scrub(text: str, url: str) -> str:
    """Remove the URL and its user and password from ``text``."""
    secrets: Iterable[str | None] = ()
    try:
        parts = urlsplit(url)
        secrets = (url, parts.password, parts.password and unquote(parts.password), parts.username)
    except ValueError:
        secrets = (url,)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _close_quietly(channel: Any) -> None:
    try:
        channel.close()
    except Exception as exc:  # a channel the server already closed
        log.debug("closing channel: %s", exc)

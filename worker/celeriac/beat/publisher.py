"""Publishing one scheduled slot: a deterministic task id, and at most once per slot on Redis.

Task id: ``uuid5(SCHEDULED_ID_NAMESPACE, "<schedule key>\\n<entry name>\\n<slot>")`` where the
schedule key is ``<namespace>/<name>`` of the BeatSchedule (resource mode) or ``<lease namespace>/
<lease name>`` (config mode) and ``<slot>`` is the slot instant in UTC, ``datetime.isoformat()``
(e.g. ``2026-03-08T07:00:00+00:00``). Every replica derives the same id for the same slot.

Redis: :data:`PUBLISH_ONCE` sets the guard key ``celeriac.beat.fired.<task_id>`` with ``NX EX``
and pushes the envelope in the same atomic step, so two overlapping leaders cannot both publish a
slot, and a crash can never leave a guard without its message. The envelope is built by the
broker's own :func:`~celeriac.brokers.envelope.build_envelope`, byte-for-byte what ``publish``
writes. AMQP has no such guard: the message is published normally, and duplicates (possible only
in a failover window) are caught by the recorded slot and the worker's SUCCESS check.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celeriac import keys, protocol
from celeriac.beat.entries import Entry
from celeriac.brokers import BrokerConnectionError
from celeriac.brokers.envelope import build_envelope, dumps, new_delivery_tag
from celeriac.message import Message

log = logging.getLogger(__name__)

SCHEDULED_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://celeriac.io/beat")
"""The uuid5 namespace of scheduled task ids (fixed forever: changing it changes every id)."""

MIN_GUARD_TTL_S = 3600
"""A guard lives at least an hour, and at least two periods of its schedule."""

PUBLISH_ONCE = r"""
-- Publish one scheduled message unless its slot was published already.
--   KEYS[1] celeriac.beat.fired.<task_id>  STRING guard, SET NX EX ARGV[1]
--   KEYS[2] <queue>[\x06\x16<step>]        LIST   the envelope is LPUSHed here (kombu's publish)
--   KEYS[3] _kombu.binding.<queue>         SET    the queue declaration Celery performs
--   KEYS[4] _kombu.binding_permanent.<q>   SET    the same, as kombu 5.7 writes it
--   ARGV[1] guard ttl (s); ARGV[2] envelope JSON; ARGV[3] binding member
-- Returns 1 when published, 0 when the guard already existed (nothing written).
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""


def slot_iso(slot: datetime) -> str:
    """The slot as it enters the id and the header: UTC ``isoformat()``."""
    return slot.astimezone(timezone.utc).isoformat()


def scheduled_task_id(schedule_key: str, entry_name: str, slot: datetime) -> str:
    """The deterministic id of entry ``entry_name`` of ``schedule_key`` at ``slot``."""
    return str(uuid.uuid5(SCHEDULED_ID_NAMESPACE, f"{schedule_key}\n{entry_name}\n{slot_iso(slot)}"))


def guard_ttl_s(period_s: float) -> int:
    return int(max(MIN_GUARD_TTL_S, 2 * period_s))


@dataclass(frozen=True)
class Fired:
    """One slot handled by :meth:`Publisher.publish`; ``published`` is False when a guard already existed."""

    entry: str
    slot: datetime
    task_id: str
    published: bool
    published_at: datetime


class Publisher:
    """Builds scheduled messages like ``send_task`` and publishes each slot once.

    ``queues`` maps TaskQueue names to broker queue names (``CELERIAC_BEAT_QUEUES``); a name
    not in it is used as the broker queue itself.
    """

    def __init__(self, app: Any, schedule_key: str, queues: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.schedule_key = schedule_key
        self.queues = dict(queues or {})
        self._script: Any = None
        self._script_client: Any = None

    def message(self, entry: Entry, slot: datetime, now: datetime | None = None) -> tuple[Message, str, int]:
        """The task message for ``entry`` at ``slot``, its broker queue and priority."""
        task_id = scheduled_task_id(self.schedule_key, entry.name, slot)
        if entry.queue:
            queue = self.queues.get(entry.queue, entry.queue)
            route: dict[str, Any] = {}
        else:
            route = self.app.route_options(entry.task, entry.args, entry.kwargs)
            queue = str(route.get("queue") or self.app.conf.task_default_queue)
        priority = entry.priority
        if priority is None:
            priority = route.get("priority", self.app.conf.task_default_priority)
        headers = {**entry.headers, protocol.SCHEDULED_HEADER: {
            "schedule": self.schedule_key, "entry": entry.name, "slot": slot_iso(slot)}}
        message = protocol.build_task_message(
            task_id, entry.task, list(entry.args), dict(entry.kwargs),
            expires=entry.expires_s,
            reply_to=self.app.oid,
            headers=headers,
            serializer=self.app.conf.task_serializer,
            compression=self.app.conf.task_compression,
            now=now,
        )
        return message, queue, int(priority or 0)

    def publish(self, entry: Entry, slot: datetime) -> Fired:
        """Publish ``entry``'s message for ``slot`` (once per slot on Redis); broker errors propagate."""
        message, queue, priority = self.message(entry, slot)
        task_id = str(message.headers["id"])
        broker = self.app.broker
        from celeriac.brokers.redis import RedisBroker

        if isinstance(broker, RedisBroker):
            published = self._publish_once_redis(broker, message, queue, priority, entry.schedule.period_hint_s)
        else:
            broker.publish(message, queue=queue, priority=priority)
            published = True
        return Fired(entry.name, slot, task_id, published, datetime.now(timezone.utc))

    def _publish_once_redis(
        self, broker: Any, message: Message, queue: str, priority: int, period_s: float
    ) -> bool:
        envelope = build_envelope(message, "", queue, priority, new_delivery_tag())
        raw = dumps(envelope)
        task_id = str(message.headers["id"])
        prefix = broker.prefix
        if self._script is None or self._script_client is not broker.client:
            self._script = broker.client.register_script(PUBLISH_ONCE)
            self._script_client = broker.client
        from celeriac.brokers.redis import RECOVERABLE

        try:
            done = self._script(
                keys=[
                    keys.beat_fired(task_id, prefix),
                    keys.queue_list(queue, envelope["properties"]["priority"], prefix),
                    keys.binding_key(queue, prefix),
                    keys.binding_permanent_key(queue, prefix),
                ],
                args=[guard_ttl_s(period_s), raw, keys.binding_member(queue, queue)],
            )
        except RECOVERABLE as exc:
            raise BrokerConnectionError(f"Redis broker unavailable while publishing a scheduled slot: {exc}") from exc
        return bool(int(done))

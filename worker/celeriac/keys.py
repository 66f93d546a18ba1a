"""Every Redis key, channel and separator Celeriac reads or writes, in one place.

Broker keys are kombu's Redis-transport layout, so Celery workers and ours can share
one Redis (see ``shared/celery-wire-protocol.md`` §2):

* ``<queue>``                       LIST, priority step 0 (the highest priority on Redis)
* ``<queue>\\x06\\x16<step>``         LIST, priority steps 3, 6 and 9
* ``_kombu.binding.<exchange>``     SET of ``<routing_key>SEP<pattern>SEP<queue>``
* ``_kombu.binding_permanent.<ex>`` SET, same members, for queues without ``x-expires`` (kombu 5.7)
* ``unacked``                       HASH delivery_tag -> JSON ``[envelope, exchange, routing_key]``
* ``unacked_index``                 ZSET delivery_tag scored by delivery time (unix seconds, float)
* ``unacked_mutex``                 STRING lock held while restoring timed-out deliveries
* ``/{db}.<exchange>[/<rk>]``       pub/sub channel of a fanout exchange

Result-backend keys are Celery's Redis backend layout (§3):

* ``celery-task-meta-<task_id>``    STRING task meta JSON, also the pub/sub channel for its changes
* ``celery-taskset-meta-<group_id>`` STRING a saved GroupResult
* ``celery-taskset-meta-<gid>.j``   ZSET finished chord-header results; ``.s`` size, ``.t`` size change,
  ``.d`` duplicate filter, ``.c`` dispatch claim (celery 5.7)

Celeriac's own keys (no Celery equivalent) all start with ``celeriac.``:

* ``celeriac.workers``              ZSET worker id scored by its last heartbeat (unix seconds)
* ``celeriac.worker.<worker_id>``   HASH heartbeat record of one worker (read by the operator)
* ``<queue>.dead``                  LIST dead-lettered envelopes (default dead-letter queue name)
* ``celeriac.beat.fired.<task_id>`` STRING "1", the scheduler's publish-once guard for one scheduled slot:
  set with ``NX EX <ttl>`` in the same Lua step as the publish (see :mod:`celeriac.beat.publisher`);
  ``<task_id>`` is the slot's deterministic id, ttl max(3600 s, 2 x the schedule's period)

Every name accepts an optional ``prefix`` (kombu's ``global_keyprefix``), applied verbatim.
"""

from __future__ import annotations

SEP = "\x06\x16"
"""kombu's separator between a queue name and its priority step, and inside binding members."""

PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
"""kombu's default ``priority_steps``; 0 is the highest priority on Redis."""

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
UNACKED_MUTEX = "unacked_mutex"

BINDING_PREFIX = "_kombu.binding."
BINDING_PERMANENT_PREFIX = "_kombu.binding_permanent."

TASK_META_PREFIX = "celery-task-meta-"
GROUP_META_PREFIX = "celery-taskset-meta-"

WORKERS_INDEX = "celeriac.workers"
WORKER_PREFIX = "celeriac.worker."

DEAD_LETTER_SUFFIX = ".dead"

BEAT_FIRED_PREFIX = "celeriac.beat.fired."


def priority_step(priority: object) -> int:
    """Map a message priority to kombu's Redis step: clamp to 0..9, round down to a step."""
    value = priority if isinstance(priority, int) and not isinstance(priority, bool) else 0
    value = min(max(value, 0), 9)
    return max(step for step in PRIORITY_STEPS if step <= value)


def queue_list(queue: str, priority: object = 0, prefix: str = "") -> str:
    """The Redis LIST a message of ``priority`` for ``queue`` is pushed to."""
    step = priority_step(priority)
    return f"{prefix}{queue}" if step == 0 else f"{prefix}{queue}{SEP}{step}"


def queue_lists(queue: str, prefix: str = "") -> list[str]:
    """All priority lists of ``queue``, highest priority first; depth is the sum of their lengths."""
    return [queue_list(queue, step, prefix) for step in PRIORITY_STEPS]


def queue_of_list(key: str, prefix: str = "") -> str:
    """The queue name a priority list belongs to (the key minus prefix and ``SEP<step>``)."""
    name = key[len(prefix) :] if prefix and key.startswith(prefix) else key
    return name.split(SEP, 1)[0]


def binding_key(exchange: str, prefix: str = "") -> str:
    return f"{prefix}{BINDING_PREFIX}{exchange}"


def binding_permanent_key(exchange: str, prefix: str = "") -> str:
    return f"{prefix}{BINDING_PERMANENT_PREFIX}{exchange}"


def binding_member(routing_key: str, queue: str, pattern: str = "") -> str:
    return f"{routing_key}{SEP}{pattern}{SEP}{queue}"


def fanout_channel(exchange: str, routing_key: str = "", db: int = 0, prefix: str = "") -> str:
    """kombu's pub/sub channel for a fanout exchange (``fanout_patterns`` on)."""
    base = f"{prefix}/{db}.{exchange}"
    return f"{base}/{routing_key}" if routing_key else base


def task_meta(task_id: str, prefix: str = "") -> str:
    return f"{prefix}{TASK_META_PREFIX}{task_id}"


def group_meta(group_id: str, prefix: str = "") -> str:
    return f"{prefix}{GROUP_META_PREFIX}{group_id}"


def chord_key(group_id: str, suffix: str, prefix: str = "") -> str:
    """A chord bookkeeping key: ``suffix`` is one of ``j s t d c``."""
    if suffix not in {"j", "s", "t", "d", "c"}:
        raise ValueError(f"unknown chord key suffix {suffix!r}; expected one of j, s, t, d, c")
    return f"{group_meta(group_id, prefix)}.{suffix}"


def result_prefix(global_keyprefix: str) -> str:
    """Celery's result-backend prefix rule: append ``_`` unless it already ends in ``:``, ``_``, ``-`` or ``.``."""
    if not global_keyprefix or global_keyprefix[-1] in ":_-.":
        return global_keyprefix
    return f"{global_keyprefix}_"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}{DEAD_LETTER_SUFFIX}"


def worker_record(worker_id: str, prefix: str = "") -> str:
    return f"{prefix}{WORKER_PREFIX}{worker_id}"


def workers_index(prefix: str = "") -> str:
    return f"{prefix}{WORKERS_INDEX}"


def dead_letter_list(queue: str, suffix: str = DEAD_LETTER_SUFFIX, prefix: str = "") -> str:
    """The dead-letter LIST of ``queue`` with a configurable suffix and kombu's key prefix."""
    return f"{prefix}{queue}{suffix}"


def beat_fired(task_id: str, prefix: str = "") -> str:
    """The publish-once guard of the scheduled message ``task_id`` (one per entry and slot)."""
    return f"{prefix}{BEAT_FIRED_PREFIX}{task_id}"

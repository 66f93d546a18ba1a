"""Which slots of an entry to fire now: the missed-run policies, as pure functions.

A slot is *on time* when it is at most ``grace_s`` (the retry period) old; older slots are
*missed* (the leader took over late, or the loop was delayed). Policies act on missed slots
only; on-time slots always fire:

* ``skip``     fire none of the missed slots;
* ``runOnce``  fire only the most recent missed slot (the default, like a CronJob catching up once);
* ``runAll``   fire the missed slots oldest first, at most ``max_catch_up`` (the most recent ones).

The caller then moves the entry's anchor to :attr:`Decision.latest`, so a slot is considered once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from celeriac.beat.entries import Entry


@dataclass(frozen=True)
class Decision:
    """Slots to fire (ascending) and the newest slot considered (the new anchor), or None if none was due."""

    fire: tuple[datetime, ...]
    latest: datetime | None
    missed: int = 0
    """Missed slots the policy dropped, among the (bounded) window looked at; for the log line."""


def decide(entry: Entry, anchor: datetime, now: datetime, grace_s: float) -> Decision:
    """The slots of ``entry`` in ``(anchor, now]`` to fire now, per its missed-run policy."""
    if now <= anchor:
        return Decision((), None)
    on_time_max = math.ceil(grace_s / max(entry.schedule.period_hint_s, 1e-3)) + 1
    keep = (entry.max_catch_up if entry.missed_run_policy == "runAll" else 1) + on_time_max
    slots = entry.schedule.slots_between(anchor, now, limit=keep)
    if not slots:
        return Decision((), None)
    cutoff = now - timedelta(seconds=grace_s)
    missed = [s for s in slots if s < cutoff]
    on_time = [s for s in slots if s >= cutoff]
    if entry.missed_run_policy == "skip":
        chosen: list[datetime] = []
    elif entry.missed_run_policy == "runAll":
        chosen = missed[-entry.max_catch_up:]
    else:
        chosen = missed[-1:]
    return Decision(tuple(chosen + on_time), slots[-1], len(missed) - len(chosen))

"""High availability: kill -9 the leading ``celeriac beat`` again and again; roll replicas over.

Two entries fire every second in one BeatSchedule, with lease 4 s / renew deadline 3 s / retry 1 s:

* ``all`` uses ``missedRunPolicy: runAll`` (maxCatchUp 30): a new leader catches up every slot
  missed during failover, so *every* slot of the window must be published once and executed once.
* ``once`` uses ``runOnce``: a new leader fires only the most recent missed slot, so slots are
  skipped during failover; the longest gap between consecutive fired slots then measures failover
  and must be at most lease duration + interval.

Published ids come from the publish-once guard keys in Redis (one per publish) and the beats'
logs; executions from the task, which RPUSHes its own id.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from beat_support import (  # noqa: F401 (fixtures)
    FAST_ELECTION,
    Proc,
    Procs,
    beat_schedule,
    create_schedule,
    executions,
    fired_slots,
    guard_ids,
    lease_holder,
    procs_fixture,
    rclient_fixture,
)

from celeriac.beat.publisher import scheduled_task_id
from servers import wait_until

pytestmark = pytest.mark.k8s

INTERVAL = timedelta(seconds=1)
LEASE = timedelta(seconds=FAST_ELECTION["leaseDurationSeconds"])


def entries() -> list[dict[str, Any]]:
    common = {"task": "beat.record", "queue": "ticks", "every": 1}
    return [{"name": "all", **common, "missedRunPolicy": "runAll", "maxCatchUp": 30},
            {"name": "once", **common, "missedRunPolicy": "runOnce"}]


def published(beats: list[Proc], entry: str) -> list[datetime]:
    """Slots some beat published (not counting guard refusals), with repeats if any was published twice."""
    return sorted(slot for beat in beats for slot, _, sent in fired_slots(beat.log(), entry) if sent)


def start_beat(procs: Procs, namespace: str, identity: str) -> Proc:
    return procs.beat(identity, "--from-resource", f"{namespace}/ha", CELERIAC_BEAT_QUEUES='{"ticks": "beat-q"}')


def fired_since(beat: Proc, entry: str, after: datetime) -> bool:
    return any(slot > after for slot, _, _ in fired_slots(beat.log(), entry))


def assert_once_per_slot(beats: list[Proc], rclient: Any, key: str) -> tuple[list[datetime], list[datetime]]:
    """Every published slot once, every published id executed exactly once; returns the published slots.

    The guard keys are the authority on what was published (a beat killed between publishing and
    logging leaves a guard but no log line); the logs must agree with them and never show a slot
    published twice.
    """
    logged = {entry: published(beats, entry) for entry in ("all", "once")}
    for slots in logged.values():
        repeats = [slot for slot, n in Counter(slots).items() if n > 1]
        assert not repeats, f"slots published twice: {repeats}"
    guards = guard_ids(rclient)
    first, last = min(logged["all"]) - 5 * INTERVAL, max(logged["all"]) + 5 * INTERVAL
    candidates = {scheduled_task_id(key, entry, first + n * INTERVAL): (entry, first + n * INTERVAL)
                  for entry in ("all", "once") for n in range(int((last - first) / INTERVAL) + 1)}
    assert guards <= set(candidates), "a guard for an id no slot of the window explains"
    from_guards = {entry: sorted(slot for e, slot in map(candidates.__getitem__, guards) if e == entry)
                   for entry in ("all", "once")}
    for entry in ("all", "once"):
        assert set(logged[entry]) <= set(from_guards[entry])
    wait_until(lambda: len(executions(rclient)) >= len(guards), 60, "every published id to be executed")
    ran = Counter(e.task_id for e in executions(rclient))
    assert set(ran) == guards
    assert max(ran.values()) == 1, f"executed twice: {[i for i, n in ran.items() if n > 1]}"
    return from_guards["all"], from_guards["once"]


def test_killing_the_leader_five_times_publishes_every_slot_once_with_bounded_gaps(
    procs: Procs, kube_api: Any, namespace: str, rclient: Any, celeriac_crds: list[str]
) -> None:
    create_schedule(kube_api, namespace, beat_schedule("ha", entries(), leaderElection=FAST_ELECTION))
    beats = [start_beat(procs, namespace, f"beat-{n}") for n in range(3)]
    procs.worker()
    by_name = {beat.name: beat for beat in beats}
    kills, failovers_s = 0, []
    started = time.monotonic()
    while kills < 5 or time.monotonic() - started < 60:  # at least five kills over about a minute
        wait_until(lambda: lease_holder(kube_api, namespace, "ha-beat") in by_name, 30, "a leader")
        leader = by_name[str(lease_holder(kube_api, namespace, "ha-beat"))]
        wait_until(lambda leader=leader: len(fired_slots(leader.log(), "once")) >= 5, 30,
                   f"{leader.name} to fire a few slots")
        last = fired_slots(leader.log(), "once")[-1][0]
        leader.kill9()
        killed_at = time.monotonic()
        kills += 1
        replacement = start_beat(procs, namespace, f"beat-{len(beats)}")
        beats.append(replacement)
        by_name[replacement.name] = replacement
        wait_until(lambda leader=leader, last=last: any(
            b is not leader and fired_since(b, "once", last) for b in beats), 30, "a new leader to fire")
        failovers_s.append(time.monotonic() - killed_at)
    assert kills >= 5
    for beat in beats:
        if beat.alive():
            beat.terminate()
    for beat in beats:
        beat.popen.wait(timeout=30)

    every_all, every_once = assert_once_per_slot(beats, rclient, f"{namespace}/ha")
    window = every_all[-1] - every_all[0]
    assert window >= timedelta(seconds=45)
    # runAll: no slot of the window is missing
    assert [b - a for a, b in itertools.pairwise(every_all)] == [INTERVAL] * (len(every_all) - 1)
    # runOnce: the longest gap between fired slots is the failover time, bounded by lease + interval
    longest = max(b - a for a, b in itertools.pairwise(every_once))
    print(f"failovers (kill -> next fire, s): {[round(f, 2) for f in failovers_s]}; longest runOnce gap {longest}")
    assert longest <= LEASE + INTERVAL


def test_rollout_overlap_publishes_no_slot_twice_and_loses_none(
    procs: Procs, kube_api: Any, namespace: str, rclient: Any, celeriac_crds: list[str]
) -> None:
    create_schedule(kube_api, namespace, beat_schedule("ha", entries(), leaderElection=FAST_ELECTION))
    old = [start_beat(procs, namespace, f"old-{n}") for n in range(3)]
    procs.worker()
    wait_until(lambda: len(published(old, "all")) >= 3, 60, "the old replicas to fire")
    new = [start_beat(procs, namespace, f"new-{n}") for n in range(3)]  # surge: six replicas at once
    wait_until(lambda: all("starting" in b.log() for b in new), 30, "the new replicas to start")
    settled = published(old, "all")[-1]
    wait_until(lambda: any(s > settled + 3 * INTERVAL for s in published(old, "all")), 30, "more slots")
    for beat in old:  # the rollout terminates the old pods; the leader releases the Lease on SIGTERM
        beat.terminate()
        assert beat.popen.wait(timeout=30) == 0
    wait_until(lambda: lease_holder(kube_api, namespace, "ha-beat") in {b.name for b in new}, 30,
               "a new replica to lead")
    handed = published(old, "all")[-1]
    wait_until(lambda: any(s > handed + 3 * INTERVAL for s in published(new, "all")), 30,
               "the new leader to fire")
    for beat in new:
        beat.terminate()
        assert beat.popen.wait(timeout=30) == 0

    every_all, every_once = assert_once_per_slot(old + new, rclient, f"{namespace}/ha")
    assert [b - a for a, b in itertools.pairwise(every_all)] == [INTERVAL] * (len(every_all) - 1)
    assert [b - a for a, b in itertools.pairwise(every_once)] == [INTERVAL] * (len(every_once) - 1)

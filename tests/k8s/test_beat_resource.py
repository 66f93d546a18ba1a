"""Resource mode: ``celeriac beat --from-resource`` writes status and follows spec changes without restart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from beat_support import (  # noqa: F401 (fixtures)
    FAST_ELECTION,
    Procs,
    beat_schedule,
    create_schedule,
    executions,
    fired_slots,
    get_schedule,
    lease_holder,
    patch_spec,
    procs_fixture,
    rclient_fixture,
)

from celeriac.beat.publisher import scheduled_task_id
from servers import wait_until

pytestmark = pytest.mark.k8s


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status_entry(kube_api: Any, namespace: str, name: str, entry: str) -> dict[str, Any]:
    status = get_schedule(kube_api, namespace, name).get("status") or {}
    return next((e for e in status.get("entries") or [] if e["name"] == entry), {})


def test_resource_mode_writes_status_and_applies_spec_changes_without_restart(
    procs: Procs, kube_api: Any, namespace: str, rclient: Any, celeriac_crds: list[str]
) -> None:
    tick = {"name": "tick", "task": "beat.record", "queue": "ticks", "every": 1, "args": [1]}
    create_schedule(kube_api, namespace, beat_schedule("nightly", [tick], leaderElection=FAST_ELECTION))
    beat = procs.beat("beat-0", "--from-resource", f"{namespace}/nightly", app=None,  # no -A, like the operator
                      CELERIAC_BEAT_QUEUES='{"ticks": "beat-q", "other": "beat-q"}')
    procs.worker()
    wait_until(lambda: len(executions(rclient)) >= 2, 60, "the 1 s entry to run")
    assert lease_holder(kube_api, namespace, "nightly-beat") == "beat-0"

    wait_until(lambda: status_entry(kube_api, namespace, "nightly", "tick").get("lastTaskId"), 30, "status")
    status = get_schedule(kube_api, namespace, "nightly")["status"]
    assert status["leader"] == "beat-0"
    assert "leaderSince" in status
    record = status_entry(kube_api, namespace, "nightly", "tick")
    slot = when(record["lastSlotTime"])
    assert record["lastTaskId"] == scheduled_task_id(f"{namespace}/nightly", "tick", slot)
    assert when(record["nextRunTime"]) == slot + timedelta(seconds=1)
    assert when(record["lastRunTime"]) >= slot
    assert when(status["lastRunTime"]) == when(record["lastRunTime"])
    assert not {"conditions", "observedGeneration", "entryCount"} & set(status)  # the operator's fields

    # a spec change: a second entry on another TaskQueue name, and the first one suspended
    hourly = {"name": "hourly", "task": "beat.record", "queue": "other", "cron": "@hourly"}
    patch_spec(kube_api, namespace, "nightly", {"entries": [{**tick, "suspend": True}, hourly]})
    wait_until(lambda: status_entry(kube_api, namespace, "nightly", "hourly").get("nextRunTime"), 30,
               "the new entry in status")
    assert when(status_entry(kube_api, namespace, "nightly", "hourly")["nextRunTime"]).minute == 0
    wait_until(lambda: "generation 2" in beat.log(), 30, "the beat to log the new generation")
    fired_before = len(fired_slots(beat.log(), "tick"))
    suspended_at = when(status_entry(kube_api, namespace, "nightly", "tick")["lastSlotTime"])
    # resume it: firing starts again from now (no catch-up of the suspended time)
    patch_spec(kube_api, namespace, "nightly", {"entries": [tick, hourly]})
    wait_until(lambda: len(fired_slots(beat.log(), "tick")) > fired_before, 30, "the resumed entry to fire")
    resumed = fired_slots(beat.log(), "tick")[fired_before:]
    assert resumed[0][0] > suspended_at
    assert beat.alive()
    assert beat.log().count("celeriac beat beat-0 starting") == 1  # no restart
    slots = [slot for slot, _, _ in fired_slots(beat.log(), "tick")]
    assert len(slots) == len(set(slots))

"""Lease election among real ``celeriac beat`` processes (config mode: the app's beat_schedule)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from beat_support import (  # noqa: F401 (fixtures)
    Procs,
    executions,
    fired_slots,
    lease_annotations,
    lease_holder,
    procs_fixture,
    rclient_fixture,
)

from celeriac.beat.publisher import scheduled_task_id
from celeriac.beat.state import STATE_ANNOTATION
from servers import wait_until

pytestmark = pytest.mark.k8s

ELECTION = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


def test_one_of_three_processes_leads_and_a_released_lease_fails_over_with_the_recorded_slot(
    procs: Procs, kube_api: Any, namespace: str, rclient: Any
) -> None:
    lease = f"{namespace}/beat-config"
    beats = {name: procs.beat(name, "--lease", lease, *ELECTION) for name in ("a", "b", "c")}
    procs.worker()
    wait_until(lambda: lease_holder(kube_api, namespace, "beat-config") is not None, 60, "a leader")
    first = lease_holder(kube_api, namespace, "beat-config")
    assert first in beats
    wait_until(lambda: len(executions(rclient)) >= 3, 60, "three executions")
    for name, beat in beats.items():
        if name != first:
            assert not fired_slots(beat.log(), "tick"), f"{name} fired while {first} led"
    state = json.loads(lease_annotations(kube_api, namespace, "beat-config")[STATE_ANNOTATION])
    assert set(state) == {"tick"}
    recorded = fired_slots(beats[first].log(), "tick")
    assert state["tick"]["lastTaskId"] in {scheduled_task_id(lease, "tick", slot) for slot, _, _ in recorded}

    beats[first].terminate()  # SIGTERM: the leader releases the Lease and exits 0
    assert beats[first].popen.wait(timeout=30) == 0
    assert "released the Lease" in beats[first].log()
    wait_until(lambda: lease_holder(kube_api, namespace, "beat-config") not in (None, first), 10,
               "another process to take the released Lease")
    second = lease_holder(kube_api, namespace, "beat-config")
    assert second is not None
    wait_until(lambda: len(fired_slots(beats[second].log(), "tick")) >= 2, 30, "the new leader to fire")
    old = fired_slots(beats[first].log(), "tick")
    new = fired_slots(beats[second].log(), "tick")
    # the new leader resumed right after the last recorded slot: no slot lost, none repeated
    assert new[0][0] > old[-1][0]
    slots = sorted(slot for slot, _, published in old + new if published)
    assert len(slots) == len(set(slots))
    ids = [e.task_id for e in executions(rclient)]
    assert len(ids) == len(set(ids))

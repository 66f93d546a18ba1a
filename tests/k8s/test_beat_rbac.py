"""The scheduler runs with exactly the Role the operator grants it (least privilege, checked for real).

The Role comes from the operator's own builder, bound to a ServiceAccount whose token (a real
TokenRequest) is the beat process's only credential; RBAC is enforced by the API server.
"""

from __future__ import annotations

from typing import Any

import pytest
from beat_support import (  # noqa: F401 (fixtures)
    FAST_ELECTION,
    Procs,
    beat_schedule,
    create_schedule,
    executions,
    get_schedule,
    lease_holder,
    procs_fixture,
    rclient_fixture,
)
from operator_support import service_account_kubeconfig

from servers import wait_until

pytestmark = pytest.mark.k8s


@pytest.mark.usefixtures("celeriac_crds")
def test_beat_leads_fires_and_writes_status_with_only_the_operators_role(
    procs: Procs, kube_api: Any, namespace: str, rclient: Any
) -> None:
    from kubernetes import client

    from celeriac_operator.builders import beatschedule as builder
    from celeriac_operator.models import BeatSchedule

    body = beat_schedule("least", [{"name": "tick", "task": "beat.record", "queue": "ticks", "every": 1}],
                         leaderElection=FAST_ELECTION)
    created = create_schedule(kube_api, namespace, body)
    schedule = BeatSchedule.from_body(created)
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    core.create_namespaced_service_account(namespace, builder.service_account(schedule))
    rbac.create_namespaced_role(namespace, builder.role(schedule))
    rbac.create_namespaced_role_binding(namespace, builder.role_binding(schedule))
    procs.kubeconfig = service_account_kubeconfig(kube_api, procs.kubeconfig, namespace, "least-beat",
                                                  procs.directory / "sa-kubeconfig")
    beat = procs.beat("least-0", "--from-resource", f"{namespace}/least", CELERIAC_BEAT_QUEUES='{"ticks": "beat-q"}')
    procs.worker()
    wait_until(lambda: len(executions(rclient)) >= 2, 60, "the entry to run under the Role")
    assert lease_holder(kube_api, namespace, "least-beat") == "least-0"
    wait_until(lambda: (get_schedule(kube_api, namespace, "least").get("status") or {}).get("entries"), 30,
               "status written under the Role")
    assert "403" not in beat.log()
    assert "Forbidden" not in beat.log()
    # the credential really is restricted: another Lease or BeatSchedule is out of reach
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    restricted = config.new_client_from_config(config_file=str(procs.kubeconfig))
    with pytest.raises(ApiException) as lease_error:
        client.CoordinationV1Api(restricted).read_namespaced_lease("someone-else", namespace)
    with pytest.raises(ApiException) as schedule_error:
        client.CustomObjectsApi(restricted).patch_namespaced_custom_object_status(
            "celeriac.io", "v1alpha1", namespace, "beatschedules", "someone-else", {"status": {}})
    assert lease_error.value.status == schedule_error.value.status == 403

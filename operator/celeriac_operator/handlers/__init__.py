"""Thin kopf registrations, one module per custom resource kind.

:func:`register` adds every handler to a kopf registry, closing over the operator's settings and its
:class:`~celeriac_operator.kube.Kube` session (registration is explicit, not an import side effect, so
timer intervals can come from the settings).
"""

from __future__ import annotations

from typing import Any

import kopf

from celeriac_operator import names
from celeriac_operator.handlers import autoscaling, beatschedule, taskqueue, workerpool
from celeriac_operator.kube import Kube
from celeriac_operator.settings import Settings


def register(registry: kopf.OperatorRegistry, settings: Settings, kube: Kube) -> None:
    """Register the operator's handlers for all three kinds into ``registry``."""

    @kopf.on.login(registry=registry, id="operator_login")
    def operator_login(**kwargs: Any) -> Any:
        # Same sources as Kube.from_environment: in-cluster service account, else $KUBECONFIG.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry, id="operator_startup")
    def operator_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and the last-handled spec stay in annotations; status belongs to our own fields.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=names.KOPF_PREFIX, key="last-handled-configuration",
        )
        settings.posting.level = 20  # logging.INFO: post info and warning Events for our resources
        settings.watching.server_timeout = 300

    def reconcile_dependents(namespace: str) -> None:
        """A TaskQueue came or went: re-reconcile what may reference it (no need to wait for the timer)."""
        for item in kube.list(names.WORKERPOOL_KIND, namespace):
            workerpool.reconcile(kube, settings, item)
        for item in kube.list(names.BEATSCHEDULE_KIND, namespace):
            beatschedule.reconcile(kube, settings, item)

    taskqueue.register(registry, settings, kube, reconcile_dependents)
    workerpool.register(registry, settings, kube)
    autoscaling.register(registry, settings, kube)
    beatschedule.register(registry, settings, kube)

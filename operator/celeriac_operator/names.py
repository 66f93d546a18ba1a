"""Every API name, label, annotation and field manager the operator reads or writes, in one place.

Custom resources are ``celeriac.io/v1alpha1``, namespaced:

* ``TaskQueue``    (``taskqueues``,    short name ``tq``)
* ``WorkerPool``   (``workerpools``,   short name ``wp``)
* ``BeatSchedule`` (``beatschedules``, short name ``bs``)

All three are in the ``celeriac`` category, so ``kubectl get celeriac`` lists them.

Objects the operator creates carry the recommended ``app.kubernetes.io/*`` labels plus
``celeriac.io/<kind>: <name>`` naming the custom resource they were built from; selectors use
only the latter and ``app.kubernetes.io/component`` so that they never change after creation.
"""

from __future__ import annotations

GROUP = "celeriac.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "celeriac"

TASKQUEUE_KIND, TASKQUEUE_PLURAL, TASKQUEUE_SHORT = "TaskQueue", "taskqueues", "tq"
WORKERPOOL_KIND, WORKERPOOL_PLURAL, WORKERPOOL_SHORT = "WorkerPool", "workerpools", "wp"
BEATSCHEDULE_KIND, BEATSCHEDULE_PLURAL, BEATSCHEDULE_SHORT = "BeatSchedule", "beatschedules", "bs"

# --- labels ------------------------------------------------------------------------------------
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_WORKERPOOL = f"{GROUP}/workerpool"
LABEL_BEATSCHEDULE = f"{GROUP}/beatschedule"

APP_NAME = "celeriac"
MANAGED_BY = "celeriac-operator"
COMPONENT_WORKER = "worker"
COMPONENT_BEAT = "beat"

# --- annotations -------------------------------------------------------------------------------
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
"""Lower cost is deleted first when a ReplicaSet scales down (Kubernetes >= 1.22)."""

KOPF_PREFIX = f"kopf.{GROUP}"
"""Prefix of kopf's progress and last-handled-configuration annotations on our resources."""

# --- server-side apply field managers ----------------------------------------------------------
FIELD_MANAGER = "celeriac-operator"
"""Owns everything the reconcilers build."""
FIELD_MANAGER_AUTOSCALER = "celeriac-autoscaler"
"""Owns only ``spec.replicas`` of autoscaled Deployments, so a reconcile never fights a scale."""
FIELD_MANAGER_BEAT = "celeriac-beat"
"""The scheduler's writes to its own BeatSchedule status."""

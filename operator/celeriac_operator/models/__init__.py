"""Typed models of the three custom resources: the single source of their CRDs and of the handlers' view.

Parse at the handler boundary with ``TaskQueue.from_body(body)`` (and likewise ``WorkerPool``,
``BeatSchedule``); ``python -m celeriac_operator.crdgen`` renders the CRDs in ``crds/`` from these.
"""

from celeriac_operator.models.beatschedule import (
    BeatEntry,
    BeatSchedule,
    BeatScheduleSpec,
    BeatScheduleStatus,
    EntryOptions,
    EntryStatus,
    LeaderElectionSpec,
)
from celeriac_operator.models.common import Condition, EnvVar, ResourceRequirements, SecretKeyRef, SecretRef
from celeriac_operator.models.taskqueue import DeadLetterSpec, TaskQueue, TaskQueueSpec, TaskQueueStatus
from celeriac_operator.models.workerpool import AutoscalingSpec, WorkerPool, WorkerPoolSpec, WorkerPoolStatus

RESOURCES = (TaskQueue, WorkerPool, BeatSchedule)
"""Every custom resource, in CRD file order."""

__all__ = [
    "RESOURCES",
    "AutoscalingSpec",
    "BeatEntry",
    "BeatSchedule",
    "BeatScheduleSpec",
    "BeatScheduleStatus",
    "Condition",
    "DeadLetterSpec",
    "EntryOptions",
    "EntryStatus",
    "EnvVar",
    "LeaderElectionSpec",
    "ResourceRequirements",
    "SecretKeyRef",
    "SecretRef",
    "TaskQueue",
    "TaskQueueSpec",
    "TaskQueueStatus",
    "WorkerPool",
    "WorkerPoolSpec",
    "WorkerPoolStatus",
]

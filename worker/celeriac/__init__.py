"""Celeriac: a Kubernetes-native, Celery-compatible task queue runtime.

``from celeriac import Celery, shared_task, AsyncResult`` is the migration path from
Celery: the names, settings and wire formats are Celery's.
"""

from celeriac import states
from celeriac.app import Celeriac, Celery, current_app, shared_task
from celeriac.canvas import chain, chord, group
from celeriac.canvas_maps import chunks, xmap, xstarmap
from celeriac.exceptions import (
    CeleriacError,
    ChordError,
    MaxRetriesExceededError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskError,
    TimeLimitExceeded,
)
from celeriac.result import AsyncResult, EagerResult, GroupResult
from celeriac.signature import Signature, maybe_signature, signature
from celeriac.task import Task

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "Celeriac",
    "CeleriacError",
    "Celery",
    "ChordError",
    "EagerResult",
    "GroupResult",
    "MaxRetriesExceededError",
    "Reject",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TimeLimitExceeded",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "xmap",
    "xstarmap",
]

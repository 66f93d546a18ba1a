"""The worker: ``Worker(app, WorkerOptions(...)).run()`` consumes queues and runs tasks.

Imports are lazy so that the observability modules in this package (state, health,
metrics...) can be imported on their own without pulling in the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.worker.engine import Worker
    from celeriac.worker.options import WorkerOptions


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from celeriac.worker.engine import Worker

        return Worker
    if name == "WorkerOptions":
        from celeriac.worker.options import WorkerOptions

        return WorkerOptions
    raise AttributeError(f"module 'celeriac.worker' has no attribute {name!r}")


__all__ = ["Worker", "WorkerOptions"]

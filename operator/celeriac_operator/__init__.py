"""Celeriac operator: kopf handlers that reconcile TaskQueue, WorkerPool and BeatSchedule."""

"""The scheduler: beat schedules fired once per slot by leader-elected replicas (DESIGN §4).

Modules: :mod:`.entries` (what to fire, parsed from a BeatSchedule or ``beat_schedule``),
:mod:`.policy` (which slots are due, missed-run policies), :mod:`.leader` (Lease election),
:mod:`.publisher` (deterministic ids, publish-once), :mod:`.state` (where the last fired slot
is recorded), :mod:`.resource` (the BeatSchedule API), :mod:`.service` (the loop),
:mod:`.command` (``celeriac beat``).
"""

from __future__ import annotations

from celeriac.exceptions import CeleriacError, FatalError, RetryableError


class BeatError(CeleriacError):
    """Root of the scheduler's errors."""


class BeatConfigError(BeatError, FatalError):
    """A schedule source (BeatSchedule spec, ``beat_schedule``, flags) that cannot be used; says how to fix it."""


class BeatApiError(BeatError, RetryableError):
    """The Kubernetes API failed in a way that may pass (unreachable, 5xx, timeout); retried with backoff."""


__all__ = ["BeatApiError", "BeatConfigError", "BeatError"]

"""The operator's exceptions: one root, split into retryable (try again later) and fatal (stop).

Handlers turn :class:`RetryableError` into ``kopf.TemporaryError(delay=...)`` and :class:`FatalError`
into ``kopf.PermanentError``. Messages say what is wrong and how to fix it, and never carry credentials.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Root of every error the operator raises on purpose."""


class RetryableError(OperatorError):
    """A transient problem (API conflict, API server unavailable): retry shortly (the operator's
    ``retry_delay_s`` setting)."""


class FatalError(OperatorError):
    """Retrying can't help (e.g. a resource the API server accepted but that can't be built)."""


class SettingsError(FatalError):
    """An operator setting (environment variable or flag) has an unusable value."""


class Unresolved(OperatorError):
    """A reference in a custom resource can't be resolved yet (missing TaskQueue, Secret or key).

    Not retried by kopf: it becomes a condition (``reason``) and an Event, and the periodic
    re-check recovers once the user fixes it.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

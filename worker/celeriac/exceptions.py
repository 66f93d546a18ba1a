"""Every error Celeriac raises descends from :class:`CeleriacError`.

Errors are split into :class:`RetryableError` (try again later: a broker or backend
that is unreachable) and :class:`FatalError` (retrying cannot help: a malformed
message, an unregistered task). Task-control exceptions (:class:`Retry`,
:class:`Reject`) and the time-limit exceptions are raised *inside* tasks; they keep
Celery's names so user code that catches them ports with an import change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class CeleriacError(Exception):
    """Root of every Celeriac exception."""


class RetryableError(CeleriacError):
    """A transient failure: the same call may succeed later."""


class FatalError(CeleriacError):
    """A permanent failure: the same call will fail again."""


class MalformedMessage(FatalError):
    """A message that cannot be decoded into a task request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ContentDisallowed(MalformedMessage):
    """A message whose content type is not in ``accept_content``."""


class SerializationError(FatalError):
    """A value the chosen serializer cannot encode or decode."""


class NotRegistered(FatalError, KeyError):
    """No task of this name is registered in the app."""

    def __str__(self) -> str:
        return f"task {self.args[0]!r} is not registered; import the module that defines it"


class ImproperlyConfigured(FatalError):
    """A setting holds a value Celeriac cannot use."""


class BackendError(RetryableError):
    """The result backend could not be reached or answered with an error."""


class TimeoutError(RetryableError):
    """``AsyncResult.get`` did not see a ready state within its timeout."""


class TaskError(CeleriacError):
    """A task failed with an exception whose type cannot be rebuilt here.

    ``exc_type`` and ``exc_module`` name the remote type; ``exc_args`` are its args.
    """

    def __init__(self, exc_type: str, exc_module: str | None, exc_args: list[Any] | tuple[Any, ...]) -> None:
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.exc_args = tuple(exc_args)
        where = f"{exc_module}.{exc_type}" if exc_module else exc_type
        super().__init__(f"{where}{self.exc_args!r}")


class ChordError(CeleriacError):
    """A chord's header failed (or its body could not be sent); stored as Celery's ``ChordError``."""


class TaskRevokedError(CeleriacError):
    """The task was revoked (``revoked``, ``terminated`` or ``expired``)."""


class Retry(CeleriacError):
    """Raised by ``Task.retry`` to ask the worker to republish the task later."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | datetime | None = None,
        is_eager: bool = False,
        sig: Any = None,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.is_eager = is_eager
        self.sig = sig
        super().__init__(message, exc, when)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        if self.exc:
            return f"Retry {self.humanize()}: {self.exc!r}"
        return f"Retry {self.humanize()}"


class Reject(CeleriacError):
    """Raised by a task to reject its message (``requeue`` puts it back on the queue)."""

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class Ignore(CeleriacError):
    """Raised by a task so that the worker records no state for it."""


class MaxRetriesExceededError(CeleriacError):
    """``Task.retry`` was called more than ``max_retries`` times."""


class SoftTimeLimitExceeded(CeleriacError):
    """Raised inside a task when its soft time limit expires, so it can clean up."""


class TimeLimitExceeded(CeleriacError):
    """The task ran past its hard time limit and its process was replaced."""


class WorkerLostError(CeleriacError):
    """The process running the task exited before it finished."""

"""Task states, the sets Celery groups them into, and their precedence.

PENDING means "no record": unknown ids read as PENDING too. RECEIVED and REJECTED are
never stored; STARTED only with ``task_track_started``.
"""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, REVOKED, REJECTED, RETRY})

_PRECEDENCE = [SUCCESS, FAILURE, None, REVOKED, STARTED, RECEIVED, REJECTED, RETRY, PENDING]
_CUSTOM_INDEX = _PRECEDENCE.index(None)


def precedence(state: str) -> int:
    """Lower is stronger: SUCCESS > FAILURE > custom states > REVOKED > ... > PENDING."""
    try:
        return _PRECEDENCE.index(state)
    except ValueError:
        return _CUSTOM_INDEX


def stronger(a: str, b: str) -> bool:
    """True if state ``a`` takes precedence over state ``b``."""
    return precedence(a) < precedence(b)

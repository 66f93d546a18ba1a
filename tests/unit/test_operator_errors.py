"""Our errors become kopf's: retryable ones (HTTP 409, API unavailable) a short TemporaryError, fatal ones stop."""

from __future__ import annotations

import kopf
import pytest

from celeriac_operator.errors import FatalError, RetryableError
from celeriac_operator.handlers._common import kopf_errors


def test_a_conflict_becomes_a_temporary_error_retried_after_the_configured_delay() -> None:
    with pytest.raises(kopf.TemporaryError) as caught, kopf_errors(1.5):
        raise RetryableError("PATCH /apis/apps/v1/...: HTTP 409: the object has been modified")
    assert caught.value.delay == 1.5
    assert "HTTP 409" in str(caught.value)


def test_a_fatal_error_becomes_a_permanent_error() -> None:
    with pytest.raises(kopf.PermanentError, match="HTTP 422"), kopf_errors(1.5):
        raise FatalError("PATCH ...: HTTP 422: invalid")

"""Errors of a step as Dagster failures: retried when the other side did not answer, not when
the declaration or the data are wrong; never holding a credential.

Dagster's ``RetryPolicy`` retries a step on any exception except a ``Failure`` with
``allow_retries=False``, and records the exception with its chain (``__cause__``) as the step's
error in the event log. A transient failure therefore carries the redacted copy of the chain it
came from (its traceback, with messages redacted), a user error only its one-paragraph message.
"""

from __future__ import annotations

import dagster as dg

from memories_dagster.connectors.files import is_transient
from memories_dagster.engine.errors import error_detail
from memories_dagster.secrets import redact, redacted
from memories_dagster.specs.integration import RetrySpec


def step_failure(exc: Exception, what: str | None) -> dg.Failure:
    """``exc`` as the failure to raise (plainly: ``raise step_failure(exc, ...)``) for a step
    doing ``what`` (None: the message already says); credentials removed."""
    transient = is_transient(exc)
    failure = dg.Failure(description=redact(f"{what}: {error_detail(exc)}" if what else error_detail(exc)), allow_retries=transient,
                         metadata={"retryable": transient})
    failure.__cause__ = redacted(exc) if transient else None
    failure.__suppress_context__ = True  # the original exception, unredacted, stays out of the record
    return failure


BACKOFF = {"linear": dg.Backoff.LINEAR, "exponential": dg.Backoff.EXPONENTIAL}
JITTER = {"full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS}


def retry_policy(spec: RetrySpec | None) -> dg.RetryPolicy | None:
    """The Dagster retry policy a declaration's ``retry`` asks for (none: no retries)."""
    if spec is None:
        return None
    return dg.RetryPolicy(max_retries=spec.max_retries, delay=spec.delay_seconds,
                          backoff=BACKOFF.get(spec.backoff or ""), jitter=JITTER.get(spec.jitter or ""))

"""Errors of the integration engine; each message names what is wrong and where."""

from __future__ import annotations

import re

from memories_dagster.secrets import redact

# An excerpt of the SQL that failed ("LINE 1: SELECT ...") and its "^^^" marker: it points into
# SQL the engine generated, which the user never wrote and cannot act on.
_SQL_EXCERPT = re.compile(r"^LINE \d+:|^\s*\^+\s*$")


class IntegrationError(ValueError):
    """The data or the spec do not allow the integration to go on."""


def error_detail(exc: BaseException) -> str:
    """The whole message of a database error as one paragraph, secrets redacted.

    Every line of the cause is kept (DuckDB's "Candidate bindings", PostgreSQL's DETAIL and
    HINT, the value that did not convert); left out are the excerpt of the failing SQL and
    tab-indented lists of candidate function signatures.
    """
    text = str(getattr(exc, "orig", None) or exc)
    lines = [line.strip() for line in text.splitlines() if not line.startswith("\t") and not _SQL_EXCERPT.match(line)]
    return redact(" ".join(line for line in lines if line)) or type(exc).__name__

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
    """The whole message of an error (DuckDB's, a database driver's) as one paragraph, secrets
    redacted.

    The first line alone often lacks the cause ("CSV Error on Line: 3" without "not utf-8" or
    without the column and value that did not convert). Every line of the cause is kept
    (DuckDB's "Candidate bindings", PostgreSQL's DETAIL and HINT); left out are the excerpt of
    the failing SQL, tab-indented lists of candidate function signatures, and DuckDB's advice
    and reader settings that follow the cause ("Possible Solution", "file = ...").
    """
    text = str(getattr(exc, "orig", None) or exc)
    kept: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith("Possible") or line.strip().startswith("file = "):
            break
        if not line.startswith("\t") and not _SQL_EXCERPT.match(line) and line.strip():
            kept.append(line.strip())
    return redact(" ".join(kept)) or type(exc).__name__

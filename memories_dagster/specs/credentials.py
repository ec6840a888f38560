"""Declaration fields that hold credentials: registered for redaction as they are validated.

A value written in the declaration is registered (and refused when too short to be hidden) the
moment the field is validated, so it is hidden from every message, description and log line the
code location produces afterwards, even when the declaration as a whole turns out invalid. A
value holding ``${ENV}`` references is checked when it is resolved instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

from memories_dagster.secrets import is_credential_name, register, register_address, url_passwords

HERE = "this field"


def _literal(value: Any) -> bool:
    return isinstance(value, str) and "${" not in value


def literal_credential(value: str | None) -> str | None:
    """Register a credential written in a declaration (one with ``${ENV}`` is checked when resolved)."""
    return register(value, HERE) if _literal(value) else value


def _address(value: str | None) -> str | None:
    if not _literal(value):
        return value
    register_address(value, HERE)
    if any("://" not in value[:start] for start, _ in url_passwords(value)):
        # no reader takes it, and the error of one that tries would show it whole
        raise ValueError("holds user:password@host without a scheme; write a URL with its scheme, e.g. "
                         "postgresql://user:password@host:5432/database, or the password in "
                         "authentication.password or a ${ENV} reference")
    return value


def _named(values: dict[str, Any]) -> dict[str, Any]:
    for name, value in values.items():
        if is_credential_name(name) and _literal(value):
            register(value, name)
    return values


Credential = Annotated[str, AfterValidator(literal_credential)]
"""A password, API key, secret key or token."""

Address = Annotated[str, AfterValidator(_address)]
"""A URL or connection string, whose password and credential query parameters are credentials."""

NamedValues = Annotated[dict[str, Any], AfterValidator(_named)]
"""Parameters or arguments; those whose name says they carry a credential hold one."""

Headers = Annotated[dict[str, str], AfterValidator(_named)]
"""HTTP headers; ``Authorization``, ``X-API-Key`` and the like hold credentials."""

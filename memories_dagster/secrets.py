"""``${ENV_VAR}`` references in declarations, and redaction of their values from any text.

Values are resolved only when a connector needs them, so a code location loads even where a
secret is not set, and every resolved value is remembered so that errors, logs and metadata can
be passed through :func:`redact` before anyone sees them.
"""

from __future__ import annotations

import os
import re
import urllib.parse

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RESOLVED: set[str] = set()
_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://([^/@]*)@")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")


class MissingSecretError(KeyError):
    """A declaration refers to an environment variable that is not set."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve(text: str, where: str) -> str:
    """Replace each ``${NAME}`` in ``text`` by the environment's value; ``where`` names the field.

    In the user-info part of a URL (``scheme://user:${PASSWORD}@host``) the value is
    percent-encoded, so a password holding ``@`` or ``:`` stays one password.
    """
    userinfo = _USERINFO.match(text)
    userinfo_end = userinfo.end(1) if userinfo else -1

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise MissingSecretError(
                f"{where} refers to environment variable {name}, which is not set; "
                f"export {name}=... before running"
            )
        secret = os.environ[name]
        if match.start() < userinfo_end:
            secret = urllib.parse.quote(secret, safe="")
        if len(secret) >= 3:  # every form it may take in a URL or a message
            raw = urllib.parse.unquote(secret)
            _RESOLVED.update({secret, raw, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw)})
        return secret

    return _REFERENCE.sub(value, text)


def redact(text: str) -> str:
    """Hide resolved secrets and passwords written inside URLs."""
    for secret in sorted(_RESOLVED, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_PASSWORD.sub(r"\g<head>***", text)

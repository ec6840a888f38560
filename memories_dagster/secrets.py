"""Credentials in declarations: ``${ENV_VAR}`` references, and redaction of their values from any text.

A credential is the value of a credential field (``authentication.password``/``api_key``, the
password of a URL, a header, parameter or query parameter whose name says it holds a key, a
profile connection's keys) and every value an ``${ENV}`` reference resolves to. Each is
registered when it is read: values written in a declaration when the declaration is validated,
``${ENV}`` values when a connector resolves them. :func:`redact` then replaces it, in every form
it may take in a message, by ``***``: as written, percent-encoded (once or twice), JSON-, repr-
and HTML-escaped, base64 at any alignment (so inside a basic-auth header too), in any letter case
(databases echo identifiers folded to lower or upper case).

A credential shorter than :data:`MIN_SECRET_LENGTH` characters is refused: replacing every ``pw``
in every message would destroy the messages, and not replacing it would leak it.
"""

from __future__ import annotations

import base64
import bisect
import html
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

MIN_SECRET_LENGTH = 8  # NIST SP 800-63B's minimum for memorized secrets
MASK = "***"

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://([^/@]*)@")
# The start of a URL's userinfo, up to the ':' before its password: ``scheme://user:``, or, at the
# start of a word, ``user:`` or ``//user:`` (a URL written without its scheme). Each alternative
# starts only where the previous character cannot continue it, and its runs exclude the
# characters that may start another, so scanning a text is linear in its length.
_USERINFO_HEAD = re.compile(
    r"(?P<scheme>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]*://)[^:/@\s]*:"
    r"|(?<![^\s'\"`(\[<=,;])(?://)?[^:/@\s'\"`()\[\]<>=,;]+:(?!//)"
)
# The '@' that ends a password: a host follows it (no further '@' before the path, query or the
# end), so a password may hold '@', '/' or '?' written unencoded
_PASSWORD_END = re.compile(r"@(?=[^@\s/?#]*(?:[/?#\s'\")\]]|$))")
_WHITESPACE = re.compile(r"\s")
# key=value connection strings: libpq's ``host=db password=secret``, ODBC's ``PWD={se;cret};``
_KEY_VALUE = re.compile(
    r"(?<![^\s;,{(\[])(?P<head>(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)\s?=\s?)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|\{[^}]*\}|[^\s;&'\"<>,)}\]]*)"
)
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s'\"<>]*)")
_AUTHORIZATION = re.compile(r"(?i)(?P<head>authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)(?P<value>[^\s\"',;]+)")
_AZURE_KEYS = re.compile(r"(?i)(?P<head>(?:AccountKey|SharedAccessSignature)=)(?P<value>[^;\s]+)")
# names of headers, parameters and arguments that carry credentials, compared without separators
_CREDENTIAL_NAMES = {"key", "appid", "auth", "authorization", "proxyauthorization", "cookie", "sig", "sas"}
_CREDENTIAL_ENDINGS = ("apikey", "token", "secret", "password", "passwd", "pwd", "signature", "accesskey",
                       "secretkey", "subscriptionkey", "privatekey", "sessionid", "credential", "credentials",
                       "accountkey", "sharedaccesssignature", "sastoken")

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


class MissingSecretError(KeyError):
    """A declaration refers to an environment variable that is not set."""

    def __str__(self) -> str:
        return str(self.args[0])


class SecretError(ValueError):
    """A credential that cannot be kept out of messages (too short), named by its field only."""


def is_credential_name(name: str) -> bool:
    """Whether a header, parameter or argument called ``name`` carries a credential
    (``Authorization``, ``X-API-Key``, ``appid``, ``access_token``, ``client_secret``, ...)."""
    folded = re.sub(r"[^a-z0-9]", "", name.lower())
    return folded in _CREDENTIAL_NAMES or folded.endswith(_CREDENTIAL_ENDINGS)


def register(value: str, where: str) -> str:
    """Remember ``value`` of the credential field ``where`` for redaction; refuse it when it is
    too short to be hidden. An empty value means "no credential" and passes."""
    if not value:
        return value
    if len(urllib.parse.unquote(value)) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"{where} holds a credential of {len(urllib.parse.unquote(value))} characters; credentials must have at "
            f"least {MIN_SECRET_LENGTH}, because a shorter one cannot be hidden in every message without destroying them"
        )
    _remember(value)
    _remember(urllib.parse.unquote(value))
    if value.lower().startswith(("bearer ", "basic ", "token ")):  # an Authorization header: the token alone too
        register(value.split(None, 1)[1].strip(), where)
    return value


def register_address(text: str, where: str) -> str:
    """Register the credentials inside a URL: its password and credential-named query
    parameters (``?api_key=...``), and Azure connection strings' keys."""
    for start, end in url_passwords(text):
        register(text[start:end], f"{where} (the URL's password)")
    if _SCHEME.match(text):
        for match in _QUERY_PARAMETER.finditer(text):
            if is_credential_name(match["name"]):
                register(match["value"], f"{where} (query parameter {match['name']})")
    for match in _KEY_VALUE.finditer(text):  # host=db password=... / Server=...;PWD=...;
        if _is_password_key(match["name"]):
            register(_unquoted(match["value"]), f"{where} ({match['name']})")
    for match in _AZURE_KEYS.finditer(text):  # DefaultEndpointsProtocol=...;AccountKey=...
        register(match["value"], f"{where} ({match['head'][:-1]})")
    return text


def resolve(text: str, where: str) -> str:
    """Replace each ``${NAME}`` in ``text`` by the environment's value; ``where`` names the field.

    Every resolved value is remembered for redaction. A URL's password is percent-encoded, so
    one holding ``@`` or ``:`` stays one password, and registered as a credential.
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
        if len(secret) >= MIN_SECRET_LENGTH:
            _remember(secret)
        if match.start() < userinfo_end:
            secret = urllib.parse.quote(secret, safe="")
        return secret

    return register_address(_encode_url_password(_REFERENCE.sub(value, text)), where)


def named_secret(secret: Callable[[str, str], str], name: str, value: Any, where: str) -> Any:
    """A header, parameter or argument resolved with ``secret(text, where)``; registered as a
    credential when its name says it is one."""
    if not isinstance(value, str):
        return value
    resolved = secret(value, where)
    return register(resolved, where) if is_credential_name(name) else resolved


def redact(text: str) -> str:
    """``text`` with every registered credential, in every form, and every password written
    in a URL, credential query parameter or bearer/basic token replaced by ``***``."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _mask_spans(text, url_passwords(text))
    text = _KEY_VALUE.sub(lambda m: m["head"] + MASK if _is_password_key(m["name"]) and m["value"] else m[0], text)
    text = _QUERY_PARAMETER.sub(lambda m: m["head"] + MASK if is_credential_name(m["name"]) and m["value"] else m[0], text)
    text = _AZURE_KEYS.sub(lambda m: m["head"] + MASK, text)
    return _AUTHORIZATION.sub(lambda m: m["head"] + MASK, text)


class RedactedError(Exception):
    """Stands in for a library's exception in a traceback: its type and message with credentials
    removed, its frames kept (frames carry file, line and code, never values)."""


def redacted(exc: BaseException) -> RedactedError:
    """A copy of ``exc`` and of the exceptions it was raised from (cause or context) whose
    messages are redacted; raise from it to keep a traceback that holds no credential."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 16 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    copies = [
        RedactedError(redact(f"{type(e).__module__}.{type(e).__qualname__}: {e}")).with_traceback(e.__traceback__)
        for e in chain
    ]
    for copy, cause in zip(copies, copies[1:]):
        copy.__cause__ = cause
    return copies[0]


def _encode_url_password(text: str) -> str:
    """A URL whose password holds reserved characters written as they are (``p@ss``) with the
    password percent-encoded, as every URL parser expects."""
    if not _USERINFO.match(text):
        return text
    passwords = url_passwords(text)
    if not passwords:
        return text
    start, end = passwords[0]
    return text[:start] + urllib.parse.quote(urllib.parse.unquote(text[start:end]), safe="") + text[end:]


def url_passwords(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every password written in a URL in ``text``: ``scheme://user:password@host``
    and, at the start of a word, ``user:password@host`` or ``//user:password@host``.

    A password holds no whitespace and ends at the first '@' after which a host follows. Found in
    one pass over the '@'s, the userinfo starts and the whitespace, so in time linear in the text
    (a regular expression that tries each start and each '@' after it is quadratic).
    """
    if "@" not in text:
        return []
    ends = [m.start() for m in _PASSWORD_END.finditer(text)]
    if not ends:
        return []
    spaces = [m.start() for m in _WHITESPACE.finditer(text)]
    heads = list(_USERINFO_HEAD.finditer(text))
    schemes = [head.start() for head in heads if head["scheme"]]
    spans: list[tuple[int, int]] = []
    consumed = 0
    for head in heads:
        start = head.end()
        if head.start() < consumed:
            continue  # inside a password already found
        at = bisect.bisect_left(ends, start)
        space = bisect.bisect_left(spaces, start)
        if at == len(ends) or (space < len(spaces) and spaces[space] < ends[at]):
            continue  # no '@' before the word ends: no password
        end = ends[at]
        if not head["scheme"] and _before(schemes, head.start(), end):
            continue  # 'jdbc:' of jdbc:postgresql://user:password@host: the URL inside holds the password
        spans.append((start, end))
        consumed = end
    return spans


def _before(positions: list[int], after: int, before: int) -> bool:
    """Whether a position of the sorted ``positions`` lies strictly between ``after`` and ``before``."""
    index = bisect.bisect_right(positions, after)
    return index < len(positions) and positions[index] < before


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each non-empty (start, end) span replaced by ``***``."""
    parts, last = [], 0
    for start, end in spans:
        if end > start:
            parts += [text[last:start], MASK]
            last = end
    return "".join(parts) + text[last:] if parts else text


def _is_password_key(name: str) -> bool:
    """Whether the key of a ``key=value`` connection string names a password (``password``,
    ``PWD``, ``sslpassword``; not ``key`` or ``auth``, common words in any message)."""
    return re.sub(r"[^a-z0-9]", "", name.lower()).endswith(_CREDENTIAL_ENDINGS)


def _unquoted(value: str) -> str:
    """A ``key=value`` connection string's value without the quotes or braces around it."""
    return value[1:-1] if value[:1] + value[-1:] in ("''", '""', "{}") else value


def _remember(value: str) -> None:
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), urllib.parse.quote(value),
             urllib.parse.quote(urllib.parse.quote(value, safe=""), safe=""), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1], html.escape(value)}
    forms |= _base64_forms(value.encode())
    global _pattern
    with _lock:
        if forms <= _forms:
            return
        _forms.update(forms)
        _pattern = re.compile(_trie_pattern(sorted(_forms)), re.IGNORECASE)


def _trie_pattern(words: list[str]) -> str:
    """A pattern matching any of the sorted ``words``, the longest where several start at one place.

    Shared prefixes are written once (``ab(?:c|d)``), so each character of a text is compared with
    the next characters of the words, not with every word: an alternation of every form of every
    credential took a second per megabyte.
    """
    if words == [""]:
        return ""
    branches, ends_here = [], "" in words
    for first in sorted({word[0] for word in words if word}):
        rest = [word[1:] for word in words if word[:1] == first]
        prefix = os.path.commonprefix(rest)
        branches.append(re.escape(first + prefix) + _trie_pattern(sorted(word[len(prefix):] for word in rest)))
    body = branches[0] if len(branches) == 1 and not ends_here else f"(?:{'|'.join(branches)})"
    return body + ("?" if ends_here else "")


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 characters that depend only on ``raw``, for each of the three alignments it
    may have inside a longer encoded text (``user:password`` of basic auth)."""
    forms = set()
    for shift in range(3):
        first, last = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * shift + raw).decode()[first:last]
            if len(core) >= MIN_SECRET_LENGTH:
                forms.add(core)
    return forms

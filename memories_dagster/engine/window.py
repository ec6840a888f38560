"""The slice of time or the key one incremental run works on, and path templates that use it."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_TEMPLATE = re.compile(r"\{(partition_key|partition_start|partition_end)(?::([^{}]*))?\}")


@dataclass(frozen=True)
class Window:
    """A partition: its key and, for time partitions, the half-open range [start, end)."""

    key: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    @property
    def is_time(self) -> bool:
        """Whether the window is a time range (else a dynamic key)."""
        return self.start is not None

    @property
    def zone(self) -> str:
        """The IANA name of the time zone the window's days are days of (UTC for naive windows)."""
        return zone_of(self.start)

    def params(self) -> dict[str, object]:
        """Bind parameters offered to SQL queries. The ``_utc`` bounds are for MariaDB/MySQL
        TIMESTAMP columns (instants; the session runs in UTC), whose driver binds a datetime's
        wall time and drops its zone."""
        utc = {f"partition_{name}_utc": moment.astimezone(dt.timezone.utc) if moment else None
               for name, moment in (("start", self.start), ("end", self.end))}
        return {"partition_key": self.key, "partition_start": self.start, "partition_end": self.end, **utc}


def zone_of(moment: object) -> str:
    """The IANA name of the time zone of a datetime (UTC for a naive one or for no datetime)."""
    zone = getattr(moment, "tzinfo", None)
    return getattr(zone, "key", None) or str(zone or "UTC")


def condition_sql(window: Window, column: str) -> str:
    """SQL that is true for rows of ``column`` inside the window, false outside it, and NULL for
    rows that belong to no window (the column empty or, for time windows, not a date or time)."""
    ref = _identifier(column)
    if window.is_time:  # as wall times of the partition's zone
        value = wall_time_sql(ref, window.zone)
        start, end = (moment.strftime("%Y-%m-%d %H:%M:%S") for moment in (window.start, window.end))
        return f"({value} >= TIMESTAMP '{start}' AND {value} < TIMESTAMP '{end}')"
    return f"(CAST({ref} AS VARCHAR) = {_literal(window.key)})"


# A date and time of day followed by a UTC offset (Z, +05:30, -0800, -08) or a zone name
# (UTC, America/Los_Angeles): text that names an instant, not a wall time.
ZONED_TEXT = r"[Tt ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*)\s*$"


def zoned_text_sql(text: str) -> str:
    """SQL true when the text expression ``text`` is a time with an offset or zone (``ZONED_TEXT``)."""
    return f"regexp_matches({text}, {_literal(ZONED_TEXT)})"


def wall_time_sql(ref: str, zone: str) -> str:
    """SQL giving the value of column ``ref`` as a wall time (TIMESTAMP) of ``zone``: naive dates
    and times are wall times there already; instants (a TIMESTAMPTZ, or text naming its offset or
    zone) are turned into that zone's wall time, whatever the session's zone (typeof is fixed
    per column); NULL for what is no date or time."""
    instant = f"typeof({ref}) = 'TIMESTAMP WITH TIME ZONE' OR {zoned_text_sql(f'CAST({ref} AS VARCHAR)')}"
    return (f"CASE WHEN {instant} THEN timezone({_literal(zone)}, TRY_CAST({ref} AS TIMESTAMPTZ)) "
            f"ELSE TRY_CAST({ref} AS TIMESTAMP) END")


def read_filter_sql(window: Window, column: str) -> str:
    """SQL keeping the rows a windowed read must pass on: those inside the window, and those that
    belong to no window, which the integration quarantines so that no row vanishes unseen."""
    return f"coalesce({condition_sql(window, column)}, TRUE)"


def unplaced_reason_sql(window: Window, column: str) -> str:
    """SQL giving the quarantine reason of a row that belongs to no window; NULL for the others."""
    ref = _identifier(column)
    text = f"CAST({ref} AS VARCHAR)"
    empty = _literal(f"partitions.column '{column}' is empty, so the row belongs to no partition")
    unparsed = (
        _literal(f"partitions.column '{column}' value '") + f" || {text} || "
        + _literal("' is not a date or time (YYYY-MM-DD, optionally with HH:MM:SS and a UTC offset or zone), so the row belongs to no "
                   "partition; declare the column's format under format_check columns, e.g. date:%m/%d/%Y")
    )
    return (f"CASE WHEN {condition_sql(window, column)} IS NULL THEN "
            f"CASE WHEN nullif(trim({text}), '') IS NULL THEN {empty} ELSE {unparsed} END END")


def _identifier(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def has_template(text: str) -> bool:
    """Whether ``text`` holds a ``{partition_...}`` placeholder."""
    return bool(_TEMPLATE.search(text))


# What a key filled into a path, URL or parameter may not hold: it must name one thing inside
# the template's folder, never climb out of it (.., a separator, an absolute path) or match
# other files (glob characters), nor cut the text short (NUL, line breaks).
_UNSAFE_KEY = re.compile(r"[/\\*?\[\]\x00-\x1f\x7f]|^\.{1,2}$|^~")
PLAIN_NAME = ("one plain name (no '/' or '\\', not '.' or '..', no leading '~', no glob characters * ? [ ], "
              "no control characters)")


def leaves_folder(key: str) -> bool:
    """Whether ``key``, put into a path as one name, could reach outside its folder or name
    other files: it is not a :data:`PLAIN_NAME`."""
    return not key or bool(_UNSAFE_KEY.search(key))


def template_key(key: str) -> str:
    """``key`` if it may be filled into a template; a ValueError saying why not otherwise."""
    if leaves_folder(key):
        raise ValueError(
            f"partition key {key!r} cannot fill a {{partition_key}} template: a key there must be {PLAIN_NAME}, "
            "so that it cannot reach outside the template's folder; delete that dynamic partition "
            "and add it under a plain name"
        )
    return key


def expand(text: str, window: Window | None) -> str:
    """Fill ``{partition_key}``, ``{partition_start:%Y/%m/%d}``... from the window; a key that
    could leave the template's folder is refused (see :func:`template_key`)."""
    if window is None or not has_template(text):
        return text

    def value(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name == "partition_key":
            return template_key(window.key)
        moment = window.start if name == "partition_start" else window.end
        if moment is None:
            raise ValueError(f"'{match.group(0)}' needs time partitions, but the run has key {window.key!r}")
        return moment.strftime(fmt or "%Y-%m-%d")

    return _TEMPLATE.sub(value, text)


def key_pattern(text: str) -> re.Pattern[str]:
    """A regex matching paths of a ``{partition_key}`` template, capturing the key."""
    parts = re.split(r"(\{partition_key\})", text)
    body = "".join("(?P<key>[^/]+)" if p == "{partition_key}" else re.escape(p) for p in parts)
    return re.compile(body + "$")


def glob_of(text: str) -> str:
    """The glob that lists every file a template can name (one ``*`` per path segment)."""
    return _TEMPLATE.sub(lambda m: "/".join(["*"] * (1 + (m.group(2) or "").count("/"))), text)

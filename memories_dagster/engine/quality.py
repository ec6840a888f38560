"""The data quality checks that act on data: type coercion (format_check) and nulls (null_check).

Each function builds SQL over a DuckDB relation and returns what it changed, so that the caller
can quarantine rejected rows and count what was handled.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from memories_dagster.engine.duck import columns_of, q
from memories_dagster.engine.expressions import sql_literal
from memories_dagster.engine.window import zoned_text_sql

_SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "decimal": "DECIMAL(38, {scale})",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def coercion_sql(column: str, declared: str, current_type: str, scale: int = 0, zoned: bool = False) -> str | None:
    """SQL converting ``column`` to the declared type, NULL where a value cannot be parsed.

    ``scale`` is a decimal's: the most digits after the point among the values (see
    :func:`decimal_scale`); ``zoned``, of a text column declared a timestamp: whether one of
    its values names a UTC offset or zone (see :func:`_timestamp_sql`). Returns None when the
    column already has the declared type.
    """
    base, _, pattern = declared.partition(":")
    target = _SQL_TYPES[base].format(scale=scale)
    if current_type.upper() == target and not pattern:
        return None
    if base == "decimal" and current_type.upper().startswith("DECIMAL"):
        return None  # already exact, with its own precision and scale: a recast could round it
    if base == "timestamp" and current_type.upper().startswith("TIMESTAMP") and not pattern:
        return None  # an instant (WITH TIME ZONE) or nanoseconds (TIMESTAMP_NS) stay: a recast would cut them
    ref = q(column)
    if pattern and base in ("date", "timestamp"):
        parsed = f"try_strptime(CAST({ref} AS VARCHAR), {sql_literal(pattern)})"
        if base == "timestamp" and ("%z" in pattern or "%Z" in pattern):
            target = "TIMESTAMPTZ"  # the pattern reads an offset: the values are instants
        return f"CAST({parsed} AS {target})"
    if base == "date":
        return _date_sql(ref, current_type.upper())
    if base == "timestamp" and current_type.upper() == "VARCHAR":
        return _timestamp_sql(ref, zoned)
    if base == "string":
        return f"CAST({ref} AS VARCHAR)"
    if base == "integer":
        return _integer_sql(ref, current_type.upper())
    if current_type.upper() == "VARCHAR":
        # Blank text is a missing value, not a malformed one.
        return f"TRY_CAST(nullif(trim({ref}), '') AS {target})"
    return f"TRY_CAST({ref} AS {target})"


# Text with digits past the microsecond that are not all zeros: DuckDB's timestamps would cut them.
_FINER_THAN_MICROSECONDS = r"\.[0-9]{6}[0-9]*[1-9]"


def _date_sql(ref: str, current_type: str) -> str:
    """A date only where the value is one: a time of day other than midnight (or, in text, a
    UTC offset or zone, or digits past the microsecond) does not parse, rather than being cut
    to its date as a cast to DATE does."""
    value = ref
    exact = ""
    if current_type == "VARCHAR":
        value = f"nullif(trim({ref}), '')"
        exact = f" AND NOT {zoned_text_sql(value)} AND NOT regexp_matches({value}, {sql_literal(_FINER_THAN_MICROSECONDS)})"
    return f"CASE WHEN TRY_CAST({value} AS TIMESTAMP) = TRY_CAST({value} AS DATE){exact} THEN TRY_CAST({value} AS DATE) END"


def _timestamp_sql(ref: str, zoned: bool) -> str:
    """Text as a timestamp, exactly. A column where some value names a UTC offset or zone
    (``Z``, ``-08``, ``+05:30``, `` America/Los_Angeles``) holds instants: TIMESTAMPTZ (UTC),
    and a value there without an offset does not parse (which instant it means is unknown).
    Otherwise the values are wall times: TIMESTAMP. Digits past the microsecond, which both
    types would cut, do not parse either."""
    text = f"nullif(trim({ref}), '')"
    exact = f"NOT regexp_matches({text}, {sql_literal(_FINER_THAN_MICROSECONDS)})"
    if zoned:
        return f"CASE WHEN {zoned_text_sql(text)} AND {exact} THEN TRY_CAST({text} AS TIMESTAMPTZ) END"
    return f"CASE WHEN {exact} THEN TRY_CAST({text} AS TIMESTAMP) END"


def _integer_sql(ref: str, current_type: str) -> str:
    """An integer only where the value is one: a cast to BIGINT would round '3.7' and 3.7 to 4,
    rewriting the value; as Python's int('3.7') refuses it, such a value does not parse."""
    if current_type == "VARCHAR":
        text = f"nullif(trim({ref}), '')"
        return f"TRY_CAST(CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+') THEN {text} END AS BIGINT)"
    if current_type in ("FLOAT", "DOUBLE", "REAL") or current_type.startswith("DECIMAL"):
        return f"TRY_CAST(CASE WHEN {ref} = trunc({ref}) THEN {ref} END AS BIGINT)"
    return f"TRY_CAST({ref} AS BIGINT)"


# A number's text: digits, an optional fraction (group 1) and an optional exponent (group 2).
_NUMBER_TEXT = r"^[+-]?[0-9]*(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$"


def decimal_scale(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> int:
    """The scale that holds every value of ``column`` exactly: the most digits after the point
    (an exponent counted: ``2.5e-3`` needs 4), at most 38. A fixed scale would round values
    with more digits (``1.2345678`` at scale 6 was ``1.234568``)."""
    text = f"trim(CAST({q(column)} AS VARCHAR))"
    fraction = f"length(regexp_extract({text}, {sql_literal(_NUMBER_TEXT)}, 1))"
    exponent = f"coalesce(TRY_CAST(nullif(regexp_extract({text}, {sql_literal(_NUMBER_TEXT)}, 2), '') AS INTEGER), 0)"
    found = con.execute(f"SELECT max(greatest(0, {fraction} - {exponent})) FROM {relation}").fetchone()[0]
    return min(int(found or 0), 38)


# What a declared date or timestamp refuses rather than cuts, said where a value is quarantined.
_WHY_NOT = {
    "date": " (a time of day other than midnight, a UTC offset or digits past the microsecond are not cut off)",
    "timestamp": (" (digits past the microsecond are not cut off; in a column whose times carry a UTC offset or "
                  "zone, a time without one is ambiguous)"),
}


def _holds_zoned_text(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> bool:
    """Whether a value of text ``column`` names a UTC offset or zone (then it holds instants)."""
    found = con.execute(f"SELECT bool_or({zoned_text_sql(f'trim({q(column)})')}) FROM {relation}").fetchone()[0]
    return bool(found)


@dataclass
class Coercion:
    """Columns converted in one relation and the SQL that flags rows that could not be."""

    replacements: dict[str, str]
    failure_reason_sql: str | None
    values_converted_sql: str | None


def plan_coercion(
    con: duckdb.DuckDBPyConnection, relation: str, declared: dict[str, str]
) -> Coercion:
    """Plan format_check on ``relation`` for the declared columns it has."""
    types = columns_of(con, relation)
    replacements: dict[str, str] = {}
    reasons: list[str] = []
    counts: list[str] = []
    for column, wanted in declared.items():
        if column not in types:
            continue
        needs_scale = wanted == "decimal" and not types[column].upper().startswith("DECIMAL")
        scale = decimal_scale(con, relation, column) if needs_scale else 0
        zoned = wanted == "timestamp" and types[column].upper() == "VARCHAR" and _holds_zoned_text(con, relation, column)
        converted = coercion_sql(column, wanted, types[column], scale, zoned)
        if converted is None:
            continue
        replacements[column] = converted
        failed = f"({q(column)} IS NOT NULL AND nullif(trim(CAST({q(column)} AS VARCHAR)), '') IS NOT NULL AND {converted} IS NULL)"
        message = f"format_check: column '{column}' value '"
        reasons.append(
            f"WHEN {failed} THEN {sql_literal(message)} || CAST({q(column)} AS VARCHAR) || "
            f"{sql_literal(chr(39) + ' is not a valid ' + wanted + _WHY_NOT.get(wanted, ''))}"
        )
        counts.append(f"count({converted})")
    reason = f"CASE {' '.join(reasons)} END" if reasons else None
    converted_total = " + ".join(counts) if counts else None
    return Coercion(replacements, reason, converted_total)


def required_null_reason(columns: list[str]) -> str | None:
    """SQL giving the quarantine reason of a row with a null in a required column."""
    if not columns:
        return None
    cases = " ".join(
        f"WHEN {q(c)} IS NULL THEN {sql_literal(f'null_check: required column {c!r} is null')}"
        for c in columns
    )
    return f"CASE {cases} END"


def fill_sql(column: str, value: object, current_type: str) -> str:
    """SQL filling nulls of ``column`` with ``value``, keeping the column's type."""
    return f"coalesce({q(column)}, CAST({sql_literal(value)} AS {current_type}))"

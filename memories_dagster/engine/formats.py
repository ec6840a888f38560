"""Named formats of formatting rules (``lower``, ``date:%Y-%m-%d``, ``round:2`` ...) as SQL."""

from __future__ import annotations

from memories_dagster.engine.duck import is_numeric
from memories_dagster.engine.expressions import FUNCTIONS, sql_literal
from memories_dagster.engine.window import wall_time_sql


class FormatError(ValueError):
    """A formatting rule names an unknown format or gives a bad argument."""


def _title(column: str, *_: str | None) -> str:
    # DuckDB has no initcap: upper-case the first letter of each space-separated word.
    return (
        f"array_to_string(list_transform(string_split(lower({column}), ' '), "
        f"lambda w: concat(upper(w[1]), w[2:])), ' ')"
    )


def _date(column: str, pattern: str | None, _: str) -> str:
    # an instant (TIMESTAMPTZ, or text naming an offset) is formatted as its UTC time, never the
    # text's own digits with the offset dropped
    value = wall_time_sql(column, "UTC")
    return f"strftime({value}, {sql_literal(pattern or '%Y-%m-%d')})"


def _round(column: str, digits: str | None, column_type: str) -> str:
    # half to even, as round() in expressions and in Python: round:0 of 2.5 is 2. A number keeps
    # its type: a decimal rounds exactly (1.115 -> 1.12, as Python's Decimal), where a detour
    # through a double would round its binary approximation (1.11499...) instead; only text is
    # read as a double.
    number = column if is_numeric(column_type) else f"TRY_CAST({column} AS DOUBLE)"
    return f"round_even({number}, {int(digits or 0)})"


FORMATTERS = {
    "lower": lambda column, *_: f"lower(CAST({column} AS VARCHAR))",
    "upper": lambda column, *_: f"upper(CAST({column} AS VARCHAR))",
    "strip": lambda column, *_: FUNCTIONS["strip"][0].format(f"CAST({column} AS VARCHAR)"),  # as str.strip()
    "title": _title,
    "date": _date,
    "round": _round,
    "digits": lambda column, *_: f"regexp_replace(CAST({column} AS VARCHAR), '[^0-9]', '', 'g')",
}
_NEEDS_INT_ARG = {"round"}


def parse_format(text: str) -> tuple[str, str | None]:
    """Split ``name[:argument]`` and check both; raise FormatError otherwise."""
    name, _, argument = text.strip().partition(":")
    if name not in FORMATTERS:
        raise FormatError(
            f"unknown format '{name}'; allowed: {', '.join(sorted(FORMATTERS))} "
            "(date takes :strftime pattern, round takes :digits)"
        )
    if name in _NEEDS_INT_ARG and argument and not argument.lstrip("-").isdigit():
        raise FormatError(f"format '{name}' takes a whole number after ':', not '{argument}'")
    return name, argument or None


def format_sql(text: str, column_sql: str, column_type: str) -> str:
    """The SQL expression that applies format ``text`` to ``column_sql`` (of DuckDB type ``column_type``)."""
    name, argument = parse_format(text)
    return FORMATTERS[name](column_sql, argument, column_type)

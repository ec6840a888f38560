"""Lossless types for CSV and JSON files: a column gets a type only where no value changes.

DuckDB's sniffers pick a type from a sample and then rewrite values to fit it: `1e5` becomes
`100000.0`, `yes` becomes `true`, nanoseconds are cut, a JSON field holding numbers and strings
keeps the strings' quotes. The rule here: a CSV column keeps its sniffed type only when every
value's text is that type's canonical text (the text it is written back as), so written back it
is the same text; a column of numbers in plain decimal notation (`-12.50`, `3`) becomes an exact
DECIMAL with the column's largest scale. Any other column stays text, byte for byte. A JSON
field's numbers, booleans and nulls are JSON's own; its dates and times follow the CSV rule, and
a field mixing strings with other values is text without JSON quotes.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from memories_dagster.engine.duck import columns_of, q, sql_string

# Reader options by which the user declares types themselves: then DuckDB's reading stands.
_DECLARED = {"types", "dtypes", "column_types", "columns", "all_varchar", "auto_type_candidates",
             "dateformat", "date_format", "timestampformat", "timestamp_format", "auto_detect"}
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_TEMPORAL = {"DATE", "TIME", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"}
_PLAIN_DECIMAL = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?"
_MAX_DIGITS = 38


def declares_types(options: dict[str, object]) -> bool:
    """Whether reader options name the types themselves (then they are taken as given)."""
    return any(name.lower() in _DECLARED for name in options)


def lossless_csv_sql(con: duckdb.DuckDBPyConnection, typed: str, raw: str) -> str:
    """A SELECT over ``raw`` (the file read as text) giving each column the type DuckDB sniffed in
    ``typed`` where every value keeps its text, an exact DECIMAL for plain decimal numbers, else text."""
    sniffed = {c: t for c, t in columns_of(con, typed).items() if t != "VARCHAR"}
    if not sniffed:
        return f"SELECT * FROM {raw}"
    checks: list[str] = []
    for column, kind in sniffed.items():
        value = q(column)
        checks.append(f"bool_and({value} IS NULL OR {_keeps_text(value, kind)})")
        if _is_number(kind):  # may be plain decimals instead
            checks.extend(_decimal_checks(value))
    found = iter(con.execute(f"SELECT {', '.join(checks)} FROM {raw}").fetchone())
    casts = []
    for column, kind in sniffed.items():
        keeps_text = next(found)
        plain, scale, digits = (next(found), next(found), next(found)) if _is_number(kind) else (False, 0, 0)
        target = _chosen(kind, bool(keeps_text), bool(plain), scale or 0, digits or 0)
        if target != "VARCHAR":
            casts.append(f"CAST({q(column)} AS {target}) AS {q(column)}")
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM {raw}" if casts else f"SELECT * FROM {raw}"


def _decimal_checks(value: str) -> list[str]:
    """SQL aggregates over the texts ``value``: whether all are plain decimals, their largest
    scale and their most digits before the point (see ``_chosen``)."""
    return [f"bool_and({value} IS NULL OR regexp_full_match({value}, '{_PLAIN_DECIMAL}'))",
            f"max(CASE WHEN contains({value}, '.') THEN length({value}) - strpos({value}, '.') ELSE 0 END)",
            f"max(length(ltrim(split_part({value}, '.', 1), '-')))"]


def _is_number(kind: str) -> bool:
    return kind in _INTEGERS or kind in ("DOUBLE", "FLOAT") or kind.startswith("DECIMAL")


def _chosen(kind: str, keeps_text: bool, plain: bool, scale: int, digits: int) -> str:
    if keeps_text and kind not in ("DOUBLE", "FLOAT"):
        return kind
    if _is_number(kind):
        if plain and digits + scale <= _MAX_DIGITS:
            return f"DECIMAL({18 if digits + scale <= 18 else _MAX_DIGITS}, {scale})"
        if keeps_text:
            return kind
    return "VARCHAR"


def _keeps_text(value: str, kind: str) -> str:
    """SQL: whether the text ``value``, read as ``kind`` and written back, is the same text."""
    return f"coalesce(CAST(TRY_CAST({value} AS {kind}) AS VARCHAR) = {_as_written(value, kind)}, false)"


def _as_written(value: str, kind: str) -> str:
    """The text as DuckDB would write it back, where ISO 8601's `T` between date and time counts
    as the space DuckDB writes."""
    if kind.startswith("TIMESTAMP"):
        return f"regexp_replace({value}, '^(\\d{{4}}-\\d{{2}}-\\d{{2}})T', '\\1 ')"
    return value


def lossless_json_sql(con: duckdb.DuckDBPyConnection, typed: str, objects: str, typed_as: Callable[[dict[str, str]], str]) -> str:
    """A SELECT over ``typed`` (DuckDB's reading of a JSON file) where fields that mix strings
    with other values are text without JSON quotes, and dates or times whose text would change
    (nanoseconds cut) stay text. ``objects`` reads the file's raw objects; ``typed_as(types)``
    reads it with the given column types. Numbers a double cannot hold stay exact (see
    ``_exact_numbers``)."""
    columns = columns_of(con, typed)
    raw = lambda c: f"(json ->> {sql_string(c)})"  # noqa: E731
    temporal = [c for c, t in columns.items() if t in _TEMPORAL]
    retyped: dict[str, str] = {}
    if temporal:
        checks = [f"bool_and({raw(c)} IS NULL OR {_keeps_text(raw(c), columns[c])})" for c in temporal]
        found = con.execute(f"SELECT {', '.join(checks)} FROM {objects}").fetchone()
        retyped = {c: "VARCHAR" for c, ok in zip(temporal, found) if not ok}
    retyped.update(_exact_numbers(con, objects, {c: t for c, t in columns.items() if "DOUBLE" in t or "FLOAT" in t}, raw))
    if retyped:
        columns = {**columns, **retyped}
        typed = typed_as(columns)
    mixed = [c for c, t in columns.items() if t == "JSON"]
    if not mixed:
        return f"SELECT * FROM {typed}"
    # a JSON string's own text, any other JSON value's text
    replaced = ", ".join(f"CASE WHEN json_type({q(c)}) = 'VARCHAR' THEN json_extract_string({q(c)}, '$') "
                         f"ELSE CAST({q(c)} AS VARCHAR) END AS {q(c)}" for c in mixed)
    return f"SELECT * REPLACE ({replaced}) FROM {typed}"


def _exact_numbers(con: duckdb.DuckDBPyConnection, objects: str, floats: dict[str, str],
                   raw: Callable[[str], str]) -> dict[str, str]:
    """New types for the float fields ``floats`` (name -> DuckDB's type) of JSON ``objects`` that
    hold an integer a double cannot hold (past 2**53: DuckDB reads integers past 64 bits as
    doubles): an exact DECIMAL when all the field's numbers are plain decimals that fit, else
    ``VARCHAR`` (the number's text); a nested field holding one becomes ``JSON`` (its text)."""
    if not floats:
        return {}
    long_integer = "-?[0-9]{16,}"
    checks: list[str] = []
    for column, kind in floats.items():
        if kind in ("DOUBLE", "FLOAT"):
            checks.append(f"bool_or(regexp_full_match({raw(column)}, '{long_integer}'))")
            checks.extend(_decimal_checks(raw(column)))
        else:  # a number inside a struct or list: after '[', ':' or ',', before ',', ']' or '}'
            checks.append(f"bool_or(regexp_matches({raw(column)}, '[\\[:,]{long_integer}[,\\]}}]'))")
    found = iter(con.execute(f"SELECT {', '.join(checks)} FROM {objects}").fetchone())
    chosen: dict[str, str] = {}
    for column, kind in floats.items():
        loses = next(found)
        if kind not in ("DOUBLE", "FLOAT"):
            if loses:
                chosen[column] = "JSON"
            continue
        plain, scale, digits = next(found), next(found), next(found)
        if loses:
            chosen[column] = _chosen(kind, False, bool(plain), scale or 0, digits or 0)
    return chosen


def typed_by_values(values: list, booleans: tuple[str, str] = ("true", "false")):
    """A column typed by Arrow from its values, exactly (an integer beside nulls stays an integer;
    pandas made it a float); values of mixed kinds (10115 here, "SW1A" there) as text, objects and
    lists as their JSON, booleans as ``booleans`` (true, false: JSON's words). NaN counts as
    missing (pandas' mark for it)."""
    import json

    import pyarrow as pa  # on use: the code location loads this module

    kinds = set(map(type, values)) - {type(None)}
    if not (bool in kinds and len(kinds) > 1):  # Arrow would make True the number 1 beside floats
        try:
            return pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    shown = {True: booleans[0], False: booleans[1]}
    return pa.array([None if v is None or v != v else json.dumps(v) if isinstance(v, (dict, list))
                     else shown[v] if isinstance(v, bool) else str(v) for v in values], pa.string())

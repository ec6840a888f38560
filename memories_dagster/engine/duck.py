"""DuckDB connections set up the same way for every step."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable

import duckdb

from memories_dagster.engine.expressions import quote_identifier


def default_memory_limit() -> str:
    """A tenth of the machine's memory, at least 1 GB: several runs can share a host, and
    DuckDB spills to disk beyond it instead of growing with the data."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(total // 10, 2**30) // 2**20}MB"


def connect(memory_limit: str | None = None, keep_order: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that uses every core, within ``memory_limit``, spilling beyond it;
    with ``keep_order``, results keep the order of their input (else DuckDB may reorder rows)."""
    con = duckdb.connect(config={"threads": os.cpu_count() or 1})
    con.execute(f"SET memory_limit = {sql_string(memory_limit or default_memory_limit())}")
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/memories-duckdb'")
    con.execute(f"SET preserve_insertion_order = {'true' if keep_order else 'false'}")
    # A division by zero gives NULL (flagged as a failed calculation), not an aborted run or inf.
    con.execute("SET error_on_division_by_zero = false")
    con.execute("SET ieee_floating_point_ops = false")
    # Instants (TIMESTAMPTZ) are shown, written and cut into days in UTC, not in the host's zone
    # (DuckDB's default), so an output does not depend on the machine that wrote it.
    con.execute("SET TimeZone = 'UTC'")
    return con


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table or view."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {row[0]: row[1] for row in rows}


_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|REAL|DECIMAL.*)$")


def is_numeric(column_type: str) -> bool:
    """Whether a DuckDB column type holds numbers."""
    return bool(_NUMERIC.match(column_type))


def column_named(columns: Iterable[str], name: str) -> str | None:
    """The spelling in ``columns`` of column ``name``, matched as DuckDB matches names: ignoring case."""
    return next((c for c in columns if c.lower() == name.lower()), None)


def count(con: duckdb.DuckDBPyConnection, relation: str, where: str = "TRUE") -> int:
    """Rows of ``relation`` matching ``where``."""
    return con.execute(f"SELECT count(*) FROM {relation} WHERE {where}").fetchone()[0]


# a 128-bit integer type inside a type's text (a type, not a field name: one ends it)
_WIDE = re.compile(r"\bU?HUGEINT(?=[,)\[]|$)")


def copy_parquet(con: duckdb.DuckDBPyConnection, query: str, path: str) -> None:
    """Write the result of ``query`` to one Parquet file.

    Parquet has no 128-bit integer, and DuckDB writes HUGEINT (a sum of BIGINTs, a JSON integer
    past 64 bits) as a DOUBLE, rounding past 2**53: such columns, and such fields inside structs
    and lists, are written as DECIMAL(38,0), exact (or a loud overflow).
    """
    wide = {c: _WIDE.sub("DECIMAL(38,0)", t) for c, t in columns_of(con, f"({query})").items() if _WIDE.search(t)}
    if wide:
        query = f"SELECT * REPLACE ({', '.join(f'CAST({q(c)} AS {t}) AS {q(c)}' for c, t in wide.items())}) FROM ({query})"
    con.execute(f"COPY ({query}) TO {sql_string(path)} (FORMAT parquet, COMPRESSION snappy)")


def record_json(columns: dict[str, str]) -> str:
    """SQL turning a row's ``columns`` (name -> DuckDB type) into one JSON object text (for the
    quarantine). JSON has no NaN or infinity (DuckDB writes the bare tokens, which strict readers
    refuse): a float holding one is the JSON string "nan", "inf" or "-inf"."""
    if not columns:
        return "'{}'"

    def value(column: str, column_type: str) -> str:
        if column_type not in ("DOUBLE", "FLOAT"):
            return q(column)
        return f"CASE WHEN isnan({q(column)}) OR isinf({q(column)}) THEN to_json(CAST({q(column)} AS VARCHAR)) ELSE to_json({q(column)}) END"

    return "to_json(struct_pack(" + ", ".join(f"{q(c)} := {value(c, t)}" for c, t in columns.items()) + "))"


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


q = quote_identifier

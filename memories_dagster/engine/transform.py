"""Transformation rules (mapping, calculation, formatting, validation) as a chain of SQL layers.

Each rule adds one SELECT over the previous one, so later rules see earlier results. Next to
its result every rule writes a flag column (``__failed_<n>``) that is true where it failed on a
row: validation false, a calculation or format giving null from non-null inputs, a value a
mapping does not know. The flags feed the quarantine and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from memories_dagster.engine.duck import column_named, columns_of, is_numeric, q
from memories_dagster.engine.errors import IntegrationError, error_detail
from memories_dagster.engine.expressions import parse_expression, sql_literal
from memories_dagster.engine.formats import format_sql
from memories_dagster.specs.integration import TransformationRule


@dataclass
class AppliedRule:
    """A rule as applied: its flag column and what it is."""

    rule: TransformationRule
    flag: str
    sql: str  # the rows up to and with this rule

    def describe(self) -> str:
        """The rule as the spec declares it: name, type and logic."""
        return f"'{self.rule.rule_name}' ({self.rule.transformation_type}: {self.rule.transformation_logic})"

    @property
    def quarantines(self) -> bool:
        """Whether rows failing the rule leave the output (validation rules)."""
        return self.rule.transformation_type == "validation"


def mapping_sql(column: str, values: dict[str, object], in_place: bool) -> tuple[str, str]:
    """CASE expression of a value map and the SQL that is true where a value had no entry."""
    default = values.get("*")
    entries = {k: v for k, v in values.items() if k != "*"}
    numeric = _maps_to_numbers(values)
    source = f"CAST({q(column)} AS VARCHAR)"

    def result(value: object) -> str:  # numbers stay numbers unless the map mixes kinds
        return sql_literal(value) if numeric or value is None else sql_literal(str(value))

    cases = " ".join(f"WHEN {sql_literal(str(k))} THEN {result(v)}" for k, v in entries.items())
    if "*" in values:
        fallback = result(default)
    elif in_place:
        fallback = q(column) if numeric else source
    else:
        fallback = "NULL"
    known = ", ".join(sql_literal(str(k)) for k in entries) or "NULL"
    unknown = "FALSE" if ("*" in values or in_place) else f"({q(column)} IS NOT NULL AND {source} NOT IN ({known}))"
    return f"CASE {source} {cases} ELSE {fallback} END", unknown


def _maps_to_numbers(values: dict[str, object]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())


def apply_rules(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    columns: list[str],
    lineage: dict[str, list[str]],
    rules: list[TransformationRule],
) -> tuple[str, list[str], list[AppliedRule]]:
    """Stack the rules over ``sql``; returns the new SQL, its data columns and the rules applied.

    ``lineage`` is updated in place: a written column takes the provenance of what it reads.
    """
    columns = list(columns)
    applied: list[AppliedRule] = []
    for number, rule in enumerate(rules):
        flag = f"__failed_{number}"
        value_sql, failed_sql, reads = _rule_sql(con, sql, rule, columns)
        # a target that differs from a column only in case is that column, as in SQL
        target = rule.output_column and (column_named(columns, rule.output_column) or rule.output_column)
        if target is None:
            layer = f"SELECT *, {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        elif target in columns:
            layer = f"SELECT * REPLACE ({value_sql} AS {q(target)}), {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        else:
            layer = f"SELECT *, {value_sql} AS {q(target)}, {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        try:
            con.execute(f"SELECT * FROM ({layer}) LIMIT 0")
        except duckdb.Error as exc:
            types = columns_of(con, f"({sql})")
            reading = ", ".join(f"{c} ({types[c]})" for c in reads)
            raise IntegrationError(
                f"transformation rule {AppliedRule(rule, flag, layer).describe()} cannot run"
                f"{f' on {reading}' if reading else ''}: {error_detail(exc)}"
            ) from None
        if target is not None:
            lineage[target] = sorted({origin for c in reads for origin in lineage.get(c, [])})
            if target not in columns:
                columns.append(target)
        sql = layer
        applied.append(AppliedRule(rule, flag, layer))
    return sql, columns, applied


def first_failing(con: duckdb.DuckDBPyConnection, rules: list[AppliedRule]) -> tuple[AppliedRule, duckdb.Error] | None:
    """The first rule whose values cannot be computed on the data, with DuckDB's error.

    Only searched after a run failed: each probe computes every column up to one rule.
    """
    for applied in rules:
        try:
            con.execute(f"SELECT count(COLUMNS(*)) FROM ({applied.sql})").fetchall()
        except duckdb.Error as exc:
            return applied, exc
    return None


def _rule_sql(con: duckdb.DuckDBPyConnection, sql: str, rule: TransformationRule, columns: list[str]) -> tuple[str, str, list[str]]:
    """The rule's value SQL, the SQL flagging rows it failed on, and the columns it reads."""
    kind = rule.transformation_type
    if kind in ("mapping", "formatting"):
        source = _require(rule, [rule.source_column or ""], columns)[0]
        if kind == "mapping":
            assert isinstance(rule.transformation_logic, dict)
            in_place = column_named([source], rule.output_column or "") is not None
            if in_place:
                _check_in_place_mapping(con, sql, rule, source)
            value, failed = mapping_sql(source, rule.transformation_logic, in_place)
        else:
            value = format_sql(str(rule.transformation_logic), q(source))
            failed = f"({q(source)} IS NOT NULL AND {value} IS NULL)"
        return value, failed, [source]
    expression = parse_expression(str(rule.transformation_logic))
    reads = _require(rule, sorted(expression.columns), columns)
    value = expression.to_sql()
    if kind == "validation":
        return value, f"(({value}) IS FALSE)", reads
    inputs = " AND ".join(f"{q(c)} IS NOT NULL" for c in reads) or "TRUE"
    return value, f"({inputs} AND ({value}) IS NULL)", reads


def _check_in_place_mapping(con: duckdb.DuckDBPyConnection, sql: str, rule: TransformationRule, column: str) -> None:
    """A map to numbers cannot run in place on a text column: the values it does not list stay
    text, and a column holds one type. Say so, with such a value, before DuckDB's CASE error."""
    values = rule.transformation_logic
    assert isinstance(values, dict)
    if not _maps_to_numbers(values) or "*" in values:
        return
    current = columns_of(con, f"({sql})")[column]
    if is_numeric(current):
        return
    known = ", ".join(sql_literal(str(k)) for k in values)
    unmapped = con.execute(
        f"SELECT CAST({q(column)} AS VARCHAR) FROM ({sql}) WHERE {q(column)} IS NOT NULL "
        f"AND CAST({q(column)} AS VARCHAR) NOT IN ({known}) LIMIT 1"
    ).fetchone()
    example = f" (e.g. {unmapped[0]!r})" if unmapped else ""
    raise IntegrationError(
        f"transformation rule '{rule.rule_name}' maps column '{column}' ({current}) in place to numbers, "
        f"but the values it does not list{example} would keep their type ({current}), and a column holds one type; "
        f"write the numbers to a new column with `target_column` (unlisted values become null and "
        f"count as failures), add a default entry \"*\" (e.g. \"*\": 0), or quote the numbers to map to text"
    )


def _require(rule: TransformationRule, needed: list[str], columns: list[str]) -> list[str]:
    """The columns' spellings in the data (names match ignoring case); an error naming any missing."""
    found = {name: column_named(columns, name) for name in needed}
    missing = [name for name, spelled in found.items() if spelled is None]
    if missing:
        raise IntegrationError(
            f"transformation rule '{rule.rule_name}' refers to column(s) {', '.join(missing)} "
            f"which the data does not have; columns at that point: {', '.join(columns)}"
        )
    return [spelled for spelled in found.values() if spelled is not None]

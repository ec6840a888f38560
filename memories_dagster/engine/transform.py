"""Transformation rules (mapping, calculation, formatting, validation) as a chain of SQL layers.

Each rule adds one SELECT over the previous one, so later rules see earlier results. Next to
its result every rule writes a flag column (``__failed_<n>``) that is true where it failed on a
row: validation false, a calculation or format giving null from non-null inputs, a value a
mapping does not know. The flags feed the quarantine and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from memories_dagster.engine.duck import q
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.expressions import parse_expression, sql_literal
from memories_dagster.engine.formats import format_sql
from memories_dagster.specs.integration import TransformationRule


@dataclass
class AppliedRule:
    """A rule as applied: its flag column and what it is."""

    rule: TransformationRule
    flag: str

    @property
    def quarantines(self) -> bool:
        """Whether rows failing the rule leave the output (validation rules)."""
        return self.rule.transformation_type == "validation"


def mapping_sql(column: str, values: dict[str, object], in_place: bool) -> tuple[str, str]:
    """CASE expression of a value map and the SQL that is true where a value had no entry."""
    default = values.get("*")
    entries = {k: v for k, v in values.items() if k != "*"}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())
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
        value_sql, failed_sql, reads = _rule_sql(rule, columns)
        target = rule.output_column
        if target is None:
            layer = f"SELECT *, {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        elif target in columns:
            layer = f"SELECT * REPLACE ({value_sql} AS {q(target)}), {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        else:
            layer = f"SELECT *, {value_sql} AS {q(target)}, {failed_sql} AS {flag} FROM ({sql}) AS t{number}"
        try:
            con.execute(f"SELECT * FROM ({layer}) LIMIT 0")
        except duckdb.Error as exc:
            raise IntegrationError(
                f"transformation rule '{rule.rule_name}' ({rule.transformation_type}: "
                f"{rule.transformation_logic}) cannot run: {str(exc).splitlines()[0]}"
            ) from None
        if target is not None:
            lineage[target] = sorted({origin for c in reads for origin in lineage.get(c, [])})
            if target not in columns:
                columns.append(target)
        sql = layer
        applied.append(AppliedRule(rule, flag))
    return sql, columns, applied


def _rule_sql(rule: TransformationRule, columns: list[str]) -> tuple[str, str, list[str]]:
    kind = rule.transformation_type
    if kind in ("mapping", "formatting"):
        source = rule.source_column or ""
        _require(rule, [source], columns)
        if kind == "mapping":
            assert isinstance(rule.transformation_logic, dict)
            in_place = rule.output_column == source
            value, failed = mapping_sql(source, rule.transformation_logic, in_place)
        else:
            value = format_sql(str(rule.transformation_logic), q(source))
            failed = f"({q(source)} IS NOT NULL AND {value} IS NULL)"
        return value, failed, [source]
    expression = parse_expression(str(rule.transformation_logic))
    _require(rule, sorted(expression.columns), columns)
    value = expression.to_sql()
    if kind == "validation":
        return value, f"(({value}) IS FALSE)", sorted(expression.columns)
    inputs = " AND ".join(f"{q(c)} IS NOT NULL" for c in sorted(expression.columns)) or "TRUE"
    return value, f"({inputs} AND ({value}) IS NULL)", sorted(expression.columns)


def _require(rule: TransformationRule, needed: list[str], columns: list[str]) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise IntegrationError(
            f"transformation rule '{rule.rule_name}' refers to column(s) {', '.join(missing)} "
            f"which the data does not have; columns at that point: {', '.join(columns)}"
        )

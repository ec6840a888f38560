"""Transformation rules (mapping, calculation, formatting, validation) as a chain of SQL layers.

Rules run in order, so later rules see earlier results; rules that read nothing an earlier rule
of the same layer writes share one SELECT, and a rule that does starts the next layer. Next to
its result every rule writes a flag column (``__failed_<n>``) that is true where it failed on a
row: validation false, a calculation or format giving null from non-null inputs (a math error
included), a value a mapping does not know. The flags feed the quarantine and the report.

Each rule is checked against an empty table shaped like its layer's input, never against the
whole chain, so checking n rules costs n small bindings instead of n ever deeper ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from memories_dagster.engine.duck import column_named, columns_of, is_numeric, q
from memories_dagster.engine.errors import IntegrationError, error_detail
from memories_dagster.engine.expressions import parse_expression, sql_literal
from memories_dagster.engine.formats import format_sql
from memories_dagster.engine.layers import MAX_LAYERS
from memories_dagster.specs.integration import TransformationRule


_DEEP = 16  # layers from which DuckDB's projection_placement optimizer is turned off


@dataclass
class AppliedRule:
    """A rule as applied: its flag column and what it is."""

    rule: TransformationRule
    flag: str
    sql: str  # the rule's value and flag over the rows it reads

    def describe(self) -> str:
        """The rule as the spec declares it: name, type and logic."""
        return f"'{self.rule.rule_name}' ({self.rule.transformation_type}: {self.rule.transformation_logic})"

    @property
    def quarantines(self) -> bool:
        """Whether rows failing the rule leave the output (validation rules)."""
        return self.rule.transformation_type == "validation"


@dataclass
class _Layer:
    """Rules that read no column another rule of the layer writes: one SELECT computes them."""

    number: int
    probe: str  # an empty table with the layer's input columns and types
    replaced: dict[str, str] = field(default_factory=dict)  # existing column -> its new value
    added: dict[str, str] = field(default_factory=dict)  # new column -> its value
    flags: dict[str, str] = field(default_factory=dict)  # flag column -> where the rule failed

    @property
    def written(self) -> set[str]:
        """The columns this layer writes."""
        return {*self.replaced, *self.added}

    def over(self, source: str) -> str:
        """The layer's SELECT over the rows of ``source``."""
        replace = ", ".join(f"{value} AS {q(c)}" for c, value in self.replaced.items())
        extra = [f"{value} AS {q(c)}" for c, value in self.added.items()]
        extra += [f"{value} AS {flag}" for flag, value in self.flags.items()]
        return (f"SELECT *{f' REPLACE ({replace})' if replace else ''}{''.join(', ' + e for e in extra)} "
                f"FROM ({source}) AS t{self.number}")


def mapping_sql(column: str, values: dict[str, object], in_place: bool) -> tuple[str, str]:
    """CASE expression of a value map and the SQL that is true where a value had no entry."""
    default = values.get("*")
    entries = {k: v for k, v in values.items() if k != "*"}
    typed = _kind(values) is not None
    source = f"CAST({q(column)} AS VARCHAR)"

    def result(value: object) -> str:  # numbers and booleans keep their type unless the map mixes kinds
        return sql_literal(value) if typed or value is None else sql_literal(str(value))

    cases = " ".join(f"WHEN {sql_literal(str(k))} THEN {result(v)}" for k, v in entries.items())
    if "*" in values:
        fallback = result(default)
    elif in_place:
        fallback = q(column) if typed else source
    else:
        fallback = "NULL"
    known = ", ".join(sql_literal(str(k)) for k in entries) or "NULL"
    unknown = "FALSE" if ("*" in values or in_place) else f"({q(column)} IS NOT NULL AND {source} NOT IN ({known}))"
    return f"CASE {source} {cases} ELSE {fallback} END", unknown


def _kind(values: dict[str, object]) -> str | None:
    """'numbers' or 'booleans' when every value of the map (nulls aside) is one, else None: text."""
    present = [v for v in values.values() if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "booleans"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "numbers"
    return None


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
    probes = [_probe(con, sql, 0)]
    layer = _Layer(0, probes[0])
    try:
        for number, rule in enumerate(rules):
            flag = f"__failed_{number}"
            reads = _reads(rule, columns)
            # a target that differs from a column only in case is that column, as in SQL
            target = rule.output_column and (column_named(columns, rule.output_column) or rule.output_column)
            if layer.written & {*reads, target}:  # it reads (or rewrites) what this layer writes
                if len(probes) == MAX_LAYERS:
                    raise IntegrationError(
                        f"transformation rule '{rule.rule_name}' would start layer {MAX_LAYERS + 1} of rules "
                        f"that each read a column an earlier one writes; at most {MAX_LAYERS} such steps "
                        "run in one pipeline: combine steps into one expression, or split the pipeline"
                    )
                sql = layer.over(sql)
                probes.append(_probe(con, layer.over(f"SELECT * FROM {layer.probe}"), len(probes)))
                layer = _Layer(len(probes) - 1, probes[-1])
            value_sql, failed_sql = _rule_sql(con, sql, layer.probe, rule, reads)
            rule_sql = f"SELECT {value_sql} AS __value, {failed_sql} AS {flag} FROM ({sql}) AS t"
            try:
                con.execute(f"SELECT {value_sql} AS __value, {failed_sql} AS {flag} FROM {layer.probe}")
            except duckdb.Error as exc:
                types = columns_of(con, layer.probe)
                reading = ", ".join(f"{c} ({types[c]})" for c in reads)
                raise IntegrationError(
                    f"transformation rule {AppliedRule(rule, flag, rule_sql).describe()} cannot run"
                    f"{f' on {reading}' if reading else ''}: {error_detail(exc)}"
                ) from None
            layer.flags[flag] = failed_sql
            if target is not None:
                (layer.replaced if target in columns else layer.added)[target] = value_sql
                lineage[target] = sorted({origin for c in reads for origin in lineage.get(c, [])})
                if target not in columns:
                    columns.append(target)
            applied.append(AppliedRule(rule, flag, rule_sql))
    finally:
        for probe in probes:
            con.execute(f"DROP TABLE IF EXISTS {probe}")
    if len(probes) > _DEEP:
        # DuckDB 2.0's projection_placement optimizer takes exponential time on deep chains of
        # projections that read a column twice (300 dependent rules: 130 s; without it 1 s)
        disabled = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
        con.execute(f"SET disabled_optimizers = {sql_literal(','.join(filter(None, [disabled, 'projection_placement'])))}")
    return (layer.over(sql) if applied else sql), columns, applied


def _probe(con: duckdb.DuckDBPyConnection, sql: str, number: int) -> str:
    """An empty temporary table with the columns and types of ``sql``'s rows."""
    name = f"__rules_input_{number}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM ({sql}) AS s LIMIT 0")
    return name


def first_failing(con: duckdb.DuckDBPyConnection, rules: list[AppliedRule]) -> tuple[AppliedRule, duckdb.Error] | None:
    """The first rule whose values cannot be computed on the data, with DuckDB's error.

    Only searched after a run failed: each probe computes one rule's value over the rows it reads.
    """
    for applied in rules:
        try:
            con.execute(f"SELECT count(COLUMNS(*)) FROM ({applied.sql})").fetchall()
        except duckdb.Error as exc:
            return applied, exc
    return None


def _reads(rule: TransformationRule, columns: list[str]) -> list[str]:
    """The columns the rule reads, as the data spells them; an error naming any missing."""
    if rule.transformation_type in ("mapping", "formatting"):
        return _require(rule, [rule.source_column or ""], columns)
    return _require(rule, sorted(parse_expression(str(rule.transformation_logic)).columns), columns)


def _rule_sql(con: duckdb.DuckDBPyConnection, sql: str, probe: str, rule: TransformationRule,
              reads: list[str]) -> tuple[str, str]:
    """The rule's value SQL and the SQL flagging rows it failed on, over rows shaped like ``probe``
    (``sql`` is read only to quote a value in an error)."""
    kind = rule.transformation_type
    if kind in ("mapping", "formatting"):
        source = reads[0]
        if kind == "mapping":
            assert isinstance(rule.transformation_logic, dict)
            in_place = column_named([source], rule.output_column or "") is not None
            if in_place:
                _check_in_place_mapping(con, sql, probe, rule, source)
            value, failed = mapping_sql(source, rule.transformation_logic, in_place)
        else:
            value = format_sql(str(rule.transformation_logic), q(source), columns_of(con, probe)[source])
            failed = f"({q(source)} IS NOT NULL AND {value} IS NULL)"
        return value, failed
    value = parse_expression(str(rule.transformation_logic)).to_sql()
    # null from inputs that all have a value is an error on that row (sqrt(-1), 1 // 0, an
    # overflow): a failure of the rule, also of a validation, where an unknown input passes
    inputs = " AND ".join(f"{q(c)} IS NOT NULL" for c in reads) or "TRUE"
    if kind == "validation":
        return value, f"coalesce(NOT ({value}), {inputs})"
    return value, f"({inputs} AND ({value}) IS NULL)"


def _check_in_place_mapping(con: duckdb.DuckDBPyConnection, sql: str, probe: str, rule: TransformationRule,
                            column: str) -> None:
    """A map to numbers (or booleans) cannot run in place on a column of another type: the values
    it does not list keep their type, and a column holds one type. Say so, with such a value,
    before DuckDB's CASE error (or a cast that fails on some row)."""
    values = rule.transformation_logic
    assert isinstance(values, dict)
    kind = _kind(values)
    if kind is None or "*" in values:
        return
    current = columns_of(con, probe)[column]
    if is_numeric(current) if kind == "numbers" else current == "BOOLEAN":
        return
    known = ", ".join(sql_literal(str(k)) for k in values)
    unmapped = con.execute(
        f"SELECT CAST({q(column)} AS VARCHAR) FROM ({sql}) WHERE {q(column)} IS NOT NULL "
        f"AND CAST({q(column)} AS VARCHAR) NOT IN ({known}) LIMIT 1"
    ).fetchone()
    example = f" (e.g. {unmapped[0]!r})" if unmapped else ""
    raise IntegrationError(
        f"transformation rule '{rule.rule_name}' maps column '{column}' ({current}) in place to {kind}, "
        f"but the values it does not list{example} would keep their type ({current}), and a column holds one type; "
        f"write the {kind} to a new column with `target_column` (unlisted values become null and "
        f"count as failures), add a default entry \"*\" (e.g. \"*\": {'0' if kind == 'numbers' else 'false'}), "
        f"or quote the {kind} to map to text"
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

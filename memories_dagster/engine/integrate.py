"""The integration run: clean each source, combine, check, transform, quarantine, account, report.

Input is one Parquet file per source (written by the extract step); output is the integrated
Parquet file, the quarantine Parquet file (one row per rejected input row, with the reason and
the row as JSON), the seed-shaped report and the results of the four checks.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow.parquet as pq

from memories_dagster.engine.contracts import Contract, ContractError, declared_contract, failures, family_problems
from memories_dagster.engine.combine import (
    Combined, SourceTable, combine, found_in_every_other, rid, type_clashes,
)
from memories_dagster.engine.duck import columns_of, connect, copy_parquet, count, q, record_json, sql_string
from memories_dagster.engine.errors import IntegrationError, error_detail
from memories_dagster.engine.expressions import sql_literal
from memories_dagster.engine.quality import fill_sql, plan_coercion, required_null_reason
from memories_dagster.engine.tables import TableFile
from memories_dagster.engine.transform import AppliedRule, apply_rules, first_failing
from memories_dagster.engine.window import Window, condition_sql, unplaced_reason_sql
from memories_dagster.engine.write import lay_out, layout_signature, parquet_rows
from memories_dagster.specs.integration import IntegrationConfig, OutputConfig

QUARANTINE_COLUMNS = ("_stage", "_source", "_reason", "_record")
_KEPT = "(__reason IS NULL AND NOT __outside AND NOT __superseded)"
# Why a row is quarantined, in the order the reasons are given: the first that applies wins.
_REASONS = ("__partition_reason", "__null_reason", "__format_reason", "__rule_reason", "__key_reason", "__contract_reason")


@dataclass
class CheckOutcome:
    """Result of one data quality check, for an asset check."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any]


@dataclass
class SourceAccount:
    """Where every row of one source went."""

    rows_read: int
    may_drop: bool = True
    duplicates_removed: int = 0
    quarantined_at_source: int = 0
    format_values_converted: int = 0
    in_output: int = 0
    quarantined_after_integration: int = 0
    outside_partition: int = 0
    superseded: int = 0
    not_matched: int = 0

    @property
    def balanced(self) -> bool:
        """Whether the parts add up to the rows read, and no row vanished where none may."""
        parts = (
            self.duplicates_removed + self.quarantined_at_source + self.in_output
            + self.quarantined_after_integration + self.outside_partition + self.superseded + self.not_matched
        )
        return parts == self.rows_read and (self.may_drop or self.not_matched == 0)


@dataclass
class IntegrationOutcome:
    """Everything the integrate step produced."""

    integrated: TableFile
    quarantine: TableFile
    checks: list[CheckOutcome]
    report: dict[str, Any]
    lineage: dict[str, list[str]]


@dataclass
class _History:
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: str, records: int) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        self.steps.append({"step": step, "timestamp": now, "records_processed": int(records)})


def integrate(
    config: IntegrationConfig,
    inputs: dict[str, str],
    integrated_path: str,
    quarantine_path: str,
    window: Window | None = None,
    window_column: str | None = None,
    output: OutputConfig | None = None,
    memory_limit: str | None = None,
    schema_file: Contract | None = None,
) -> IntegrationOutcome:
    """Integrate the sources' Parquet files (source name -> path) as ``config`` declares.

    With a window, rows whose ``window_column`` falls outside it (e.g. from a source read whole)
    are left out and counted as ``outside_partition``, so a partition holds only its own rows;
    rows whose column is empty or not a date belong to no partition and are quarantined. With an
    upsert ``output``, the last row per upsert key in source order is kept (the earlier ones are
    counted as ``superseded``) and rows without a key value are quarantined.
    With a Parquet ``output``, the integrated data is written in that output's layout
    (``meta["laid_out"]``: its layout signature), so writing the output only copies the files into place.
    The rows must meet the declared column contracts and ``schema_file`` (a pandera schema read
    by :func:`contracts.contract_from_file`); those that fail go to the quarantine.
    """
    started = time.perf_counter()
    con = connect(memory_limit)
    try:
        keys = list(output.upsert_keys) if output is not None and output.mode == "upsert" else []
        contracts = [c for c in (declared_contract(config.data_quality_checks.contracts), schema_file) if c is not None]
        integration = _Integration(con, config, inputs, window, window_column, keys, contracts)
        layout = output if output is not None and output.output_format == "parquet" else None
        return integration.run(integrated_path, quarantine_path, started, layout)
    except duckdb.Error as exc:
        raise IntegrationError(f"integration failed: {error_detail(exc)}") from None
    except ContractError as exc:
        raise IntegrationError(str(exc)) from None
    finally:
        con.close()


class _Integration:
    def __init__(self, con: duckdb.DuckDBPyConnection, config: IntegrationConfig, inputs: dict[str, str],
                 window: Window | None, window_column: str | None, upsert_keys: list[str],
                 contracts: list[Contract]) -> None:
        self.con = con
        self.contracts = contracts
        self.contract_failures: dict[str, int] = {}  # "column: check" -> rows that failed it
        self.upsert_keys = upsert_keys
        self.window = window
        self.window_column = window_column
        self.config = config
        self.inputs = inputs
        self.checks = config.data_quality_checks
        self.history = _History()
        self.accounts: dict[str, SourceAccount] = {}
        self.quarantine_parts: list[str] = []

    def run(self, integrated_path: str, quarantine_path: str, started: float, layout: OutputConfig | None) -> IntegrationOutcome:
        tables = [self._clean(source.key) for source in self.config.data_sources]
        combined = combine(tables, self.config.integration_strategy)
        for table in tables:
            self.accounts[table.name].may_drop = table.name in combined.may_drop
        try:  # views: rows are computed twice (bookkeeping, then output), never held whole
            self.con.execute(f"CREATE TEMP VIEW combined AS {combined.sql}")
            self.con.execute("SELECT * FROM combined LIMIT 0")
        except duckdb.Error as exc:
            raise self._combination_error(exc, tables, combined) from None
        lineage = {c: sorted(set(v)) for c, v in combined.lineage.items()}
        sql, columns, null_stats = self._null_check(combined)
        sql, columns, rules = apply_rules(self.con, sql, columns, lineage, self.config.transformation_rules)
        sql = self._late_format(sql, columns, tables)
        self._stage(sql, rules, columns, tables, combined)
        staged = self._measure(tables, columns, rules, combined, null_stats)
        types = {c: t for c, t in columns_of(self.con, "chain").items() if c in columns}
        kept = f"SELECT {', '.join(q(c) for c in columns)} FROM chain WHERE {_KEPT}"
        try:
            if layout is None:
                copy_parquet(self.con, kept, integrated_path)
            else:
                lay_out(self.con, kept, types, layout, "", Path(integrated_path), self.window)
        except duckdb.Error as exc:
            raise IntegrationError(f"writing the integrated rows failed: {error_detail(exc)}") from None
        self.history.add("write integrated", staged["output_rows"])
        self.quarantine_parts.append(
            "SELECT 'integration' AS _stage, NULL AS _source, __reason AS _reason, __record AS _record "
            "FROM staged WHERE __record IS NOT NULL"
        )
        copy_parquet(self.con, " UNION ALL ".join(self.quarantine_parts), quarantine_path)
        quarantined = pq.ParquetFile(quarantine_path).metadata.num_rows
        self.history.add("write quarantine", quarantined)
        output_rows = parquet_rows(Path(integrated_path))
        report = self._report(combined, staged, rules, null_stats, output_rows, quarantined, started)
        output_lineage = {c: lineage.get(c, []) for c in columns}
        report["data_lineage"]["source_mapping"] = output_lineage
        return IntegrationOutcome(
            integrated=TableFile(integrated_path, output_rows, types, {"report": report, "laid_out": layout_signature(layout) if layout else None}),
            quarantine=TableFile(quarantine_path, quarantined, {c: "VARCHAR" for c in QUARANTINE_COLUMNS}),
            checks=self._checks(staged, rules, null_stats),
            report=report,
            lineage=output_lineage,
        )

    # -- per source ---------------------------------------------------------------------------
    def _clean(self, name: str) -> SourceTable:
        path = self.inputs[name]
        account = SourceAccount(rows_read=pq.ParquetFile(path).metadata.num_rows)
        self.accounts[name] = account
        self.history.add(f"read {name}", account.rows_read)
        scan = f"read_parquet({sql_string(path)})"
        names = pq.ParquetFile(path).schema_arrow.names
        reserved = [c for c in names if c.lower() in ("rowid", "file_row_number") or c.startswith("__")]
        if reserved:
            raise IntegrationError(
                f"source '{name}' has column(s) {', '.join(reserved)}: the names rowid, file_row_number and "
                "__* are reserved for the engine's bookkeeping; rename them at the source (e.g. in its query)"
            )
        alike = [c for c in names if [n.lower() for n in names].count(c.lower()) > 1]
        if alike:  # DuckDB would silently rename the second one (NAME_1)
            raise IntegrationError(
                f"source '{name}' has columns that differ only in case: {', '.join(alike)}; column names "
                "are matched ignoring case (as SQL does), so rename one at the source (e.g. in its query)"
            )
        declared = self.checks.columns if self.checks.format_check else {}
        plan = plan_coercion(self.con, scan, declared)
        reason = plan.failure_reason_sql or "NULL::VARCHAR"
        # Row ids are positions in the file (its source order, which upserts follow); of exact
        # duplicates the first one stays.
        numbered = f"read_parquet({sql_string(path)}, file_row_number = true)"
        if self.checks.duplicate_check:
            rows = f"SELECT COLUMNS(* EXCLUDE (file_row_number)), min(file_row_number) AS __rid FROM {numbered} GROUP BY ALL"
        else:
            rows = f"SELECT * EXCLUDE (file_row_number), file_row_number AS __rid FROM {numbered}"
        table, view = q(f"raw__{name}"), q(f"src__{name}")
        self.con.execute(f"CREATE TEMP TABLE {table} AS SELECT *, {reason} AS __reason FROM ({rows}) AS numbered")
        kept = count(self.con, table)
        if self.checks.duplicate_check:
            account.duplicates_removed = account.rows_read - kept
            self.history.add(f"duplicate_check {name}", account.rows_read)
        replace = ", ".join(f"{sql} AS {q(c)}" for c, sql in plan.replacements.items())
        replace_sql = f" REPLACE ({replace})" if replace else ""
        self.con.execute(
            f"CREATE TEMP VIEW {view} AS SELECT * EXCLUDE (__reason){replace_sql} FROM {table} WHERE __reason IS NULL"
        )
        if plan.failure_reason_sql:
            account.quarantined_at_source = count(self.con, table, "__reason IS NOT NULL")
            account.format_values_converted = self.con.execute(
                f"SELECT {plan.values_converted_sql} FROM {table}"
            ).fetchone()[0]
            self.history.add(f"format_check {name}", kept)
            data_columns = {c: t for c, t in columns_of(self.con, table).items() if c not in ("__reason", "__rid")}
            self.quarantine_parts.append(
                f"SELECT 'format_check' AS _stage, {sql_literal(name)} AS _source, __reason AS _reason, "
                f"{record_json(data_columns)} AS _record FROM {table} WHERE __reason IS NOT NULL"
            )
        types = {c: t for c, t in columns_of(self.con, view).items() if c != "__rid"}
        return SourceTable(name, view, types)

    # -- after combining ------------------------------------------------------------------------
    def _null_check(self, combined: Combined) -> tuple[str, list[str], dict[str, Any]]:
        """The null_check layer over the combined rows: fills, and the reason of rows to quarantine.

        Counting is left to the one scan of the staged rows: each column carries an
        ``__isnull_<n>`` flag so nulls are counted as they came in, before fills and rules.
        """
        columns = list(combined.columns)
        stats: dict[str, Any] = {"nulls": {}, "filled": 0, "required": [], "flags": {}, "fills": []}
        if not self.checks.null_check:
            return "SELECT *, NULL::VARCHAR AS __null_reason FROM combined", columns, stats
        required = self.checks.required_columns
        required = list(combined.first_source_keys) if required is None else required
        unknown = [c for c in list(required) + list(self.checks.null_fill) if c not in columns]
        if unknown:
            raise IntegrationError(
                f"null_check names column(s) {', '.join(unknown)} that the integrated data does not "
                f"have; its columns: {', '.join(columns)}"
            )
        types = columns_of(self.con, "combined")
        for column, value in self.checks.null_fill.items():
            if self.con.execute(f"SELECT TRY_CAST({sql_literal(value)} AS {types[column]}) IS NULL").fetchone()[0]:
                raise IntegrationError(
                    f"null_fill for column '{column}': {value!r} is not a {types[column]} value, "
                    "which the column holds"
                )
        fills = {c: fill_sql(c, v, types[c]) for c, v in self.checks.null_fill.items()}
        flags = {c: f"__isnull_{i}" for i, c in enumerate(columns)}
        stats.update(required=required, flags=flags, fills=list(fills))
        replace = f" REPLACE ({', '.join(f'{sql} AS {q(c)}' for c, sql in fills.items())})" if fills else ""
        flag_sql = "".join(f", ({q(c)} IS NULL) AS {flag}" for c, flag in flags.items())
        reason = required_null_reason(required) or "NULL::VARCHAR"
        return f"SELECT *{replace}{flag_sql}, {reason} AS __null_reason FROM combined", columns, stats

    def _late_format(self, sql: str, columns: list[str], tables: list[SourceTable]) -> str:
        """format_check for declared columns no source has (e.g. calculated ones)."""
        in_sources = {c for t in tables for c in t.types}
        late = {c: t for c, t in self.checks.columns.items() if c not in in_sources} if self.checks.format_check else {}
        missing = [c for c in late if c not in columns]
        if missing:
            raise IntegrationError(
                f"format_check declares column(s) {', '.join(missing)} that neither a source nor a "
                f"transformation rule produces; columns: {', '.join(columns)}"
            )
        if not late:
            return f"SELECT *, NULL::VARCHAR AS __format_reason FROM ({sql}) AS chained"
        self.con.execute(f"CREATE TEMP VIEW chained AS {sql}")
        plan = plan_coercion(self.con, "chained", late)
        replace = ", ".join(f"{s} AS {q(c)}" for c, s in plan.replacements.items())
        replace_sql = f" REPLACE ({replace})" if replace else ""
        reason = plan.failure_reason_sql or "NULL::VARCHAR"
        return f"SELECT *{replace_sql}, {reason} AS __format_reason FROM chained"

    def _combination_error(self, exc: duckdb.Error, tables: list[SourceTable], combined: Combined) -> IntegrationError:
        clashes = type_clashes(tables)
        hint = f"; columns whose types differ between sources: {'; '.join(clashes)}" if clashes else ""
        return IntegrationError(f"combining the sources ({combined.mode}) failed: {error_detail(exc)}{hint}")

    def _staging_error(self, exc: duckdb.Error, rules: list[AppliedRule], tables: list[SourceTable],
                       combined: Combined) -> IntegrationError:
        """Say which step failed on the data: the combination, a rule, or the checks after them."""
        try:  # values of the combined rows are computed lazily: clashing types fail only here
            self.con.execute("SELECT count(COLUMNS(*)) FROM combined").fetchall()
        except duckdb.Error as failed:
            return self._combination_error(failed, tables, combined)
        culprit = first_failing(self.con, rules)
        if culprit:
            return IntegrationError(f"transformation rule {culprit[0].describe()} failed on the data: {error_detail(culprit[1])}")
        return IntegrationError(f"applying null_check or format_check failed: {error_detail(exc)}")

    def _stage(self, sql: str, rules: list[AppliedRule], columns: list[str], tables: list[SourceTable], combined: Combined) -> None:
        rule_cases = []
        for applied in rules:
            if applied.quarantines:
                rule = applied.rule
                message = f"business_rule_check: rule '{rule.rule_name}' failed ({rule.transformation_logic})"
                rule_cases.append(f"WHEN {applied.flag} THEN {sql_literal(message)}")
        reasons = {
            "__partition_reason": "NULL::VARCHAR", "__rule_reason": f"CASE {' '.join(rule_cases)} END" if rule_cases else "NULL::VARCHAR",
            "__key_reason": self._key_reason(columns),
        }
        outside = "FALSE"
        if self.window and self.window_column in columns:
            outside = f"coalesce(NOT {condition_sql(self.window, self.window_column)}, FALSE)"
            reasons["__partition_reason"] = unplaced_reason_sql(self.window, self.window_column)
        extra = "".join(f", {sql} AS {name}" for name, sql in reasons.items())
        self.con.execute(
            f"CREATE TEMP VIEW reasoned AS SELECT *{extra}, {outside} AS __outside FROM ({sql}) AS s"
        )
        self._contract()
        self.con.execute(
            f"CREATE TEMP VIEW chain AS SELECT *, coalesce({', '.join(_REASONS)}) AS __reason, "
            f"{self._superseded_sql()} AS __superseded FROM contracted"
        )
        # The bookkeeping of every row (ids, flags, reasons), and the full row only where rejected.
        types = columns_of(self.con, "chain")
        internal = ", ".join(q(c) for c in types if c.startswith("__"))
        try:
            self.con.execute(
                f"CREATE TEMP TABLE staged AS SELECT {internal}, CASE WHEN __reason IS NOT NULL AND NOT "
                f"__outside THEN {record_json({c: types[c] for c in columns})} END AS __record FROM chain"
            )
        except duckdb.Error as exc:
            raise self._staging_error(exc, rules, tables, combined) from None
        rows = count(self.con, "staged")
        self.history.add(combined.mode.replace(":", " "), rows)
        if self.checks.null_check:
            self.history.add("null_check", rows)
        for applied in rules:
            self.history.add(f"{applied.rule.transformation_type} {applied.rule.rule_name}", rows)

    def _contract(self) -> None:
        """The view ``contracted``: ``reasoned`` plus ``__contract_reason``, pandera's reasons for
        the rows (not rejected before, of this partition) that fail a column contract."""
        if not self.contracts:
            self.con.execute("CREATE TEMP VIEW contracted AS SELECT *, NULL::VARCHAR AS __contract_reason FROM reasoned")
            return
        types = columns_of(self.con, "reasoned")
        problems = family_problems(self.checks.contracts, types)
        if problems:
            raise IntegrationError(f"the integrated data does not meet the declared column contracts: {'; '.join(problems)}")
        keys = [c for c in types if c.startswith("__rid_")]
        earlier = ", ".join(r for r in _REASONS if r != "__contract_reason")
        candidates = f"(SELECT * FROM reasoned WHERE coalesce({earlier}) IS NULL AND NOT __outside)"
        found = [failures(self.con, candidates, keys, contract) for contract in self.contracts]
        for number, failed in enumerate(found):
            self.con.register(f"__contract_failures_{number}", failed.rows)
            for check, rows in failed.by_check.items():
                self.contract_failures[check] = self.contract_failures.get(check, 0) + rows
        union = " UNION ALL ".join(f"SELECT * FROM __contract_failures_{n}" for n in range(len(found)))
        by_row = f"SELECT {', '.join(q(k) for k in keys)}, string_agg(__contract_reason, '; ') AS __contract_reason FROM ({union}) GROUP BY ALL"
        on = " AND ".join(f"r.{q(k)} IS NOT DISTINCT FROM f.{q(k)}" for k in keys)
        self.con.execute(f"CREATE TEMP VIEW contracted AS SELECT r.*, f.__contract_reason FROM reasoned AS r "
                         f"LEFT JOIN ({by_row}) AS f ON {on}")

    def _key_reason(self, columns: list[str]) -> str:
        """The quarantine reason of a row without a value in an upsert key."""
        unknown = [k for k in self.upsert_keys if k not in columns]
        if unknown:
            raise IntegrationError(
                f"output_config.upsert_keys {', '.join(unknown)}: not a column of the integrated data; "
                f"its columns: {', '.join(columns)}"
            )
        cases = " ".join(
            f"WHEN {q(k)} IS NULL THEN {sql_literal(f'upsert: key column {k!r} is empty, so the row cannot replace or be replaced')}"
            for k in self.upsert_keys
        )
        return f"CASE {cases} END" if cases else "NULL::VARCHAR"

    def _superseded_sql(self) -> str:
        """SQL flagging a row that a later row with the same upsert key replaces.

        Source order is the order of the sources, then of the rows in each (their row ids): a row
        of the first source sorts by its id there, one only in a later source after all of them.
        """
        if not self.upsert_keys:
            return "FALSE"
        rids = [c for c in columns_of(self.con, "reasoned") if c.startswith("__rid_")]
        latest_first = ", ".join(f"{q(r)} DESC NULLS FIRST" for r in rids)
        keys = ", ".join(q(k) for k in self.upsert_keys)
        candidate = f"(coalesce({', '.join(_REASONS)}) IS NULL AND NOT __outside)"
        return (f"({candidate} AND row_number() OVER (PARTITION BY {candidate}, {keys} ORDER BY {latest_first}) > 1)")

    def _measure(self, tables: list[SourceTable], columns: list[str], rules: list[AppliedRule], combined: Combined,
                 null_stats: dict[str, Any]) -> dict[str, Any]:
        """Every count the report and the checks need: one scan of the staged rows, plus one
        grouping per source whose rows the combination may repeat."""
        names = [t.name for t in tables]
        exprs = {
            "staged_rows": "count(*)",
            "output_rows": f"count(*) FILTER (WHERE {_KEPT})",
            "outside_rows": "count(*) FILTER (WHERE __outside)",
            "superseded_rows": "count(*) FILTER (WHERE __superseded)",
        }
        # Rows quarantined for each reason: where it is the first that applies (rows of other
        # partitions are quarantined, if at all, by their own partition's run).
        for number, reason in enumerate(_REASONS):
            earlier = "".join(f" AND {r} IS NULL" for r in _REASONS[:number])
            exprs[reason.strip("_").replace("_reason", "_rejected")] = (
                f"count(*) FILTER (WHERE NOT __outside{earlier} AND {reason} IS NOT NULL)"
            )
        any_failed = " OR ".join(a.flag for a in rules) or "FALSE"
        exprs["transform_failed"] = f"count(*) FILTER (WHERE {any_failed})"
        for number, applied in enumerate(rules):
            exprs[f"rule_{number}"] = f"count(*) FILTER (WHERE {applied.flag})"
        flags = null_stats["flags"]
        if self.checks.null_check:
            for number, column in enumerate(combined.columns):
                exprs[f"null_{number}"] = f"count(*) FILTER (WHERE {flags[column]})"
            for column in null_stats["fills"]:
                exprs[f"filled_{column}"] = f"count(*) FILTER (WHERE {flags[column]} AND __null_reason IS NULL)"
        staged_columns = columns_of(self.con, "staged")
        present = [n for n in names if rid(n) in staged_columns]
        unique = self._unique_rids(tables, combined)
        for name in present:
            if name in unique:  # each source row is on one staged row at most: plain counts
                exprs.update({f"{key}_{name}": f"count({q(rid(name))}) FILTER (WHERE {condition})"
                              for key, condition in self._row_states(name, present).items()})
        row = self.con.execute(f"SELECT {', '.join(exprs.values())} FROM staged").fetchone()
        stats = dict(zip(exprs, (int(v or 0) for v in row)))
        if self.checks.null_check:
            null_stats["nulls"] = {c: stats[f"null_{i}"] for i, c in enumerate(combined.columns)}
            null_stats["filled"] = sum(stats[f"filled_{c}"] for c in null_stats["fills"])
        for name in present:
            if name not in unique:
                stats.update(self._grouped_states(name, present))
        for name in names:
            account = self.accounts[name]
            cleaned = account.rows_read - account.duplicates_removed - account.quarantined_at_source
            account.in_output = stats.get(f"out_{name}", 0)
            account.outside_partition = stats.get(f"outside_{name}", 0)
            account.superseded = stats.get(f"superseded_{name}", 0)
            account.quarantined_after_integration = (
                stats.get(f"present_{name}", 0) - account.in_output - account.outside_partition - account.superseded
            )
            account.not_matched = cleaned - stats.get(f"present_{name}", 0)
        if combined.mode.startswith("merge:") and combined.mode != "merge:union":
            stats["merge_matched"] = self._merge_matches(tables)
        return stats

    def _row_states(self, name: str, present: list[str]) -> dict[str, str]:
        """Conditions on a staged row that say where the row of source ``name`` went."""
        others = [q(rid(o)) for o in present if o != name]
        states = {
            "present": "TRUE",
            "out": _KEPT,
            "outside": "__outside",
            "superseded": "__superseded",
            "matched": " OR ".join(f"{o} IS NOT NULL" for o in others) or "FALSE",
        }
        if name == present[0]:
            states["fully_matched"] = " AND ".join(f"{o} IS NOT NULL" for o in others) or "TRUE"
        return states

    def _grouped_states(self, name: str, present: list[str]) -> dict[str, int]:
        """The same counts for a source whose rows may sit on several staged rows."""
        states = self._row_states(name, present)
        flags = ", ".join(f"bool_or({condition}) AS {key}" for key, condition in states.items())
        # A source row on several staged rows counts once: in the output if one of them is, else
        # outside the partition, else superseded, else quarantined.
        exclusive = {"outside": "outside AND NOT out", "superseded": "superseded AND NOT out AND NOT outside"}
        counts = ", ".join(f"count(*) FILTER (WHERE {exclusive.get(key, key)})" for key in states)
        row = self.con.execute(
            f"SELECT {counts} FROM (SELECT {flags} FROM staged WHERE {q(rid(name))} IS NOT NULL GROUP BY {q(rid(name))})"
        ).fetchone()
        return {f"{key}_{name}": int(v or 0) for key, v in zip(states, row)}

    def _unique_rids(self, tables: list[SourceTable], combined: Combined) -> set[str]:
        """Sources none of whose rows the combination repeats, known without counting them."""
        names = [t.name for t in tables]
        if combined.mode in ("single", "merge:union"):
            return set(names)
        if combined.mode.startswith("merge:"):
            return {names[0]}
        if combined.mode in ("join:left", "join:inner"):
            # the first source's rows repeat only where a later source has a join key twice
            for table in tables[1:]:
                keys = ", ".join(q(k) for k in combined.right_keys.get(table.name, []))
                if not keys:
                    return set()
                duplicated = self.con.execute(
                    f"SELECT count(*) > 0 FROM (SELECT 1 FROM {table.relation} GROUP BY {keys} HAVING count(*) > 1)"
                ).fetchone()[0]
                if duplicated:
                    return set()
            return {names[0]}
        return set()

    def _merge_matches(self, tables: list[SourceTable]) -> int:
        return count(self.con, f"{tables[0].relation} AS a", found_in_every_other(tables))

    # -- results --------------------------------------------------------------------------------
    def _checks(self, staged: dict[str, Any], rules: list[AppliedRule], null_stats: dict[str, Any]) -> list[CheckOutcome]:
        flags, outcomes = self.checks, []
        if flags.duplicate_check:
            removed = {n: a.duplicates_removed for n, a in self.accounts.items()}
            outcomes.append(CheckOutcome(
                "duplicate_check", True,
                f"{sum(removed.values())} exact duplicate rows removed before integration",
                {"duplicates_removed": sum(removed.values()), "by_source": removed},
            ))
        if flags.null_check:
            rejected = staged["null_rejected"]
            outcomes.append(CheckOutcome(
                "null_check", rejected == 0,
                f"{rejected} rows quarantined for a null in {', '.join(null_stats['required']) or 'no required column'}; "
                f"{null_stats['filled']} nulls filled",
                {"rows_quarantined": rejected, "nulls_filled": null_stats["filled"],
                 "required_columns": null_stats["required"], "null_counts": null_stats["nulls"]},
            ))
        if flags.format_check:
            at_source = {n: a.quarantined_at_source for n, a in self.accounts.items()}
            rejected = sum(at_source.values()) + staged["format_rejected"]
            converted = sum(a.format_values_converted for a in self.accounts.values())
            described = (f"{rejected} rows quarantined for values that do not parse as the declared type" if flags.columns
                         else "no `columns` declared (column -> type), so no value was checked")
            outcomes.append(CheckOutcome(
                "format_check", rejected == 0, described,
                {"rows_quarantined": rejected, "values_converted": converted,
                 "by_source": at_source, "declared_columns": dict(flags.columns)},
            ))
        if self.contracts:
            rejected = staged["contract_rejected"]
            outcomes.append(CheckOutcome(
                "contract_check", rejected == 0,
                f"{rejected} rows quarantined for failing a column contract ({', '.join(c.origin for c in self.contracts)})",
                {"rows_quarantined": rejected, "failures_by_check": self.contract_failures},
            ))
        if flags.business_rule_check:
            per_rule = {a.rule.rule_name: staged[f"rule_{i}"] for i, a in enumerate(rules) if a.quarantines}
            rejected = staged["rule_rejected"]
            outcomes.append(CheckOutcome(
                "business_rule_check", rejected == 0,
                f"{rejected} rows quarantined by {len(per_rule)} validation rule(s)",
                {"rows_quarantined": rejected, "failures_by_rule": per_rule},
            ))
        return outcomes

    def _report(
        self, combined: Combined, staged: dict[str, Any], rules: list[AppliedRule], null_stats: dict[str, Any],
        output_rows: int, quarantined: int, started: float,
    ) -> dict[str, Any]:
        accounts = self.accounts
        total = sum(a.rows_read for a in accounts.values())
        cleaned = {n: a.rows_read - a.duplicates_removed - a.quarantined_at_source for n, a in accounts.items()}
        names = list(accounts)
        if combined.mode.startswith("join") and len(names) > 1:
            join_rate = _ratio(staged.get(f"fully_matched_{names[0]}", 0), cleaned[names[0]])
            matched = sum(staged.get(f"matched_{n}", 0) for n in names)
            overlap = 100.0 * _ratio(matched, sum(cleaned.values()))
        elif "merge_matched" in staged:
            join_rate = _ratio(staged["merge_matched"], cleaned[names[0]])
            overlap = 100.0 * join_rate
        else:
            join_rate, overlap = 1.0, 0.0 if len(names) > 1 else 100.0
        entering = staged["staged_rows"]
        per_rule = [
            {"rule": a.rule.rule_name, "type": a.rule.transformation_type, "failed_rows": staged[f"rule_{i}"]}
            for i, a in enumerate(rules)
        ]
        format_converted = sum(a.format_values_converted for a in accounts.values())
        reconciliation = {
            n: {
                "rows_read": a.rows_read, "duplicates_removed": a.duplicates_removed,
                "quarantined_at_source": a.quarantined_at_source, "in_output": a.in_output,
                "quarantined_after_integration": a.quarantined_after_integration,
                "outside_partition": a.outside_partition, "superseded": a.superseded, "not_matched": a.not_matched,
                "balanced": a.balanced,
            }
            for n, a in accounts.items()
        }
        integrated_quarantined = quarantined - sum(a.quarantined_at_source for a in accounts.values())
        return {
            "integrated_data_path": None,
            "integration_report": {
                "sources_processed": len(accounts),
                "total_records": total,
                "successful_integrations": output_rows,
                "failed_integrations": quarantined,
                "data_quality_summary": {
                    "duplicates_removed": sum(a.duplicates_removed for a in accounts.values()),
                    "null_values_handled": null_stats["filled"] + staged["null_rejected"],
                    "format_issues_resolved": format_converted,
                    "contract_violations": staged["contract_rejected"],
                    "rows_quarantined": quarantined,
                },
                "integration_metrics": {
                    "join_success_rate": round(join_rate, 6),
                    "data_overlap_percentage": round(overlap, 4),
                    "transformation_success_rate": round(_ratio(entering - staged["transform_failed"], entering), 6),
                },
                "combination": combined.mode,
                "conflicts_resolved": combined.resolved,
                "transformations": per_rule,
                "reconciliation": {
                    "by_source": reconciliation,
                    "integrated_rows": staged["staged_rows"],
                    "superseded_rows": staged["superseded_rows"],
                    "balanced": all(a.balanced for a in accounts.values())
                    and staged["staged_rows"]
                    == output_rows + integrated_quarantined + staged["outside_rows"] + staged["superseded_rows"],
                },
            },
            "data_lineage": {"source_mapping": {}, "transformation_history": self.history.steps},
            "processing_time": round(time.perf_counter() - started, 3),
        }


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0

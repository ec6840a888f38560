"""Column contracts: pandera schemas that the integrated rows must meet, validated with pandera's
polars backend (vectorised, over only the columns the contract names).

A contract is declared per column in the spec (type, nullable, min/max, allowed values, pattern,
unique) or given whole as a pandera schema file (its YAML or JSON form). Rows that fail a
row-level check go to the quarantine with pandera's own reason (column, check, value); a failure
of the whole table (a column missing, a type that differs) is an error naming it, since no row is
to blame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa_arrow
import yaml

from memories_dagster.engine.duck import q
from memories_dagster.specs.documents import DocumentError, parse_json, parse_yaml
from memories_dagster.specs.integration import ColumnContract

if TYPE_CHECKING:  # pandera and polars load in a second; the code location loads without them
    import pandera.polars as pa

# The declared type's family, as the DuckDB type of the integrated column must show it.
_FAMILIES = {
    "string": lambda t: t == "VARCHAR",
    "integer": lambda t: t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                               "UINTEGER", "UBIGINT", "UHUGEINT"),
    "float": lambda t: t in ("FLOAT", "DOUBLE"),
    "decimal": lambda t: t.startswith("DECIMAL"),
    "boolean": lambda t: t == "BOOLEAN",
    "date": lambda t: t == "DATE",
    "timestamp": lambda t: t.startswith("TIMESTAMP"),
}


class ContractError(ValueError):
    """The contract cannot be read, or the integrated table as a whole does not meet it."""


@dataclass(frozen=True)
class Contract:
    """A pandera schema and where it came from (for messages)."""

    schema: pa.DataFrameSchema
    origin: str

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)


def declared_contract(contracts: dict[str, ColumnContract]) -> Contract | None:
    """The pandera schema of the spec's column contracts (None: none declared)."""
    if not contracts:
        return None
    import pandera.polars as pa

    columns = {}
    for name, contract in contracts.items():
        checks = []
        if contract.min is not None:
            checks.append(pa.Check.ge(contract.min))
        if contract.max is not None:
            checks.append(pa.Check.le(contract.max))
        if contract.allowed is not None:
            checks.append(pa.Check.isin(contract.allowed))
        if contract.pattern is not None:
            checks.append(pa.Check.str_matches(contract.pattern))
        columns[name] = pa.Column(None, checks=checks, nullable=contract.nullable, unique=contract.unique,
                                  description=contract.description, title=contract.type)
    return Contract(pa.DataFrameSchema(columns), "the declared column contracts")


def contract_from_file(path: str) -> Contract:
    """A pandera schema read from its YAML or JSON form (pandera's own serialization)."""
    where = f"schema_file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"{where} cannot be read: {exc.strerror}") from None
    try:  # strictly, as specs are read: a repeated key or an alias bomb is refused
        document = parse_json(text) if path.lower().endswith(".json") else parse_yaml(text)
    except DocumentError as exc:
        raise ContractError(f"{where} is {exc.described('JSON' if path.lower().endswith('.json') else 'YAML')}") from None
    if not isinstance(document, dict) or not isinstance(document.get("columns"), dict):
        raise ContractError(f"{where} is not a pandera schema: it needs a mapping `columns` (column -> dtype and checks)")
    document = {"schema_type": "polars_dataframe", "api": "polars", **document}
    import pandera.polars as pa

    try:
        schema = pa.DataFrameSchema.from_yaml(yaml.safe_dump(document))
    except Exception as exc:  # pandera raises many kinds: unknown dtype, unknown check, bad argument
        raise ContractError(f"{where} is not a pandera schema pandera can read: {type(exc).__name__}: {exc}") from None
    return Contract(schema, where)


def family_problems(contracts: dict[str, ColumnContract], types: dict[str, str]) -> list[str]:
    """Why the integrated columns (name -> DuckDB type) do not have the contracts' types."""
    problems = []
    for name, contract in contracts.items():
        if name not in types:
            problems.append(f"column '{name}' is not in the integrated data")
        elif contract.type and not _FAMILIES[contract.type.split(":", 1)[0]](types[name]):
            problems.append(f"column '{name}' should be {contract.type} but is {types[name]}")
    return problems


@dataclass(frozen=True)
class Failures:
    """The rows that failed a contract (their keys and ``__contract_reason``), and how many rows
    failed each check ("column: check" -> rows)."""

    rows: pa_arrow.Table
    by_check: dict[str, int]


def failures(con: duckdb.DuckDBPyConnection, relation: str, keys: list[str], contract: Contract) -> Failures:
    """Rows of ``relation`` that fail ``contract``, named by their ``keys``.

    Only the contract's columns (and the keys) are read, through Arrow into polars; pandera
    checks them all at once (``lazy=True``) and its failure cases name the row by position.
    """
    import pandera.polars as pa
    import polars as pl

    have = {d[0] for d in con.execute(f"SELECT * FROM {relation} LIMIT 0").description}
    present = [c for c in contract.columns if c in have]
    wanted = ", ".join(q(c) for c in dict.fromkeys([*keys, *present]))
    frame = pl.from_arrow(con.sql(f"SELECT {wanted} FROM {relation}").to_arrow_table())
    try:
        contract.schema.validate(frame.select(present) if present else frame.select([]), lazy=True)
        cases = None
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    except pa.errors.SchemaError as exc:
        raise ContractError(f"the integrated data does not meet {contract.origin}: {exc}") from None
    missing = [c for c in contract.columns if c not in present]
    whole = cases.filter(pl.col("index").is_null()) if cases is not None else None
    if missing or (whole is not None and whole.height):
        said = [f"column '{c}' is not in the integrated data" for c in missing]
        if whole is not None:
            said += [f"{row['column'] or 'the table'}: {row['check']} ({row['failure_case']})" for row in whole.iter_rows(named=True)
                     if row["column"] not in missing]
        raise ContractError(f"the integrated data does not meet {contract.origin}: {'; '.join(said)}")
    if cases is None or cases.height == 0:
        return Failures(frame.head(0).select(keys).with_columns(pl.lit(None, pl.String).alias("__contract_reason")).to_arrow(), {})
    by_check = cases.group_by(pl.col("column") + pl.lit(": ") + pl.col("check")).agg(pl.col("index").n_unique())
    reasons = (
        cases.with_columns(
            (pl.lit("contract: column '") + pl.col("column") + pl.lit("' failed ") + pl.col("check")
             + pl.lit(" (value ") + pl.col("failure_case").fill_null("null") + pl.lit(")")).alias("reason"))
        .group_by("index").agg(pl.col("reason").str.join("; ").alias("__contract_reason"))
    )
    rows = frame.select(keys).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
    failed = rows.join(reasons.with_columns(pl.col("index").cast(pl.Int64)), on="index").drop("index").to_arrow()
    return Failures(failed, dict(sorted(by_check.iter_rows())))


def column_schema(contract: Contract) -> list[tuple[str, bool, bool, list[str]]]:
    """(column, nullable, unique, pandera's checks and declared type) of each contracted column."""
    described = []
    for name, column in contract.schema.columns.items():
        kind = str(column.dtype) if column.dtype is not None else column.title
        checks = ([f"type {kind}"] if kind else []) + [check.error or check.name for check in column.checks]
        described.append((name, column.nullable, column.unique, checks))
    return described

"""Delta Lake outputs through delta-rs: each run is one commit of the table's log, so readers and
crashes see the table's old version or its new one, never a mix; a Dagster partition's rows are
replaced by a predicate overwrite inside that one commit, the other partitions' rows untouched."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import duckdb
import fsspec

from memories_dagster.connectors.file_outputs import DestinationError
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.engine.duck import columns_of, connect, q, sql_string
from memories_dagster.engine.errors import error_detail
from memories_dagster.engine.window import ZONED_TEXT, Window
from memories_dagster.secrets import redact
from memories_dagster.specs.integration import OutputConfig, Partitioning

PartitionColumn = Callable[[Partitioning, str], tuple[str, 'str | None']]

SCHEMES = ("s3://", "s3a://", "file://")
BATCH_ROWS = 100_000

# Types Delta can hold only under another name: widened losslessly (Delta has no unsigned integers;
# DuckDB's 128-bit sums become DECIMAL(38,0), which overflows loudly instead of wrapping).
_WIDENED = {"UTINYINT": "SMALLINT", "USMALLINT": "INTEGER", "UINTEGER": "BIGINT", "UBIGINT": "DECIMAL(20,0)",
            "HUGEINT": "DECIMAL(38,0)", "UHUGEINT": "DECIMAL(38,0)"}
_UNSUPPORTED = re.compile(r"^(TIME\b|TIME WITH TIME ZONE|INTERVAL|UNION)")
# Files delta-rs writes before it commits; without a log they are what a killed first write left.
_DATA_FILE = re.compile(r"^part-\d{5}-[0-9a-f-]{36}-c\d{3}(\.\w+)?\.parquet$")
# A table's description saying a pipeline made it, the table's name then being that pipeline's:
# replace overwrites only a table its pipeline made (both survive every later commit).
OWNED = "output of a memories_dagster pipeline (the table name)"
# delta-rs appends a Rust backtrace ("   0: <unknown>", "at /path") that says nothing to a user.
_BACKTRACE = re.compile(r"\n\s+\d+: ")


def write_delta(
    integrated_path: str,
    output: OutputConfig,
    destination: str,
    window: Window | None,
    window_column: str | None,
    memory_limit: str | None,
    storage_options: dict[str, Any] | None,
    partition_column: PartitionColumn,
    pipeline: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the integrated Parquet data as a commit of the Delta table at ``destination``.

    A run without a window replaces the table (schema included); a windowed run replaces the
    rows of ``window_column`` inside the window; either only in a table ``pipeline`` made (see
    ``_claim``). Rows stream from DuckDB to delta-rs in Arrow
    batches. ``partition_column`` derives the Delta partition column from ``output.partitioning``.
    Returns where, how many rows and the table version the commit made.
    """
    import deltalake

    where = f"delta table {redact(destination)}"
    options = delta_storage_options(destination, storage_options or {})
    existed = _check_destination(destination, storage_options or {}, where)
    con = connect(memory_limit)
    try:
        scan = f"read_parquet({sql_string(integrated_path)})"
        types = columns_of(con, scan)
        select, partition_by = _select(scan, types, output, partition_column)
        predicate = None
        if window and output.mode == "replace":
            if window_column not in types:
                raise ConnectorError(f"partitions.column '{window_column}' is not a column of the integrated data, so the "
                                     f"{where} cannot replace the partition's rows; its columns: {', '.join(types)}")
            predicate = window_predicate(window, window_column, types[window_column])
        table = deltalake.DeltaTable(destination, storage_options=options) if existed else destination
        if existed and output.mode == "replace":
            _claim(table, pipeline, overwrite, where)
        rows = con.sql(select).to_arrow_reader(BATCH_ROWS)
        deltalake.write_deltalake(
            table, rows, partition_by=partition_by or None, storage_options=None if existed else options,
            name=None if existed else pipeline, description=None if existed else OWNED,
            mode="append" if output.mode == "append" else "overwrite", predicate=predicate,
            schema_mode="overwrite" if predicate is None and output.mode == "replace" else None,
        )
        version = (table if existed else deltalake.DeltaTable(destination, storage_options=options)).version()
        count = con.execute(f"SELECT count(*) FROM {scan}").fetchone()[0]
    except (duckdb.Error, deltalake.exceptions.DeltaError, OSError) as exc:
        if not existed:
            _remove_leftovers(destination, storage_options or {})
        raise _failure(exc, where, predicate) from None
    finally:
        con.close()
    return {"integrated_data_path": redact(destination), "rows_written": count, "files": [], "table_version": version}


def _claim(table: Any, pipeline: str, overwrite: bool, where: str) -> None:
    """Refuse to replace rows of a table that ``pipeline`` did not make, unless ``overwrite``,
    which names it as this pipeline's from then on. A table without the mark (made by hand, by
    another tool, or by a version of this one from before the mark) is not its own."""
    metadata = table.metadata()
    owner = metadata.name if metadata.description == OWNED else None
    if owner == pipeline:
        return
    if overwrite:
        table.alter.set_table_name(pipeline)
        table.alter.set_table_description(OWNED)
        return
    whose = f"its metadata names pipeline '{owner}'" if owner else "its metadata names no pipeline of this project"
    raise DestinationError(
        f"the {where} exists and pipeline '{pipeline}' did not make it ({whose}); mode replace would overwrite "
        "its rows, so nothing was written. A pipeline replaces only tables it made: give a new location, or "
        "write with mode append, or, if this pipeline may take the table over (e.g. a table an earlier version "
        "of this tool made before it marked its tables), set output_config.overwrite: true once: the table's "
        "name and description then mark it as this pipeline's"
    )


def delta_storage_options(destination: str, storage_options: dict[str, Any]) -> dict[str, str]:
    """delta-rs options for ``destination`` from a connection's fsspec (s3fs) options: keys,
    endpoint, region, and plain HTTP where the endpoint is http (S3 stand-ins)."""
    if "://" in destination and not destination.startswith(SCHEMES):
        raise ConnectorError(f"a delta output goes to a local folder or an s3:// location, not {redact(destination)}")
    if not destination.startswith(("s3://", "s3a://")):
        return {}
    names = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN",
             "endpoint_url": "AWS_ENDPOINT_URL", "profile": "AWS_PROFILE"}
    options = {names[k]: str(v) for k, v in storage_options.items() if k in names and v is not None}
    region = (storage_options.get("client_kwargs") or {}).get("region_name")
    if region:
        options["AWS_REGION"] = region
    if storage_options.get("anon"):
        options["AWS_SKIP_SIGNATURE"] = "true"
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    # A deadline on every request, and few retries: an endpoint that does not answer fails the
    # step in seconds (Dagster's retry policy then applies), not after minutes of backoff.
    options.update(connect_timeout="10s", timeout="120s", max_retries="3", retry_timeout="60s")
    return options


def window_predicate(window: Window, column: str, column_type: str) -> str:
    """The delta-rs (DataFusion) predicate selecting the rows of ``column`` inside ``window``:
    the same rows the windowed read passed on (see ``engine.window.condition_sql``)."""
    ref = q(column)
    if not window.is_time:
        return f"CAST({ref} AS VARCHAR) = {sql_string(window.key)}"
    start, end = window.start, window.end
    if column_type == "DATE":
        low, high = (sql_string(m.strftime("%Y-%m-%d")) for m in (start, end))
        return f"{ref} >= {low} AND {ref} < {high}"
    if column_type.startswith("TIMESTAMP WITH TIME ZONE"):
        low, high = (sql_string(m.isoformat()) for m in (start, end))
        return f"{ref} >= {low} AND {ref} < {high}"
    low, high = (sql_string(m.strftime("%Y-%m-%d %H:%M:%S")) for m in (start, end))
    if column_type.startswith("TIMESTAMP"):
        return f"{ref} >= {low} AND {ref} < {high}"
    # Text: DataFusion casts text naming an offset or zone to its UTC time, so such text is
    # compared with the window's UTC bounds, other text with its wall-time bounds.
    utc_low, utc_high = (sql_string(m.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")) for m in (start, end))
    value, zoned = f"CAST({ref} AS TIMESTAMP)", f"regexp_like({ref}, {sql_string(ZONED_TEXT)})"
    return (f"(({zoned}) AND {value} >= TIMESTAMP {utc_low} AND {value} < TIMESTAMP {utc_high}) OR "
            f"(NOT ({zoned}) AND {value} >= TIMESTAMP {low} AND {value} < TIMESTAMP {high})")


def _select(scan: str, types: dict[str, str], output: OutputConfig, partition_column: PartitionColumn) -> tuple[str, list[str]]:
    """The SELECT streaming the rows in types Delta holds exactly, and the partition columns."""
    refused = [f"{c} ({t})" for c, t in types.items() if _UNSUPPORTED.match(t)]
    if refused:
        raise ConnectorError(
            f"a Delta table has no type for column(s) {', '.join(refused)}; convert them with a calculation "
            "rule (e.g. to text) or write another output_format"
        )
    columns = [_exact(c, t) for c, t in types.items()]
    partition_by: list[str] = []
    if output.partitioning:
        column = output.partitioning.partition_by
        if column not in types:
            raise ConnectorError(f"output_config.partitioning.partition_by '{column}' is not a column of the "
                                 f"integrated data; its columns: {', '.join(types)}")
        folder_column, derived = partition_column(output.partitioning, types[column])
        if derived:
            columns.append(f"{derived} AS {q(folder_column)}")
        partition_by = [folder_column]
    return f"SELECT {', '.join(columns)} FROM {scan}", partition_by


def _exact(column: str, column_type: str) -> str:
    """The select item of one column: widened where Delta lacks the type, and nanosecond
    timestamps cut to Delta's microseconds only where no value loses a digit."""
    ref = q(column)
    if column_type in _WIDENED:
        return f"CAST({ref} AS {_WIDENED[column_type]}) AS {ref}"
    if column_type == "TIMESTAMP_NS":
        message = sql_string(f"column '{column}' holds nanoseconds, which a Delta table cannot keep (it stores "
                             "microseconds); round the column with a calculation rule or write another output_format")
        return f"CASE WHEN epoch_ns({ref}) % 1000 <> 0 THEN error({message}) ELSE CAST({ref} AS TIMESTAMP) END AS {ref}"
    return ref


def _check_destination(destination: str, storage_options: dict[str, Any], where: str) -> bool:
    """Whether a Delta table is at ``destination`` already; refuses a location holding other files.

    Data files without a log are what a write killed before its first commit left: removed.
    """
    fs, root = fsspec.core.url_to_fs(destination, **storage_options)
    try:
        if not fs.exists(root):
            return False
        if fs.exists(f"{root.rstrip('/')}/_delta_log"):
            return True
        found = fs.find(root)
    except OSError as exc:
        raise UnavailableError(f"the {where} could not be reached: {error_detail(exc)}") from None
    foreign = [f for f in found if not _DATA_FILE.match(f.rsplit("/", 1)[-1])]
    if foreign:
        raise ConnectorError(
            f"the {where} is a location holding files that are no Delta table (e.g. {redact(foreign[0])}); "
            "a delta output replaces only a table of its own: give an empty or new location"
        )
    _remove_leftovers(destination, storage_options)
    return False


def _remove_leftovers(destination: str, storage_options: dict[str, Any]) -> None:
    """Remove what a failed first write left (data files, no log): no table was made."""
    fs, root = fsspec.core.url_to_fs(destination, **storage_options)
    if fs.exists(root) and not fs.exists(f"{root.rstrip('/')}/_delta_log"):
        fs.rm(root, recursive=True)


def _failure(exc: BaseException, where: str, predicate: str | None) -> ConnectorError:
    """A one-paragraph error for a failed write: the table keeps its last version."""
    text = _BACKTRACE.split(str(exc), maxsplit=1)[0]
    detail = error_detail(type("DeltaFailure", (Exception,), {})(text))
    if predicate and "failed validation check" in detail:
        detail += f" (rows outside the partition being replaced, {predicate})"
    kind = UnavailableError if isinstance(exc, OSError) else ConnectorError
    return kind(f"writing the {where} failed and committed nothing (readers keep the last version): {detail}")

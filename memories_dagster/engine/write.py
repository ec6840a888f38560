"""Writing the integrated table to its destination: files (optionally partitioned) or SQL."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from memories_dagster.connectors.files import PART_SEPARATOR, StagedOutput, copy_options, suffix_for
from memories_dagster.engine.duck import columns_of, connect, q, sql_string
from memories_dagster.engine.errors import IntegrationError, error_detail
from memories_dagster.engine.tables import Access
from memories_dagster.engine.window import Window
from memories_dagster.secrets import redact, resolve
from memories_dagster.specs.integration import OutputConfig, Partitioning

_DATE_PATTERNS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


def partition_column(partitioning: Partitioning, column_type: str) -> tuple[str, str | None]:
    """The folder column of a partitioned output and the SQL deriving it (None: the column itself)."""
    column = partitioning.partition_by
    if partitioning.partition_type == "category":
        return column, None
    if partitioning.partition_type == "hash":
        return f"{column}_bucket", f"md5_number(CAST({q(column)} AS VARCHAR)) % {partitioning.buckets}"
    if partitioning.granularity == "day" and column_type == "DATE":
        return column, None
    pattern = _DATE_PATTERNS[partitioning.granularity]
    value = q(column) if column_type.startswith(("DATE", "TIMESTAMP")) else f"TRY_CAST({q(column)} AS TIMESTAMP)"
    return f"{column}_{partitioning.granularity}", f"strftime({value}, {sql_string(pattern)})"


def file_stem(window: Window | None) -> str:
    """Name of the files a run writes: the partition key, percent-encoded (distinct keys, distinct names)."""
    return urllib.parse.quote(window.key, safe="") if window else "part"


def write_output(
    integrated_path: str,
    output: OutputConfig,
    destination: str,
    table: str,
    window: Window | None = None,
    window_column: str | None = None,
    laid_out: bool = False,
    memory_limit: str | None = None,
    access: Access | None = None,
) -> dict[str, Any]:
    """Write the integrated Parquet data to the declared output; returns where and how much.

    ``laid_out`` says the integrated data is already in the output's Parquet layout (see
    :func:`lay_out`): its files are then linked into place rather than written again.
    """
    if output.output_format == "sql":
        from memories_dagster.connectors import sql as sql_connector  # on use: pulls in pandas

        where = "output_config.output_destination"
        url = sql_connector.database_url(resolve(destination, where))
        delete_filter = sql_connector.window_bounds(url, window, window_column) if window and window_column else None
        if output.mode != "replace":
            delete_filter = None
        written = sql_connector.replace_rows(url, table, integrated_path, delete_filter,
                                             access.engine_options if access else None, output.mode, output.upsert_keys)
        return {"integrated_data_path": f"{redact(destination)}#{table}", "rows_written": written, "files": []}
    if output.output_format == "mongodb":
        from memories_dagster.connectors.mongo import WRITE_BATCH, bson_ready, write_documents

        url = resolve(destination, "output_config.output_destination")
        batches = ([bson_ready(r) for r in b.to_pylist()] for b in pq.ParquetFile(integrated_path).iter_batches(WRITE_BATCH))
        written = write_documents(url, output.database, output.collection or table, batches, output.mode, output.upsert_keys)
        return {"integrated_data_path": f"{redact(destination)}#{output.collection or table}", "rows_written": written, "files": []}
    if output.output_format == "delta":
        from memories_dagster.connectors.delta import write_delta  # on use: pulls in delta-rs

        return write_delta(integrated_path, output, destination, window, window_column, memory_limit,
                           access.storage_options if access else None, partition_column)
    staged = StagedOutput(destination, access.storage_options if access else None)
    try:
        if laid_out:
            tree = staged.folder / "tree"
            link_tree(Path(integrated_path), tree)
        else:
            con = connect(memory_limit)
            try:
                scan = f"read_parquet({sql_string(integrated_path)})"
                tree = lay_out(con, f"SELECT * FROM {scan}", columns_of(con, scan), output, destination, staged.folder / "tree", window)
            except duckdb.Error as exc:
                raise IntegrationError(f"writing {output.output_format} for {redact(destination)} failed: {error_detail(exc)}") from None
            finally:
                con.close()
        rows = parquet_rows(Path(integrated_path))
        if output.partitioning:
            files = staged.commit_tree(tree, destination, file_stem(window) if window else None)
            return {"integrated_data_path": destination, "rows_written": rows, "files": files}
        suffix = suffix_for(output.output_format, destination)
        target = f"{destination.rstrip('/')}/{file_stem(window)}{suffix}" if window else destination
        staged.commit_file(tree, target)
        return {"integrated_data_path": target, "rows_written": rows, "files": [target]}
    finally:
        staged.discard()


def lay_out(
    con: duckdb.DuckDBPyConnection,
    select_sql: str,
    types: dict[str, str],
    output: OutputConfig,
    destination: str,
    target: Path,
    window: Window | None,
) -> Path:
    """Write the rows of ``select_sql`` at ``target`` as the output's files.

    Partitioned outputs become a folder of ``col=value/<stem>--<n>.<suffix>`` files, others
    one file. The integrate step uses this to store a Parquet output's data ready to be linked.
    """
    options = copy_options(output.output_format, destination)
    if not output.partitioning:
        con.execute(f"COPY ({select_sql}) TO {sql_string(str(target))} ({options})")
        return target
    column = output.partitioning.partition_by
    if column not in types:
        raise IntegrationError(
            f"output_config.partitioning.partition_by '{column}' is not a column of the "
            f"integrated data; its columns: {', '.join(types)}"
        )
    folder_column, derived = partition_column(output.partitioning, types[column])
    select = f"SELECT *, {derived} AS {q(folder_column)} FROM ({select_sql})" if derived else select_sql
    target.mkdir(parents=True)
    pattern = file_stem(window) + PART_SEPARATOR + "{i}"
    con.execute(
        f"COPY ({select}) TO {sql_string(str(target))} ({options}, PARTITION_BY ({q(folder_column)}), "
        f"FILENAME_PATTERN {sql_string(pattern)}, OVERWRITE_OR_IGNORE true)"
    )
    return target


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, or of every Parquet file under a folder (from their footers)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def link_tree(source: Path, target: Path) -> None:
    """Hard-link (or, across filesystems, copy) a file or a folder of files to ``target``.

    Safe because stored asset files are never changed in place, only replaced by rename.
    """
    pairs = [(source, target)] if source.is_file() else [
        (f, target / f.relative_to(source)) for f in source.rglob("*") if f.is_file()
    ]
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    for origin, copy in pairs:
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(origin, copy)
        except OSError:
            shutil.copy2(origin, copy)


def default_destination(name: str, output: OutputConfig, incremental: bool) -> str:
    """Where an output goes when the spec does not say: output/<pipeline>[.<format>]."""
    suffix = "" if output.partitioning or incremental else {"csv": ".csv", "json": ".json", "parquet": ".parquet"}.get(output.output_format, "")
    return str(Path("output") / f"{name}{suffix}")

"""Writing the integrated table to its destination: files (optionally partitioned) or SQL."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from memories_dagster.connectors import sql as sql_connector
from memories_dagster.connectors.files import PART_SEPARATOR, StagedOutput, copy_options, suffix_for
from memories_dagster.engine.duck import columns_of, connect, q, sql_string
from memories_dagster.engine.errors import IntegrationError
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
    return f"{column}_{partitioning.granularity}", f"strftime(TRY_CAST({q(column)} AS TIMESTAMP), {sql_string(pattern)})"


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
) -> dict[str, Any]:
    """Write the integrated Parquet file to the declared output; returns where and how much."""
    rows = _rows(integrated_path)
    if output.output_format == "sql":
        where = "output_config.output_destination"
        url = sql_connector.database_url(resolve(destination, where))
        delete_filter = sql_connector.window_bounds(url, window, window_column) if window and window_column else None
        written = sql_connector.replace_rows(url, table, integrated_path, delete_filter)
        return {"integrated_data_path": f"{redact(destination)}#{table}", "rows_written": written, "files": []}
    return _write_files(integrated_path, output, destination, window, rows)


def _rows(path: str) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _write_files(integrated_path: str, output: OutputConfig, destination: str, window: Window | None, rows: int) -> dict[str, Any]:
    con = connect()
    staged = StagedOutput(destination)
    try:
        scan = f"read_parquet({sql_string(integrated_path)})"
        options = copy_options(output.output_format, destination)
        if output.partitioning:
            types = columns_of(con, scan)
            column = output.partitioning.partition_by
            if column not in types:
                raise IntegrationError(
                    f"output_config.partitioning.partition_by '{column}' is not a column of the "
                    f"integrated data; its columns: {', '.join(types)}"
                )
            folder_column, derived = partition_column(output.partitioning, types[column])
            select = f"SELECT *, {derived} AS {q(folder_column)} FROM {scan}" if derived else f"SELECT * FROM {scan}"
            tree = staged.folder / "tree"
            tree.mkdir()
            stem = file_stem(window)
            con.execute(
                f"COPY ({select}) TO {sql_string(str(tree))} ({options}, PARTITION_BY ({q(folder_column)}), "
                f"FILENAME_PATTERN {sql_string(stem + PART_SEPARATOR + '{i}')}, OVERWRITE_OR_IGNORE true)"
            )
            files = staged.commit_tree(tree, destination, stem if window else None)
            return {"integrated_data_path": destination, "rows_written": rows, "files": files}
        suffix = suffix_for(output.output_format, destination)
        target = f"{destination.rstrip('/')}/{file_stem(window)}{suffix}" if window else destination
        staged_file = staged.folder / f"data{suffix}"
        con.execute(f"COPY (SELECT * FROM {scan}) TO {sql_string(str(staged_file))} ({options})")
        staged.commit_file(staged_file, target)
        return {"integrated_data_path": target, "rows_written": rows, "files": [target]}
    finally:
        staged.discard()
        con.close()


def default_destination(name: str, output: OutputConfig, incremental: bool) -> str:
    """Where an output goes when the spec does not say: output/<pipeline>[.<format>]."""
    suffix = "" if output.partitioning or incremental else {"csv": ".csv", "json": ".json", "parquet": ".parquet"}.get(output.output_format, "")
    return str(Path("output") / f"{name}{suffix}")

"""Writing the integrated table to its destination: files (optionally partitioned) or SQL."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from memories_dagster.connectors.file_outputs import (
    DestinationError, Ownership, copy_files, destination_problems, link_files, nesting_problem, owned_write, place_problem,
    protected_places,
)
from memories_dagster.connectors.files import PART_SEPARATOR, copy_options, stem_of, suffix_for
from memories_dagster.engine.duck import columns_of, connect, q, sql_string
from memories_dagster.engine.errors import IntegrationError, error_detail
from memories_dagster.engine.finite import refuse_non_finite, refuse_wide_decimals
from memories_dagster.engine.tables import Access
from memories_dagster.engine.window import Window, wall_time_sql
from memories_dagster.secrets import redact, resolve
from memories_dagster.specs.integration import OutputConfig, Partitioning, PartitionsSpec

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
    # text naming an offset or zone is an instant: its UTC date, as for a TIMESTAMPTZ column
    value = q(column) if column_type.startswith(("DATE", "TIMESTAMP")) else wall_time_sql(q(column), "UTC")
    return f"{column}_{partitioning.granularity}", f"strftime({value}, {sql_string(pattern)})"


def file_stem(window: Window | None) -> str:
    """Name of the files a run writes: the partition key, percent-encoded (distinct keys, distinct
    names), a leading ``.`` or ``_`` too: readers (pyarrow, Spark, Hive) skip files named so."""
    if window is None:
        return "part"
    stem = urllib.parse.quote(window.key, safe="")
    return f"%{ord(stem[0]):02X}{stem[1:]}" if stem[:1] in (".", "_") else stem


def layout_signature(output: OutputConfig) -> str:
    """What decides the files :func:`lay_out` makes of an output: format, COPY options and
    partitioning. Stored with laid-out data, so an output whose spec changed since is not copied from it."""
    partitioning = output.partitioning.model_dump(mode="json") if output.partitioning else None
    files = output.output_format in ("csv", "json", "parquet")  # the others are tables, not laid out
    return json.dumps({"format": output.output_format, "options": copy_options(output.output_format, "") if files else None,
                       "partitioning": partitioning}, sort_keys=True)


def partition_scheme(partitions: PartitionsSpec | None, output: OutputConfig) -> str:
    """How runs split a file output into files: the Dagster partitions (kind, column, time zone)
    and the output's layout. A manifest records it; a partition's run under another scheme would
    leave the earlier scheme's files beside its own."""
    runs = partitions.model_dump(mode="json", include={"type", "column", "timezone"}) if partitions else None
    return f"partitions {json.dumps(runs, sort_keys=True)}, output {layout_signature(output)}"


def _stems(window: Window | None) -> set[str]:
    """The stems of the files a partition's run replaces: its own, and the one versions before
    the leading ``.``/``_`` was encoded gave it (none: a full run replaces every file)."""
    return {file_stem(window), urllib.parse.quote(window.key, safe="")} if window else set()


def write_output(
    integrated_path: str,
    output: OutputConfig,
    destination: str,
    table: str,
    window: Window | None = None,
    window_column: str | None = None,
    laid_out: str | None = None,
    memory_limit: str | None = None,
    access: Access | None = None,
    ownership: Ownership | None = None,
) -> dict[str, Any]:
    """Write the integrated Parquet data to the declared output; returns where and how much.

    A file output is written only if ``ownership`` allows (see :mod:`connectors.file_outputs`:
    default, pipeline ``table`` and the places no project may write), replacing only the files
    this pipeline wrote: all of them, or with a ``window`` those of its partition. A SQL table or
    MongoDB collection is replaced only if its pipeline created it (or ``overwrite``).

    ``laid_out`` is the :func:`layout_signature` the integrated data was laid out in (see
    :func:`lay_out`): if it is this output's, its files are copied into place rather than written
    again; a single file in another layout is plain Parquet and is written anew, a folder in
    another layout (its partition columns are in the folder names) is refused.
    """
    ownership = ownership or Ownership(table, output.overwrite, protected_places())
    if output.output_format == "sql":
        from memories_dagster.connectors import sql as sql_connector  # on use: pulls in pandas

        where = "output_config.output_destination"
        url = sql_connector.database_url(resolve(destination, where))
        if url.get_backend_name() in ("mysql", "mariadb", "sqlite"):  # no NaN there (MySQL/MariaDB: no infinity)
            refuse_non_finite(integrated_path, f"table {table} on {url.get_backend_name()}",
                              infinities=url.get_backend_name() != "sqlite")
        delete_filter = sql_connector.window_bounds(window, window_column) if window and window_column else None
        if output.mode != "replace":
            delete_filter = None
        written = sql_connector.replace_rows(url, table, integrated_path, delete_filter,
                                             access.engine_options if access else None, output.mode, output.upsert_keys,
                                             ownership.pipeline, ownership.overwrite)
        return {"integrated_data_path": f"{redact(destination)}#{table}", "rows_written": written, "files": []}
    if output.output_format == "mongodb":
        from memories_dagster.connectors.mongo import WRITE_BATCH, bson_ready, write_documents

        url = resolve(destination, "output_config.output_destination")
        refuse_wide_decimals(integrated_path, f"MongoDB collection {output.collection or table}")
        batches = ([bson_ready(r) for r in b.to_pylist()] for b in pq.ParquetFile(integrated_path).iter_batches(WRITE_BATCH))
        written = write_documents(url, output.database, output.collection or table, batches, output.mode, output.upsert_keys,
                                  ownership.pipeline, ownership.overwrite)
        return {"integrated_data_path": f"{redact(destination)}#{output.collection or table}", "rows_written": written, "files": []}
    if output.output_format == "delta":
        from memories_dagster.connectors.delta import write_delta  # on use: pulls in delta-rs

        problem = place_problem(destination, ownership.protected) or nesting_problem(destination)
        if problem:
            raise DestinationError(problem)

        return write_delta(integrated_path, output, destination, window, window_column, memory_limit,
                           access.storage_options if access else None, partition_column,
                           ownership.pipeline, ownership.overwrite)
    if output.output_format == "json":
        refuse_non_finite(integrated_path, f"JSON output {redact(destination)}")
    ready = laid_out is not None and laid_out == layout_signature(output)
    if laid_out is not None and not ready and Path(integrated_path).is_dir():
        raise IntegrationError(
            f"the stored integrated data was laid out for another output_config (format or partitioning) than "
            f"the spec's now ({output.output_format}, partitioning {layout_signature(output)}); materialize "
            f"the pipeline's integrated asset again (e.g. the whole group) before its output")
    folder = bool(output.partitioning or window)
    suffix = suffix_for(output.output_format, destination)
    with owned_write(destination, ownership, folder, access.storage_options if access else None, window is not None) as staged:
        into = staged.staging if output.partitioning else staged.staging / f"{file_stem(window)}{suffix}"
        if ready:
            link_tree(Path(integrated_path), into, copy=True)
        else:
            con = connect(memory_limit)
            try:
                scan = f"read_parquet({sql_string(integrated_path)})"
                lay_out(con, f"SELECT * FROM {scan}", columns_of(con, scan), output, destination, into, window)
            except duckdb.Error as exc:
                raise IntegrationError(f"writing {output.output_format} for {redact(destination)} failed: {error_detail(exc)}") from None
            finally:
                con.close()
        rows = parquet_rows(Path(integrated_path))
        if output.partitioning:
            stems = _stems(window)
            files = staged.commit_folder(lambda rel: not stems or staged.restart or stem_of(rel.rsplit("/", 1)[-1]) in stems)
            return {"integrated_data_path": destination, "rows_written": rows, "files": files}
        if window:
            name, stems = f"{file_stem(window)}{suffix}", _stems(window)
            files = staged.commit_folder(lambda rel: staged.restart or rel in {f"{stem}{suffix}" for stem in stems})
            return {"integrated_data_path": f"{destination.rstrip('/')}/{name}", "rows_written": rows, "files": files}
        files = staged.commit_file(into)
        return {"integrated_data_path": destination, "rows_written": rows, "files": files}


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
    one file. The integrate step uses this to store a Parquet output's data ready to be copied.
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
    target.mkdir(parents=True, exist_ok=True)
    # A token new at every write: a file name never comes back with other rows in it, so a reader
    # that listed the folder before a commit cannot open a newer file under an older name.
    pattern = f"{file_stem(window)}{PART_SEPARATOR}{uuid.uuid4().hex[:8]}_{{i}}"
    con.execute(
        f"COPY ({select}) TO {sql_string(str(target))} ({options}, PARTITION_BY ({q(folder_column)}), "
        f"FILENAME_PATTERN {sql_string(pattern)}, OVERWRITE_OR_IGNORE true)"
    )
    return target


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, or of every Parquet file under a folder (from their footers)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def link_tree(source: Path, target: Path, copy: bool = False) -> None:
    """Hard-link (or, across filesystems, copy) a file or a folder of files to ``target``: safe
    between stored asset files, which are never changed in place, only replaced by rename. With
    ``copy``, copies (:func:`file_outputs.copy_files`: a clone where the filesystem can): for
    outputs, whose files a user may edit in place, which must not change the stored asset.
    """
    pairs = [(source, target)] if source.is_file() else [
        (f, target / f.relative_to(source)) for f in source.rglob("*") if f.is_file()
    ]
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    (copy_files if copy else link_files)(pairs)


def local_destination(name: str, output: OutputConfig, root: Path, partitioned: bool) -> str | None:
    """The file or folder a file (or delta) output writes, as far as the spec alone tells (None:
    a database, or a place known only at run time through ${ENV} or a profile connection)."""
    if output.output_format in ("sql", "mongodb") or output.connection:
        return None
    declared = output.output_destination or default_destination(name, output, partitioned)
    if "${" in declared or "://" in declared or Path(declared).is_absolute():
        return None if "${" in declared else declared
    return str(root / declared)


def destination_check(name: str, output: OutputConfig, root: Path, partitioned: bool, storage: list[str],
                      deep: bool) -> tuple[list[str], list[str]]:
    """(problems, repairs) of a spec's output destination before any run: a place no output may
    be; with ``deep``, also files there that the pipeline did not write, and a killed write's
    leftovers put right (see :func:`file_outputs.destination_problems`)."""
    location = local_destination(name, output, root, partitioned)
    if location is None:
        return [], []
    ownership = Ownership(name, output.overwrite, protected_places(root, storage), project=str(root.resolve()))
    if not deep or output.output_format == "delta":  # a delta table's files are its log's, not a manifest's
        problem = (place_problem(location, ownership.protected, output.output_destination)
                   or (nesting_problem(location, output.output_destination) if deep else None))
        return [problem] if problem else [], []
    return destination_problems(location, ownership, bool(output.partitioning or partitioned))


def default_destination(name: str, output: OutputConfig, incremental: bool) -> str:
    """Where an output goes when the spec does not say: output/<pipeline>[.<format>]."""
    suffix = "" if output.partitioning or incremental else {"csv": ".csv", "json": ".json", "parquet": ".parquet"}.get(output.output_format, "")
    return str(Path("output") / f"{name}{suffix}")

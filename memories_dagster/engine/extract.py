"""Reading one declared source, for one partition window if any, into a Parquet file."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from memories_dagster.connectors.files import NO_RECORDS_COLUMN, ConnectorError, is_remote, open_file_source, wide_decimals
from memories_dagster.connectors.inference import typed_by_values
from memories_dagster.connectors.mainframe import read_mainframe
from memories_dagster.engine.duck import columns_of, connect, copy_parquet, q, sql_string
from memories_dagster.engine.errors import error_detail
from memories_dagster.engine.tables import Access, TableFile
from memories_dagster.engine.write import link_tree
from memories_dagster.engine.window import Window, expand, has_template, read_filter_sql
from memories_dagster.secrets import redact, register, resolve
from memories_dagster.specs.integration import DataSource

RECORD_BATCH = 50_000
RECORD_SOURCES = ("api", "odata", "graphql", "soap", "redis", "mongodb")


def extract(
    source: DataSource,
    location: str,
    out_path: str,
    window: Window | None = None,
    window_column: str | None = None,
    memory_limit: str | None = None,
    copybook: str | None = None,
    access: Access | None = None,
    snapshot_dir: Path | None = None,
    keep_order: bool = False,
) -> TableFile:
    """Read ``source`` from ``location`` (its resolved connection string) into ``out_path``.

    With a window, only the window's rows are read: a ``{partition_...}`` template in the path
    or the query's bind parameters select them at the source, else rows are filtered on
    ``window_column`` when the source has it (rows whose column is empty or not a date are kept,
    for the integration to quarantine). ``meta['window_filter']`` says which applied.
    ``copybook`` is the resolved path of a mainframe source's copybook; ``access`` carries the
    credentials and pool settings of the source's connection. With ``snapshot_dir``, a local
    file source read whole is not read again while its files are unchanged (size and
    modification time): every daily run of a pipeline with a large dimension file reuses it.
    A read that gives no rows is an error unless ``source.allow_empty`` (or a window narrowed
    it by column or query parameters: a quiet partition). With ``keep_order`` the rows keep the
    source's order, in which the last row per key wins an upsert (it costs up to twice the time
    of a large read, so only upserting pipelines ask for it).
    """
    read = _Read(connect(memory_limit, keep_order), source, location, out_path, window, window_column,
                 access or Access(), copybook, snapshot_dir)
    try:
        reader = {"sql": _extract_sql, "mainframe": _extract_mainframe}.get(source.source_type)
        if reader is None:
            reader = _extract_records if source.source_type in RECORD_SOURCES else _extract_files
        try:
            result, how = reader(read)
        except duckdb.Error as exc:  # e.g. a CSV value past the sniffed sample that is not of its type
            raise ConnectorError(redact(
                f"source '{source.source_name}' ({source.source_type} at {location}) cannot be read: {error_detail(exc)}"
            )) from None
        narrowed = how is not None and (how.startswith("column ") or how == "query parameters")
        if result.rows == 0 and not narrowed and not source.allow_empty:
            raise ConnectorError(redact(
                f"source '{source.source_name}' has no rows ({source.source_type} at {location}); an empty "
                "source would replace the output with nothing. If an empty source is normal here, set "
                "allow_empty: true on the source"
            ))
        result.meta.update(source=source.key, location=redact(location), window_filter=how)
        return result
    finally:
        read.con.close()


@dataclass
class _Read:
    """One source read: where from, where to, for which window, with which access."""

    con: duckdb.DuckDBPyConnection
    source: DataSource
    location: str
    out_path: str
    window: Window | None
    window_column: str | None
    access: Access
    copybook: str | None
    snapshot_dir: Path | None

    def templated(self) -> bool:
        """Whether the window picks the data through a template in the location."""
        return bool(self.window and has_template(self.location))

    def column_filter(self, columns: Iterable[str]) -> tuple[str | None, str | None]:
        """(SQL condition, description) of the window on its column, when the data has it."""
        if self.window and not self.templated() and self.window_column and self.window_column in columns:
            return read_filter_sql(self.window, self.window_column), f"column {self.window_column}"
        return None, None


def _extract_sql(read: _Read) -> tuple[TableFile, str | None]:
    with tempfile.TemporaryDirectory(prefix="memories-sql-") as folder:
        relation, how = _read_sql(read.con, read.source, read.location, read.window, read.window_column, Path(folder), read.access)
        return _write(read.con, relation, None, read.out_path), how


def _extract_records(read: _Read) -> tuple[TableFile, str | None]:
    """Sources that yield JSON-like records: APIs, GraphQL, SOAP, Redis, MongoDB."""
    source, window = read.source, read.window
    secret = lambda text, where: expand(resolve(text, where), window)  # noqa: E731
    url = expand(resolve(read.location, f"source '{source.source_name}' connection_string"), window)
    separator, depth, stats = "_", None, {}
    with tempfile.TemporaryDirectory(prefix=f"memories-{source.source_type}-") as folder:
        if source.source_type in ("api", "odata"):
            from memories_dagster.connectors.http import client_for

            client = client_for(source, url, secret)
            try:
                relation = records_to_parquet(client.records(), Path(folder))
            finally:
                client.close()
            cache = client.cache
            stats = {"requests": client.requests, "cache_hits": cache.hits if cache else 0,
                     "cache_misses": cache.misses if cache else 0}
        else:
            records = _record_reader(source, url, secret)
            if source.source_type == "mongodb":
                separator, depth = source.mongodb.flatten_separator, source.mongodb.flatten_depth
            relation = records_to_parquet(records, Path(folder), separator, depth)
        result = _write(read.con, relation, None, read.out_path)
    result.meta.update(stats)
    return result, "url template" if read.templated() else None


def _record_reader(source: DataSource, url: str, secret) -> Iterable[dict]:
    """The records of a GraphQL, SOAP, Redis or MongoDB source (their libraries load on use)."""
    if source.source_type == "graphql":
        from memories_dagster.connectors.graphql import graphql_records

        return graphql_records(source, url, secret)
    if source.source_type == "soap":
        from memories_dagster.connectors.soap import soap_records

        return soap_records(source, url, secret)
    if source.source_type == "redis":
        from memories_dagster.connectors.redis_source import redis_records

        return redis_records(url, source.source_name, source.redis.pattern, source.redis.kind)
    from memories_dagster.connectors.mongo import mongo_documents

    return mongo_documents(url, source.source_name, source.mongodb)


def _extract_mainframe(read: _Read) -> tuple[TableFile, str | None]:
    records = read_mainframe(read.source, expand(read.location, read.window), read.copybook or "", read.access.storage_options)
    read.con.register("mainframe_records", records.table)
    condition, how = read.column_filter(records.table.column_names)
    result = _write(read.con, "mainframe_records", condition, read.out_path)
    result.meta["invalid_values"] = records.invalid
    return result, "path template" if read.templated() else how


def _extract_files(read: _Read) -> tuple[TableFile, str | None]:
    source, con = read.source, read.con
    path = expand(read.location, read.window)
    if read.snapshot_dir is not None and not is_remote(path):
        # Unchanged files whose snapshot is whole-read answer without being opened (sniffed,
        # checked for lossless types) again: a daily run's dimension file costs nothing.
        cached = read.snapshot_dir / f"{_signature(source, path)}.parquet"
        if cached.exists() and read.column_filter(pq.read_schema(cached).names)[0] is None:
            return _reused(con, cached, read.out_path), "path template" if read.templated() else None
    view = open_file_source(con, source.key, source.source_type, path, source.options, source.sheet,
                            read.access.storage_options, source.allow_empty)
    condition, how = read.column_filter(columns_of(con, q(view)))
    if condition is None and _is_plain_parquet_file(source, path):
        result = _snapshot(con, path, read.out_path)  # already Parquet: a byte copy is the snapshot
    elif condition is None and read.snapshot_dir is not None and not is_remote(path):
        result = _reuse_or_write(con, q(view), _signature(source, path), read.snapshot_dir, read.out_path)
    else:
        result = _write(con, q(view), condition, read.out_path)
    return result, "path template" if read.templated() else how


def _signature(source: DataSource, path: str) -> str:
    """What a whole-file read depends on: the files' sizes and modification times, the reader."""
    files = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in sorted(glob.glob(path))]
    facts = [source.source_type, source.options, source.sheet, files]
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()[:24]


def _reuse_or_write(con: duckdb.DuckDBPyConnection, relation: str, signature: str, folder: Path, out_path: str) -> TableFile:
    cached = folder / f"{signature}.parquet"
    if cached.exists():
        return _reused(con, cached, out_path)
    result = _write(con, relation, None, out_path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):  # one snapshot per source: the files as they are now
        old.unlink(missing_ok=True)
    staged = folder / f".{signature}.tmp"
    link_tree(Path(out_path), staged)
    os.replace(staged, cached)
    result.meta["snapshot"] = "read"
    return result


def _reused(con: duckdb.DuckDBPyConnection, cached: Path, out_path: str) -> TableFile:
    link_tree(cached, Path(out_path))
    result = _described(con, out_path)
    result.meta["snapshot"] = "reused: files unchanged"
    return result


def _is_plain_parquet_file(source: DataSource, path: str) -> bool:
    """Whether the file, copied as it is, is read the same as the source (a decimal of more than 38
    digits is not: it is read as its text)."""
    return (source.source_type == "parquet" and not source.options and not is_remote(path) and os.path.isfile(path)
            and not wide_decimals(pq.read_schema(path)))


def _snapshot(con: duckdb.DuckDBPyConnection, path: str, out_path: str) -> TableFile:
    shutil.copyfile(path, out_path)
    return _described(con, out_path)


def _write(con: duckdb.DuckDBPyConnection, relation: str, condition: str | None, out_path: str) -> TableFile:
    copy_parquet(con, f"SELECT * FROM {relation} WHERE {condition or 'TRUE'}", out_path)
    return _described(con, out_path)


def _described(con: duckdb.DuckDBPyConnection, path: str) -> TableFile:
    """A written Parquet file with its row count (from the footer) and column types."""
    return TableFile(path, pq.ParquetFile(path).metadata.num_rows, columns_of(con, f"read_parquet({sql_string(path)})"))


def records_to_parquet(records: Iterable[dict], folder: Path, separator: str = "_", depth: int | None = None) -> str:
    """JSON-like records, nested objects flattened (``main.temp`` -> ``main_temp``), written in
    Parquet parts of ``RECORD_BATCH`` records; returns the relation reading them all."""
    parts: list[Path] = []
    batch: list[dict] = []

    def flush() -> None:
        part = folder / f"part-{len(parts):05d}.parquet"
        flat = [_flattened(record, separator, depth) for record in batch]
        names = list(dict.fromkeys(name for record in flat for name in record))
        if names:
            table = pa.Table.from_arrays([typed_by_values([r.get(n) for r in flat]) for n in names], names=names)
        else:  # no records, so no columns: Parquet needs one
            table = pa.table({NO_RECORDS_COLUMN: pa.array([], pa.bool_())})
        pq.write_table(table, part)
        parts.append(part)
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) >= RECORD_BATCH:
            flush()
    if batch or not parts:
        flush()
    files = ", ".join(sql_string(str(p)) for p in parts)
    return f"read_parquet([{files}], union_by_name = true)"


def _flattened(record: dict, separator: str, depth: int | None, prefix: str = "", level: int = 0) -> dict:
    """Nested objects as columns ``outer<separator>inner``, down to ``depth`` levels (all by default)."""
    flat: dict = {}
    for key, value in record.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, dict) and value and (depth is None or level < depth):
            flat.update(_flattened(value, separator, depth, name, level + 1))
        else:
            flat[name] = value
    return flat


def _read_sql(
    con: duckdb.DuckDBPyConnection,
    source: DataSource,
    location: str,
    window: Window | None,
    window_column: str | None,
    folder: Path,
    access: Access,
) -> tuple[str, str | None]:
    from memories_dagster.connectors import sql as sql_connector  # on use: pulls in pandas

    auth = source.authentication
    where = f"source '{source.source_name}'"
    url = sql_connector.database_url(
        resolve(location, f"{where} connection_string"),
        resolve(auth.username, f"{where} authentication.username") if auth and auth.username else None,
        register(resolve(auth.password, f"{where} authentication.password"), f"{where} authentication.password")
        if auth and auth.password else None,
    )
    params = window.params() if window else {}
    query = resolve(source.query, f"{where} query") if source.query else None
    table = resolve(source.table, f"{where} table") if source.table else None
    binds_window = bool(window and query and any(f":{name}" in query for name in params))
    window_filter = None
    if window and window_column and not binds_window:
        window_filter = sql_connector.window_bounds(window, window_column)
    parts, filtered, casts = sql_connector.read_query(
        url, source.source_name, query, table, params, window_filter, folder, access.engine_options, window
    )
    how = "query parameters" if binds_window else (f"column {window_column}" if filtered else None)
    files = ", ".join(sql_string(str(p)) for p in parts)
    relation = f"read_parquet([{files}], union_by_name = true)"
    if casts:  # decimals, dates and times arrive as exact text; their type is known once every part is read
        replaced = ", ".join(f"CAST({q(c)} AS {kind}) AS {q(c)}" for c, kind in casts.items())
        relation = f"(SELECT * REPLACE ({replaced}) FROM {relation})"
    return relation, how

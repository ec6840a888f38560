"""SQL databases through SQLAlchemy: chunked reads into Parquet, transactional writes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.engine.errors import error_detail
from memories_dagster.engine.window import Window
from memories_dagster.secrets import redact

READ_CHUNK_ROWS = 100_000
# connection errors that trying again does not mend
_REFUSED = re.compile(r"authentication failed|access denied|does not exist|unknown database|no password supplied|"
                      r"permission denied|syntax error", re.IGNORECASE)
WRITE_CHUNK_ROWS = 5_000


# Drivers this package installs, used when a URL names only the database kind.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg2", "postgres": "postgresql+psycopg2",
                    "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def database_url(url: str, username: str | None = None, password: str | None = None) -> URL:
    """A SQLAlchemy URL with credentials given apart from it and an installed driver."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ConnectorError(f"'{redact(url)}' is not a SQLAlchemy URL (e.g. postgresql://host/db)") from None
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    if username:
        parsed = parsed.set(username=username)
    if password:
        parsed = parsed.set(password=password)
    return parsed


def create_engine(url: URL, options: dict | None = None) -> sa.Engine:
    """An engine that checks connections before use and fails fast when the server is down.

    ``options`` come from a SQL connection of the resource profile (pool size, timeouts).
    """
    options = {"pool_pre_ping": True, "connect_timeout": 10, **(options or {})}
    timeout = options.pop("connect_timeout")
    args: dict[str, object] = {}
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        args["connect_timeout"] = timeout
    if url.get_backend_name() == "sqlite":  # one file, no server: pool sizes do not apply
        options = {k: v for k, v in options.items() if k not in ("pool_size", "max_overflow")}
    try:
        return sa.create_engine(url, connect_args=args, **options)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConnectorError(
            f"no database driver for {url.drivername} ({exc}); install it or name an installed "
            "one in the URL, e.g. postgresql+psycopg2:// or mysql+pymysql://"
        ) from None


def describe(url: URL) -> str:
    """The URL as it may be shown: no password."""
    return url.render_as_string(hide_password=True)


def _fail(what: str, url: URL, exc: Exception) -> ConnectorError:
    detail = error_detail(exc)
    kind = UnavailableError if _unavailable(exc, detail) else ConnectorError
    return kind(redact(f"{what} ({describe(url)}): {detail}"))


def _unavailable(exc: Exception, detail: str) -> bool:
    """A database that could not be reached or dropped the connection (worth trying again), as
    opposed to refused credentials, a missing database or a wrong query."""
    lost = isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)) \
        or bool(getattr(exc, "connection_invalidated", False))
    return lost and not _REFUSED.search(detail)


def window_bounds(url: URL, window: Window, column: str) -> tuple[str, object, object]:
    """(column, low, high) of a window as the database compares them.

    SQLite keeps dates as text, so its bounds are ISO strings; other databases get datetimes.
    A dynamic window (a key, no time range) gives (column, key, None).
    """
    if not window.is_time:
        return column, window.key, None
    if url.get_backend_name() == "sqlite":
        def text(moment: dt.datetime) -> str:
            return moment.strftime("%Y-%m-%d" if moment.time() == dt.time() else "%Y-%m-%d %H:%M:%S")
        return column, text(window.start), text(window.end)
    return column, window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def read_query(
    url: URL,
    name: str,
    query: str | None,
    table: str | None,
    params: dict[str, object],
    window_filter: tuple[str, object, object] | None,
    folder: Path,
    engine_options: dict | None = None,
) -> tuple[list[Path], bool]:
    """Run the source's query (or read its table) in chunks, one Parquet file per chunk.

    ``params`` are bound where the query names them (``:partition_start``...). ``window_filter``
    (column, low, high) wraps the query so only rows with low <= column < high are read (high
    None: column = low), provided the query returns that column. Returns the files and whether
    the filter applied.
    """
    engine = create_engine(url, engine_options)
    quote = engine.dialect.identifier_preparer.quote
    sql = query or "SELECT * FROM " + ".".join(quote(p) for p in (table or "").split("."))
    bound = {k: v for k, v in params.items() if f":{k}" in sql}
    parts: list[Path] = []
    filtered = False
    try:
        with engine.connect() as conn:
            probe = conn.execute(sa.text(f"SELECT * FROM ({sql}) AS probe WHERE 1 = 0"), bound)
            geometries = _geometry_columns(conn, probe)
            if window_filter:
                column, low, high = window_filter
                if column in probe.keys():
                    filtered = True
                    condition = f"{quote(column)} = :window_low"
                    bound["window_low"] = low
                    if high is not None:
                        condition = f"{quote(column)} >= :window_low AND {quote(column)} < :window_high"
                        bound["window_high"] = high
                    sql = f"SELECT * FROM ({sql}) AS source_rows WHERE {condition}"
            conn = conn.execution_options(stream_results=True)
            chunks = pd.read_sql_query(sa.text(sql), conn, params=bound, chunksize=READ_CHUNK_ROWS)
            for number, chunk in enumerate(chunks):
                for column in geometries:
                    chunk[column] = _wkt(chunk[column])
                part = folder / f"part-{number:05d}.parquet"
                pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), part)
                parts.append(part)
    except sa.exc.SQLAlchemyError as exc:
        raise _fail(f"source '{name}': query failed", url, exc) from exc
    finally:
        engine.dispose()
    return parts, filtered


def _geometry_columns(conn: sa.Connection, probe: sa.CursorResult) -> list[str]:
    """PostGIS geometry/geography columns of a result (they arrive as hex-encoded EWKB)."""
    if conn.dialect.name != "postgresql" or probe.cursor is None or not probe.cursor.description:
        return []
    oids = {row[0] for row in conn.execute(sa.text("SELECT oid FROM pg_type WHERE typname IN ('geometry', 'geography')"))}
    return [column.name for column in probe.cursor.description if column.type_code in oids]


def _wkt(values: pd.Series) -> pd.Series:
    """Hex EWKB geometries as WKT text, all at once (shapely), nulls kept."""
    import shapely  # on use: only PostGIS sources need it

    present = values.notna()
    text = pd.Series(None, index=values.index, dtype=object)
    if present.any():
        shapes = shapely.from_wkb(values[present].to_numpy())
        text[present] = shapely.to_wkt(shapes, rounding_precision=-1)
    return text


def replace_rows(
    url: URL,
    table: str,
    parquet_path: str,
    delete_filter: tuple[str, object, object] | None,
    engine_options: dict | None = None,
    mode: str = "replace",
    keys: list[str] | None = None,
) -> int:
    """Write the Parquet file's rows into ``table`` in one transaction; nothing changes on failure.

    ``replace``: delete the rows being replaced first, all of them or with ``delete_filter``
    (column, low, high) one partition's; ``append``: insert only; ``upsert``: for each batch,
    delete the rows whose ``keys`` equal an incoming row's, then insert the batch.
    """
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, engine_options)
    schema, _, name = table.rpartition(".")
    written = 0
    try:
        with engine.begin() as conn:
            target = None
            if sa.inspect(conn).has_table(name, schema=schema or None):
                target = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
                missing = [k for k in keys or [] if k not in target.c]
                if missing:
                    raise ConnectorError(f"upsert keys {', '.join(missing)} are not columns of table {table}")
                if delete_filter and delete_filter[0] not in target.c:
                    raise ConnectorError(
                        f"partitions.column {delete_filter[0]} is not a column of table {table}, so a "
                        "partition's rows cannot be found to replace them"
                    )
            data_columns = pq.ParquetFile(parquet_path).schema_arrow.names
            absent = [k for k in keys or [] if k not in data_columns]
            if absent:
                raise ConnectorError(f"upsert keys {', '.join(absent)} are not columns of the data; its columns: {', '.join(data_columns)}")
            if target is not None and mode == "replace":
                delete = target.delete()
                if delete_filter:
                    column, low, high = delete_filter
                    col = target.c[column]
                    delete = delete.where(col >= low, col < high) if high is not None else delete.where(col == low)
                conn.execute(delete)
            for batch in pq.ParquetFile(parquet_path).iter_batches(batch_size=WRITE_CHUNK_ROWS * 10):
                frame = batch.to_pandas()
                if mode == "upsert":  # one row per key: the last one given wins
                    frame = frame.drop_duplicates(subset=keys, keep="last")
                if target is not None and mode == "upsert":
                    incoming = list(frame[keys].itertuples(index=False, name=None))
                    columns = [target.c[k] for k in keys]
                    selector = columns[0].in_([row[0] for row in incoming]) if len(keys) == 1 else sa.tuple_(*columns).in_(incoming)
                    conn.execute(target.delete().where(selector))
                frame.to_sql(
                    name, conn, schema=schema or None, if_exists="append", index=False,
                    chunksize=WRITE_CHUNK_ROWS, method="multi",
                )
                written += len(frame)
    except (sa.exc.SQLAlchemyError, KeyError) as exc:
        raise _fail(f"writing table {table} failed; the table is unchanged", url, exc) from exc
    finally:
        engine.dispose()
    return written


"""SQL databases through SQLAlchemy: chunked reads into Parquet, transactional writes."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url

from memories_dagster.connectors.file_outputs import DestinationError
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.connectors.sql_arrow import ResultTypes, mysql_text_casters, postgres_text_casters, result_types
from memories_dagster.engine.errors import error_detail
from memories_dagster.engine.window import Window, zone_of
from memories_dagster.secrets import redact

READ_CHUNK_ROWS = 100_000
# connection errors that trying again does not mend
_REFUSED = re.compile(r"authentication failed|access denied|does not exist|unknown database|no password supplied|"
                      r"permission denied|syntax error", re.IGNORECASE)
WRITE_CHUNK_ROWS = 5_000
# The table, in each schema an output writes, that records which pipeline created which table:
# replace deletes rows only in a table its pipeline created.
REGISTRY = "memories_outputs"


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
    _check_charset(parsed)
    if username:
        parsed = parsed.set(username=username)
    if password:
        parsed = parsed.set(password=password)
    return parsed


def _check_charset(url: URL) -> None:
    """Refuse a ``?charset=`` PyMySQL does not know: it fails the connection with "'NoneType' object
    has no attribute 'encoding'", which names neither the option nor what is allowed."""
    charset = url.query.get("charset")
    if url.get_driver_name() != "pymysql" or charset is None:
        return
    from pymysql.charset import charset_by_name

    for value in (charset,) if isinstance(charset, str) else charset:
        if charset_by_name(value) is None:
            raise ConnectorError(redact(f"the URL's option charset={value[:100]!r} is not a character set MySQL/MariaDB "
                                        f"know; use e.g. charset=utf8mb4 ({describe(url)})"))


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


def window_bounds(window: Window, column: str) -> tuple[str, object, object]:
    """(column, low, high) of a window: its datetimes, in its time zone, which ``compared``
    binds as the column compares them. A dynamic window (a key, no time range) gives
    (column, key, None)."""
    if not window.is_time:
        return column, window.key, None
    return column, window.start, window.end


def compared(dialect: str, value: object, instant: bool) -> object:
    """A window bound as the session (see ``use_zone``) compares it with a column: on MariaDB/MySQL
    (session in UTC) and SQLite the UTC time for a column of instants (TIMESTAMP, or a column
    this project wrote from instants: UTC wall times), else the wall time in the window's zone,
    which is also what PostgreSQL (session in the window's zone) takes for every column; on
    SQLite, which keeps dates and times as text, as ISO text. Anything else as it is."""
    if not isinstance(value, dt.datetime):
        return value
    if instant and dialect in ("mysql", "mariadb", "sqlite"):
        value = value.astimezone(dt.timezone.utc)
    value = value.replace(tzinfo=None)
    if dialect == "sqlite":
        return value.strftime("%Y-%m-%d" if value.time() == dt.time() else "%Y-%m-%d %H:%M:%S")
    return value


def holds_instants(arrow_type: pa.DataType | None) -> bool:
    """Whether a column of this Arrow type holds instants (a timestamp with a time zone)."""
    return arrow_type is not None and pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None


def window_condition(dialect: str, column: str, ranged: bool) -> str:
    """The WHERE condition of a windowed read on the quoted ``column``: inside the window
    (``:window_low`` <= column < ``:window_high``, or column = ``:window_low``), or in no window
    at all (empty, or on SQLite text that is no date), rows the integration must quarantine."""
    inside = f"{column} >= :window_low AND {column} < :window_high" if ranged else f"{column} = :window_low"
    unplaced = f"datetime({column}) IS NULL" if dialect == "sqlite" and ranged else f"{column} IS NULL"
    return f"(({inside}) OR {unplaced})"


def read_query(
    url: URL,
    name: str,
    query: str | None,
    table: str | None,
    params: dict[str, object],
    window_filter: tuple[str, object, object] | None,
    folder: Path,
    engine_options: dict | None = None,
    window: Window | None = None,
) -> tuple[list[Path], bool, dict[str, str]]:
    """Run the source's query (or read its table) in chunks, one Parquet file per chunk.

    ``params`` are bound where the query names them (``:partition_start``...). ``window_filter``
    (column, low, high) wraps the query so only rows with low <= column < high are read (high
    None: column = low), and those in no window, provided the query returns that column; the
    session runs as ``use_zone`` says. Columns keep the
    database's types (see ``sql_arrow``). Returns the files, whether the filter applied, and the
    DuckDB type each decimal or date/time column (read as exact text) takes once all parts are read.
    """
    engine = create_engine(url, engine_options)
    quote = engine.dialect.identifier_preparer.quote
    sql = query or "SELECT * FROM " + ".".join(quote(p) for p in (table or "").split("."))
    bound = {k: v for k, v in params.items() if f":{k}" in sql}
    parts: list[Path] = []
    filtered = False
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                postgres_text_casters(conn.connection.dbapi_connection)
            elif engine.dialect.name in ("mysql", "mariadb"):
                mysql_text_casters(conn.connection.dbapi_connection)
            use_zone(conn, window.start if window else None)
            probe = conn.execute(sa.text(f"SELECT * FROM ({sql}) AS probe WHERE 1 = 0"), bound)
            types = _result_types(conn, probe)
            probe.close()
            if window_filter:
                column, low, high = window_filter
                if column in types.names:
                    filtered = True
                    instant = holds_instants(types.types[types.names.index(column)])
                    bound["window_low"] = compared(engine.dialect.name, low, instant)
                    if high is not None:
                        bound["window_high"] = compared(engine.dialect.name, high, instant)
                    condition = window_condition(engine.dialect.name, quote(column), high is not None)
                    sql = f"SELECT * FROM ({sql}) AS source_rows WHERE {condition}"
            result = conn.execution_options(stream_results=True).execute(sa.text(sql), bound)
            while True:
                rows = result.fetchmany(READ_CHUNK_ROWS)
                if not rows and parts:
                    break
                part = folder / f"part-{len(parts):05d}.parquet"
                pq.write_table(types.table(rows), part)
                parts.append(part)
                if not rows:
                    break
    except sa.exc.SQLAlchemyError as exc:
        raise _fail(f"source '{name}': query failed", url, exc) from exc
    finally:
        engine.dispose()
    return parts, filtered, types.casts()


def use_zone(conn: sa.Connection, moment: object) -> None:
    """Fix the session's time zone, so no result depends on the server's or the host's.

    MariaDB/MySQL: always UTC ('+00:00', which needs no time zone tables): TIMESTAMP columns
    read as UTC instants, and window bounds are bound per column (``compared``) as UTC instants
    or as wall times of the window's zone, exact across daylight saving changes, where a fixed
    offset taken at the window's start was not. PostgreSQL, which always knows named zones:
    the zone of a window's start (``moment``), so that wall-time bounds and ``:partition_start``
    meet TIMESTAMPTZ columns as instants of that zone; nothing without a time window."""
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(sa.text("SET time_zone = '+00:00'"))
    elif conn.dialect.name == "postgresql" and isinstance(moment, dt.datetime):
        conn.execute(sa.text("SELECT set_config('TimeZone', :zone, false)"), {"zone": zone_of(moment)})


def _result_types(conn: sa.Connection, probe: sa.CursorResult) -> ResultTypes:
    """The database's types of a result's columns, from the driver's description of it."""
    cursor = probe.cursor
    dialect = conn.dialect.name
    geometry_oids: frozenset[int] = frozenset()
    if dialect == "postgresql":  # PostGIS types have no fixed OIDs
        geometry_oids = frozenset(row[0] for row in conn.execute(
            sa.text("SELECT oid FROM pg_type WHERE typname IN ('geometry', 'geography')")))
    fields = getattr(getattr(cursor, "_result", None), "fields", None)  # pymysql: unsigned flags, charsets
    return result_types(dialect, cursor.description, fields, geometry_oids)


def replace_rows(
    url: URL,
    table: str,
    parquet_path: str,
    delete_filter: tuple[str, object, object] | None,
    engine_options: dict | None = None,
    mode: str = "replace",
    keys: list[str] | None = None,
    pipeline: str = "",
    overwrite: bool = False,
) -> int:
    """Write the Parquet file's rows into ``table`` in one transaction; nothing changes on failure.

    ``replace``: delete the rows being replaced first, all of them or with ``delete_filter``
    (column, low, high) one partition's, and only in a table that ``pipeline`` created (see
    ``_claim``); ``append``: insert only; ``upsert``: the last row per ``keys`` in file order
    wins, replacing the table's row with those keys; a row without a key value is refused. A
    table that does not exist yet is filled under a staging name and renamed into place, so a
    failed first write leaves no table behind, and recorded as ``pipeline``'s in the registry.
    """
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, engine_options)
    schema, _, name = table.rpartition(".")
    if name == REGISTRY:
        raise DestinationError(f"output_config.table '{table}' is the registry of the tables this project's pipelines "
                               "created; name another table")
    keys = keys or []
    try:
        written = None
        if not sa.inspect(engine).has_table(name, schema=schema or None):
            _check_keys(parquet_path, keys)
            _ensure_registry(engine, schema or None)
            written = _write_new_table(engine, parquet_path, schema or None, name, mode, keys, pipeline)
        if written is None:  # the table exists (or another run created it meanwhile)
            if mode == "replace" and overwrite:  # it may be adopted
                _ensure_registry(engine, schema or None)
            with engine.begin() as conn:
                use_zone(conn, delete_filter[1] if delete_filter else None)
                target = _existing_table(conn, table, schema or None, name, keys, delete_filter)
                _check_keys(parquet_path, keys)
                if mode == "replace":
                    _claim(conn, table, schema or None, pipeline, overwrite)
                    conn.execute(_delete_of(target, delete_filter, conn.dialect.name, _instants(parquet_path, delete_filter)))
                written = _insert(conn, parquet_path, target, mode, keys)
    except (sa.exc.SQLAlchemyError, KeyError, ValueError) as exc:
        raise _fail(f"writing table {table} failed; the table is unchanged", url, exc) from exc
    finally:
        engine.dispose()
    return written


def _check_keys(parquet_path: str, keys: list[str]) -> None:
    """Refuse upsert keys the data lacks, and rows without a key value (they match no row, so
    they would be added again on every run)."""
    if not keys:
        return
    data_columns = pq.ParquetFile(parquet_path).schema_arrow.names
    absent = [k for k in keys if k not in data_columns]
    if absent:
        raise ConnectorError(f"upsert keys {', '.join(absent)} are not columns of the data; its columns: {', '.join(data_columns)}")
    key_table = pq.read_table(parquet_path, columns=keys)
    missing = pc.is_null(key_table.column(keys[0]))
    for key in keys[1:]:
        missing = pc.or_(missing, pc.is_null(key_table.column(key)))
    keyless = pc.sum(missing.cast("int64")).as_py() or 0
    if keyless:
        raise ConnectorError(
            f"{keyless} rows have no value in upsert key {', '.join(keys)}; a row without its key "
            "cannot be matched, so nothing was written (give those rows a key, or quarantine them)"
        )


def _existing_table(conn: sa.Connection, table: str, schema: str | None, name: str, keys: list[str],
                    delete_filter: tuple[str, object, object] | None) -> sa.Table:
    target = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
    missing = [k for k in keys if k not in target.c]
    if missing:
        raise ConnectorError(f"upsert keys {', '.join(missing)} are not columns of table {table}")
    if delete_filter and delete_filter[0] not in target.c:
        raise ConnectorError(
            f"partitions.column {delete_filter[0]} is not a column of table {table}, so a "
            "partition's rows cannot be found to replace them"
        )
    return target


def _instants(parquet_path: str, delete_filter: tuple[str, object, object] | None) -> bool:
    """Whether the rows written hold instants in the partition column: then the table holds them
    as instants too (see ``_exact_types``) and the partition's bounds are compared as instants."""
    schema = pq.ParquetFile(parquet_path).schema_arrow
    return bool(delete_filter) and delete_filter[0] in schema.names and holds_instants(schema.field(delete_filter[0]).type)


def _delete_of(target: sa.Table, delete_filter: tuple[str, object, object] | None, dialect: str,
               instant: bool) -> sa.Delete:
    delete = target.delete()
    if delete_filter:
        column, low, high = delete_filter
        col = target.c[column]
        if high is None:
            return delete.where(col == low)
        delete = delete.where(col >= compared(dialect, low, instant), col < compared(dialect, high, instant))
    return delete


def _registry(schema: str | None) -> sa.Table:
    """The registry of a schema: which pipeline created each table there (times in UTC)."""
    return sa.Table(REGISTRY, sa.MetaData(), sa.Column("table_name", sa.String(255), primary_key=True),
                    sa.Column("pipeline", sa.String(255), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False), schema=schema)


def _ensure_registry(engine: sa.Engine, schema: str | None) -> None:
    """Create the registry if it is missing, in a transaction of its own (MariaDB commits a
    CREATE at once, so inside a write it would commit the rows so far); another run creating it
    at the same moment is no failure."""
    try:
        with engine.begin() as conn:
            _registry(schema).create(conn, checkfirst=True)
    except sa.exc.DBAPIError:
        if not sa.inspect(engine).has_table(REGISTRY, schema=schema):
            raise


def _register(conn: sa.Connection, schema: str | None, name: str, pipeline: str) -> None:
    """Record table ``name`` as ``pipeline``'s (the registry exists: see ``_ensure_registry``)."""
    registry = _registry(schema)
    conn.execute(registry.delete().where(registry.c.table_name == name))
    conn.execute(registry.insert().values(table_name=name, pipeline=pipeline,
                                          created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)))


def _claim(conn: sa.Connection, table: str, schema: str | None, pipeline: str, overwrite: bool) -> None:
    """Refuse to replace rows of a table that ``pipeline`` did not create, unless ``overwrite``,
    which records the table as its own from then on. A table the registry does not name (made by
    hand, by another tool, or by a version of this one from before the registry) is not its own."""
    name = table.rpartition(".")[2]
    registry = _registry(schema)
    owner = None
    if sa.inspect(conn).has_table(REGISTRY, schema=schema):
        owner = conn.execute(sa.select(registry.c.pipeline).where(registry.c.table_name == name)).scalar()
    if owner == pipeline:
        return
    if overwrite:
        _register(conn, schema, name, pipeline)
        return
    where = f"{schema}.{REGISTRY}" if schema else REGISTRY
    whose = f"{where} records pipeline '{owner}' as its creator" if owner else f"no row of {where} names it"
    raise DestinationError(
        f"output_config.table '{table}' exists and pipeline '{pipeline}' did not create it ({whose}); mode replace "
        "would delete its rows, so nothing was written. A pipeline replaces only tables it created: name a new "
        "table, or write with mode append or upsert, or, if this pipeline may take the table over (e.g. a table "
        f"an earlier version of this tool created before it kept {REGISTRY}), set output_config.overwrite: true "
        "once: the table is then recorded as this pipeline's"
    )


def _write_new_table(engine: sa.Engine, parquet_path: str, schema: str | None, name: str, mode: str,
                     keys: list[str], pipeline: str) -> int | None:
    """Fill a staging table, rename it to ``name`` and record it as ``pipeline``'s; None if
    ``name`` appeared meanwhile.

    MariaDB and SQLite commit a CREATE TABLE at once, whatever the transaction: written in place,
    a failed first write would leave an empty table. The staging table goes in every case. The
    record is written after the rename, in its transaction (MariaDB commits a RENAME at once, so
    there a crash between the two leaves a table without record, which replace then refuses).
    """
    staging = f"{name[:40]}__staging_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            written = _insert(conn, parquet_path, None, mode, keys, schema, staging)
            if sa.inspect(conn).has_table(name, schema=schema):
                return None
            conn.execute(sa.text(_rename_sql(conn.dialect, schema, staging, name)))
            _register(conn, schema, name, pipeline)
            return written
    finally:
        with engine.begin() as conn:
            sa.Table(staging, sa.MetaData(), schema=schema).drop(conn, checkfirst=True)


def _rename_sql(dialect: sa.Dialect, schema: str | None, old: str, new: str) -> str:
    quote = dialect.identifier_preparer.quote
    qualified = (quote(schema) + "." if schema else "") + quote(old)
    if dialect.name in ("mysql", "mariadb"):  # RENAME TABLE keeps the database only when named
        return f"RENAME TABLE {qualified} TO {(quote(schema) + '.' if schema else '') + quote(new)}"
    return f"ALTER TABLE {qualified} RENAME TO {quote(new)}"


def _insert(conn: sa.Connection, parquet_path: str, target: sa.Table | None, mode: str, keys: list[str],
            schema: str | None = None, new_name: str | None = None) -> int:
    """Insert the file's rows in batches into ``target``, or into table ``new_name`` that the
    first batch creates. An upsert deletes the rows with an incoming key before each batch."""
    written = 0
    for batch in pq.ParquetFile(parquet_path).iter_batches(batch_size=WRITE_CHUNK_ROWS * 10):
        batch, types = _exact_types(batch, conn.dialect)
        frame = batch.to_pandas(types_mapper=_nullable_integer)
        if mode == "upsert":  # one row per key: the last one given wins, over earlier batches too
            frame = frame.drop_duplicates(subset=keys, keep="last")
            if target is not None:
                _delete_keys(conn, target, frame[keys], keys)
        frame.to_sql(
            new_name if target is None else target.name, conn, schema=schema if target is None else target.schema,
            if_exists="append", index=False, chunksize=WRITE_CHUNK_ROWS, method="multi", dtype=types,
        )
        if target is None:
            target = sa.Table(new_name, sa.MetaData(), schema=schema, autoload_with=conn)
        written += len(frame)
    return written


def _nullable_integer(arrow_type: pa.DataType):
    """pandas' nullable integer dtype for an Arrow integer type: by default pandas makes an
    integer column with a null float64 (9007199254740993 became 9007199254740992, in a FLOAT
    column of a new table)."""
    if pa.types.is_integer(arrow_type):
        return pd.api.types.pandas_dtype(str(arrow_type).capitalize().replace("Uint", "UInt"))
    return None


def _exact_types(batch: pa.RecordBatch, dialect: sa.Dialect) -> tuple[pa.RecordBatch, dict[str, sa.types.TypeEngine]]:
    """Decimal columns as exact SQL types: NUMERIC(p, s) where the database has one, and on
    SQLite, which has none (SQLAlchemy would bind floats), the exact value as TEXT. On
    MariaDB/MySQL, timestamps as DATETIME(6) (plain DATETIME cuts the microseconds), instants as
    their UTC wall times (the driver drops a datetime's zone, so they are made UTC first). On
    PostgreSQL, floats holding NaN keep it."""
    types: dict[str, sa.types.TypeEngine] = {}
    columns = list(batch.columns)
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and dialect.name in ("mysql", "mariadb"):
            columns[i] = pc.cast(columns[i], pa.timestamp(field.type.unit))  # a zone's instants as UTC wall times
            types[field.name] = mysql.DATETIME(fsp=6)
            continue
        if pa.types.is_floating(field.type) and dialect.name == "postgresql" and pc.any(pc.is_nan(columns[i])).as_py():
            # pandas writes NaN as NULL; as text ('nan', and every other value in its shortest
            # exact form) PostgreSQL reads it into the float column as NaN
            columns[i] = pc.cast(columns[i], pa.string())
            types[field.name] = sa.Float(precision=53 if pa.types.is_float64(field.type) else 23)
            continue
        if not pa.types.is_decimal(field.type):
            continue
        if dialect.name == "sqlite":
            columns[i] = pc.cast(columns[i], pa.string())
            types[field.name] = sa.Text()
        else:
            types[field.name] = sa.Numeric(field.type.precision, field.type.scale, asdecimal=True)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), types


def _delete_keys(conn: sa.Connection, target: sa.Table, incoming: pd.DataFrame, keys: list[str]) -> None:
    """Delete the rows whose keys equal an incoming row's, a bounded number of keys at a time."""
    columns = [target.c[k] for k in keys]
    for start in range(0, len(incoming), WRITE_CHUNK_ROWS):
        chunk = incoming.iloc[start:start + WRITE_CHUNK_ROWS]
        if len(keys) == 1:
            selector = columns[0].in_(chunk[keys[0]].tolist())
        else:
            # tolist gives Python values (itertuples gives numpy scalars of nullable columns, which drivers refuse)
            selector = sa.tuple_(*columns).in_(list(zip(*(chunk[k].tolist() for k in keys))))
        conn.execute(target.delete().where(selector))

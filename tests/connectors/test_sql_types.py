"""SQL sources keep the database's own types: decimals, 64-bit integers, microseconds, time zones.

Oracle: the rows as the database's own driver returns them (Decimal, int, datetime), inserted by
SQL and compared exactly, in a read split into chunks of two rows so that a later chunk holds
NULLs beside values (pandas made such chunks floats).
"""

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from memories_dagster.connectors import sql as sql_connector
from memories_dagster.engine.extract import extract
from memories_dagster.specs.integration import DataSource

TABLES = {
    "postgres": (
        "id INTEGER, big BIGINT, amount NUMERIC(12, 2), free NUMERIC, huge NUMERIC, "
        "at TIMESTAMPTZ, local TIMESTAMP(6), day DATE, doc JSONB, flag BOOLEAN",
        ["(1, 9007199254740993, 1234567890.12, 0.1, 123456789012345678901234567890123456789.5, "
         "'2024-03-01 12:34:56.123456+05:30', '2024-03-01 12:34:56.654321', '2024-02-29', '{\"a\": [1, 2.50]}', true)",
         "(2, -9223372036854775808, -0.01, 12345678901234567890.123456789, 1, "
         "'1999-12-31 23:59:59.999999-08:00', '1970-01-01 00:00:00.000001', '0001-01-01', '\"x\"', false)",
         "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
         "(4, 7, 1, 2, 3, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '2024-01-01', '[]', NULL)"],
    ),
    "mariadb": (
        "id INTEGER, big BIGINT, ubig BIGINT UNSIGNED, amount DECIMAL(12, 2), wide DECIMAL(65, 30), "
        "at DATETIME(6), day DATE, name VARCHAR(20)",
        ["(1, 9007199254740993, 18446744073709551615, 1234567890.12, 12345678901234567890123456789012345.000000000000000000000000000001, "
         "'2024-03-01 12:34:56.123456', '2024-02-29', 'ünï')",
         "(2, -9223372036854775808, 0, -0.01, -1.5, '1970-01-01 00:00:00.000001', '1000-01-01', '')",
         "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
         "(4, 7, 7, 1, 1, '2024-01-01 00:00:00', '2024-01-01', 'x')"],
    ),
    "sqlite": (
        "id INTEGER, big INTEGER, amount REAL, name TEXT",
        ["(1, 9007199254740993, 0.1, 'a')", "(2, -9223372036854775808, 1e300, 'b')", "(3, NULL, NULL, NULL)",
         "(4, 7, 1.5, 'c')"],
    ),
}

# What each column becomes: the database's type, or for decimals past 38 digits, exact text.
EXPECTED_TYPES = {
    "postgres": {"id": pa.int32(), "big": pa.int64(), "amount": pa.decimal128(12, 2), "free": pa.decimal128(38, 9),
                 "huge": pa.string(), "at": pa.timestamp("us", tz="UTC"), "local": pa.timestamp("us"),
                 "day": pa.date32(), "doc": pa.string(), "flag": pa.bool_()},
    "mariadb": {"id": pa.int32(), "big": pa.int64(), "ubig": pa.uint64(), "amount": pa.decimal128(12, 2),
                "wide": pa.string(), "at": pa.timestamp("us"), "day": pa.date32(), "name": pa.string()},
    "sqlite": {"id": pa.int64(), "big": pa.int64(), "amount": pa.float64(), "name": pa.string()},
}


@pytest.fixture(params=list(TABLES))
def kind_and_database(request, tmp_path):
    if request.param == "sqlite":
        return request.param, sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return request.param, request.getfixturevalue(request.param)


def _as_read(value, kind: pa.DataType):
    """The driver's value in the form the column type holds it."""
    if value is None:
        return None
    if pa.types.is_string(kind) and isinstance(value, Decimal):
        return value
    if pa.types.is_string(kind) and not isinstance(value, str):  # jsonb, parsed by the driver
        import json

        return json.loads(json.dumps(value))
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc)
    return value


def test_columns_keep_the_databases_types_across_chunks(kind_and_database, table_name, tmp_path, monkeypatch):
    kind, database = kind_and_database
    columns, rows = TABLES[kind]
    with database.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} ({columns})"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES {', '.join(rows)}"))
    monkeypatch.setattr(sql_connector, "READ_CHUNK_ROWS", 2)  # rows 3 (NULLs) and 4 make the second chunk
    try:
        with database.connect() as conn:
            oracle = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table_name} ORDER BY id"))]
        source = DataSource(source_name="s", source_type="sql", query=f"SELECT * FROM {table_name} ORDER BY id",
                            connection_string=database.url.render_as_string(hide_password=False))
        out = tmp_path / "out.parquet"
        extract(source, source.connection_string, str(out))
        table = pq.read_table(out).sort_by("id")
        assert dict(zip(table.schema.names, table.schema.types)) == EXPECTED_TYPES[kind]
        got = table.to_pylist()
        for want, have in zip(oracle, got):
            for name, value in want.items():
                expected = _as_read(value, table.schema.field(name).type)
                if isinstance(expected, Decimal) and isinstance(have[name], str):
                    assert Decimal(have[name]) == expected, name  # text, exactly the value
                elif name == "doc" and have[name] is not None:
                    import json

                    assert json.loads(have[name]) == expected
                else:
                    assert have[name] == expected and type(have[name]) is type(expected), name
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


INSTANTS_UTC = ["2024-01-01 14:59:59", "2024-01-01 15:00:00", "2024-01-02 09:30:00.5", "2024-01-02 15:00:00"]


def _zoned_table(kind: str, table_name: str, request):
    """A table of instants (TIMESTAMPTZ, or MariaDB's TIMESTAMP) around 2024-01-02 in Tokyo; the
    database, Dagster's window of that day, and the ids of the rows inside it (pandas' reading)."""
    import dagster as dg
    import pandas as pd

    database = request.getfixturevalue(kind)
    column = "TIMESTAMPTZ" if kind == "postgres" else "TIMESTAMP(6) NULL"
    with database.begin() as conn:
        if kind == "mariadb":
            conn.execute(sa.text("SET time_zone = '+00:00'"))
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER, at {column})"))
        suffix = "+00" if kind == "postgres" else ""
        values = ", ".join(f"({i}, '{t}{suffix}')" for i, t in enumerate(INSTANTS_UTC))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES {values}"))
    span = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="Asia/Tokyo").time_window_for_partition_key("2024-01-02")
    instants = pd.to_datetime(INSTANTS_UTC, utc=True, format="ISO8601")
    return database, span, [i for i, t in enumerate(instants) if span.start <= t < span.end]


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_window_of_a_zoned_partition_holds_the_instants_of_its_day_there(kind, table_name, tmp_path, request):
    from memories_dagster.engine.window import Window

    database, span, inside = _zoned_table(kind, table_name, request)
    try:
        source = DataSource(source_name="s", source_type="sql", table=table_name,
                            connection_string=database.url.render_as_string(hide_password=False))
        out = tmp_path / "out.parquet"
        result = extract(source, source.connection_string, str(out), Window("2024-01-02", span.start, span.end), "at")
        assert result.meta["window_filter"] == "column at"
        assert sorted(pq.read_table(out).column("id").to_pylist()) == inside == [1, 2]
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_writing_a_zoned_partition_replaces_the_rows_of_its_day_there(kind, table_name, tmp_path, request):
    from memories_dagster.engine.window import Window
    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    database, span, inside = _zoned_table(kind, table_name, request)
    fresh = tmp_path / "fresh.parquet"
    pq.write_table(pa.table({"id": [100], "at": pa.array([span.start], pa.timestamp("us", tz="UTC"))}), fresh)
    url = database.url.render_as_string(hide_password=False)
    try:
        # overwrite: the test made the table, so the pipeline takes it over to replace a partition's rows
        config = OutputConfig(output_format="sql", output_destination=url, table=table_name, overwrite=True)
        write_output(str(fresh), config, url, table_name, Window("2024-01-02", span.start, span.end), "at")
        with database.connect() as conn:
            kept = sorted(r[0] for r in conn.execute(sa.text(f"SELECT id FROM {table_name}")))
        assert kept == sorted({0, 1, 2, 3} - set(inside) | {100}) == [0, 3, 100]
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_integers_beside_nulls_are_written_exactly(kind_and_database, table_name, tmp_path):
    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    _, database = kind_and_database
    rows = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": pa.array([9007199254740993, None, -9223372036854775808], pa.int64()),
                             "n": pa.array([None, 7, 8], pa.int32())}), rows)
    url = database.url.render_as_string(hide_password=False)
    try:
        for mode in ("replace", "append"):  # into a new table, then into the existing one
            write_output(str(rows), OutputConfig(output_format="sql", output_destination=url, table=table_name, mode=mode),
                         url, table_name)
        with database.connect() as conn:
            got = [tuple(r) for r in conn.execute(sa.text(f"SELECT id, n FROM {table_name}"))]
        expected = [(9007199254740993, None), (None, 7), (-9223372036854775808, 8)]
        assert sorted(got, key=repr) == sorted(expected * 2, key=repr)
        assert all(type(v) is int for row in got for v in row if v is not None)
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


# Values no Arrow type of their column holds exactly: the column is the database's own text of
# each value; a NULL-only chunk first, the values in a later chunk, so the choice is per column.
UNHELD = {
    "postgres": (
        "id INTEGER, day DATE, local TIMESTAMP, at TIMESTAMPTZ, clock TIME, clocktz TIMETZ, span INTERVAL, "
        "month INTERVAL, plain DATE",
        ["(1, NULL, NULL, NULL, NULL, '00:00:00-08', '30 days', '-1 year -2 mons +3 days 04:05:06.5', '2024-02-29')",
         "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
         "(3, 'infinity', 'infinity', '-infinity', '24:00:00', '12:00:00+05:30', '1 mon', '1 mon', '0001-01-01')",
         "(4, '2024-01-01', '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', '12:00:00', NULL, NULL, NULL, NULL)"],
        "CAST({} AS TEXT)", {"plain": pa.date32()},
    ),
    "mariadb": (
        "id INTEGER, span TIME(6), negative TIME, clock TIME(6)",
        ["(1, '12:00:00', '00:00:01', '12:34:56.5')", "(2, NULL, NULL, NULL)",
         "(3, '838:59:59', '-01:00:00', '23:59:59.999999')", "(4, '00:00:00.000001', '01:00:00', '00:00:00')"],
        "CAST({} AS CHAR)", {"clock": pa.time64("us")},
    ),
}


@pytest.mark.parametrize("kind", list(UNHELD))
def test_values_no_arrow_type_holds_are_the_databases_text(kind, table_name, tmp_path, monkeypatch, request):
    database = request.getfixturevalue(kind)
    columns, rows, as_text, typed = UNHELD[kind]
    names = [c.split()[0] for c in columns.split(", ")]
    with database.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} ({columns})"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES {', '.join(rows)}"))
    monkeypatch.setattr(sql_connector, "READ_CHUNK_ROWS", 2)
    try:
        with database.connect() as conn:
            texts = ", ".join(as_text.format(n) for n in names[1:])
            oracle = [tuple(r) for r in conn.execute(sa.text(f"SELECT id, {texts} FROM {table_name} ORDER BY id"))]
        source = DataSource(source_name="s", source_type="sql", table=table_name,
                            connection_string=database.url.render_as_string(hide_password=False))
        out = tmp_path / "out.parquet"
        extract(source, source.connection_string, str(out))
        table = pq.read_table(out).sort_by("id")
        wrong = {}
        for name, want in zip(names[1:], list(zip(*oracle))[1:]):
            have = table.column(name)
            if name in typed:  # held exactly: the database's text, parsed by Python
                parse = dt.date.fromisoformat if typed[name] == pa.date32() else dt.time.fromisoformat
                want = tuple(None if v is None else parse(v) for v in want)
            if have.type != typed.get(name, pa.string()) or tuple(have.to_pylist()) != want:
                wrong[name] = (str(have.type), have.to_pylist(), want)
        assert wrong == {}  # every column named, so a failure shows each rewritten one
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_arrays_of_intervals_and_zoned_times_are_lists_of_the_databases_text(postgres, table_name, tmp_path):
    with postgres.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER, spans INTERVAL[], zones TIMETZ[])"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (1, ARRAY['1 mon', '30 days', NULL]::interval[], "
                             "ARRAY['12:00:00+05:30']::timetz[]), (2, NULL, NULL)"))
    try:
        with postgres.connect() as conn:  # oracle: the server's text of each element
            oracle = [dict(r._mapping) for r in conn.execute(
                sa.text(f"SELECT id, spans::text[] AS spans, zones::text[] AS zones FROM {table_name} ORDER BY id"))]
        source = DataSource(source_name="s", source_type="sql", table=table_name,
                            connection_string=postgres.url.render_as_string(hide_password=False))
        out = tmp_path / "out.parquet"
        extract(source, source.connection_string, str(out))
        assert pq.read_table(out).sort_by("id").to_pylist() == oracle
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))

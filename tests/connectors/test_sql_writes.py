"""SQL outputs keep their promises on the real PostgreSQL and MariaDB and on SQLite: a failed
first write leaves no table behind, and an upsert keeps the last row per key in source order."""

import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from memories_dagster.connectors import sql as sql_connector
from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import OutputConfig

# A value each server itself refuses after the table was created: PostgreSQL takes no NUL in
# text, MariaDB's TEXT holds at most 65,535 bytes. SQLite refuses nothing, so its failure is
# injected into the second chunk of inserts (the table exists by then).
REFUSED = {"postgresql": "a\x00b", "mysql": "x" * 70_000}


@pytest.fixture
def dropped(database, table_name):
    """The test's table name; the table and any table named after it are dropped afterwards."""
    yield table_name
    with database.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            if table_name in name:
                conn.execute(sa.text(f"DROP TABLE {name}"))


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def tables_named_after(engine: sa.Engine, table: str) -> list[str]:
    return [n for n in sa.inspect(engine).get_table_names() if table in n]


def fail_second_chunk(monkeypatch):
    real = pd.DataFrame.to_sql
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error (injected)"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_sql", flaky)
    monkeypatch.setattr(sql_connector, "WRITE_CHUNK_ROWS", 1)  # batches of 10 rows


@pytest.mark.parametrize("mode", ["replace", "append", "upsert"])
def test_a_failed_first_write_leaves_no_new_table(database, dropped, tmp_path, monkeypatch, mode):
    backend = database.url.get_backend_name()
    values = ["fine"] * 15 + [REFUSED.get(backend, "fine")]
    if backend == "sqlite":
        fail_second_chunk(monkeypatch)
    data = tmp_path / "d.parquet"
    pd.DataFrame({"id": range(len(values)), "s": values}).to_parquet(data, index=False)
    url = url_of(database)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped, mode=mode,
                          upsert_keys=["id"] if mode == "upsert" else [])
    with pytest.raises(ConnectorError, match=f"writing table {dropped} failed; the table is unchanged"):
        write_output(str(data), config, url, dropped)
    assert tables_named_after(database, dropped) == []  # neither the table nor a staging one


def test_a_first_write_that_succeeds_leaves_only_the_table(database, dropped, tmp_path):
    data = tmp_path / "d.parquet"
    frame = pd.DataFrame({"id": [3, 1, 2], "s": ["c", "a", "b"]})
    frame.to_parquet(data, index=False)
    url = url_of(database)
    write_output(str(data), OutputConfig(output_format="sql", output_destination=url, table=dropped), url, dropped)
    assert tables_named_after(database, dropped) == [dropped]
    back = pd.read_sql(f"SELECT id, s FROM {dropped} ORDER BY id", database)
    assert back.values.tolist() == frame.sort_values("id").values.tolist()


def test_a_failed_replace_of_an_existing_table_keeps_it_whole(database, dropped, tmp_path, monkeypatch):
    url = url_of(database)
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pd.DataFrame({"id": [1, 2], "s": ["old", "old"]}).to_parquet(good, index=False)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped)
    write_output(str(good), config, url, dropped)
    backend = database.url.get_backend_name()
    if backend == "sqlite":
        fail_second_chunk(monkeypatch)
    values = ["new"] * 15 + [REFUSED.get(backend, "new")]
    pd.DataFrame({"id": range(len(values)), "s": values}).to_parquet(bad, index=False)
    with pytest.raises(ConnectorError, match="the table is unchanged"):
        write_output(str(bad), config, url, dropped)
    assert pd.read_sql(f"SELECT id, s FROM {dropped} ORDER BY id", database).values.tolist() == [[1, "old"], [2, "old"]]
    assert tables_named_after(database, dropped) == [dropped]


@pytest.mark.parametrize("existing", [False, True])
def test_upsert_keeps_the_last_row_per_key_in_source_order_across_batches(database, dropped, tmp_path, monkeypatch, existing):
    monkeypatch.setattr(sql_connector, "WRITE_CHUNK_ROWS", 1)  # batches of 10 rows: keys repeat across them
    url = url_of(database)
    frame = pd.DataFrame({"id": [i % 7 for i in range(45)], "v": [float(i) for i in range(45)]})
    data = tmp_path / "d.parquet"
    frame.to_parquet(data, index=False)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped, mode="upsert", upsert_keys=["id"])
    if existing:
        pd.DataFrame({"id": [0, 100], "v": [-1.0, -2.0]}).to_sql(dropped, database, index=False)
    write_output(str(data), config, url, dropped)
    expected = frame.drop_duplicates("id", keep="last")  # the oracle: pandas' own "last one wins"
    if existing:
        expected = pd.concat([expected, pd.DataFrame({"id": [100], "v": [-2.0]})])
    back = pd.read_sql(f"SELECT id, v FROM {dropped} ORDER BY id", database)
    assert back.values.tolist() == expected.sort_values("id").values.tolist()


def test_upsert_refuses_rows_without_a_key(database, dropped, tmp_path):
    url = url_of(database)
    data = tmp_path / "d.parquet"
    pd.DataFrame({"id": [1.0, None, None], "v": [1.0, 2.0, 3.0]}).to_parquet(data, index=False)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped, mode="upsert", upsert_keys=["id"])
    with pytest.raises(ConnectorError, match="2 rows have no value in upsert key id"):
        write_output(str(data), config, url, dropped)
    assert tables_named_after(database, dropped) == []


def test_a_table_another_run_creates_meanwhile_receives_the_rows(database, dropped, tmp_path, monkeypatch):
    real = pd.DataFrame.to_sql

    def concurrent(self, name, conn, *args, **kwargs):
        if not sa.inspect(database).has_table(dropped):  # another partition's run wins the race
            with database.begin() as other:
                other.execute(sa.text(f"CREATE TABLE {dropped} (id BIGINT, s VARCHAR(20))"))
                other.execute(sa.text(f"INSERT INTO {dropped} VALUES (100, 'theirs')"))
        return real(self, name, conn, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_sql", concurrent)
    data = tmp_path / "d.parquet"
    pd.DataFrame({"id": [1, 2], "s": ["a", "b"]}).to_parquet(data, index=False)
    url = url_of(database)
    write_output(str(data), OutputConfig(output_format="sql", output_destination=url, table=dropped, mode="append"), url, dropped)
    back = pd.read_sql(f"SELECT id, s FROM {dropped} ORDER BY id", database)
    assert back.values.tolist() == [[1, "a"], [2, "b"], [100, "theirs"]]
    assert tables_named_after(database, dropped) == [dropped]


def test_a_refused_row_is_named_in_the_error(postgres, tmp_path):
    table = f"t_{uuid.uuid4().hex[:10]}"
    with postgres.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, s TEXT)"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (7, 'there')"))
    data = tmp_path / "d.parquet"
    pd.DataFrame({"id": [6, 7], "s": ["a", "b"]}).to_parquet(data, index=False)
    url = url_of(postgres)
    try:
        with pytest.raises(ConnectorError, match=r"duplicate key value .* DETAIL: +Key \(id\)=\(7\) already exists"):
            write_output(str(data), OutputConfig(output_format="sql", output_destination=url, table=table, mode="append"), url, table)
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))


@pytest.mark.parametrize("existing", [False, True])
def test_decimals_are_written_exactly(database, dropped, tmp_path, existing):
    """A decimal column keeps every digit: NUMERIC(p, s) on PostgreSQL and MariaDB, the exact
    text on SQLite (no exact type there; SQLAlchemy would bind floats)."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    values = [decimal.Decimal("149.03"), decimal.Decimal("12345678901234567.89"), None]
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "price": pa.array(values, pa.decimal128(20, 2))}), data)
    url = url_of(database)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped)
    for _ in range(2 if existing else 1):
        write_output(str(data), config, url, dropped)
    with database.connect() as conn:
        back = [row[0] for row in conn.execute(sa.text(f"SELECT price FROM {dropped} ORDER BY id"))]
    assert [None if v is None else decimal.Decimal(str(v)) for v in back] == values
    if database.url.get_backend_name() != "sqlite":  # a number the database computes with, not text
        column = next(c for c in sa.inspect(database).get_columns(dropped) if c["name"] == "price")
        assert isinstance(column["type"], sa.Numeric) and (column["type"].precision, column["type"].scale) == (20, 2)


def test_float_nan_is_kept_where_the_database_has_it_and_refused_where_not(database, dropped, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "d.parquet"  # through Arrow: pandas would make NaN null before we see it
    values = [1.5, float("nan"), float("inf"), None, 0.1]
    pq.write_table(pa.table({"id": [1, 2, 3, 4, 5], "v": values}), data)
    url = url_of(database)
    config = OutputConfig(output_format="sql", output_destination=url, table=dropped)
    backend = database.url.get_backend_name()
    if backend == "postgresql":
        for _ in range(2):  # a new table, then the existing one
            write_output(str(data), config, url, dropped)
        with database.connect() as conn:  # oracle: PostgreSQL's own reading of what it stores
            back = conn.execute(sa.text(f"SELECT v, v::text, pg_typeof(v)::text FROM {dropped} ORDER BY id")).fetchall()
        assert [row[1] for row in back] == ["1.5", "NaN", "Infinity", None, "0.1"]  # NaN was written as NULL
        assert [row[0] for row in back][4] == 0.1 and {row[2] for row in back} == {"double precision"}
        return
    kinds, count = ("NaN or infinite", "2 values") if backend == "mysql" else ("NaN", "1 value")
    with pytest.raises(IntegrationError, match=rf"table {dropped} on {backend} cannot hold {kinds} floats, and "
                                               rf"column\(s\) 'v' \({count}\) hold some, so nothing was written"):
        write_output(str(data), config, url, dropped)
    assert tables_named_after(database, dropped) == []

"""SQL sources and outputs against the machine's real PostgreSQL and MariaDB, and SQLite."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.extract import extract
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import DataSource, OutputConfig

ROWS = pd.DataFrame(
    {"id": [1, 2, 3], "day": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]), "amount": [1.5, 2.5, 3.5]}
)


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def read(tmp_path, src, window=None, column=None):
    out = tmp_path / "out.parquet"
    table = extract(src, src.connection_string, str(out), window, column)
    return table, pd.read_parquet(out)


def test_read_table_query_and_window(database, table_name, tmp_path):
    ROWS.to_sql(table_name, database, index=False)
    try:
        by_table = DataSource(source_name="s", source_type="sql", connection_string=url_of(database), table=table_name)
        _, frame = read(tmp_path, by_table)
        assert sorted(frame["id"]) == [1, 2, 3]
        query = DataSource(source_name="s", source_type="sql", connection_string=url_of(database),
                           query=f"SELECT id, amount FROM {table_name} WHERE amount > 2")
        _, frame = read(tmp_path, query)
        assert sorted(frame["id"]) == [2, 3]
        window = Window("2024-01-02", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
        table, frame = read(tmp_path, by_table, window, "day")
        assert list(frame["id"]) == [2] and table.meta["window_filter"] == "column day"
        bound = DataSource(source_name="s", source_type="sql", connection_string=url_of(database),
                           query=f"SELECT * FROM {table_name} WHERE day >= :partition_start AND day < :partition_end")
        table, frame = read(tmp_path, bound, window, "day")
        assert list(frame["id"]) == [2] and table.meta["window_filter"] == "query parameters"
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_missing_table_is_a_clear_error_without_password(tmp_path):
    url = "postgresql+psycopg2://postgres:hunter2secret@127.0.0.1:5432/test"
    src = DataSource(source_name="orders", source_type="sql", connection_string=url, table="no_such_table")
    with pytest.raises(ConnectorError) as caught:
        read(tmp_path, src)
    message = str(caught.value)
    assert "source 'orders': query failed" in message and "no_such_table" in message
    assert "hunter2secret" not in message


def test_unreachable_server_fails_fast_and_names_it(tmp_path):
    src = DataSource(source_name="erp", source_type="sql", connection_string="postgresql+psycopg2://u:pw-123456@127.0.0.1:1/db", table="t")
    with pytest.raises(ConnectorError, match=r"source 'erp': query failed \(postgresql\+psycopg2://u:\*\*\*@127.0.0.1:1/db\)") as caught:
        read(tmp_path, src)
    assert "pw-123456" not in str(caught.value)


def test_output_replaces_table_and_partitions_in_a_transaction(database, table_name, tmp_path):
    integrated = tmp_path / "integrated.parquet"
    ROWS.to_parquet(integrated, index=False)
    url = url_of(database)
    config = OutputConfig(output_format="sql", output_destination=url, table=table_name)
    try:
        assert write_output(str(integrated), config, url, table_name)["rows_written"] == 3
        assert write_output(str(integrated), config, url, table_name)["rows_written"] == 3
        assert pd.read_sql(f"SELECT count(*) AS n FROM {table_name}", database)["n"][0] == 3  # replaced, not appended
        # one partition again, with a changed amount: only that day's rows are replaced
        changed = tmp_path / "day2.parquet"
        ROWS.iloc[[1]].assign(amount=99.0).to_parquet(changed, index=False)
        window = Window("2024-01-02", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
        write_output(str(changed), config, url, table_name, window, "day")
        frame = pd.read_sql(f"SELECT id, amount FROM {table_name} ORDER BY id", database)
        assert frame.values.tolist() == [[1, 1.5], [2, 99.0], [3, 3.5]]
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


def test_failed_insert_rolls_back_the_delete(database, table_name, tmp_path):
    with database.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER NOT NULL, day TIMESTAMP NULL, amount FLOAT)"))
        conn.execute(sa.text(f"INSERT INTO {table_name} (id, amount) VALUES (42, 1.0)"))
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"id": [1, None], "day": ROWS["day"][:2], "amount": [1.0, 2.0]}).to_parquet(bad, index=False)
    url = url_of(database)
    try:
        with pytest.raises(ConnectorError, match=f"writing table {table_name} failed; the table is unchanged"):
            # overwrite: the hand-made table is taken over (replace refuses a table its pipeline did not create)
            write_output(str(bad), OutputConfig(output_format="sql", output_destination=url, overwrite=True), url, table_name)
        assert pd.read_sql(f"SELECT id FROM {table_name}", database)["id"].tolist() == [42]
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


def test_plain_database_urls_use_the_installed_drivers(postgres, table_name, tmp_path):
    ROWS.to_sql(table_name, postgres, index=False)
    try:
        plain = postgres.url.set(drivername="postgresql").render_as_string(hide_password=False)
        _, frame = read(tmp_path, DataSource(source_name="s", source_type="sql", connection_string=plain, table=table_name))
        assert len(frame) == 3
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_a_password_with_reserved_characters_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ERP_PASSWORD", "s3cr@t:Hunter/2")
    src = DataSource(source_name="erp", source_type="sql", table="t",
                     connection_string="postgresql://nobody:${ERP_PASSWORD}@127.0.0.1:1/db")
    with pytest.raises(ConnectorError) as caught:
        read(tmp_path, src)
    message = str(caught.value)
    assert "127.0.0.1:1" in message  # the password did not swallow the host
    for part in ("s3cr", "Hunter", "%40"):
        assert part not in message


def test_append_and_upsert_modes(database, table_name, tmp_path):
    url = url_of(database)
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    ROWS.to_parquet(first, index=False)
    ROWS.iloc[[1, 2]].assign(amount=[20.0, 30.0], id=[2, 4]).to_parquet(second, index=False)
    try:
        append = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="append")
        write_output(str(first), append, url, table_name)
        write_output(str(first), append, url, table_name)
        assert pd.read_sql(f"SELECT count(*) AS n FROM {table_name}", database)["n"][0] == 6
        replace = OutputConfig(output_format="sql", output_destination=url, table=table_name)
        write_output(str(first), replace, url, table_name)
        upsert = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="upsert", upsert_keys=["id"])
        write_output(str(second), upsert, url, table_name)
        frame = pd.read_sql(f"SELECT id, amount FROM {table_name} ORDER BY id", database)
        assert frame.values.tolist() == [[1, 1.5], [2, 20.0], [3, 3.5], [4, 30.0]]
        bad = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="upsert", upsert_keys=["nope"])
        with pytest.raises(ConnectorError, match=f"upsert keys nope are not columns of table {table_name}"):
            write_output(str(second), bad, url, table_name)
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


def test_upsert_needs_keys():
    with pytest.raises(ValueError, match="`mode: upsert` and `upsert_keys` go together"):
        OutputConfig(output_format="sql", output_destination="sqlite:///x.db", mode="upsert")


def test_postgis_geometries_come_back_as_wkt(postgres, table_name, tmp_path):
    with postgres.begin() as conn:
        available = conn.execute(sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'")).scalar()
        if not available:
            pytest.fail("PostGIS is not installed for this PostgreSQL: apt-get install postgresql-15-postgis-3 "
                        "(.ci/run does)", pytrace=False)
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
        conn.execute(sa.text(f"CREATE TABLE {table_name} (site TEXT, location geometry(Point, 4326), area geography)"))
        conn.execute(sa.text(
            f"INSERT INTO {table_name} VALUES ('a', ST_SetSRID(ST_MakePoint(13.4049, 52.52), 4326), "
            "ST_GeogFromText('POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))')), ('b', NULL, NULL)"
        ))
    try:
        source = DataSource(source_name="sites", source_type="sql", connection_string=url_of(postgres), table=table_name)
        _, frame = read(tmp_path, source)
        rows = frame.sort_values("site").to_dict("records")
        assert rows[0]["location"] == "POINT (13.4049 52.52)"
        assert rows[0]["area"] == "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))"
        assert rows[1]["location"] is None
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_wrong_credentials_are_named_without_the_password(mariadb, tmp_path):
    url = mariadb.url.set(username="nobody", password="wr0ng-pass").render_as_string(hide_password=False)
    source = DataSource(source_name="erp", source_type="sql", connection_string=url, table="t")
    with pytest.raises(ConnectorError, match=r"source 'erp': query failed \(mysql\+pymysql://nobody:\*\*\*@127.0.0.1:3306/test\): .*Access denied") as caught:
        read(tmp_path, source)
    assert "wr0ng-pass" not in str(caught.value)


def test_a_sql_connection_of_the_profile_through_dagster(postgres, table_name, tmp_path, monkeypatch, materialize_spec):
    import yaml

    ROWS.to_sql(table_name, postgres, index=False)
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "db.yaml").write_text(yaml.safe_dump({"connections": {"warehouse": {
        "type": "sql", "url": url_of(postgres), "pool_size": 2, "connect_timeout_seconds": 5}}}))
    monkeypatch.setenv("MEMORIES_PROFILE", "db")
    try:
        result = materialize_spec("from_warehouse", {
            "integration_config": {"data_sources": [{"source_name": "sales", "source_type": "sql", "connection": "warehouse",
                                                     "query": f"SELECT id, amount FROM {table_name}"}]},
            "output_config": {"output_format": "sql", "connection": "warehouse", "table": f"{table_name}_copy", "mode": "replace"},
        })
        assert result.success
        assert pd.read_sql(f"SELECT sum(amount) AS s FROM {table_name}_copy", postgres)["s"][0] == 7.5
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}_copy"))


def test_upsert_keeps_one_row_per_key_and_names_missing_columns(database, table_name, tmp_path):
    url = url_of(database)
    data = tmp_path / "d.parquet"
    pd.DataFrame({"a": [1, 1, 2], "b": [1, 1, 1], "v": [1.0, 2.0, 3.0]}).to_parquet(data, index=False)
    upsert = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="upsert", upsert_keys=["a", "b"])
    try:
        write_output(str(data), upsert, url, table_name)
        write_output(str(data), upsert, url, table_name)
        frame = pd.read_sql(f"SELECT a, b, v FROM {table_name} ORDER BY a", database)
        assert frame.values.tolist() == [[1, 1, 2.0], [2, 1, 3.0]]
        missing = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="upsert", upsert_keys=["a", "zz"])
        with pytest.raises(ConnectorError, match="upsert keys zz are not columns of"):
            write_output(str(data), missing, url, table_name)
        window = Window("2024-01-01", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2))
        with pytest.raises(ConnectorError, match=f"partitions.column day is not a column of table {table_name}"):
            write_output(str(data), replace_config(url, table_name), url, table_name, window, "day")
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


def replace_config(url, table):
    return OutputConfig(output_format="sql", output_destination=url, table=table)


def test_a_rejected_write_names_the_offending_value(postgres, table_name, tmp_path):
    with postgres.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY, day TIMESTAMP, amount FLOAT)"))
    rows = tmp_path / "rows.parquet"
    ROWS.assign(id=[1, 7, 7]).to_parquet(rows, index=False)
    url = url_of(postgres)
    try:
        append = OutputConfig(output_format="sql", output_destination=url, table=table_name, mode="append")
        with pytest.raises(ConnectorError) as caught:
            write_output(str(rows), append, url, table_name)
        message = str(caught.value)
        # PostgreSQL's DETAIL line holds the value; only the first line used to be kept
        assert "duplicate key value violates unique constraint" in message and "Key (id)=(7) already exists" in message
        assert "\n" not in message
    finally:
        with postgres.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


def test_an_unknown_mysql_charset_is_named_without_the_password(mariadb, table_name, tmp_path):
    with mariadb.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (name VARCHAR(10))"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES ('Ünïcode')"))
    try:
        base = mariadb.url.set(password="Ch4rset-pass").render_as_string(hide_password=False)
        src = DataSource(source_name="s", source_type="sql", connection_string=f"{base}?charset=nonsense", table=table_name)
        with pytest.raises(ConnectorError) as raised:
            read(tmp_path, src)
        assert "charset='nonsense'" in str(raised.value) and "Ch4rset-pass" not in str(raised.value)
        known = DataSource(source_name="s", source_type="sql", connection_string=f"{url_of(mariadb)}?charset=utf8mb4", table=table_name)
        assert read(tmp_path, known)[1]["name"].tolist() == ["Ünïcode"]  # a charset MariaDB knows is taken
    finally:
        with mariadb.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))

"""A SQL table or MongoDB collection is the pipeline's own (issue 9 item 1): `replace` deletes rows
only in one its pipeline created (recorded in `memories_outputs`), unless `overwrite: true`
adopts it; `append` and `upsert` write any table. SQL on the real PostgreSQL and MariaDB and on
SQLite, MongoDB on mongomock."""

import datetime as dt

import mongomock
import pandas as pd
import pytest
import sqlalchemy as sa

from memories_dagster.connectors.file_outputs import DestinationError, Ownership
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import OutputConfig

MONGO_URL = "mongodb://localhost:27017/shop"


@pytest.fixture
def table(database, table_name):
    """The test's table name; the table and its registry row are removed afterwards."""
    yield table_name
    with database.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))
        if sa.inspect(conn).has_table("memories_outputs"):
            conn.execute(sa.text("DELETE FROM memories_outputs WHERE table_name = :t"), {"t": table_name})


def write(database, table, rows, pipeline, mode="replace", overwrite=False, window=None, tmp_path=None):
    data = tmp_path / f"{pipeline}-{len(rows)}.parquet"
    pd.DataFrame(rows, columns=["day", "v"]).to_parquet(data, index=False)
    url = database.url.render_as_string(hide_password=False)
    config = OutputConfig(output_format="sql", output_destination=url, table=table, mode=mode, overwrite=overwrite)
    return write_output(str(data), config, url, table, window, "day" if window else None,
                        ownership=Ownership(pipeline, overwrite))


def rows_of(database, table):
    return pd.read_sql(f"SELECT CAST(day AS CHAR(10)) AS day, v FROM {table} ORDER BY day, v", database).values.tolist()


def make_foreign(database, table):
    with database.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (day DATE, v BIGINT)"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES ('2024-01-01', 1), ('2024-01-02', 2)"))


DAY = Window("2024-01-01", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2))


@pytest.mark.parametrize("window", [None, DAY], ids=["whole", "partition"])
def test_replace_refuses_a_table_the_pipeline_did_not_create(database, table, tmp_path, window):
    make_foreign(database, table)
    with pytest.raises(DestinationError, match=f"'{table}' exists and pipeline 'sales' did not create it "
                       r"\(no row of memories_outputs names it\).*set output_config.overwrite: true once"):
        write(database, table, [("2024-01-01", 9)], "sales", window=window, tmp_path=tmp_path)
    assert rows_of(database, table) == [["2024-01-01", 1], ["2024-01-02", 2]]


def test_overwrite_adopts_a_table_once(database, table, tmp_path):
    make_foreign(database, table)
    write(database, table, [("2024-01-03", 3)], "sales", overwrite=True, tmp_path=tmp_path)
    assert rows_of(database, table) == [["2024-01-03", 3]]
    write(database, table, [("2024-01-04", 4)], "sales", tmp_path=tmp_path)  # recorded: no overwrite needed now
    assert rows_of(database, table) == [["2024-01-04", 4]]


def test_a_table_is_its_creators_and_any_pipeline_may_append(database, table, tmp_path):
    write(database, table, [("2024-01-01", 1)], "sales", tmp_path=tmp_path)
    write(database, table, [("2024-01-02", 2)], "sales", tmp_path=tmp_path)
    assert rows_of(database, table) == [["2024-01-02", 2]]
    with pytest.raises(DestinationError, match="memories_outputs records pipeline 'sales' as its creator"):
        write(database, table, [("2024-01-05", 5)], "stock", tmp_path=tmp_path)
    write(database, table, [("2024-01-05", 5)], "stock", mode="append", tmp_path=tmp_path)
    assert rows_of(database, table) == [["2024-01-02", 2], ["2024-01-05", 5]]


def test_append_writes_a_table_the_pipeline_did_not_create(database, table, tmp_path):
    make_foreign(database, table)
    write(database, table, [("2024-01-03", 3)], "sales", mode="append", tmp_path=tmp_path)
    assert rows_of(database, table) == [["2024-01-01", 1], ["2024-01-02", 2], ["2024-01-03", 3]]


@pytest.fixture
def mongo():
    with mongomock.patch(servers=(("localhost", 27017),)):
        import pymongo

        client = pymongo.MongoClient(MONGO_URL)
        client.shop.products.insert_many([{"sku": "A"}, {"sku": "B"}])  # a collection no pipeline created
        yield client


def write_mongo(tmp_path, collection, skus, pipeline, mode="replace", overwrite=False):
    data = tmp_path / "d.parquet"
    pd.DataFrame({"sku": skus}).to_parquet(data, index=False)
    config = OutputConfig(output_format="mongodb", output_destination=MONGO_URL, collection=collection,
                          mode=mode, overwrite=overwrite)
    return write_output(str(data), config, MONGO_URL, pipeline, ownership=Ownership(pipeline, overwrite))


def skus(mongo, collection):
    return sorted(d["sku"] for d in mongo.shop[collection].find())


def test_mongodb_replace_refuses_a_collection_the_pipeline_did_not_create(mongo, tmp_path):
    with pytest.raises(DestinationError, match="output collection products exists and pipeline 'sales' did not create it "
                       r"\(no document of memories_outputs names it\).*overwrite: true once"):
        write_mongo(tmp_path, "products", ["C"], "sales")
    assert skus(mongo, "products") == ["A", "B"]
    write_mongo(tmp_path, "products", ["C"], "sales", mode="append")
    assert skus(mongo, "products") == ["A", "B", "C"]
    write_mongo(tmp_path, "products", ["D"], "sales", overwrite=True)
    assert skus(mongo, "products") == ["D"]
    write_mongo(tmp_path, "products", ["E"], "sales")  # adopted once: its own now
    assert skus(mongo, "products") == ["E"]


def test_mongodb_a_collection_is_its_creators(mongo, tmp_path):
    write_mongo(tmp_path, "restock", ["A"], "sales")
    write_mongo(tmp_path, "restock", ["B"], "sales")
    assert skus(mongo, "restock") == ["B"]
    with pytest.raises(DestinationError, match="memories_outputs records pipeline 'sales' as its creator"):
        write_mongo(tmp_path, "restock", ["C"], "stock")
    assert skus(mongo, "restock") == ["B"]

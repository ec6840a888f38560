"""MongoDB sources and outputs. No MongoDB server can be installed on this machine, so these run
against mongomock (pymongo's API in memory); the last test runs against a real server when
MONGODB_URI is set."""

import decimal
import os
import uuid

import mongomock
import pandas as pd
import pytest

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.extract import extract
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import DataSource, OutputConfig

URL = "mongodb://localhost:27017/shop"
DOCUMENTS = [
    {"sku": "A", "qty": 5, "price": 2.5, "supplier": {"name": "Acme", "address": {"city": "Berlin"}}, "tags": ["x", "y"]},
    {"sku": "B", "qty": 0, "price": 9.0, "supplier": {"name": "Globex", "address": {"city": "Paris"}}, "tags": []},
    {"sku": "C", "qty": 7, "price": 1.0, "supplier": {"name": "Acme", "address": {"city": "Berlin"}}, "tags": ["z"]},
]


@pytest.fixture
def mongo():
    with mongomock.patch(servers=(("localhost", 27017),)):
        import pymongo

        client = pymongo.MongoClient(URL)
        client.shop.products.insert_many([dict(d) for d in DOCUMENTS])
        yield client


def read(tmp_path, **settings):
    source = DataSource(source_name="products", source_type="mongodb", connection_string=URL, mongodb=settings)
    extract(source, URL, str(tmp_path / "out.parquet"))
    return pd.read_parquet(tmp_path / "out.parquet")


def test_filter_projection_and_flattening(mongo, tmp_path):
    frame = read(tmp_path, collection="products", filter={"qty": {"$gt": 0}}, projection={"_id": 0, "sku": 1, "supplier": 1, "tags": 1})
    assert sorted(frame["sku"]) == ["A", "C"]
    assert set(frame.columns) == {"sku", "supplier_name", "supplier_address_city", "tags"}
    assert frame.sort_values("sku")["tags"].tolist() == ['["x", "y"]', '["z"]']


def test_flatten_depth_and_separator(mongo, tmp_path):
    frame = read(tmp_path, collection="products", projection={"_id": 0, "supplier": 1}, flatten_separator=".", flatten_depth=1)
    assert "supplier.name" in frame.columns and "supplier.address" in frame.columns


def test_aggregation_pipeline(mongo, tmp_path):
    frame = read(tmp_path, collection="products", pipeline=[
        {"$group": {"_id": "$supplier.name", "stock": {"$sum": "$qty"}}}, {"$sort": {"_id": 1}}])
    assert frame[["_id", "stock"]].values.tolist() == [["Acme", 12], ["Globex", 0]]


def test_object_ids_become_strings(mongo, tmp_path):
    frame = read(tmp_path, collection="products")
    assert frame["_id"].map(type).eq(str).all() and frame["_id"].str.len().eq(24).all()


def test_insert_and_upsert_outputs(mongo, tmp_path):
    integrated = tmp_path / "i.parquet"
    pd.DataFrame({"sku": ["A", "D"], "price": [decimal.Decimal("3.10"), decimal.Decimal("4.00")],
                  "seen": pd.to_datetime(["2024-01-01", "2024-01-02"]).date}).to_parquet(integrated, index=False)
    upsert = OutputConfig(output_format="mongodb", output_destination=URL, collection="products", mode="upsert", upsert_keys=["sku"])
    assert write_output(str(integrated), upsert, URL, "t")["rows_written"] == 2
    assert write_output(str(integrated), upsert, URL, "t")["rows_written"] == 2  # idempotent
    products = {d["sku"]: d for d in mongo.shop.products.find()}
    assert len(products) == 4 and str(products["A"]["price"]) == "3.10" and "qty" not in products["A"]
    insert = OutputConfig(output_format="mongodb", output_destination=URL, collection="log", mode="append")
    write_output(str(integrated), insert, URL, "t")
    write_output(str(integrated), insert, URL, "t")
    assert mongo.shop.log.count_documents({}) == 4
    with pytest.raises(ConnectorError, match="upsert keys code are not columns of the data"):
        bad = OutputConfig(output_format="mongodb", output_destination=URL, collection="p", mode="upsert", upsert_keys=["code"])
        write_output(str(integrated), bad, URL, "t")


def test_a_mongodb_pipeline_materializes_through_dagster(mongo, tmp_path, materialize_spec):
    result = materialize_spec("restock", {
        "integration_config": {
            "data_sources": [{"source_name": "products", "source_type": "mongodb", "connection_string": URL,
                              "mongodb": {"collection": "products", "projection": {"_id": 0, "tags": 0}}}],
            "transformation_rules": [{"rule_name": "empty", "transformation_type": "validation", "transformation_logic": "qty == 0"}],
        },
        "output_config": {"output_format": "mongodb", "output_destination": URL, "collection": "restock", "mode": "upsert", "upsert_keys": ["sku"]},
    })
    assert result.success
    assert [(d["sku"], d["supplier_name"]) for d in mongo.shop.restock.find()] == [("B", "Globex")]


def test_spec_errors_for_mongodb():
    with pytest.raises(ValueError, match="a mongodb source needs `mongodb.collection`"):
        DataSource(source_name="p", source_type="mongodb", connection_string=URL)
    with pytest.raises(ValueError, match="a mongodb output needs `output_destination`"):
        OutputConfig(output_format="mongodb", output_destination="out/x")


@pytest.mark.skipif("MONGODB_URI" not in os.environ, reason="needs a MongoDB server: set MONGODB_URI (none can be installed here)")
def test_against_a_real_server(tmp_path):
    import pymongo

    url = os.environ["MONGODB_URI"]
    collection = f"memories_test_{uuid.uuid4().hex[:8]}"
    client = pymongo.MongoClient(url)
    database = client.get_default_database(default="memories_test")
    database[collection].insert_many([dict(d) for d in DOCUMENTS])
    try:
        source = DataSource(source_name="p", source_type="mongodb", connection_string=url,
                            mongodb={"database": database.name, "collection": collection, "filter": {"qty": {"$gt": 0}}})
        extract(source, url, str(tmp_path / "o.parquet"))
        assert sorted(pd.read_parquet(tmp_path / "o.parquet")["supplier_address_city"]) == ["Berlin", "Berlin"]
    finally:
        database.drop_collection(collection)


def test_an_unreachable_server_is_named_without_the_password(tmp_path):
    source = DataSource(source_name="products", source_type="mongodb", connection_string="mongodb://app:pw-s3cret@127.0.0.1:1/shop",
                        mongodb={"collection": "products", "timeout_seconds": 0.5})
    with pytest.raises(ConnectorError, match=r"source 'products': cannot reach MongoDB at mongodb://app:\*\*\*@127.0.0.1:1/shop") as caught:
        extract(source, source.connection_string, str(tmp_path / "o.parquet"))
    assert "pw-s3cret" not in str(caught.value)


def test_a_field_of_mixed_types_becomes_text(mongo, tmp_path):
    mongo.shop.addresses.insert_many([{"zip": 10115}, {"zip": "SW1A"}, {"zip": None}])
    frame = read(tmp_path, collection="addresses", projection={"_id": 0})
    assert sorted(frame["zip"].dropna()) == ["10115", "SW1A"]


def test_upsert_keeps_the_last_document_per_key_and_refuses_documents_without_one(mongo, tmp_path):
    from memories_dagster.connectors.mongo import write_documents

    rows = [{"sku": s, "n": i} for i, s in enumerate("ABAB")]
    oracle = pd.DataFrame(rows).drop_duplicates("sku", keep="last")  # pandas' "last one wins"
    written = write_documents(URL, None, "upserted", iter([rows[:3], rows[3:]]), "upsert", ["sku"])
    stored = pd.DataFrame(list(mongo.shop.upserted.find({}, {"_id": 0}))).sort_values("sku")
    assert stored.values.tolist() == oracle.sort_values("sku").values.tolist() and written == 3
    with pytest.raises(ConnectorError, match="1 rows have no value in upsert key sku"):
        write_documents(URL, None, "upserted", iter([[{"sku": None, "n": 9}, {"sku": "C", "n": 8}]]), "upsert", ["sku"])
    assert mongo.shop.upserted.count_documents({}) == 2


def test_decimals_longer_than_decimal128_are_refused_before_anything_is_replaced(mongo, tmp_path):
    """BSON's Decimal128 keeps 34 digits (bson itself raises Inexact past them): the write is
    refused before the collection's documents are deleted, naming the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bson.decimal128 import Decimal128

    from memories_dagster.engine.errors import IntegrationError

    wide, fits = decimal.Decimal("1" * 36 + ".25"), decimal.Decimal("3.10")
    with pytest.raises(decimal.Inexact):  # the oracle: bson's own conversion
        Decimal128(wide)
    config = OutputConfig(output_format="mongodb", output_destination=URL, collection="prices", mode="replace")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(pa.table({"sku": ["A"], "price": pa.array([fits], pa.decimal128(38, 2))}), good)
    pq.write_table(pa.table({"sku": ["A", "B"], "price": pa.array([fits, wide], pa.decimal128(38, 2))}), bad)
    write_output(str(good), config, URL, "t")
    with pytest.raises(IntegrationError, match=r"at most 34 digits, and column\(s\) 'price' \(1 value\)"):
        write_output(str(bad), config, URL, "t")
    assert [str(d["price"]) for d in mongo.shop.prices.find()] == ["3.10"]

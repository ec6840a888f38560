"""Redis sources against the machine's real Redis server."""

import json

import pandas as pd
import pytest
import redis

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.extract import extract
from memories_dagster.specs.integration import DataSource
from tests.conftest import REDIS_URL


@pytest.fixture
def redis_client(redis_prefix):
    _, prefix = redis_prefix
    return redis.Redis.from_url(REDIS_URL, decode_responses=True), prefix.rstrip(":")


def read(tmp_path, prefix, kind="auto", pattern=None):
    source = DataSource(source_name="cache", source_type="redis", connection_string=REDIS_URL,
                        redis={"pattern": pattern or f"{prefix}:*", "kind": kind})
    table = extract(source, REDIS_URL, str(tmp_path / "out.parquet"))
    return table, pd.read_parquet(tmp_path / "out.parquet")


def test_hashes_json_strings_and_streams(redis_client, tmp_path):
    client, prefix = redis_client
    for number in range(1500):  # more than one SCAN batch
        client.hset(f"{prefix}:user:{number}", mapping={"name": f"u{number}", "tier": "gold"})
    client.set(f"{prefix}:doc:1", json.dumps({"id": 1, "geo": {"lat": 52.5, "lon": 13.4}}))
    client.xadd(f"{prefix}:events", {"kind": "click", "page": "/"})
    client.xadd(f"{prefix}:events", {"kind": "view", "page": "/a"})
    table, frame = read(tmp_path, prefix)
    assert table.rows == 1500 + 1 + 2
    users = frame[frame["_key"].str.contains(":user:")]
    assert len(users) == 1500 and set(users["tier"]) == {"gold"}
    doc = frame[frame["_key"] == f"{prefix}:doc:1"].iloc[0]
    assert (doc["geo_lat"], doc["geo_lon"]) == (52.5, 13.4)
    events = frame[frame["_key"] == f"{prefix}:events"].sort_values("_id")
    assert events["kind"].tolist() == ["click", "view"] and events["_id"].notna().all()


def test_wrong_types_and_bad_json_are_named(redis_client, tmp_path):
    client, prefix = redis_client
    client.set(f"{prefix}:text", "not json")
    with pytest.raises(ConnectorError, match=f"key {prefix}:text does not hold JSON text"):
        read(tmp_path, prefix)
    client.delete(f"{prefix}:text")
    client.rpush(f"{prefix}:list", "a")
    with pytest.raises(ConnectorError, match="keys of type list match the pattern"):
        read(tmp_path, prefix)
    client.delete(f"{prefix}:list")
    client.set(f"{prefix}:s", json.dumps({"a": 1}))
    with pytest.raises(ConnectorError, match=f"key {prefix}:s is not a hash"):
        read(tmp_path, prefix, kind="hash")


def test_unreachable_redis_names_the_source(tmp_path):
    source = DataSource(source_name="cache", source_type="redis", connection_string="redis://:pw-secret-1@127.0.0.1:1/0")
    with pytest.raises(ConnectorError, match=r"source 'cache': cannot reach Redis at redis://:\*\*\*@127.0.0.1:1/0") as caught:
        extract(source, source.connection_string, str(tmp_path / "o.parquet"))
    assert "pw-secret-1" not in str(caught.value)


def test_a_redis_source_materializes_through_dagster(redis_client, tmp_path, materialize_spec):
    client, prefix = redis_client
    client.hset(f"{prefix}:sku:1", mapping={"sku": "1", "stock": "5"})
    client.hset(f"{prefix}:sku:2", mapping={"sku": "2", "stock": "0"})
    result = materialize_spec("stock", {
        "integration_config": {
            "data_sources": [{"source_name": "stock", "source_type": "redis", "connection_string": REDIS_URL,
                              "redis": {"pattern": f"{prefix}:sku:*", "kind": "hash"}}],
            "transformation_rules": [{"rule_name": "in_stock", "transformation_type": "validation", "transformation_logic": "int(stock) > 0"}],
        },
        "output_config": {"output_format": "json", "output_destination": "output/stock.json"},
    })
    assert result.success
    assert [r["sku"] for r in json.loads((tmp_path / "output" / "stock.json").read_text())] == ["1"]

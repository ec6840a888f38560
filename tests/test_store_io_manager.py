"""The memory store IO manager through real Dagster runs: Redis hot tier, folders, moto's S3."""


import uuid

import dagster as dg
import pandas as pd
import pytest
import yaml

from memories_dagster.resources import (
    STORE_IO_MANAGER_KEY,
    TieredIOManager,
    profile_resources,
)
from memories_dagster.specs.loading import SpecError
from memories_dagster.specs.profile import load_profile
from tests.conftest import REDIS_URL, materialization_of


@dg.asset(io_manager_key=STORE_IO_MANAGER_KEY)
def elevation() -> pd.DataFrame:
    return pd.DataFrame({"cell": ["a", "b", "c"], "height_m": [12.5, 40.0, None]})


@dg.asset(io_manager_key=STORE_IO_MANAGER_KEY)
def slope(elevation: pd.DataFrame) -> pd.DataFrame:
    return elevation.assign(steep=elevation["height_m"] > 20)


def observation_of(result, name: str):
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            found = event.event_specific_data.asset_observation
            if found.asset_key == dg.AssetKey(name):
                return found
    raise AssertionError(f"no observation of {name}")


def values(metadata) -> dict:
    return {key: entry.value for key, entry in metadata.items()}


def test_tables_round_trip_through_the_store_with_its_counts_as_metadata(tmp_path, redis_prefix):
    manager = TieredIOManager(hot_url=REDIS_URL, hot_prefix=redis_prefix[1], warm_path=str(tmp_path / "warm"),
                              cold_url=str(tmp_path / "cold"))
    result = dg.materialize([elevation, slope], resources={STORE_IO_MANAGER_KEY: manager},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    frame = result.output_for_node("slope")
    assert frame["steep"].tolist() == [False, True, False] and frame["height_m"].isna().tolist() == [False, False, True]

    written = values(materialization_of(result, "elevation").metadata)
    assert written["store/key"] == "elevation/data" and written["store/tier"] == "hot"
    assert written["dagster/row_count"] == 3
    assert written["store/hot_entries"] == 1 and written["store/hot_bytes"] == written["store/size_bytes"] > 0
    assert written["store/cold_entries"] == 1  # written through to the durable tier
    assert written["store/hot_cap_bytes"] == 256_000_000 and written["store/warm_cap_bytes"] == 1_000_000_000
    read = values(observation_of(result, "elevation").metadata)  # slope's input, loaded from hot
    assert (read["store/hot_hits"], read["store/hot_misses"], read["store/cold_hits"]) == (1, 0, 0)
    assert values(materialization_of(result, "slope").metadata)["store/hot_entries"] == 2

    # a later run on a machine without the Redis tier reads the durable copy from cold
    cold_only = TieredIOManager(cold_url=str(tmp_path / "cold"))
    again = dg.materialize([elevation, slope], selection=[slope], resources={STORE_IO_MANAGER_KEY: cold_only},
                           instance=dg.DagsterInstance.ephemeral())
    assert again.output_for_node("slope").equals(frame)
    assert values(observation_of(again, "elevation").metadata)["store/cold_hits"] == 1


def test_reading_a_table_never_stored_says_to_materialize_it(tmp_path):
    manager = TieredIOManager(warm_path=str(tmp_path / "warm"))
    result = dg.materialize([elevation, slope], selection=[slope], resources={STORE_IO_MANAGER_KEY: manager},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "elevation has no stored table in the memory store: materialize it first" in str(
        failure.event_specific_data.error)


def test_the_default_profile_keeps_tables_under_the_project_with_no_redis_and_no_cloud(tmp_path):
    resources = profile_resources(tmp_path, load_profile(tmp_path, "local"))
    manager = resources[STORE_IO_MANAGER_KEY]
    assert (manager.hot_url, manager.warm_path, manager.warm_size, manager.cold_url) == (
        None, str(tmp_path / ".memories/store"), "1GB", str(tmp_path / ".memories/store-cold"))
    result = dg.materialize([elevation, slope], resources={STORE_IO_MANAGER_KEY: manager},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert sorted(p.name for p in (tmp_path / ".memories/store-cold").iterdir()) == ["elevation%2Fdata", "slope%2Fdata"]
    assert pd.read_parquet(tmp_path / ".memories/store-cold/slope%2Fdata")["steep"].tolist() == [False, True, False]


def test_a_profile_store_on_s3_uses_its_named_connection(tmp_path, redis_prefix, monkeypatch, s3_store):
    import fsspec

    _, connection, fs = s3_store
    bucket = f"analyzers-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    monkeypatch.setenv("TEST_S3_SECRET", "testing-secret")
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "cloud.yaml").write_text(yaml.safe_dump({
        "connections": {"lake": connection | {"aws_secret_access_key": "${TEST_S3_SECRET}"}},
        "store": {"hot": {"url": REDIS_URL, "size": "64MB", "ttl": "1h", "prefix": redis_prefix[1]},
                  "warm": None, "cold": {"url": f"s3://{bucket}/store", "connection": "lake"}},
    }))
    manager = profile_resources(tmp_path, load_profile(tmp_path, "cloud"))[STORE_IO_MANAGER_KEY]
    assert "${TEST_S3_SECRET}" in manager.cold_connection  # resolved only when a run opens the store
    result = dg.materialize([elevation], resources={STORE_IO_MANAGER_KEY: manager},
                            instance=dg.DagsterInstance.ephemeral())
    written = values(materialization_of(result, "elevation").metadata)
    assert written["store/hot_cap_bytes"] == 64_000_000 and "store/warm_hits" not in written
    fresh = fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=connection["endpoint_url"],
                              skip_instance_cache=True)
    assert fresh.ls(f"{bucket}/store") == [f"{bucket}/store/elevation%2Fdata"]


def test_profile_store_errors_name_the_field(tmp_path):
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "bad.yaml").write_text(yaml.safe_dump({
        "store": {"hot": {"url": "redis://cache:6379/0", "size": "lots", "ttl": "1 fortnight"},
                  "warm": {"path": "cache", "size": "32GB"}}}))
    with pytest.raises(SpecError) as error:
        load_profile(tmp_path, "bad")
    text = str(error.value)
    assert "store.hot.size: size 'lots' is not valid" in text
    assert "store.hot.ttl: duration '1 fortnight' is not valid" in text
    (tmp_path / "resources" / "bad.yaml").write_text(yaml.safe_dump({"store": {"cold": {"url": "s3://b/p", "connection": "lake"}}}))
    with pytest.raises(SpecError, match="store.cold.connection names 'lake', which connections does not have"):
        load_profile(tmp_path, "bad")


@dg.asset(io_manager_key=STORE_IO_MANAGER_KEY)
def identifiers():
    import pyarrow as pa

    return pa.table({"id": pa.array([2**53 + 1, None, 7], pa.int64()), "count": pa.array([1, 2, 3], pa.int32())})


@dg.asset(io_manager_key=STORE_IO_MANAGER_KEY)
def identifiers_seen(identifiers: pd.DataFrame) -> pd.DataFrame:
    return identifiers


def test_integers_beside_nulls_reach_a_pandas_asset_exactly(tmp_path):
    manager = TieredIOManager(warm_path=str(tmp_path / "warm"), cold_url=str(tmp_path / "cold"))
    result = dg.materialize([identifiers, identifiers_seen], resources={STORE_IO_MANAGER_KEY: manager},
                            instance=dg.DagsterInstance.ephemeral())
    frame = result.output_for_node("identifiers_seen")
    assert frame["id"].tolist()[0] == 9007199254740993 and frame["id"].isna().tolist() == [False, True, False]
    assert frame["count"].tolist() == [1, 2, 3]

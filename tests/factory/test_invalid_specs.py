"""Broken declarations keep the group and the asset keys they would have had, and fail when run."""

import dagster as dg
import pytest
import yaml

from memories_dagster.definitions import build_definitions

SOURCE = {"source_name": "Orders CSV", "source_type": "csv", "connection_string": "orders.csv"}


@pytest.fixture
def assets(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    for folder in ("integrations", "earth"):
        (tmp_path / "assets" / folder).mkdir(parents=True)
    return tmp_path / "assets"


def groups(defs: dg.Definitions) -> dict[str, str]:
    return {spec.key.to_user_string(): spec.group_name for spec in defs.resolve_all_asset_specs()}


def test_a_broken_pipeline_keeps_its_name_sources_and_group(assets):
    (assets / "integrations" / "file_stem.yaml").write_text(yaml.safe_dump(
        {"name": "sales 2024", "integration_config": {"data_sources": [{**SOURCE, "source_type": "xml"}]}}))
    (assets / "integrations" / "unreadable.yaml").write_text("integration_config: [\n")
    assert groups(build_definitions()) == {
        "sales_2024/sources/Orders_CSV": "sales_2024", "sales_2024/integrated": "sales_2024", "sales_2024/output": "sales_2024",
        "unreadable/integrated": "unreadable", "unreadable/output": "unreadable"}


def test_a_broken_region_keeps_its_declared_sources_and_analyzers(assets):
    (assets / "earth" / "fells.yaml").write_text(yaml.safe_dump(
        {"bbox": [0, 0, 1, 1], "crs": "EPSG:999999", "resolution": 30,
         "sources": {"terrain": {"path": "dem.tif"}}, "analyzers": {"terrain": {}, "vegetation": {}}}))
    (assets / "earth" / "moors.yaml").write_text("bbox: [\n")
    assert groups(build_definitions()) == {
        "fells/earth/terrain": "fells", "fells/analysis/terrain": "fells", "fells/analysis/vegetation": "fells",
        "invalid_specs/earth/moors": "moors"}


def test_names_already_taken_fall_back_to_invalid_specs_without_clashing(assets):
    """A valid `orders` and two broken files claiming it (orders.json, orders.yml): the code location loads."""
    (assets / "integrations" / "a.yaml").write_text(yaml.safe_dump({"name": "orders", "integration_config": {"data_sources": [SOURCE]}}))
    (assets / "integrations" / "orders.json").write_text('{"integration_config": {"data_sources": []}}')
    (assets / "integrations" / "orders.yml").write_text("integration_config: {data_sources: []}\n")
    found = groups(build_definitions())
    assert found["orders/output"] == "orders"
    assert found["invalid_specs/orders"] == "invalid_specs" and found["invalid_specs/orders_yml"] == "invalid_specs"


def test_materializing_a_broken_spec_fails_with_its_errors(assets):
    (assets / "integrations" / "bad.yaml").write_text(yaml.safe_dump(
        {"integration_config": {"data_sources": [{**SOURCE, "source_type": "xml"}]}}))
    result = dg.materialize([build_definitions().resolve_assets_def(dg.AssetKey(["bad", "output"]))], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert f"{assets / 'integrations' / 'bad.yaml'} is invalid" in message
    assert "data_sources[0].source_type: 'xml' is not allowed" in message

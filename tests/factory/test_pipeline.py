"""Specs become assets, checks, jobs, sensors and schedules, and materialize through Dagster."""

import json
import re
import logging
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import materialization_of as materialization

DEMO = Path(__file__).resolve().parents[2] / "assets" / "integrations" / "retail_orders.yaml"
SEED_KEYS = {"integrated_data_path", "integration_report", "data_lineage", "processing_time"}
REPORT_KEYS = {"sources_processed", "total_records", "successful_integrations", "failed_integrations",
               "data_quality_summary", "integration_metrics"}


def test_demo_spec_becomes_the_contract_asset_graph(project):
    shutil.copy(DEMO, project.specs)
    defs = project.definitions()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "retail_orders/sources/orders", "retail_orders/sources/customers", "retail_orders/sources/products",
        "retail_orders/integrated", "retail_orders/quarantine", "retail_orders/output",
    }
    graph = defs.resolve_asset_graph()
    assert {graph.get(key).group_name for key in graph.get_all_asset_keys()} == {"retail_orders"}
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {("retail_orders/integrated", n) for n in ("duplicate_check", "null_check", "format_check", "business_rule_check")}
    assert defs.resolve_sensor_def("retail_orders_files_sensor")
    assert defs.resolve_schedule_def("retail_orders_schedule").cron_schedule == "0 2 * * *"
    output = graph.get(dg.AssetKey(["retail_orders", "output"]))
    assert output.parent_keys == {dg.AssetKey(["retail_orders", "integrated"])}


def test_demo_materializes_with_report_metadata_and_checks(project):
    shutil.copy(DEMO, project.specs)
    result = project.run("retail_orders")
    assert result.success
    output = materialization(result, "retail_orders", "output")
    report = output.metadata["integration_report"].value
    assert set(report) >= SEED_KEYS and set(report["integration_report"]) >= REPORT_KEYS
    assert report["integration_report"]["reconciliation"]["balanced"] is True
    report_path = Path(output.metadata["report_path"].value)
    assert json.loads(report_path.read_text()) == report
    assert output.metadata["dagster/row_count"].value == report["integration_report"]["successful_integrations"]
    lineage = output.metadata["dagster/column_lineage"].value
    deps = {d.asset_key.to_user_string() + "." + d.column_name for d in lineage.deps_by_column["name"]}
    assert deps == {"retail_orders/sources/customers.name"}
    written = pd.read_parquet(project.root / "output" / "retail_orders")
    assert len(written) == report["integration_report"]["successful_integrations"]
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"duplicate_check", "null_check", "format_check", "business_rule_check"}
    assert evaluations["duplicate_check"].metadata["duplicates_removed"].value == 2
    assert evaluations["business_rule_check"].passed is False  # returns and unknown customers are quarantined
    integrated = materialization(result, "retail_orders", "integrated")
    assert integrated.metadata["dagster/column_schema"].value.columns[0].name == "order_id"


def test_a_seed_json_spec_works_unchanged(project):
    seed = {
        "integration_config": {
            "data_sources": [
                {"source_name": "customers", "source_type": "csv", "connection_string": "sample_data/customers.csv"},
                {"source_name": "orders", "source_type": "json", "connection_string": "sample_data/orders.jsonl",
                 "authentication": {"username": "", "password": "", "api_key": ""}},
            ],
            "integration_strategy": {"join_type": "inner", "join_keys": [{"source1_key": "customer_id", "source2_key": "cust_ref"}],
                                     "merge_strategy": "union", "conflict_resolution": "first"},
            "transformation_rules": [{"rule_name": "positive", "source_column": "quantity", "target_column": "quantity",
                                      "transformation_type": "validation", "transformation_logic": "quantity > 0"}],
            "data_quality_checks": {"duplicate_check": True, "null_check": True, "format_check": True, "business_rule_check": True},
        },
        "output_config": {"output_format": "csv", "output_destination": "output/seed.csv",
                          "partitioning": {"partition_by": "country", "partition_type": "category"}},
    }
    (project.specs / "seed-example.json").write_text(json.dumps(seed, indent=2))
    result = project.run("seed_example")
    assert result.success
    assert sorted(p.name for p in (project.root / "output" / "seed.csv").glob("country=*"))[:2] == ["country=BR", "country=DE"]


def test_settings_without_effect_are_warned_about_in_the_run_log(project):
    spec = project.add("warned.yaml", {"integration_config": {
        "data_sources": [{"source_name": "customers", "source_type": "csv", "connection_string": "sample_data/customers.csv"}],
        "data_quality_checks": {"format_check": True, "business_rule_check": True},
    }})
    instance = dg.DagsterInstance.ephemeral()
    result = project.run("warned", instance=instance)
    assert result.success
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any(m.startswith(f"{spec}: integration_config.data_quality_checks.format_check: format_check is on but declares no `columns`")
               for m in warnings), warnings
    assert any("business_rule_check is on but no transformation rule is a validation" in m for m in warnings), warnings
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "format_check")
    assert check.description == "no `columns` declared (column -> type), so no value was checked"


def test_a_rule_failing_on_the_data_names_the_spec_file_and_the_rule(project):
    spec = project.add("failing.yaml", {"integration_config": {
        "data_sources": [{"source_name": "customers", "source_type": "csv", "connection_string": "sample_data/customers.csv"}],
        "transformation_rules": [{"rule_name": "segment_code", "transformation_type": "mapping", "source_column": "segment",
                                  "transformation_logic": {"retail": 1}}],
    }})
    result = project.run("failing", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert f"pipeline 'failing' ({spec}) could not integrate its sources: transformation rule 'segment_code' maps column 'segment' (VARCHAR) in place to numbers" in message
    assert "(e.g. 'wholesale')" in message


def test_a_broken_spec_is_visible_and_does_not_stop_the_others(project):
    shutil.copy(DEMO, project.specs)
    (project.specs / "broken.yaml").write_text("integration_config:\n  data_sources: []\n")
    defs = project.definitions()
    graph = defs.resolve_asset_graph()
    broken = graph.get(dg.AssetKey(["broken", "output"]))  # the keys and group the spec would have had
    assert broken.group_name == "broken"
    assert "data_sources: List should have at least 1 item" in broken.description
    assert dg.AssetKey(["retail_orders", "output"]) in graph.get_all_asset_keys()


def test_a_failing_run_leaves_the_previous_output_and_report(project):
    shutil.copy(DEMO, project.specs)
    assert project.run("retail_orders").success
    out = project.root / "output" / "retail_orders"
    before = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    report = project.root / ".memories" / "reports" / "retail_orders" / "report.json"
    report_before = report.read_text()
    (project.root / "sample_data" / "products.xlsx").write_bytes(b"PK\x03\x04 truncated workbook")
    result = project.run("retail_orders", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "could not read source 'products'" in failure.event_specific_data.error.message
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == before
    assert report.read_text() == report_before


def test_secrets_are_resolved_from_the_environment_and_never_shown(project, monkeypatch, tmp_path):
    monkeypatch.setenv("DEMO_DB_PASSWORD", "s3cr3t-value")
    project.add("secret.yaml", {
        "integration_config": {"data_sources": [{
            "source_name": "erp", "source_type": "sql", "table": "missing_table",
            "connection_string": "postgresql+psycopg2://postgres:${DEMO_DB_PASSWORD}@127.0.0.1:5432/test"}]},
    })
    result = project.run("secret", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "missing_table" in message and "s3cr3t-value" not in message


def test_runs_leave_no_staging_files_behind(project):
    shutil.copy(DEMO, project.specs)
    assert project.run("retail_orders").success
    assert project.run("retail_orders").success
    staging = project.root / ".memories" / "storage" / ".staging"
    assert list(staging.iterdir()) == []
    # the integrated data is stored in the output's layout and linked into the output
    integrated = project.root / ".memories" / "storage" / "retail_orders" / "integrated" / "data.parquet"
    stored = sorted(p.relative_to(integrated).as_posix() for p in integrated.rglob("*.parquet"))
    written = sorted(p.relative_to(project.root / "output" / "retail_orders").as_posix()
                     for p in (project.root / "output" / "retail_orders").rglob("*.parquet"))
    assert stored == written and [re.sub("--[0-9a-f]{8}_", "--", f) for f in written] == [
        "category=garden/part--0.parquet", "category=kitchen/part--0.parquet", "category=tools/part--0.parquet"]


@pytest.mark.parametrize("profile", ["local", "aws", "gcp", "azure"])
def test_shipped_profiles_load_with_their_connections(profile, monkeypatch):
    from memories_dagster.definitions import build_definitions

    monkeypatch.delenv("MEMORIES_ASSETS_DIR", raising=False)
    monkeypatch.setenv("MEMORIES_PROFILE", profile)
    defs = build_definitions()
    assert defs.resolve_asset_graph().get_all_asset_keys()
    if profile != "local":
        assert "lake" in defs.resources


def test_an_unknown_connection_is_reported_on_the_spec(project):
    project.add("bad.yaml", {
        "integration_config": {"data_sources": [{"source_name": "a", "source_type": "csv", "connection": "lake",
                                                 "connection_string": "s3://b/a.csv"}]},
    })
    graph = project.definitions().resolve_asset_graph()
    assert "names connection 'lake', which the resource profile does not have (it has: none)" in \
        graph.get(dg.AssetKey(["bad", "sources", "a"])).description

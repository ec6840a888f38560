"""Incremental runs per partition, the file sensor, the schedule, and the Component."""

import glob
import json
import os
import time

import dagster as dg
import pandas as pd
import yaml

from tests.conftest import materialization_of as materialization


def daily_spec(**extra):
    return {
        "integration_config": {
            "data_sources": [
                {"source_name": "orders", "source_type": "json", "connection_string": "sample_data/orders.jsonl"},
                {"source_name": "customers", "source_type": "csv", "connection_string": "sample_data/customers.csv"},
            ],
            "integration_strategy": {"join_type": "left", "join_keys": [{"source1_key": "cust_ref", "source2_key": "customer_id"}]},
            "data_quality_checks": {"duplicate_check": True},
        },
        "output_config": {"output_format": "parquet", "output_destination": "output/daily"},
        "partitions": {"type": "daily", "start": "2024-01-01", "end": "2024-04-01", "column": "order_date"},
        **extra,
    }


def test_a_daily_partition_reads_and_replaces_only_its_window(project):
    project.add("daily.yaml", daily_spec(schedule="30 1 * * *"))
    all_orders = pd.read_json(project.root / "sample_data" / "orders.jsonl", lines=True)
    instance = dg.DagsterInstance.ephemeral()
    for key in ("2024-01-05", "2024-01-06"):
        result = project.run("daily", key, instance)
        assert result.success
        source = materialization(result, "daily", "sources", "orders")
        expected = int((all_orders["order_date"].astype(str) == key).sum())
        assert source.metadata["dagster/row_count"].value == expected
        assert source.metadata["window_filter"].value == "column order_date"
        customers = materialization(result, "daily", "sources", "customers")
        assert customers.metadata["window_filter"].value == "none (whole source)"
    out = project.root / "output" / "daily"
    assert sorted(glob.glob("*.parquet", root_dir=out)) == ["2024-01-05.parquet", "2024-01-06.parquet"]
    first = pd.read_parquet(out / "2024-01-05.parquet")
    assert set(first["order_date"].astype(str)) == {"2024-01-05"}
    reports = project.root / ".memories" / "reports" / "daily"
    assert sorted(os.listdir(reports)) == ["2024-01-05.json", "2024-01-06.json"]
    schedule = project.definitions().resolve_schedule_def("daily_schedule")
    assert schedule.cron_schedule == "30 1 * * *"
    # a tick on 2024-03-10 01:30 runs the last complete day
    import datetime as dt
    tick = dg.build_schedule_context(instance=instance, repository_def=project.definitions().get_repository_def(), scheduled_execution_time=dt.datetime(2024, 3, 10, 1, 30, tzinfo=dt.timezone.utc))
    requests = schedule.evaluate_tick(tick).run_requests
    assert [r.partition_key for r in requests] == ["2024-03-09"]


def test_sensor_requests_runs_for_new_and_changed_files(project):
    spec = daily_spec()
    spec.pop("partitions")
    project.add("watched.yaml", spec)
    sensor = project.definitions().resolve_sensor_def("watched_files_sensor")
    instance = dg.DagsterInstance.ephemeral()
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert len(first.run_requests) == 1
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert again.run_requests == [] and again.skip_message == "no new or changed files"
    csv = project.root / "sample_data" / "customers.csv"
    time.sleep(0.01)
    csv.write_text(csv.read_text() + "999,New Customer,new@example.com,DE,100,2024-01-01,retail\n")
    changed = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=again.cursor))
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    assert str(csv) in json.loads(changed.cursor)


def test_dynamic_partitions_are_added_by_the_sensor_per_file(project):
    drops = project.root / "drops"
    drops.mkdir()
    for day in ("store_a", "store_b"):
        (drops / f"{day}.csv").write_text("sku,qty\n1,2\n2,3\n")
    project.add("drops.yaml", {
        "integration_config": {"data_sources": [
            {"source_name": "sales", "source_type": "csv", "connection_string": "drops/{partition_key}.csv"}]},
        "output_config": {"output_format": "csv", "output_destination": "output/drops"},
        "partitions": {"type": "dynamic"},
    })
    defs = project.definitions()
    sensor = defs.resolve_sensor_def("drops_files_sensor")
    instance = dg.DagsterInstance.ephemeral()
    # called directly: the daemon adds the requested partitions before it validates the runs
    tick = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert sorted(r.partition_key for r in tick.run_requests) == ["store_a", "store_b"]
    assert [sorted(req.partition_keys) for req in tick.dynamic_partitions_requests] == [["store_a", "store_b"]]
    instance.add_dynamic_partitions("drops_partitions", ["store_a", "store_b"])
    result = project.run("drops", "store_b", instance)
    assert result.success
    assert glob.glob("*", root_dir=project.root / "output" / "drops") == ["store_b.csv"]  # and the hidden manifest
    assert len(pd.read_csv(project.root / "output" / "drops" / "store_b.csv")) == 2


def test_the_integration_component_builds_the_same_assets(tmp_path, monkeypatch):
    from dagster.components.testing.utils import create_defs_folder_sandbox

    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "crm"
        folder.mkdir(parents=True)
        (folder / "customers.csv").write_text("id,email\n1,A@X.COM\n1,A@X.COM\n2,b@x.com\n")
        (folder / "defs.yaml").write_text(yaml.safe_dump({
            "type": "memories_dagster.factory.component.IntegrationComponent",
            "attributes": {
                "integration_config": {
                    "data_sources": [{"source_name": "customers", "source_type": "csv", "connection_string": "customers.csv"}],
                    "transformation_rules": [{"rule_name": "lower", "transformation_type": "formatting",
                                              "source_column": "email", "transformation_logic": "lower"}],
                    "data_quality_checks": {"duplicate_check": True},
                },
                "output_config": {"output_format": "csv", "output_destination": "clean.csv"},
            },
        }))
        with sandbox.load_component_and_build_defs(defs_path=folder) as (component, defs):
            keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
            assert keys == {"crm/sources/customers", "crm/integrated", "crm/quarantine", "crm/output"}
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=dg.DagsterInstance.ephemeral())
            assert result.success
            assert pd.read_csv(folder / "clean.csv").to_dict("list") == {"id": [1, 2], "email": ["a@x.com", "b@x.com"]} or \
                sorted(pd.read_csv(folder / "clean.csv")["email"]) == ["a@x.com", "b@x.com"]


def test_weekly_and_monthly_partitions_read_their_whole_window(project):
    orders = pd.read_json(project.root / "sample_data" / "orders.jsonl", lines=True)
    dates = pd.to_datetime(orders["order_date"])
    for kind, key, low, high in (("weekly", "2024-01-07", "2024-01-07", "2024-01-14"),
                                 ("monthly", "2024-02-01", "2024-02-01", "2024-03-01")):
        spec = daily_spec()
        spec["partitions"] = {"type": kind, "start": "2024-01-01", "column": "order_date"}
        spec["output_config"]["output_destination"] = f"output/{kind}"
        project.add(f"{kind}.yaml", spec)
        result = project.run(kind, key)
        expected = int(((dates >= low) & (dates < high)).sum())
        assert materialization(result, kind, "sources", "orders").metadata["dagster/row_count"].value == expected
        assert glob.glob("*", root_dir=project.root / "output" / kind) == [f"{key}.parquet"]


def test_rows_of_a_source_read_whole_do_not_pile_up_across_partitions(project):
    import sqlite3

    data = project.root / "sample_data"
    (data / "events.csv").write_text("d,v\n2024-01-01,1\n2024-01-02,2\n")
    (data / "extra.csv").write_text("v\n99\n")
    project.add("events.yaml", {
        "integration_config": {
            "data_sources": [
                {"source_name": "events", "source_type": "csv", "connection_string": "sample_data/events.csv"},
                {"source_name": "extra", "source_type": "csv", "connection_string": "sample_data/extra.csv"}],
            "integration_strategy": {"merge_strategy": "union"}},
        "output_config": {"output_format": "sql", "output_destination": "sqlite:///output/e.db", "table": "events"},
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "d"},
    })
    instance = dg.DagsterInstance.ephemeral()
    for key in ("2024-01-01", "2024-01-01", "2024-01-02"):
        result = project.run("events", key, instance)
    rows = sqlite3.connect(project.root / "output" / "e.db").execute("SELECT d, v FROM events ORDER BY v").fetchall()
    assert [(str(d)[:10], v) for d, v in rows] == [("2024-01-01", 1), ("2024-01-02", 2)]
    report = materialization(result, "events", "output").metadata["integration_report"].value["integration_report"]
    # extra's row has no d, so it belongs to no partition: each run quarantines it, none loses it
    assert report["reconciliation"]["by_source"]["extra"]["quarantined_after_integration"] == 1
    assert report["reconciliation"]["balanced"]


def test_a_spec_that_breaks_while_building_definitions_is_reported(project, monkeypatch):
    import memories_dagster.definitions as definitions

    project.add("fine.yaml", daily_spec())
    project.add("boom.yaml", {**daily_spec(), "name": "boom"})
    real = definitions.pipeline_definitions

    def fragile(loaded, connections):
        if loaded.name == "boom":
            raise RuntimeError("scheduler said no")
        return real(loaded, connections)

    monkeypatch.setattr(definitions, "pipeline_definitions", fragile)
    graph = project.definitions().resolve_asset_graph()
    assert "scheduler said no" in graph.get(dg.AssetKey(["boom", "output"])).description
    assert dg.AssetKey(["fine", "output"]) in graph.get_all_asset_keys()


def test_a_whole_read_source_is_reused_while_its_file_is_unchanged(project):
    project.add("daily.yaml", daily_spec())
    instance = dg.DagsterInstance.ephemeral()
    states = []
    for key in ("2024-01-05", "2024-01-06", "2024-01-07"):
        if key == "2024-01-07":  # the customer file changes: read again
            csv = project.root / "sample_data" / "customers.csv"
            csv.write_text(csv.read_text() + "999,New Customer,new@example.com,DE,100,2024-01-01,retail\n")
        result = project.run("daily", key, instance)
        states.append(materialization(result, "daily", "sources", "customers").metadata["snapshot"].value)
    assert states == ["read", "reused: files unchanged", "read"]
    rows = materialization(result, "daily", "sources", "customers").metadata["dagster/row_count"].value
    assert rows == 123  # the new row is there


def test_rows_in_no_partition_are_quarantined_by_every_run_that_reads_them(project):
    data = project.root / "sample_data"
    lines = ["id,d,n", "1,2024-01-01,10", "2,,20", "3,not-a-date,30", "4,01/02/2024,40", "5,2024-01-02,50", "6,2024-01-02T08:00:00,60"]
    (data / "dated.csv").write_text("\n".join(lines) + "\n")
    project.add("dated.yaml", {
        "integration_config": {"data_sources": [
            {"source_name": "dated", "source_type": "csv", "connection_string": "sample_data/dated.csv"}]},
        "output_config": {"output_format": "parquet", "output_destination": "output/dated"},
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "d"},
    })
    oracle = pd.read_csv(data / "dated.csv", keep_default_na=False, na_values=[""])  # pandas reads the same file
    parsed = pd.to_datetime(oracle["d"], errors="coerce", format="ISO8601")
    instance = dg.DagsterInstance.ephemeral()
    for key in ("2024-01-01", "2024-01-02"):
        result = project.run("dated", key, instance)
        day = pd.Timestamp(key)
        inside = (parsed >= day) & (parsed < day + pd.Timedelta(days=1))
        written = pd.read_parquet(project.root / "output" / "dated" / f"{key}.parquet")
        assert sorted(written["id"]) == sorted(oracle["id"][inside])
        report = materialization(result, "dated", "output").metadata["integration_report"].value["integration_report"]
        account = report["reconciliation"]["by_source"]["dated"]
        assert account["rows_read"] == inside.sum() + parsed.isna().sum()
        assert account["quarantined_after_integration"] == parsed.isna().sum() == report["failed_integrations"]
        assert account["balanced"] and report["reconciliation"]["balanced"]
        assert materialization(result, "dated", "quarantine").metadata["dagster/row_count"].value == parsed.isna().sum()


def test_a_declared_date_format_places_rows_in_their_partition(project):
    # Parquet keeps the dates as text (a CSV reader would guess their format itself)
    pd.DataFrame({"id": [1, 2, 3], "d": ["01/01/2024", "01/02/2024", "01/02/2024"]}).to_parquet(
        project.root / "sample_data" / "us.parquet", index=False)
    project.add("us.yaml", {
        "integration_config": {
            "data_sources": [{"source_name": "us", "source_type": "parquet", "connection_string": "sample_data/us.parquet"}],
            "data_quality_checks": {"format_check": True, "columns": {"d": "date:%m/%d/%Y"}}},
        "output_config": {"output_format": "parquet", "output_destination": "output/us"},
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "d"},
    })
    oracle = pd.read_parquet(project.root / "sample_data" / "us.parquet")
    oracle["d"] = pd.to_datetime(oracle["d"], format="%m/%d/%Y")
    result = project.run("us", "2024-01-02")
    written = pd.read_parquet(project.root / "output" / "us" / "2024-01-02.parquet")
    assert sorted(written["id"]) == sorted(oracle["id"][oracle["d"] == "2024-01-02"])
    account = materialization(result, "us", "output").metadata["integration_report"].value["integration_report"][
        "reconciliation"]["by_source"]["us"]
    assert (account["in_output"], account["outside_partition"], account["balanced"]) == (2, 1, True)


def test_an_upsert_pipeline_writes_the_last_row_per_key_and_quarantines_keyless_rows(project):
    import sqlite3

    lines = ["id,v", "1,a", "2,b", "1,c", ",d", "3,e", "2,f"]
    (project.root / "sample_data" / "changes.csv").write_text("\n".join(lines) + "\n")
    project.add("changes.yaml", {
        "integration_config": {"data_sources": [
            {"source_name": "changes", "source_type": "csv", "connection_string": "sample_data/changes.csv"}]},
        "output_config": {"output_format": "sql", "output_destination": "sqlite:///output/c.db", "table": "changes",
                          "mode": "upsert", "upsert_keys": ["id"]},
    })
    oracle = pd.read_csv(project.root / "sample_data" / "changes.csv")
    expected = oracle.dropna(subset=["id"]).drop_duplicates("id", keep="last").sort_values("id")
    for _ in range(2):  # a second run changes nothing: no keyless row piles up
        result = project.run("changes")
    rows = sqlite3.connect(project.root / "output" / "c.db").execute("SELECT id, v FROM changes ORDER BY id").fetchall()
    assert rows == list(zip(expected["id"].astype(int), expected["v"]))
    report = materialization(result, "changes", "output").metadata["integration_report"].value["integration_report"]
    account = report["reconciliation"]["by_source"]["changes"]
    assert (account["in_output"], account["superseded"], account["quarantined_after_integration"]) == (3, 2, 1)
    assert report["reconciliation"]["balanced"]

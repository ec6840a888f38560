"""The command line as users run it: `memories validate` and `dagster asset materialize`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
MEMORIES = Path(sys.executable).with_name("memories")


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def test_validate_accepts_the_shipped_specs():
    result = run([str(MEMORIES), "validate"], PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retail_orders" in result.stdout and "0 invalid" in result.stdout


def test_validate_reports_each_error_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [{"source_name": "a", "source_type": "xml", "connection_string": "x"}],
                               "integration_strategy": {"join_typ": "left"}},
    }))
    result = run([str(MEMORIES), "validate", str(bad), str(PROJECT / "assets")], tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"error: {bad}: integration_config.data_sources[0].source_type: 'xml' is not allowed; input should be 'csv', 'json', 'excel', 'sql', 'mongodb', 'redis', 'api', 'parquet', 'odata', 'graphql', 'soap', 'mainframe' or 'earth'" in lines
    assert any("integration_config.integration_strategy.join_typ: unknown key 'join_typ'; allowed here: join_type" in line for line in lines)
    assert "5 valid, 1 invalid" in lines  # the bad file, 2 integrations and 3 earth regions


@pytest.mark.slow
def test_dagster_asset_materialize_one_partition(tmp_path):
    shutil.copytree(PROJECT / "sample_data", tmp_path / "sample_data")
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    (specs / "daily_orders.yaml").write_text(yaml.safe_dump({
        "integration_config": {
            "data_sources": [
                {"source_name": "orders", "source_type": "json", "connection_string": "sample_data/orders.jsonl"},
                {"source_name": "customers", "source_type": "csv", "connection_string": "sample_data/customers.csv"}],
            "integration_strategy": {"join_type": "inner", "join_keys": [{"source1_key": "cust_ref", "source2_key": "customer_id"}]},
        },
        "output_config": {"output_format": "sql", "output_destination": "sqlite:///output/orders.db", "table": "orders"},
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "order_date"},
    }))
    env = {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    command = [str(DAGSTER), "asset", "materialize", "-m", "memories_dagster.definitions",
               "--select", "group:daily_orders", "--partition", "2024-02-14"]
    result = run(command, tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    import sqlite3
    rows = sqlite3.connect(tmp_path / "output" / "orders.db").execute("SELECT DISTINCT order_date FROM orders").fetchall()
    assert [str(r[0])[:10] for r in rows] == ["2024-02-14"]
    report = json.loads((tmp_path / ".memories" / "reports" / "daily_orders" / "2024-02-14.json").read_text())
    assert report["integrated_data_path"].endswith("orders.db#orders")
    orders = pd.read_json(tmp_path / "sample_data" / "orders.jsonl", lines=True)
    assert report["integration_report"]["total_records"] == (orders["order_date"].astype(str) == "2024-02-14").sum() + 122


@pytest.mark.slow
def test_dg_launch_materializes_the_demo(tmp_path):
    shutil.copytree(PROJECT / "sample_data", tmp_path / "sample_data")
    shutil.copytree(PROJECT / "assets", tmp_path / "assets")
    (tmp_path / "home").mkdir()
    env = {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = run([str(DAGSTER.with_name("dg")), "launch", "--assets", 'key:"customer_master/*"'], PROJECT, env)
    assert result.returncode == 0, result.stderr[-3000:]
    import sqlite3
    count = sqlite3.connect(tmp_path / "output" / "demo.db").execute("SELECT count(*) FROM customers").fetchone()[0]
    assert count == 120


def test_the_shipped_api_examples_validate():
    result = run([str(MEMORIES), "validate", str(PROJECT / "examples")], PROJECT)
    assert result.returncode == 0, result.stdout
    assert "3 valid, 0 invalid" in result.stdout


def test_the_readme_example_spec_is_valid(tmp_path):
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Declaring a pipeline", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "orders.yaml").write_text(example)
    result = run([str(MEMORIES), "validate", str(tmp_path / "orders.yaml")], tmp_path)
    assert result.returncode == 0, result.stdout


def test_loading_the_code_location_leaves_heavy_libraries_for_later(tmp_path):
    """Each of these adds up to a second to every `dagster asset materialize` (BENCHMARKS.md)."""
    heavy = ["pandas", "dagster_aws", "dagster_gcp", "dagster_azure", "s3fs", "gcsfs", "adlfs", "zeep", "gql"]
    probe = f"import sys, memories_dagster.definitions; print([m for m in {heavy!r} if m in sys.modules])"
    result = run([sys.executable, "-c", probe], PROJECT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_readme_example_region_is_valid(tmp_path):
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Earth Memory", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "earth").mkdir()
    (tmp_path / "earth" / "jacksboro_fault.yaml").write_text(example)
    result = run([str(MEMORIES), "validate", str(tmp_path / "earth" / "jacksboro_fault.yaml")], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "region jacksboro_fault, sources: terrain, satellite, climate" in result.stdout


THREE_EMAILS = {
    "crm": pd.DataFrame({"customer_id": [1, 2, 3, 4], "email": ["a@crm.io", None, None, None]}),
    "erp": pd.DataFrame({"customer_id": [1, 2, 3, 5], "email": ["a@erp.io", "b@erp.io", None, "e@erp.io"]}),
    "web": pd.DataFrame({"customer_id": [1, 2, 3, 4], "email": ["a@web.io", "b@web.io", "c@web.io", None]}),
}


@pytest.mark.slow
def test_the_readme_custom_resolution_example_with_a_third_source(tmp_path):
    """README: custom_resolution `{email: "coalesce(crm.email, erp.email)"}`, extended to a third source."""
    data = tmp_path / "data"
    data.mkdir()
    for name, frame in THREE_EMAILS.items():
        frame.to_csv(data / f"{name}.csv", index=False)
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    spec = specs / "emails.yaml"
    spec.write_text(yaml.safe_dump({
        "integration_config": {
            "data_sources": [{"source_name": n, "source_type": "csv", "connection_string": f"data/{n}.csv"} for n in THREE_EMAILS],
            "integration_strategy": {
                "join_type": "left",
                "join_keys": [{"source1_key": "customer_id", "source2_key": "customer_id"}] * 2,
                "conflict_resolution": "custom",
                "custom_resolution": {"email": "coalesce(crm.email, erp.email, web.email)"},
            },
        },
        "output_config": {"output_format": "csv", "output_destination": "output/emails.csv"},
    }))
    validated = run([str(MEMORIES), "validate", str(spec)], tmp_path)
    assert validated.returncode == 0, validated.stdout
    assert "warning" not in validated.stdout and "1 valid, 0 invalid" in validated.stdout
    (tmp_path / "home").mkdir()
    env = {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = run([str(DAGSTER), "asset", "materialize", "-m", "memories_dagster.definitions", "--select", "group:emails"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    # pandas: the same left joins, then the first non-null email in crm, erp, web order
    crm, erp, web = (f.rename(columns={"email": f"email_{n}"}) for n, f in THREE_EMAILS.items())
    joined = crm.merge(erp, on="customer_id", how="left").merge(web, on="customer_id", how="left")
    expected = joined["email_crm"].combine_first(joined["email_erp"]).combine_first(joined["email_web"])
    written = pd.read_csv(tmp_path / "output" / "emails.csv").sort_values("customer_id")
    assert list(written.columns) == ["customer_id", "email"]
    assert written["customer_id"].tolist() == joined["customer_id"].tolist()
    assert written["email"].fillna("-").tolist() == expected.fillna("-").tolist()
    report = json.loads((tmp_path / ".memories" / "reports" / "emails" / "report.json").read_text())
    assert report["integration_report"]["conflicts_resolved"] == {"email": "custom"}
    assert sorted(report["data_lineage"]["source_mapping"]["email"]) == ["crm.email", "erp.email", "web.email"]


def test_validate_prints_settings_without_effect_as_warnings(tmp_path):
    spec = tmp_path / "seedlike.yaml"
    spec.write_text(yaml.safe_dump({"integration_config": {
        "data_sources": [{"source_name": n, "source_type": "csv", "connection_string": f"{n}.csv"} for n in ("a", "b")],
        "integration_strategy": {"join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}],
                                 "merge_strategy": "union"},
        "data_quality_checks": {"format_check": True},
    }}))
    result = run([str(MEMORIES), "validate", str(spec)], tmp_path)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"warning: {spec}: integration_config.integration_strategy.merge_strategy: merge_strategy 'union' is not used")
               for line in lines), lines
    assert any(line.startswith(f"warning: {spec}: integration_config.data_quality_checks.format_check: format_check is on but declares no `columns`")
               for line in lines), lines
    assert "1 valid, 0 invalid" in lines


def two_pipelines(tmp_path: Path) -> dict[str, str]:
    """A project with a valid pipeline `good` and an invalid one `bad`; the environment to run it."""
    (tmp_path / "data").mkdir()
    pd.DataFrame({"id": [1, 2], "v": ["a", "b"]}).to_csv(tmp_path / "data" / "a.csv", index=False)
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    source = {"source_name": "a", "source_type": "csv", "connection_string": "data/a.csv"}
    (specs / "good.yaml").write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [source]},
        "output_config": {"output_format": "csv", "output_destination": "output/good.csv"}}))
    (specs / "bad.yaml").write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [{**source, "source_type": "xml"}]},
        "output_config": {"output_format": "csv", "output_destination": "output/bad.csv"}}))
    (tmp_path / "home").mkdir()
    return {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}


def materialize(tmp_path: Path, env: dict[str, str], selection: str) -> subprocess.CompletedProcess:
    command = [str(DAGSTER), "asset", "materialize", "-m", "memories_dagster.definitions", "--select", selection]
    return run(command, tmp_path, env)


@pytest.mark.slow
def test_selecting_an_invalid_spec_fails_with_its_errors_and_runs_nothing_else(tmp_path):
    env = two_pipelines(tmp_path)
    for selection in ("group:bad", "bad/output"):
        result = materialize(tmp_path, env, selection)
        assert result.returncode != 0, result.stderr[-3000:]
        log = result.stdout + result.stderr
        assert f"{tmp_path / 'assets' / 'integrations' / 'bad.yaml'} is invalid, so its assets cannot be materialized" in log
        assert "integration_config.data_sources[0].source_type: 'xml' is not allowed" in log
        assert not (tmp_path / "output").exists(), selection  # the valid pipeline did not run
    assert materialize(tmp_path, env, "group:good").returncode == 0
    assert (tmp_path / "output" / "good.csv").exists()


@pytest.mark.slow
def test_one_partition_of_an_invalid_partitioned_spec_fails_with_its_errors(tmp_path):
    env = two_pipelines(tmp_path)
    bad = tmp_path / "assets" / "integrations" / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(bad.read_text()),
                                   "partitions": {"type": "daily", "start": "2024-01-01", "column": "day"}}))
    command = [str(DAGSTER), "asset", "materialize", "-m", "memories_dagster.definitions", "--select", "group:bad",
               "--partition", "2024-02-14"]
    result = run(command, tmp_path, env)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert f"{bad} is invalid, so its assets cannot be materialized" in log, log[-3000:]
    assert "integration_config.data_sources[0].source_type: 'xml' is not allowed" in log


@pytest.mark.slow
def test_a_selection_that_matches_nothing_fails_and_runs_nothing(tmp_path):
    """Dagster's CLI runs every asset when --select matches none; the code location refuses the run."""
    env = two_pipelines(tmp_path)
    (tmp_path / "assets" / "integrations" / "bad.yaml").unlink()
    result = materialize(tmp_path, env, "group:goood")
    assert result.returncode != 0, result.stderr[-3000:]
    assert "the run selects no asset, so Dagster would materialize every asset" in result.stdout + result.stderr
    assert not (tmp_path / "output").exists()
    launched = run([str(DAGSTER.with_name("dg")), "launch", "--assets", "group:goood"], PROJECT, env)  # dg: same
    assert launched.returncode != 0, launched.stderr[-3000:]
    assert "the run selects no asset, so Dagster would materialize every asset" in launched.stdout + launched.stderr
    assert not (tmp_path / "output").exists()


def test_validate_takes_pipeline_names_and_refuses_unknown_ones_with_the_known(tmp_path):
    env = two_pipelines(tmp_path)
    result = run([str(MEMORIES), "validate", "good"], tmp_path, env)
    assert result.returncode == 0, result.stdout
    assert f"ok: {tmp_path / 'assets' / 'integrations' / 'good.yaml'} (pipeline good, 1 sources)" in result.stdout
    result = run([str(MEMORIES), "validate", "goood"], tmp_path, env)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["error: goood: no such file, and no pipeline or region is named 'goood'; known: bad, good"]


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    [str(DAGSTER), "asset", "materialize", "-m", "memories_dagster.definitions", "--select", "group:broken,group:good"],
    [str(DAGSTER.with_name("dg")), "launch", "--assets", "group:broken or group:good"],
])
def test_a_selection_holding_an_invalid_declaration_runs_nothing(tmp_path, command):
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    (tmp_path / "rows.csv").write_text("id\n1\n")
    (specs / "good.yaml").write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [
            {"source_name": "rows", "source_type": "csv", "connection_string": str(tmp_path / "rows.csv")}]},
        "output_config": {"output_format": "csv", "output_destination": str(tmp_path / "out" / "good.csv")}}))
    (specs / "broken.yaml").write_text(yaml.safe_dump({"integration_config": {"data_sources": []}}))
    (tmp_path / "home").mkdir()
    env = {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = run(command, PROJECT, env)
    assert result.returncode != 0
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*.parquet"))  # not even the source ran
    assert "broken.yaml" in result.stderr and "invalid declarations" in result.stderr, result.stderr[-3000:]


def test_files_declaring_one_pipeline_name_are_all_refused_by_validate_and_the_code_location(tmp_path):
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    source = {"source_name": "rows", "source_type": "csv", "connection_string": "rows.csv"}
    (specs / "bar.yaml").write_text(yaml.safe_dump({"integration_config": {"data_sources": [source]}}))
    (specs / "foo.yaml").write_text(yaml.safe_dump({"name": "bar", "integration_config": {"data_sources": []}}))
    (specs / "baz.json").write_text(json.dumps({"name": "bar", "integration_config": {"data_sources": [source]}}))
    env = {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets")}
    files = "(bar.yaml, baz.json, foo.yaml)"

    by_name = run([str(MEMORIES), "validate", "bar"], tmp_path, env)
    assert by_name.returncode == 1 and files in by_name.stdout, by_name.stdout
    every = run([str(MEMORIES), "validate"], tmp_path, env)
    assert every.returncode == 1 and "0 valid, 3 invalid" in every.stdout and every.stdout.count(files) == 3, every.stdout

    script = ("import dagster as dg; from memories_dagster.definitions import defs; "
              "print(defs.resolve_assets_def(dg.AssetKey(['bar', 'output'])).specs_by_key[dg.AssetKey(['bar', 'output'])].description)")
    location = run([sys.executable, "-c", script], tmp_path, env)
    assert "is invalid" in location.stdout and files in location.stdout, location.stdout + location.stderr[-2000:]


def test_validate_refuses_pipelines_whose_outputs_share_or_nest_their_destination(tmp_path):
    """Found by a hostile tester: both specs validated, and the first runs found out (one write
    replaced the other's files, or a reader of the outer folder read the inner output's rows)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s.csv").write_text("id,cat\n1,a\n2,b\n")
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    source = {"data_sources": [{"source_name": "s", "source_type": "csv", "connection_string": "data/s.csv"}]}
    outputs = {
        "outer": {"output_format": "csv", "output_destination": "output/outer",
                  "partitioning": {"partition_by": "cat", "partition_type": "category"}},
        "inner": {"output_format": "csv", "output_destination": "output/outer/cat=a/inner.csv"},
        "twin_a": {"output_format": "parquet", "output_destination": "output/twin"},
        "twin_b": {"output_format": "parquet", "output_destination": "output/./twin"},
        "solo": {"output_format": "csv", "output_destination": "output/solo.csv"},
    }
    for name, output in outputs.items():
        (specs / f"{name}.yaml").write_text(yaml.safe_dump({"integration_config": source, "output_config": output}))
    result = run([str(MEMORIES), "validate"], tmp_path, {"MEMORIES_ASSETS_DIR": str(tmp_path / "assets")})
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert any("inner.yaml" in e and "is inside the destination of pipeline 'outer'" in e for e in errors)
    assert any("outer.yaml" in e and "holds the destination of pipeline 'inner'" in e for e in errors)
    assert any("twin_a.yaml" in e and "is the destination of pipeline 'twin_b'" in e for e in errors)
    assert any("twin_b.yaml" in e and "is the destination of pipeline 'twin_a'" in e for e in errors)
    assert "1 valid, 4 invalid" in result.stdout and f"ok: {specs / 'solo.yaml'}" in result.stdout

"""Destinations and partition keys through Dagster and `memories validate` (issue 9 items 1, 2, 18):
a pipeline refuses the project folder and folders holding files it did not write, validate puts
a killed write right, and a dynamic partition key cannot read outside its template's folder."""

import json
import os

import dagster as dg
import pandas as pd
import pytest

from memories_dagster.cli import main
from memories_dagster.engine.window import Window, expand

SOURCE = {"source_name": "sales", "source_type": "csv", "connection_string": "drops/{partition_key}.csv"}


def spec(destination: str, **output) -> dict:
    return {
        "integration_config": {"data_sources": [{"source_name": "sales", "source_type": "csv",
                                                 "connection_string": "sample_data/customers.csv"}]},
        "output_config": {"output_format": "csv", "output_destination": destination,
                          "partitioning": {"partition_by": "customer_id", "partition_type": "hash", "buckets": 2}, **output},
    }


def test_the_project_folder_as_destination_is_an_invalid_spec_and_the_project_stays(project, capsys):
    file = project.add("wipe.yaml", spec("."))
    before = sorted(os.listdir(project.root))
    defs = project.definitions()
    output = defs.resolve_assets_def(dg.AssetKey(["wipe", "output"]))
    errors = " ".join(output.specs_by_key[dg.AssetKey(["wipe", "output"])].metadata["errors"])
    assert "'.' is the project folder" in errors and "overwrite: true does not lift this" in errors
    assert main(["validate", str(file)]) == 1
    assert "is the project folder" in capsys.readouterr().out
    assert sorted(os.listdir(project.root)) == before


def test_a_run_refuses_a_folder_of_files_the_pipeline_did_not_write(project, capsys):
    file = project.add("mine.yaml", spec("output/shared"))
    shared = project.root / "output" / "shared"
    shared.mkdir(parents=True)
    (shared / "budget.xlsx").write_bytes(b"not the pipeline's")
    result = project.run("mine", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "did not write (budget.xlsx" in failure.step_failure_data.error.message
    assert os.listdir(shared) == ["budget.xlsx"] and (shared / "budget.xlsx").read_bytes() == b"not the pipeline's"
    assert main(["validate", str(file)]) == 1
    assert "budget.xlsx" in capsys.readouterr().out
    # with overwrite: true the pipeline takes the folder over, and from then on it is its own
    project.add("mine.yaml", spec("output/shared", overwrite=True))
    assert project.run("mine").success
    assert not (shared / "budget.xlsx").exists()
    project.add("mine.yaml", spec("output/shared"))
    assert project.run("mine").success
    assert main(["validate", str(file)]) == 0


def test_validate_puts_a_killed_write_right(project, capsys):
    file = project.add("mine.yaml", spec("output/mine"))
    assert project.run("mine").success
    out = project.root / "output" / "mine"
    rows = sorted(pd.concat(pd.read_csv(f) for f in out.rglob("*.csv"))["customer_id"])
    # killed between the two renames of a commit (no exchange): the complete new tree is staged
    staged = ".mine.staging-1700000000000000000-0a1b2c3d"
    os.replace(out, out.with_name(staged))
    out.with_name(".mine.memories-commit").write_text(json.dumps({"staging": staged, "retired": ".mine.old-x"}))
    (out.parent / ".mine.staging-1700000000000000001-0a1b2c3e").mkdir()  # a killed write's staging
    (out.parent / ".mine.staging-zz").mkdir()  # named otherwise: the user's
    assert main(["validate", str(file)]) == 0
    printed = capsys.readouterr().out
    assert "rolled forward" in printed and "removed" in printed
    assert sorted(pd.concat(pd.read_csv(f) for f in out.rglob("*.csv"))["customer_id"]) == rows
    assert sorted(os.listdir(out.parent)) == [".mine.memories-lock", ".mine.staging-zz", "mine"]


@pytest.mark.parametrize("key", ["../secret", "../../../etc/passwd", "..", "*", "/etc/passwd"])
def test_a_dynamic_partition_key_cannot_leave_the_templates_folder(project, key):
    (project.root / "drops").mkdir()
    (project.root / "drops" / "store_a.csv").write_text("sku,qty\n1,2\n")
    (project.root / "secret.csv").write_text("sku,qty\n666,666\n")
    project.add("drops.yaml", {
        "integration_config": {"data_sources": [SOURCE]},
        "output_config": {"output_format": "csv", "output_destination": "output/drops"},
        "partitions": {"type": "dynamic"},
    })
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("drops_partitions", [key, "store_a"])
    result = project.run("drops", key, instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "cannot fill a {partition_key} template" in failure.step_failure_data.error.message
    assert not (project.root / "output" / "drops").exists()
    assert project.run("drops", "store_a", instance).success  # a plain key still reads its file


@pytest.mark.parametrize("key", ["../x", "a/b", "a\\b", ".", "..", "~root", "a\x00b", "*", "a?", "[ab]", "", "a\nb"])
def test_keys_that_could_leave_a_template_are_refused(key):
    with pytest.raises(ValueError, match="cannot fill a {partition_key} template"):
        expand("data/{partition_key}.csv", Window(key))


@pytest.mark.parametrize("key", ["store_a", "2024-01-01", "a..b", "..a", "café", "a b", "a%2Fb"])
def test_plain_keys_fill_templates(key):
    assert expand("data/{partition_key}.csv", Window(key)) == f"data/{key}.csv"


def test_a_partition_run_under_changed_partitions_refuses_rather_than_leave_both(project):
    """r1: partitions: added to a pipeline whose output a full run wrote; a daily partition's run
    would add its files beside the full run's and a reader would count those rows twice."""
    (project.root / "data").mkdir()
    (project.root / "data" / "s.csv").write_text("id,d\n1,2024-01-30\n2,2024-01-31\n3,2024-01-31\n")
    document = {
        "integration_config": {"data_sources": [{"source_name": "s", "source_type": "csv", "connection_string": "data/s.csv"}]},
        "output_config": {"output_format": "csv", "output_destination": "output/p",
                          "partitioning": {"partition_by": "d", "partition_type": "date", "granularity": "month"}},
    }
    project.add("p.yaml", document)
    assert project.run("p").success
    out = project.root / "output" / "p"
    ids = lambda: sorted(pd.concat(pd.read_csv(f) for f in out.rglob("*.csv"))["id"])  # noqa: E731
    project.add("p.yaml", {"partitions": {"type": "daily", "start": "2024-01-01", "column": "d"}, **document})
    result = project.run("p", "2024-01-31", raise_on_error=False)
    assert not result.success and ids() == [1, 2, 3]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "under another partitioning" in failure.step_failure_data.error.message
    document["output_config"]["overwrite"] = True
    project.add("p.yaml", {"partitions": {"type": "daily", "start": "2024-01-01", "column": "d"}, **document})
    assert project.run("p", "2024-01-31").success and ids() == [2, 3]  # the earlier scheme's files dropped
    del document["output_config"]["overwrite"]
    project.add("p.yaml", {"partitions": {"type": "daily", "start": "2024-01-01", "column": "d"}, **document})
    assert project.run("p", "2024-01-30").success and ids() == [1, 2, 3]

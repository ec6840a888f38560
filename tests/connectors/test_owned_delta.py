"""A Delta table is the pipeline's own (issue 9 item 1): `replace` overwrites rows (all, or one
partition's) only in a table its pipeline made, marked in the table's name and description,
unless `overwrite: true` adopts it; `append` writes any table."""

import datetime as dt

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memories_dagster.connectors.file_outputs import DestinationError, Ownership
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import OutputConfig

DAY = Window("2024-01-01", dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc))


def rows(*pairs):
    return pa.table({"day": pa.array([dt.date.fromisoformat(d) for d, _ in pairs]), "v": pa.array([v for _, v in pairs], pa.int64())})


def write(tmp_path, target, table, pipeline, mode="replace", overwrite=False, window=None):
    data = tmp_path / f"in-{pipeline}.parquet"
    pq.write_table(table, data)
    config = OutputConfig(output_format="delta", mode=mode, overwrite=overwrite)
    return write_output(str(data), config, str(target), pipeline, window, "day" if window else None,
                        ownership=Ownership(pipeline, overwrite))


def held(target):
    table = deltalake.DeltaTable(str(target)).to_pyarrow_table().sort_by([("day", "ascending"), ("v", "ascending")])
    return [(r["day"].isoformat(), r["v"]) for r in table.to_pylist()]


@pytest.mark.parametrize("window", [None, DAY], ids=["whole", "partition"])
def test_replace_refuses_a_delta_table_the_pipeline_did_not_make(tmp_path, window):
    target = tmp_path / "table"
    deltalake.write_deltalake(str(target), rows(("2024-01-01", 1), ("2024-01-02", 2)))  # made by someone else
    with pytest.raises(DestinationError, match="exists and pipeline 'sales' did not make it \\(its metadata names no "
                       "pipeline of this project\\).*set output_config.overwrite: true once"):
        write(tmp_path, target, rows(("2024-01-01", 9)), "sales", window=window)
    assert held(target) == [("2024-01-01", 1), ("2024-01-02", 2)]
    write(tmp_path, target, rows(("2024-01-03", 3)), "sales", mode="append")
    assert held(target) == [("2024-01-01", 1), ("2024-01-02", 2), ("2024-01-03", 3)]


def test_overwrite_adopts_a_delta_table_once_and_it_is_its_makers(tmp_path):
    target = tmp_path / "table"
    deltalake.write_deltalake(str(target), rows(("2024-01-01", 1)))
    write(tmp_path, target, rows(("2024-01-02", 2)), "sales", overwrite=True)
    assert held(target) == [("2024-01-02", 2)]
    write(tmp_path, target, rows(("2024-01-03", 3)), "sales")  # adopted: no overwrite needed now
    assert held(target) == [("2024-01-03", 3)]
    with pytest.raises(DestinationError, match="its metadata names pipeline 'sales'"):
        write(tmp_path, target, rows(("2024-01-04", 4)), "stock")
    assert held(target) == [("2024-01-03", 3)]


def test_a_table_the_pipeline_made_is_replaced_without_overwrite(tmp_path):
    target = tmp_path / "table"
    write(tmp_path, target, rows(("2024-01-01", 1)), "sales")
    write(tmp_path, target, rows(("2024-01-02", 2)), "sales")
    assert held(target) == [("2024-01-02", 2)]


def test_a_delta_table_inside_another_delta_table_is_refused(tmp_path):
    """r12: the outer table's vacuum would delete the inner table's files as untracked."""
    write(tmp_path, tmp_path / "outer", rows(("2024-01-01", 1)), "a")
    with pytest.raises(DestinationError, match="is inside the output"):
        write(tmp_path, tmp_path / "outer" / "inner", rows(("2024-01-01", 2)), "b")
    assert not (tmp_path / "outer" / "inner").exists()
    deltalake.DeltaTable(str(tmp_path / "outer")).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert held(tmp_path / "outer") == [("2024-01-01", 1)]

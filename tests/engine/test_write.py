"""Outputs: formats, date/category/hash partitioning, partition replacement, atomicity."""

import datetime as dt
import json
import os

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from memories_dagster.connectors.file_outputs import DestinationError
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import lay_out, layout_signature, write_output
from memories_dagster.specs.integration import OutputConfig

FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "category": ["tools", "garden", "tools", "kitchen"],
        "sold": pd.to_datetime(["2024-01-05", "2024-01-20", "2024-02-03", "2024-03-09"]).date,
        "amount": [1.0, 2.0, 3.0, 4.0],
    }
)


@pytest.fixture
def integrated(tmp_path):
    path = tmp_path / "integrated.parquet"
    FRAME.to_parquet(path, index=False)
    return str(path)


def visible(folder) -> list[str]:
    """The entries of a folder a reader sees: hidden ones (the manifest) left out."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def read_back(pattern: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)").df()


@pytest.mark.parametrize("fmt, name", [("csv", "out.csv"), ("json", "out.json"), ("json", "out.jsonl"), ("parquet", "out.parquet")])
def test_single_file_formats(tmp_path, integrated, fmt, name):
    target = tmp_path / name
    result = write_output(integrated, OutputConfig(output_format=fmt, output_destination=str(target)), str(target), "t")
    assert result["rows_written"] == 4 and target.exists()
    if name.endswith(".csv"):
        assert len(pd.read_csv(target)) == 4
    elif name.endswith(".json"):
        assert len(json.loads(target.read_text())) == 4  # an array, readable by any JSON tool
    elif name.endswith(".jsonl"):
        assert len(target.read_text().splitlines()) == 4
    else:
        assert len(pd.read_parquet(target)) == 4
    assert [p for p in os.listdir(tmp_path) if ".staging" in p] == []


def test_category_partitioning(tmp_path, integrated):
    out = tmp_path / "out"
    config = OutputConfig(output_destination=str(out), partitioning={"partition_by": "category", "partition_type": "category"})
    write_output(integrated, config, str(out), "t")
    assert visible(out) == ["category=garden", "category=kitchen", "category=tools"]
    assert sorted(read_back(f"{out}/*/*.parquet")["id"]) == [1, 2, 3, 4]


def test_date_partitioning_by_day_and_month(tmp_path, integrated):
    day, month = tmp_path / "day", tmp_path / "month"
    write_output(integrated, OutputConfig(partitioning={"partition_by": "sold", "partition_type": "date"}), str(day), "t")
    assert visible(day) == ["sold=2024-01-05", "sold=2024-01-20", "sold=2024-02-03", "sold=2024-03-09"]
    config = OutputConfig(partitioning={"partition_by": "sold", "partition_type": "date", "granularity": "month"})
    write_output(integrated, config, str(month), "t")
    assert visible(month) == ["sold_month=2024-01", "sold_month=2024-02", "sold_month=2024-03"]
    # the date column itself stays in the files
    assert len(pd.read_parquet(next((month / "sold_month=2024-01").iterdir()))["sold"]) == 2


def test_hash_partitioning_is_stable_and_complete(tmp_path, integrated):
    config = OutputConfig(partitioning={"partition_by": "id", "partition_type": "hash", "buckets": 3})
    first, second = tmp_path / "a", tmp_path / "b"
    write_output(integrated, config, str(first), "t")
    write_output(integrated, config, str(second), "t")
    assert all(name.startswith("id_bucket=") for name in visible(first))
    assert visible(first) == visible(second)
    assert sorted(read_back(f"{first}/*/*.parquet")["id"]) == [1, 2, 3, 4]


def test_partition_column_must_exist(tmp_path, integrated):
    config = OutputConfig(partitioning={"partition_by": "region", "partition_type": "category"})
    with pytest.raises(IntegrationError, match="partition_by 'region' is not a column.*id, category, sold, amount"):
        write_output(integrated, config, str(tmp_path / "out"), "t")


def test_a_partition_run_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    config = OutputConfig(partitioning={"partition_by": "category", "partition_type": "category"})
    jan = Window("2024-01-01", dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1))
    feb = Window("2024-02-01", dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1))
    for window, rows in ((jan, FRAME.iloc[:2]), (feb, FRAME.iloc[2:])):
        path = tmp_path / f"{window.key}.parquet"
        rows.to_parquet(path, index=False)
        write_output(str(path), config, str(out), "t", window)
    assert sorted(read_back(f"{out}/*/*.parquet")["id"]) == [1, 2, 3, 4]
    # January again, now with one row: February's files are untouched, January's replaced
    again = tmp_path / "again.parquet"
    FRAME.iloc[:1].to_parquet(again, index=False)
    write_output(str(again), config, str(out), "t", jan)
    assert sorted(read_back(f"{out}/*/*.parquet")["id"]) == [1, 3, 4]


def test_a_failed_commit_leaves_the_previous_output(tmp_path, integrated, monkeypatch):
    target = tmp_path / "out.csv"
    write_output(integrated, OutputConfig(output_format="csv"), str(target), "t")
    previous = target.read_text()
    import memories_dagster.connectors.file_outputs as file_outputs

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(file_outputs.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_output(str(tmp_path / "integrated.parquet"), OutputConfig(output_format="csv"), str(target), "t")
    assert target.read_text() == previous
    assert [p for p in os.listdir(tmp_path) if ".staging" in p] == []


def test_partition_keys_that_share_a_prefix_or_differ_by_slash_do_not_collide(tmp_path, integrated):
    out = tmp_path / "out"
    config = OutputConfig(partitioning={"partition_by": "category", "partition_type": "category"})
    for key in ("east_1", "east", "a/b", "a_b"):
        write_output(integrated, config, str(out), "t", Window(key))
    # rewriting 'east' and 'a/b' left 'east_1' and 'a_b' alone: 4 keys x 3 categories
    assert len(list(out.rglob("*.parquet"))) == 12
    write_output(integrated, config, str(out), "t", Window("east"))
    assert len(list(out.rglob("*.parquet"))) == 12


def test_one_file_per_partition_keeps_the_other_partitions_and_refuses_foreign_files(tmp_path, integrated):
    out = tmp_path / "daily"
    config = OutputConfig(output_format="csv")
    for key in ("2024-01-01", "2024-01-02"):
        write_output(integrated, config, str(out), "t", Window(key))
    write_output(integrated, config, str(out), "t", Window("2024-01-01"))
    assert visible(out) == ["2024-01-01.csv", "2024-01-02.csv"]
    assert all(sorted(pd.read_csv(out / name)["id"]) == [1, 2, 3, 4] for name in visible(out))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DestinationError, match="notes.txt"):
        write_output(integrated, config, str(out), "t", Window("2024-01-03"))
    assert visible(out) == ["2024-01-01.csv", "2024-01-02.csv", "notes.txt"]


def _strict_json(text: str):
    """Python's reader without its extension: NaN and Infinity are no JSON (RFC 8259)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", ["out.json", "out.jsonl"])
def test_json_output_refuses_nan_and_infinity_and_keeps_the_earlier_output(tmp_path, name):
    target = tmp_path / name
    good = tmp_path / "good.parquet"
    pd.DataFrame({"id": [1, 2], "v": [1.5, 2.5]}).to_parquet(good, index=False)
    config = OutputConfig(output_format="json", output_destination=str(target))
    write_output(str(good), config, str(target), "t")
    before = target.read_text()
    _strict_json(before) if name.endswith(".json") else [_strict_json(line) for line in before.splitlines()]
    bad = tmp_path / "bad.parquet"
    nan, inf = float("nan"), float("inf")  # through Arrow: pandas would write NaN as null
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "v": [1.5, nan, inf, -inf], "n": [[1.0], [nan], None, []],
                             "ok": [1.0, 2.0, None, 4.0]}), bad)
    with pytest.raises(IntegrationError, match=r"cannot hold NaN or infinite floats, and column\(s\) 'v' \(3 values\), "
                                               r"'n' \(1 value\) hold some, so nothing was written"):
        write_output(str(bad), config, str(target), "t")
    assert target.read_text() == before


def test_the_calculation_the_json_refusal_suggests_makes_nan_and_infinities_null():
    from memories_dagster.engine.expressions import parse_expression
    from memories_dagster.engine.finite import MAX_DOUBLE

    sql = parse_expression(f"v if abs(v) <= {MAX_DOUBLE} else None").to_sql()
    values = [1.5, float("nan"), float("inf"), -float("inf"), -1.7976931348623157e308, None]
    got = duckdb.sql(f"SELECT {sql} FROM (SELECT unnest($values::DOUBLE[]) AS v)", params={"values": values}).fetchall()
    assert [row[0] for row in got] == [1.5, None, None, None, -1.7976931348623157e308, None]


def _laid_out(tmp_path, output: OutputConfig):
    """Integrated data as the integrate step stores it for a Parquet output: in its layout."""
    target = tmp_path / ("laid" if output.partitioning else "laid.parquet")
    con = duckdb.connect()
    con.register("frame", FRAME)
    lay_out(con, "SELECT * FROM frame", {"id": "BIGINT", "category": "VARCHAR", "sold": "DATE", "amount": "DOUBLE"},
            output, "", target, None)
    return str(target), layout_signature(output)


def test_data_laid_out_for_another_output_config_is_not_linked_in(tmp_path):
    """Only `output` re-run after output_config changed: the stored layout is the old spec's."""
    path, signature = _laid_out(tmp_path, OutputConfig(output_format="parquet"))
    write_output(path, OutputConfig(output_format="csv"), str(tmp_path / "out.csv"), "t", laid_out=signature)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv")[["id", "amount"]], FRAME[["id", "amount"]])
    by_category = OutputConfig(output_format="parquet", partitioning={"partition_by": "category", "partition_type": "category"})
    path, signature = _laid_out(tmp_path, by_category)
    by_hash = OutputConfig(output_format="parquet", partitioning={"partition_by": "id", "partition_type": "hash"})
    with pytest.raises(IntegrationError, match="integrated asset again"):
        write_output(path, by_hash, str(tmp_path / "hashed"), "t", laid_out=signature)
    assert not (tmp_path / "hashed").exists()
    write_output(path, by_category, str(tmp_path / "same"), "t", laid_out=signature)
    assert sorted(read_back(str(tmp_path / "same" / "*" / "*.parquet"))["id"]) == [1, 2, 3, 4]


def test_editing_a_laid_out_parquet_output_in_place_leaves_the_stored_asset(tmp_path):
    """r10: pandas rewrites a file in place (truncates the same inode); the stored integrated
    data the output was made from must keep its bytes."""
    path, signature = _laid_out(tmp_path, OutputConfig(output_format="parquet"))
    stored = open(path, "rb").read()
    out = tmp_path / "out.parquet"
    write_output(path, OutputConfig(output_format="parquet"), str(out), "t", laid_out=signature)
    pd.read_parquet(out).head(1).to_parquet(out, index=False)
    assert open(path, "rb").read() == stored
    assert len(pd.read_parquet(path)) == len(FRAME)


def test_partition_keys_with_a_leading_dot_or_underscore_make_files_readers_see(tmp_path, integrated):
    """r3: pyarrow.dataset (like Spark and Hive) skips files whose names start with . or _."""
    out = tmp_path / "out"
    for key in ("_x", ".hidden", "plain", "%5Fx"):
        write_output(integrated, OutputConfig(output_format="csv"), str(out), "t", Window(key))
    assert ds.dataset(out, format="csv").count_rows() == 4 * len(FRAME)


def test_a_partition_run_replaces_the_file_an_earlier_version_named_with_a_leading_underscore(tmp_path, integrated):
    out = tmp_path / "out"
    write_output(integrated, OutputConfig(output_format="csv"), str(out), "t", Window("_x"))
    # as versions before the encoding named it: _x.csv, claimed in the manifest
    os.replace(out / "%5Fx.csv", out / "_x.csv")
    manifest = json.loads((out / ".memories-manifest").read_text())
    (out / ".memories-manifest").write_text(json.dumps({**manifest, "files": ["_x.csv"]}))
    write_output(integrated, OutputConfig(output_format="csv"), str(out), "t", Window("_x"))
    assert visible(out) == ["%5Fx.csv"] and not (out / "_x.csv").exists()

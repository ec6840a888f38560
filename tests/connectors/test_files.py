"""File sources through the extract step: each format, windows, and clear errors."""

import datetime as dt
import json

import pandas as pd
import pytest

from memories_dagster.connectors.files import ConnectorError, file_signatures
from memories_dagster.engine.extract import extract
from memories_dagster.engine.window import Window
from memories_dagster.specs.integration import DataSource

ROWS = pd.DataFrame({"id": [1, 2, 3], "day": ["2024-01-01", "2024-01-02", "2024-01-03"], "v": [1.5, None, 3.0]})


def source(kind: str, path, **extra) -> DataSource:
    return DataSource(source_name="s", source_type=kind, connection_string=str(path), **extra)


def read(tmp_path, src, window=None, column=None) -> pd.DataFrame:
    out = tmp_path / "out.parquet"
    table = extract(src, src.connection_string, str(out), window, column)
    frame = pd.read_parquet(out)
    assert table.rows == len(frame)
    return frame


def test_csv_with_options(tmp_path):
    path = tmp_path / "a.csv"
    ROWS.to_csv(path, sep=";", index=False)
    frame = read(tmp_path, source("csv", path, options={"delimiter": ";"}))
    assert list(frame["id"]) == [1, 2, 3] and frame["v"].isna().sum() == 1


def test_json_array_and_json_lines(tmp_path):
    array, lines = tmp_path / "a.json", tmp_path / "b.jsonl"
    array.write_text(json.dumps(ROWS.to_dict(orient="records")))
    lines.write_text("\n".join(json.dumps(r) for r in ROWS.to_dict(orient="records")))
    assert list(read(tmp_path, source("json", array))["id"]) == [1, 2, 3]
    assert list(read(tmp_path, source("json", lines))["id"]) == [1, 2, 3]


def test_excel_sheet(tmp_path):
    path = tmp_path / "a.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"x": [0]}).to_excel(writer, sheet_name="other", index=False)
        ROWS.to_excel(writer, sheet_name="data", index=False)
    assert list(read(tmp_path, source("excel", path, sheet="data"))["id"]) == [1, 2, 3]


def test_parquet_glob(tmp_path):
    for number in range(2):
        ROWS.to_parquet(tmp_path / f"part{number}.parquet", index=False)
    assert len(read(tmp_path, source("parquet", tmp_path / "part*.parquet"))) == 6


def test_window_by_column_and_by_path_template(tmp_path):
    path = tmp_path / "a.csv"
    ROWS.to_csv(path, index=False)
    window = Window("2024-01-02", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
    assert list(read(tmp_path, source("csv", path), window, "day")["id"]) == [2]
    (tmp_path / "2024-01-02.csv").write_text("id\n7\n")
    templated = source("csv", tmp_path / "{partition_key}.csv")
    out = tmp_path / "t.parquet"
    table = extract(templated, templated.connection_string, str(out), window, "day")
    assert table.meta["window_filter"] == "path template" and table.rows == 1


def test_missing_file_names_source_and_path(tmp_path):
    with pytest.raises(ConnectorError, match=r"source 's': no file at .*nope\.csv"):
        read(tmp_path, source("csv", tmp_path / "nope.csv"))


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ConnectorError, match=r"source 's' \(parquet at .*bad\.parquet\) cannot be read"):
        read(tmp_path, source("parquet", bad))


def test_file_signatures_change_with_content(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n")
    before = file_signatures(str(tmp_path / "*.csv"))
    path.write_text("id\n1\n2\n")
    after = file_signatures(str(tmp_path / "*.csv"))
    assert list(before) == [str(path)] and before != after


def test_fsspec_urls_are_read_and_written(tmp_path):
    """Remote paths go through fsspec; its in-memory filesystem stands in for s3:// and friends."""
    import fsspec

    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    memory = fsspec.filesystem("memory")
    with memory.open("/lake/orders.csv", "w") as handle:
        ROWS.to_csv(handle, index=False)
    frame = read(tmp_path, source("csv", "memory://lake/orders.csv"))
    assert list(frame["id"]) == [1, 2, 3]
    integrated = tmp_path / "i.parquet"
    frame.to_parquet(integrated, index=False)
    config = OutputConfig(partitioning={"partition_by": "day", "partition_type": "category"})
    result = write_output(str(integrated), config, "memory://lake/out", "t")
    assert sorted(memory.ls("/lake/out", detail=False)) == [
        "/lake/out/.memories-manifest", "/lake/out/day=2024-01-01", "/lake/out/day=2024-01-02", "/lake/out/day=2024-01-03"]
    assert len(result["files"]) == 3
    memory.rm("/lake", recursive=True)


def test_a_failed_upload_leaves_the_previous_remote_objects(tmp_path, monkeypatch):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig

    memory = fsspec.filesystem("memory")
    frame = pd.DataFrame({"id": [1, 2], "region": ["north", "south"]})
    integrated = tmp_path / "i.parquet"
    frame.to_parquet(integrated, index=False)
    config = OutputConfig(partitioning={"partition_by": "region", "partition_type": "category"})
    write_output(str(integrated), config, "memory://lake2/out", "t")
    before = {p: memory.cat(p) for p in memory.find("/lake2/out")}
    frame.assign(id=[10, 20]).to_parquet(integrated, index=False)
    real_put, calls = MemoryFileSystem.put_file, []

    def failing_put(self, lpath, rpath, **kwargs):
        calls.append(rpath)
        if len(calls) == 2:
            raise OSError("connection reset")
        return real_put(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", failing_put)
    with pytest.raises(OSError):
        write_output(str(integrated), config, "memory://lake2/out", "t")
    assert {p: memory.cat(p) for p in memory.find("/lake2/out")} == before
    memory.rm("/lake2", recursive=True)

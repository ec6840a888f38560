"""Empty and malformed sources are errors that name the file, the line and the cause, and never
silently replace a good output; an empty source is allowed only where the spec says so."""

import csv
import zipfile

import pandas as pd
import pytest

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.connectors.http import ApiClient, ApiError
from memories_dagster.engine.extract import NO_RECORDS_COLUMN, extract
from memories_dagster.specs.integration import DataSource
from tests.conftest import materialization_of


def source(kind: str, path, **extra) -> DataSource:
    return DataSource(source_name="s", source_type=kind, connection_string=str(path), **extra)


def read(tmp_path, src):
    return extract(src, src.connection_string, str(tmp_path / "out.parquet"))


def python_csv_rows(path) -> list[list[str]]:
    """The oracle: Python's csv module reads the same file."""
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_an_empty_file_is_an_error_unless_allowed(tmp_path, kind):
    empty = tmp_path / f"empty.{kind}"
    empty.write_bytes(b"")
    with pytest.raises(ConnectorError, match=rf"source 's': .*empty\.{kind} is empty \(0 bytes\).*allow_empty: true"):
        read(tmp_path, source(kind, empty))
    table = read(tmp_path, source(kind, empty, allow_empty=True))
    assert table.rows == 0 and list(table.columns) == [NO_RECORDS_COLUMN]  # no invented column0


def test_a_csv_with_a_header_and_no_rows_is_an_empty_source(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("id,name\n")
    with pytest.raises(ConnectorError, match="source 's' has no rows.*allow_empty: true"):
        read(tmp_path, source("csv", path))
    table = read(tmp_path, source("csv", path, allow_empty=True))
    assert table.rows == 0 and list(table.columns) == ["id", "name"]


@pytest.mark.parametrize("lines, bad", [
    (["a,b", "1,2", "3,4,5", "6,7"], 3),  # the reader fell back to one column of whole lines
    (["a,b", "1,2", "6,7", "3,4,5"], 4),  # the reader took the last line as the header: no rows
    (["a;b", "1;2", "3;4;5"], 3),
])
def test_a_ragged_csv_is_an_error_naming_the_line(tmp_path, lines, bad):
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    rows = python_csv_rows(path) if ";" not in lines[0] else [line.split(";") for line in lines]
    widths = [len(r) for r in rows]
    assert widths[bad - 1] != widths[0]  # the oracle agrees which line is off
    with pytest.raises(ConnectorError, match=rf"ragged\.csv.* line {bad} has {widths[bad - 1]} fields where the header has {widths[0]}"):
        read(tmp_path, source("csv", path))


def test_a_preamble_is_named_and_can_be_skipped(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("Monthly report\nid,v\n1,2\n3,4\n")
    widths = [len(r) for r in python_csv_rows(path)]
    first_off = next(i for i, w in enumerate(widths) if w != widths[0]) + 1
    with pytest.raises(ConnectorError, match=rf"line {first_off} has {widths[first_off - 1]} fields where the header has 1.*options.skip"):
        read(tmp_path, source("csv", path))
    table = read(tmp_path, source("csv", path, options={"skip": 1}))
    assert table.rows == len(python_csv_rows(path)) - 2


def test_a_csv_that_is_not_utf8_names_the_line_its_bytes_and_the_fix(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,city\n1,Berlin\n2,Köln\n".encode("latin-1"))
    with pytest.raises(ConnectorError, match=r"latin\.csv.*line 3 is not UTF-8.*K\\xf6ln.*options.encoding") as caught:
        read(tmp_path, source("csv", path))
    assert "Possible" not in str(caught.value) and "\n" not in str(caught.value)
    table = read(tmp_path, source("csv", path, options={"encoding": "latin-1"}))
    assert pd.read_parquet(tmp_path / "out.parquet")["city"].tolist() == ["Berlin", "Köln"] and table.rows == 2


def test_a_value_that_breaks_the_declared_type_keeps_its_column_and_value(tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("id\n" + "".join(f"{i}\n" for i in range(30_000)) + "x7\n")
    with pytest.raises(ConnectorError, match=r'late\.csv.*Line: 30002.*column "id".*"x7"'):
        read(tmp_path, source("csv", path, options={"types": {"id": "BIGINT"}}))


def test_a_zip_that_is_not_a_workbook_says_what_it_is(tmp_path):
    path = tmp_path / "data.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export/data.csv", "a,b\n1,2\n")
    with pytest.raises(ConnectorError, match=r"data\.xlsx\) cannot be read: it is a zip archive, not an Excel workbook.*export/data\.csv"):
        read(tmp_path, source("excel", path))


def test_a_list_body_without_the_records_path_is_an_error(httpserver):
    httpserver.expect_request("/list").respond_with_json([{"id": 1}])
    with pytest.raises(ApiError, match="records_path 'data' is not in the response of .*; its body is a list of 1 items, not an object"):
        list(ApiClient("s", httpserver.url_for("/list"), records_path="data").records())


def test_an_empty_source_does_not_replace_a_good_output(tmp_path, materialize_spec):
    data = tmp_path / "in.csv"
    data.write_text("id,v\n1,a\n2,b\n")
    spec = {"integration_config": {"data_sources": [{"source_name": "s", "source_type": "csv", "connection_string": str(data)}]},
            "output_config": {"output_format": "csv", "output_destination": "output/o.csv"}}
    assert materialize_spec("keep", spec).success
    good = (tmp_path / "output" / "o.csv").read_bytes()
    data.write_bytes(b"")
    import dagster as dg

    with pytest.raises(dg.Failure, match="is empty"):
        materialize_spec("keep", spec)
    assert (tmp_path / "output" / "o.csv").read_bytes() == good
    spec["integration_config"]["data_sources"][0]["allow_empty"] = True
    result = materialize_spec("keep", spec)
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "not_empty")
    assert not check.passed and "no rows" in check.description
    assert materialization_of(result, "keep", "sources", "s").metadata["dagster/row_count"].value == 0

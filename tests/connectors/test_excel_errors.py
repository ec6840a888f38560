"""Files named .xlsx that are no Excel workbook get a message naming the file and what it is."""

import zipfile

import pytest

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.extract import extract
from memories_dagster.specs.integration import DataSource


def _zip_of_other_files(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos/IMG_0001.jpg", bytes(range(256)))
        archive.writestr("notes.txt", "not a sheet")


def _damaged_workbook(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")  # no [Content_Types].xml, no sheets


@pytest.mark.parametrize("make, message", [
    (_zip_of_other_files, r"book\.xlsx\) cannot be read: it is a zip archive, not an Excel workbook: it holds photos/IMG_0001\.jpg, notes\.txt"),
    (lambda p: p.write_text("id,name\n1,a\n"), r"book\.xlsx\) cannot be read: it is not an Excel workbook .*text beginning 'id,name.*set source_type: csv"),
    (lambda p: p.write_bytes(bytes(range(256))), r"book\.xlsx\) cannot be read: it is not an Excel workbook .*begins with the bytes"),
    (_damaged_workbook, r"book\.xlsx\) cannot be read: it is a damaged Excel workbook \(.*Content_Types.*\); save it again"),
    (lambda p: p.write_bytes(b"PK\x03\x04 cut short"), r"book\.xlsx\) cannot be read: it is a damaged Excel workbook"),
])
def test_a_file_that_is_no_workbook_says_what_it_is(tmp_path, make, message):
    path = tmp_path / "book.xlsx"
    make(path)
    source = DataSource(source_name="s", source_type="excel", connection_string=str(path))
    with pytest.raises(ConnectorError, match=message):
        extract(source, str(path), str(tmp_path / "out.parquet"))


def _titled_workbook(path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "data"
    for row in [["Sales report"], ["id", "name", "id"], [1, "a", 7], [2, None, 8], [None, None, None]]:
        book.active.append(row)
    book.save(path)


@pytest.mark.parametrize("options, sheet, message", [
    ({"skiprows": 1}, None, r"cannot be read: options skiprows do not apply to Excel; it takes only header"),
    ({}, "other", r"cannot be read: it has no sheet 'other'; its sheets: data"),
    ({}, 3, r"cannot be read: it has no sheet 3; its sheets: data"),
])
def test_excel_options_and_sheets_that_do_not_exist_are_named(tmp_path, options, sheet, message):
    path = tmp_path / "book.xlsx"
    _titled_workbook(path)
    source = DataSource(source_name="s", source_type="excel", connection_string=str(path), options=options, sheet=sheet)
    with pytest.raises(ConnectorError, match=message):
        extract(source, str(path), str(tmp_path / "out.parquet"))


def test_excel_header_names_the_row_of_column_names(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "book.xlsx"
    _titled_workbook(path)
    source = DataSource(source_name="s", source_type="excel", connection_string=str(path), options={"header": 1})
    extract(source, str(path), str(tmp_path / "out.parquet"))
    # pandas' names for a repeated column; the trailing empty row is no row
    assert pq.read_table(tmp_path / "out.parquet").to_pydict() == {"id": [1, 2], "name": ["a", None], "id.1": [7, 8]}

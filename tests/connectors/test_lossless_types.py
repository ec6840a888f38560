"""File sources change no value on the way in: a value written back is the value read.

Oracle: the input text itself (a CSV written back by DuckDB's COPY must hold the same text),
Python's json module for JSON values, and openpyxl's own cell values for Excel.
"""

import csv
import io
import datetime as dt
import json
from decimal import Decimal

import duckdb
import openpyxl
import pyarrow.parquet as pq
import pytest

from memories_dagster.engine.extract import extract
from memories_dagster.specs.integration import DataSource


def read(tmp_path, kind: str, path, **extra):
    source = DataSource(source_name="s", source_type=kind, connection_string=str(path), **extra)
    out = tmp_path / "out.parquet"
    extract(source, str(path), str(out))
    return pq.read_table(out)


CSV_COLUMNS = {
    "sci": ["1e5", "2.5e-3"],                                   # DuckDB: DOUBLE, written 100000.0
    "answer": ["yes", "no"],                                    # DuckDB: BOOLEAN, written true/false
    "stamp": ["2024-01-01 10:00:00.123456789", "2024-01-02 00:00:00"],  # DuckDB: TIMESTAMP, nanoseconds cut
    "zip": ["007", "12"],                                       # leading zeros
    "flag": ["true", "false"],                                  # canonical booleans keep their type
    "n": ["1", "-9007199254740993"],                            # integers keep their type
    "day": ["2024-02-29", "1999-12-31"],                        # dates keep their type
    "at": ["2024-01-01T10:00:00", "2024-01-02T11:30:00.5"],     # ISO timestamps keep their type
}


def test_csv_values_are_written_back_as_they_were_read(tmp_path):
    path = tmp_path / "in.csv"
    header = list(CSV_COLUMNS)
    lines = [",".join(header)] + [",".join(CSV_COLUMNS[c][i] for c in header) for i in range(2)]
    path.write_text("\n".join(lines) + "\n")
    table = read(tmp_path, "csv", path)
    out = tmp_path / "back.csv"
    con = duckdb.connect()
    con.register("t", table)
    con.execute(f"COPY t TO '{out}' (FORMAT csv, HEADER true)")
    back = list(csv.DictReader(out.open()))
    for column, values in CSV_COLUMNS.items():
        written = [row[column] for row in back]
        if column == "at":  # the T of ISO 8601 is written as the space of SQL timestamps
            written = [w.replace(" ", "T") for w in written]
        assert written == values, column
    types = {f.name: str(f.type) for f in table.schema}
    assert types["n"] == "int64" and types["flag"] == "bool" and types["day"] == "date32[day]"
    assert types["at"].startswith("timestamp") and types["sci"] == types["answer"] == types["stamp"] == types["zip"] == "string"


def test_plain_decimal_numbers_are_exact_decimals(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("price\n3\n1.5\n12345678901234567.25\n-0.01\n")
    table = read(tmp_path, "csv", path)
    assert str(table.schema.field("price").type) == "decimal128(38, 2)"
    assert table.column("price").to_pylist() == [Decimal(v) for v in ("3", "1.5", "12345678901234567.25", "-0.01")]


def test_a_late_value_of_another_kind_keeps_the_column_as_text(tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("id\n" + "".join(f"{i}\n" for i in range(30_000)) + "x7\n")
    values = read(tmp_path, "csv", path).column("id").to_pylist()
    assert values[-1] == "x7" and values[:3] == ["0", "1", "2"]


def test_declared_types_are_taken_as_given(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a\n007\n")
    table = read(tmp_path, "csv", path, options={"types": {"a": "INTEGER"}})
    assert table.column("a").to_pylist() == [7]


def test_json_strings_mixed_with_numbers_lose_no_text(tmp_path):
    records = [{"code": 10115, "stamp": "2024-01-01T10:00:00.123456789", "n": 149.03},
               {"code": "SW1A", "stamp": "2024-01-01T10:00:00.000000001", "n": 2},
               {"code": None, "stamp": None, "n": None}]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(records))
    table = read(tmp_path, "json", path)
    assert table.column("code").to_pylist() == ["10115", "SW1A", None]
    assert table.column("stamp").to_pylist() == [r["stamp"] for r in records]
    assert table.column("n").to_pylist() == [r["n"] for r in records]


@pytest.fixture
def workbook(tmp_path):
    path = tmp_path / "book.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["label", "count", "when"])
    for row in [["NA", 1, dt.datetime(2024, 1, 1, 10, 0, 0, 123456)], ["null", 2, None], [None, None, None],
                ["None", 9007199254740993, dt.datetime(2024, 1, 2)], ["N/A", 4, None], ["", 5, None]]:
        sheet.append(row)
    book.save(path)
    return path


def test_excel_keeps_text_that_looks_like_missing_and_integers_as_integers(tmp_path, workbook):
    table = read(tmp_path, "excel", workbook)
    oracle = [[cell.value for cell in row] for row in openpyxl.load_workbook(workbook).active.iter_rows(min_row=2)]
    assert table.column("label").to_pylist() == [r[0] for r in oracle]
    assert str(table.schema.field("count").type) == "int64"
    assert table.column("count").to_pylist() == [r[1] for r in oracle]
    assert table.column("when").to_pylist() == [r[2] for r in oracle]


def test_api_records_keep_integers_beside_nulls_and_text_beside_numbers(tmp_path, httpserver):
    records = [{"id": 9007199254740993, "zip": 10115, "geo": {"lat": 52.52, "level": 3}},
               {"id": None, "zip": "SW1A", "geo": {"lat": None, "level": None}},
               {"id": 7, "zip": None, "geo": {"lat": 1.5, "level": 9007199254740995}}]
    httpserver.expect_request("/items").respond_with_json(records)
    table = read(tmp_path, "api", httpserver.url_for("/items"))
    oracle = json.loads(json.dumps(records))  # Python's own reading of the JSON
    assert str(table.schema.field("id").type) == "int64"
    assert table.column("id").to_pylist() == [r["id"] for r in oracle]
    assert table.column("geo_level").to_pylist() == [r["geo"]["level"] for r in oracle]
    assert table.column("zip").to_pylist() == ["10115", "SW1A", None]


def test_a_quoted_empty_csv_field_is_an_empty_string_as_postgresql_copy_reads_it(tmp_path, postgres):
    text = 'id,t,n\n1,"",5\n2,,\n3,a,""\n'
    path = tmp_path / "in.csv"
    path.write_text(text)
    table = read(tmp_path, "csv", path).to_pydict()
    # oracle: PostgreSQL's COPY ... CSV: quoted empty = empty string, unquoted empty = NULL
    raw = postgres.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TEMP TABLE quoted_empty (id int, t text, n text)")
        cursor.copy_expert("COPY quoted_empty FROM STDIN WITH (FORMAT csv, HEADER true)", io.StringIO(text))
        cursor.execute("SELECT t, n FROM quoted_empty ORDER BY id")
        expected = cursor.fetchall()
    finally:
        raw.rollback()
        raw.close()
    assert expected == [("", "5"), (None, None), ("a", "")]
    assert list(zip(table["t"], table["n"])) == expected


def test_excel_booleans_stay_booleans_and_beside_other_kinds_are_text_as_excel_shows_them(tmp_path):
    path = tmp_path / "flags.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "n", "m", "mixed", "flag"])
    for row in [[1, 1, 0, 1, True], [2, True, False, "x", False], [3, 2, 5.5, True, None], [4, 3, 6, 2.5, True]]:
        sheet.append(row)
    book.save(path)
    table = read(tmp_path, "excel", path)
    oracle = [[cell.value for cell in row] for row in openpyxl.load_workbook(path).active.iter_rows(min_row=2)]
    assert [type(r[1]) for r in oracle][:2] == [int, bool]  # openpyxl keeps TRUE a boolean
    # what Excel shows for each cell (a boolean as TRUE/FALSE), where a column mixes kinds
    shown = [[("TRUE" if v else "FALSE") if isinstance(v, bool) else None if v is None else str(v) for v in r] for r in oracle]
    assert table.column("n").to_pylist() == [r[1] for r in shown]      # was 1, 1, 2, 3 as int64
    assert table.column("m").to_pylist() == [r[2] for r in shown]      # was 0, 0, 5.5, 6 as double
    assert table.column("mixed").to_pylist() == [r[3] for r in shown]  # TRUE was "1"
    assert str(table.schema.field("flag").type) == "bool"
    assert table.column("flag").to_pylist() == [r[4] for r in oracle]


def test_api_numbers_beside_booleans_are_text_in_json_words(tmp_path, httpserver):
    records = [{"id": 1, "v": 1.5}, {"id": 2, "v": True}]
    httpserver.expect_request("/items").respond_with_json(records)
    table = read(tmp_path, "api", httpserver.url_for("/items"))
    # oracle: the JSON text of each value (Arrow made true the number 1.0)
    assert table.column("v").to_pylist() == [json.dumps(r["v"]) for r in records]


def test_json_integers_past_64_bits_stay_exact_at_any_depth(tmp_path):
    lines = ['{"id":1,"v":18446744073709551617,"n":{"x":18446744073709551615},"f":1.5,"m":{"x":18446744073709551617}}',
             '{"id":2,"v":1,"n":{"x":1},"f":9007199254740993,"m":{"x":1.5}}']
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = read(tmp_path, "json", path).to_pylist()
    oracle = [json.loads(line) for line in lines]  # Python reads JSON integers exactly
    assert [r["v"] for r in rows] == [o["v"] for o in oracle]          # were doubles: 1.8446744073709552e19
    assert [r["n"]["x"] for r in rows] == [o["n"]["x"] for o in oracle]
    assert [r["f"] for r in rows] == [o["f"] for o in oracle]          # 9007199254740993 was ...992
    assert [json.loads(r["m"]) for r in rows] == [o["m"] for o in oracle]  # a nested field that fits no number type: its JSON
    assert not any(isinstance(r[c], float) for r in rows for c in ("v", "f"))


@pytest.mark.parametrize("pattern", ["wide-1.parquet", "wide-*.parquet"])
def test_parquet_decimals_of_more_than_38_digits_are_their_exact_text(tmp_path, pattern):
    import pyarrow as pa

    values = [Decimal("1234567890123456789012345678901234567890.0123456789"), None, Decimal("-0.0000000001")]
    written = pa.table({"id": [1, 2, 3], "d": pa.array(values, pa.decimal256(50, 10))})
    pq.write_table(written, tmp_path / "wide-1.parquet")
    table = read(tmp_path, "parquet", tmp_path / pattern)
    # oracle: pyarrow's own text of each decimal (DuckDB made them doubles: 1.2345678901234567e+39)
    assert table.column("d").to_pylist() == pa.compute.cast(written.column("d"), pa.string()).to_pylist()
    assert [None if t is None else Decimal(t) for t in table.column("d").to_pylist()] == values
    # and as the engine reads the snapshot on (a byte copy of the file was read as doubles there)
    engine_read = duckdb.sql(f"SELECT d FROM read_parquet('{tmp_path / 'out.parquet'}')").fetchall()
    assert [None if d is None else Decimal(d) for (d,) in engine_read] == values

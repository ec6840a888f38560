"""Mainframe records decoded exactly from bytes built in the test from known values."""

import decimal
import struct
import time

import numpy as np
import pytest

from memories_dagster.connectors.copybook import CopybookError, parse_copybook
from memories_dagster.connectors.files import ConnectorError
from memories_dagster.connectors.mainframe import decode, read_mainframe, records
from memories_dagster.specs.integration import DataSource

COPYBOOK = """\
      * customer master record, fixed format with sequence numbers
000100 01  CUSTOMER-RECORD.
000200     05  CUST-ID            PIC 9(6).
000300     05  CUST-NAME          PIC X(10).
000400     05  BALANCE            PIC S9(5)V99 COMP-3.
000500     05  CREDIT-LIMIT       PIC S9(3).
000600     05  VISITS             PIC S9(4) COMP.
000700     05  POINTS             PIC 9(9) BINARY.
000800     05  LAST-ORDERS OCCURS 2 TIMES.
000900         10  ORDER-AMT      PIC S9(3)V9 COMP-3.
001000     05  CODE-RAW           PIC X(4).
001100     05  CODE-NUM REDEFINES CODE-RAW PIC 9(4).
001200     05  FILLER             PIC X(2).
001300         88  IS-ACTIVE      VALUE 'AC'.
"""


def zoned(value: int, digits: int, signed: bool = True) -> bytes:
    text = f"{abs(value):0{digits}d}"
    body = bytes(0xF0 | int(d) for d in text[:-1])
    zone = (0xD0 if value < 0 else 0xC0) if signed else 0xF0
    return body + bytes([zone | int(text[-1])])


def packed(value: int, digits: int) -> bytes:
    size = digits // 2 + 1
    text = f"{abs(value):0{size * 2 - 1}d}"
    nibbles = [int(d) for d in text] + [0x0D if value < 0 else 0x0C]
    return bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, len(nibbles), 2))


def record(cust_id, name, balance_cents, limit, visits, points, orders, code, encoding="cp037"):
    return (
        zoned(cust_id, 6, signed=False) + name[:10].ljust(10).encode(encoding) + packed(balance_cents, 7)
        + zoned(limit, 3) + struct.pack(">h", visits) + struct.pack(">I", points)
        + b"".join(packed(o, 4) for o in orders) + code.encode(encoding) + "AC".encode(encoding)
    )


def test_known_byte_patterns():
    assert packed(-12345, 5) == bytes.fromhex("12345D")
    assert zoned(123, 3) == bytes.fromhex("F1F2C3")


def test_copybook_layout():
    layout = parse_copybook(COPYBOOK)
    fields = {f.name: f for f in layout.fields}
    assert list(fields) == ["cust_id", "cust_name", "balance", "credit_limit", "visits", "points",
                            "order_amt_1", "order_amt_2", "code_raw", "code_num"]
    assert (fields["balance"].offset, fields["balance"].size, fields["balance"].scale) == (16, 4, 2)
    assert (fields["visits"].size, fields["points"].size) == (2, 4)
    assert (fields["order_amt_1"].offset, fields["order_amt_2"].offset, fields["order_amt_2"].size) == (29, 32, 3)
    assert fields["code_num"].offset == fields["code_raw"].offset == 35
    assert layout.length == 41  # FILLER counted, the redefinition not


@pytest.mark.parametrize("encoding", ["cp037", "cp500", "cp1047"])
def test_fixed_records_decode_exactly(encoding):
    fields = parse_copybook(COPYBOOK)
    data = record(1, "MÜLLER & CO", -1234567, -5, -300, 4000000000 - 1, [123, -45], "0042", encoding)
    data = data[:6] + "Müller[1]".ljust(10).encode(encoding) + data[16:]
    data += record(999999, "ZED", 9999999, 999, 32767, 0, [0, 9999], "ABCD", encoding)
    table, invalid = decode(records(data, fields, "fixed", "s"), fields, encoding)
    rows = table.to_pylist()
    assert rows[0] == {
        "cust_id": 1, "cust_name": "Müller[1]", "balance": decimal.Decimal("-12345.67"), "credit_limit": -5,
        "visits": -300, "points": 3999999999, "order_amt_1": decimal.Decimal("12.3"),
        "order_amt_2": decimal.Decimal("-4.5"), "code_raw": "0042", "code_num": 42,
    }
    assert rows[1]["balance"] == decimal.Decimal("99999.99") and rows[1]["code_num"] is None
    assert invalid == {"code_num": 1}  # 'ABCD' is not zoned decimal: null, and counted


def test_invalid_packed_nibble_and_sign_become_null():
    fields = parse_copybook("01 R.\n 05 A PIC S9(3) COMP-3.\n 05 B PIC 9(3) COMP-3.")
    data = bytes.fromhex("123C" "123D") + bytes.fromhex("1A3C" "123C")
    table, invalid = decode(records(data, fields, "fixed", "s"), fields, "cp037")
    assert table.column("a").to_pylist() == [123, None]
    assert table.column("b").to_pylist() == [None, 123]  # unsigned field with a D sign
    assert invalid == {"a": 1, "b": 1}


def test_variable_records_with_rdw():
    fields = parse_copybook("01 R.\n 05 K PIC X(3).\n 05 N PIC S9(2) COMP-3.\n 05 T PIC X(5).")
    full = "KEY".encode("cp037") + packed(-7, 2) + "ABCDE".encode("cp037")
    short = "K2 ".encode("cp037") + packed(5, 2)  # trailing field left out
    data = b"".join(struct.pack(">HH", len(r) + 4, 0) + r for r in (full, short))
    table, _ = decode(records(data, fields, "variable", "s"), fields, "cp037")
    assert table.to_pylist() == [{"k": "KEY", "n": -7, "t": "ABCDE"}, {"k": "K2", "n": 5, "t": ""}]


def test_truncated_records_are_named():
    fields = parse_copybook("01 R.\n 05 K PIC X(4).")
    with pytest.raises(ConnectorError, match="record 3 is truncated: the file has 10 bytes, not a multiple of the copybook's record length 4"):
        records(b"x" * 10, fields, "fixed", "s")
    with pytest.raises(ConnectorError, match="record 2 at byte 8 is truncated: its RDW says 9 bytes, 7 remain"):
        records(struct.pack(">HH", 8, 0) + b"abcd" + struct.pack(">HH", 9, 0) + b"abc", fields, "variable", "s")


@pytest.mark.parametrize(
    "text, message",
    [
        ("01 R.\n 05 A PIC Z(3).", r"PIC Z\(3\) of A is not supported"),
        ("01 R.\n 05 A PIC X(3) COMP-3.", "A: a text PIC cannot be packed"),
        ("01 R.\n 05 A PIC 9(3) COMP-2.", "usage COMP-2 is not supported"),
        ("01 R.\n 05 A OCCURS 1 TO 5 DEPENDING ON N PIC X.", "DEPENDING ON is not supported"),
        ("01 R.\n 05 B REDEFINES NOPE PIC X.", "B REDEFINES NOPE, which is not an earlier item"),
        ("R PIC X.", "does not start with a level number"),
    ],
)
def test_unsupported_copybooks_are_clear(text, message):
    with pytest.raises(CopybookError, match=message):
        parse_copybook(text)


def test_read_from_files_and_missing_copybook(tmp_path):
    (tmp_path / "cust.cpy").write_text(COPYBOOK)
    (tmp_path / "cust.dat").write_bytes(record(7, "ANN", 100, 1, 2, 3, [1, 2], "0001"))
    source = DataSource(source_name="cust", source_type="mainframe", connection_string="x", copybook="y")
    result = read_mainframe(source, str(tmp_path / "cust.dat"), str(tmp_path / "cust.cpy"))
    assert result.table.num_rows == 1 and result.table.column("cust_name").to_pylist() == ["ANN"]
    with pytest.raises(ConnectorError, match="source 'cust': no copybook at .*nope.cpy"):
        read_mainframe(source, str(tmp_path / "cust.dat"), str(tmp_path / "nope.cpy"))


def test_a_million_records_decode_in_well_under_a_minute():
    fields = parse_copybook(COPYBOOK)
    one = np.frombuffer(record(1, "ANN", -1234567, 5, 7, 9, [1, -2], "0042"), dtype=np.uint8)
    matrix = np.tile(one, (1_000_000, 1))
    assert matrix.shape[1] == fields.length
    started = time.perf_counter()
    table, invalid = decode(matrix, fields, "cp037")
    elapsed = time.perf_counter() - started
    assert table.num_rows == 1_000_000 and invalid == {}
    assert table.column("balance")[999_999].as_py() == decimal.Decimal("-12345.67")
    print(f"decoded 1,000,000 records in {elapsed:.2f} s")
    assert elapsed < 60


def test_a_mainframe_source_materializes_through_dagster(tmp_path, materialize_spec):
    import pandas as pd

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cust.cpy").write_text(COPYBOOK)
    (tmp_path / "data" / "cust.dat").write_bytes(
        record(1, "ANN", -1234567, 5, 7, 9, [1, -2], "0042", "cp500") + record(2, "BOB", 250, 1, 1, 1, [0, 0], "0007", "cp500")
    )
    result = materialize_spec("ledger", {
        "integration_config": {"data_sources": [{
            "source_name": "customers", "source_type": "mainframe", "connection_string": "data/cust.dat",
            "copybook": "data/cust.cpy", "encoding": "cp500", "record_format": "fixed"}],
            "transformation_rules": [{"rule_name": "in_credit", "transformation_type": "validation",
                                      "transformation_logic": "balance >= 0"}]},
        "output_config": {"output_format": "parquet", "output_destination": "output/ledger.parquet"},
    })
    assert result.success
    frame = pd.read_parquet(tmp_path / "output" / "ledger.parquet")
    assert frame.to_dict("records")[0]["balance"] == decimal.Decimal("2.50")
    assert frame["cust_name"].tolist() == ["BOB"]  # ANN's negative balance is quarantined


def test_review_edge_cases_of_layouts_and_values():
    # 18-digit packed amounts, duplicate names under groups, indented free format,
    # INDEXED BY, a period inside a literal, two 01 layouts overlaying each other
    text = """
    01  REC-A.
        05  AMOUNT        PIC S9(16)V99 COMP-3.
        05  BILL.
            10  CITY      PIC X(3).
        05  SHIP.
            10  CITY      PIC X(3).
        05  TAGS OCCURS 2 TIMES INDEXED BY TAG-IX.
            10  TAG       PIC X(1).
        05  NOTE          PIC X(2) VALUE 'A. B'.
    01  REC-B.
        05  WHOLE         PIC X(10).
    """
    layout = parse_copybook(text)
    names = [f.name for f in layout.fields]
    assert names == ["amount", "bill_city", "ship_city", "tag_1", "tag_2", "note", "whole"]
    assert layout.length == 10 + 3 + 3 + 2 + 2
    data = packed(-123456789012345678, 18) + "BERPAR".encode("cp037") + "XY".encode("cp037") + "OK".encode("cp037")
    table, invalid = decode(records(data, layout, "fixed", "s"), layout, "cp037")
    row = table.to_pylist()[0]
    assert row["amount"] == decimal.Decimal("-1234567890123456.78") and (row["bill_city"], row["ship_city"]) == ("BER", "PAR")
    assert invalid == {}


def test_binary_fields_keep_their_full_range_and_code_pages_beyond_latin1():
    layout = parse_copybook("01 R.\n 05 S PIC S9(3)V9 COMP.\n 05 U PIC 9(18) COMP.\n 05 T PIC X(1).")
    data = struct.pack(">h", 32000) + struct.pack(">Q", 2**63 + 5) + "€".encode("cp1140")
    table, _ = decode(records(data, layout, "fixed", "s"), layout, "cp1140")
    table.validate(full=True)
    assert table.to_pylist() == [{"s": decimal.Decimal("3200.0"), "u": 2**63 + 5, "t": "€"}]

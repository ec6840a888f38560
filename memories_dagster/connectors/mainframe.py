"""Mainframe record files: fixed-length or RDW variable-length EBCDIC records, decoded exactly.

Every field is decoded for all records at once with numpy: text through the code page's byte
table, zoned and packed decimals nibble by nibble into exact 128-bit decimals (no floats),
binary fields as big-endian integers. Values that are not valid for their type (a bad nibble, a
bad zone) become null and are counted per column.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import ebcdic  # noqa: F401  (registers the cp1047 and other EBCDIC codecs)
import numpy as np
import fsspec
import pyarrow as pa

from memories_dagster.connectors.copybook import CopybookError, Field, Layout, parse_copybook
from memories_dagster.connectors.files import ConnectorError

_POSITIVE = (0x0C, 0x0F, 0x0A, 0x0E)
GATHER_RECORDS = 100_000
_NEGATIVE = (0x0D, 0x0B)


def records(data: bytes, layout: Layout, record_format: str, name: str) -> np.ndarray:
    """The file's records as an (n, record length) byte matrix."""
    width = layout.length
    if record_format == "fixed":
        if len(data) % width:
            complete = len(data) // width
            raise ConnectorError(
                f"source '{name}': record {complete + 1} is truncated: the file has {len(data)} bytes, "
                f"not a multiple of the copybook's record length {width}"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, width)
    # RDW: 2-byte big-endian length (counting the 4 RDW bytes) + 2 reserved bytes. Each length
    # says where the next record starts, so the walk is sequential; decoding below is not.
    starts, lengths, offset = [], [], 0
    unpack = struct.Struct(">HH").unpack_from
    while offset < len(data):
        if offset + 4 > len(data):
            raise ConnectorError(f"source '{name}': record {len(starts) + 1} at byte {offset} has a truncated RDW")
        length, reserved = unpack(data, offset)
        if length < 4 or reserved != 0:
            raise ConnectorError(f"source '{name}': record {len(starts) + 1} at byte {offset} has an invalid RDW (length {length})")
        if offset + length > len(data):
            raise ConnectorError(
                f"source '{name}': record {len(starts) + 1} at byte {offset} is truncated: its RDW says "
                f"{length} bytes, {len(data) - offset} remain"
            )
        starts.append(offset + 4)
        lengths.append(length - 4)
        offset += length
    buffer = np.frombuffer(data, dtype=np.uint8)
    matrix = np.full((len(starts), width), 0x40, dtype=np.uint8)  # short records: EBCDIC spaces
    begin, size = np.array(starts, dtype=np.int64), np.minimum(np.array(lengths, dtype=np.int64), width)
    columns = np.arange(width)
    for first in range(0, len(starts), GATHER_RECORDS):  # bounded index matrices, not n x width at once
        rows = slice(first, first + GATHER_RECORDS)
        mask = columns[None, :] < size[rows, None]
        matrix[rows][mask] = buffer[(begin[rows, None] + columns[None, :])[mask]]
    return matrix


def decode(matrix: np.ndarray, layout: Layout, encoding: str) -> tuple[pa.Table, dict[str, int]]:
    """Decode every field of every record; returns the table and invalid values per column."""
    try:
        characters = bytes(range(256)).decode(encoding)
    except LookupError:
        raise ConnectorError(f"encoding '{encoding}' is unknown; EBCDIC code pages are e.g. cp037, cp500, cp1047, cp1140") from None
    except UnicodeDecodeError:
        raise ConnectorError(f"encoding '{encoding}' is not a single-byte code page") from None
    table = np.array([ord(c) for c in characters], dtype=np.uint32)
    arrays, invalid = {}, {}
    for spec in layout.fields:
        block = matrix[:, spec.offset:spec.offset + spec.size]
        if spec.kind == "text":
            arrays[spec.name] = _text(block, table)
            continue
        if spec.kind == "binary":
            unscaled, bad = _binary(block, spec.signed)
        else:
            unscaled, bad = (_packed if spec.kind == "packed" else _zoned)(block, spec.signed)
        arrays[spec.name] = _decimal(unscaled, bad, spec)
        if bad.any():
            invalid[spec.name] = int(bad.sum())
    return pa.table(arrays), invalid


def _text(block: np.ndarray, table: np.ndarray) -> pa.Array:
    """Bytes to text through the code page's table of code points: any single-byte code page."""
    count, width = block.shape
    code_points = np.ascontiguousarray(table[block])  # (n, width) UCS-4
    strings = code_points.view(f"<U{width}").ravel() if width else np.full(count, "", dtype="<U1")
    return pa.array(np.char.rstrip(strings, " "), type=pa.string())


def _sign(nibble: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(+1/-1 per record, invalid mask) from a sign nibble."""
    negative = np.isin(nibble, _NEGATIVE)
    valid = np.isin(nibble, _POSITIVE) | negative
    if not signed:
        valid &= ~negative
    return np.where(negative, -1, 1), ~valid


def _digits_value(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact integers from a (n, k) matrix of decimal digits, and rows with a bad digit.

    Up to 18 significant digits fit an int64; leading digit positions beyond them (the pad
    nibble of an even-digit COMP-3 field) must be zero.
    """
    bad = np.zeros(len(digits), dtype=bool)
    if digits.shape[1] > 18:
        bad = (digits[:, :-18] != 0).any(axis=1)
        digits = digits[:, -18:]
    powers = 10 ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
    return digits.astype(np.int64) @ powers, bad | (digits > 9).any(axis=1)


def _zoned(block: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    zones, digits = block >> 4, block & 0x0F
    value, bad = _digits_value(digits)
    bad |= (zones[:, :-1] != 0x0F).any(axis=1)  # every zone but the last is F
    sign, bad_sign = _sign(zones[:, -1], signed)
    return value * sign, bad | bad_sign


def _packed(block: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    nibbles = np.empty((block.shape[0], block.shape[1] * 2), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = block >> 4, block & 0x0F
    value, bad = _digits_value(nibbles[:, :-1])
    sign, bad_sign = _sign(nibbles[:, -1], signed)
    return value * sign, bad | bad_sign


def _binary(block: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    dtype = {2: "i2", 4: "i4", 8: "i8"}[block.shape[1]]
    values = np.ascontiguousarray(block).view(f">{dtype if signed else 'u' + dtype[1:]}").ravel()
    # an unsigned doubleword may exceed int64: kept as uint64 (see _decimal)
    return values.astype(np.uint64 if values.dtype.kind == "u" and values.itemsize == 8 else np.int64), np.zeros(len(values), dtype=bool)


def _decimal(unscaled: np.ndarray, bad: np.ndarray, spec: Field) -> pa.Array:
    """Integers for scale 0, else exact decimal128(precision, scale) from the unscaled values."""
    mask = pa.array(bad) if bad.any() else None
    if spec.scale == 0:
        kind = pa.uint64() if unscaled.dtype == np.uint64 else pa.int64()
        return pa.array(unscaled, type=kind, mask=bad if bad.any() else None)
    # decimal128 is a 16-byte little-endian two's complement integer: low word, then the sign.
    words = np.empty((len(unscaled), 2), dtype="<i8")
    words[:, 0] = unscaled.view(np.int64) if unscaled.dtype == np.uint64 else unscaled
    words[:, 1] = 0 if unscaled.dtype == np.uint64 else np.where(unscaled < 0, -1, 0)
    validity = None if mask is None else pa.array(~bad).buffers()[1]
    # a binary field holds more than its PIC digits (S9(4) COMP: up to 32767): size the precision by bytes
    precision = {2: 5, 4: 10, 8: 20}[spec.size] if spec.kind == "binary" else max(spec.digits, spec.scale, 1)
    return pa.Array.from_buffers(
        pa.decimal128(precision, spec.scale), len(unscaled),
        [validity, pa.py_buffer(words.tobytes())], null_count=int(bad.sum()),
    )


@dataclass
class MainframeRecords:
    """Decoded records and the count of invalid values per column."""

    table: pa.Table
    invalid: dict[str, int]


def read_mainframe(source, path: str, copybook_path: str, storage_options: dict | None = None) -> MainframeRecords:
    """Read and decode a mainframe source's data file through its copybook."""
    name, storage_options = source.source_name, storage_options or {}
    try:
        with fsspec.open(copybook_path, "r", encoding="utf-8", **storage_options) as handle:
            layout = parse_copybook(handle.read())
    except FileNotFoundError:
        raise ConnectorError(f"source '{name}': no copybook at {copybook_path}") from None
    except CopybookError as exc:
        raise ConnectorError(f"source '{name}': copybook {copybook_path}: {exc}") from None
    try:
        with fsspec.open(path, "rb", **storage_options) as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConnectorError(f"source '{name}': no file at {path}") from None
    table, invalid = decode(records(data, layout, source.record_format, name), layout, source.encoding)
    return MainframeRecords(table, invalid)

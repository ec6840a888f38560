"""Values that some destinations cannot hold: NaN and the infinities, and decimals of more
digits than BSON's Decimal128 keeps.

JSON has neither (DuckDB writes the bare tokens NaN and Infinity, which no strict JSON reader
accepts), MariaDB/MySQL and SQLite have no NaN. Rather than write something else in their
place, such outputs are refused with the columns and counts (see :func:`refuse_non_finite`).
"""

from __future__ import annotations

import decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from memories_dagster.engine.errors import IntegrationError

#: the largest finite double: ``abs(x) <= MAX_DOUBLE`` is false for NaN and the infinities
MAX_DOUBLE = "1.7976931348623157e308"


def _holds_floats(arrow_type: pa.DataType) -> bool:
    if pa.types.is_floating(arrow_type):
        return True
    return any(_holds_floats(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _floats_in(array: pa.Array) -> list[pa.Array]:
    """Every float array inside ``array``, at any depth of lists, structs and maps."""
    if pa.types.is_floating(array.type):
        return [array]
    if isinstance(array, pa.ChunkedArray):
        return [found for chunk in array.chunks for found in _floats_in(chunk)]
    if pa.types.is_map(array.type):
        return _floats_in(array.keys) + _floats_in(array.items)
    if pa.types.is_struct(array.type):
        return [found for child in array.flatten() for found in _floats_in(child)]  # flatten: with the struct's nulls
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        return _floats_in(array.flatten())
    return []


def non_finite_counts(parquet_path: str, infinities: bool = True) -> dict[str, int]:
    """Column -> how many NaN (and, with ``infinities``, infinite) floats it holds, at any
    depth of nesting; only columns that hold some."""
    parquet = pq.ParquetFile(parquet_path)
    columns = [f.name for f in parquet.schema_arrow if _holds_floats(f.type)]
    counts: dict[str, int] = {}
    if not columns:
        return counts
    for batch in parquet.iter_batches(columns=columns):
        for name, column in zip(batch.schema.names, batch.columns):
            for floats in _floats_in(column):
                odd = pc.is_nan(floats)
                if infinities:
                    odd = pc.or_(odd, pc.is_inf(floats))
                counts[name] = counts.get(name, 0) + (pc.sum(odd.cast(pa.int64())).as_py() or 0)
    return {name: n for name, n in counts.items() if n}


def refuse_non_finite(parquet_path: str, destination: str, infinities: bool = True) -> None:
    """Raise an error naming each column that holds NaN (or, with ``infinities``, an infinity)
    for ``destination``, which cannot hold them; nothing otherwise."""
    counts = non_finite_counts(parquet_path, infinities)
    if not counts:
        return
    kinds = "NaN or infinite" if infinities else "NaN"
    listed = ", ".join(f"'{name}' ({n} value{'s' if n > 1 else ''})" for name, n in counts.items())
    first = next(iter(counts))
    raise IntegrationError(
        f"{destination} cannot hold {kinds} floats, and column(s) {listed} hold some, so nothing was "
        f"written rather than write them as something else; write them where they can be kept "
        f"(Parquet or CSV files, PostgreSQL), or make them null first with a calculation rule such as "
        f"`{first} if abs({first}) <= {MAX_DOUBLE} else None`"
    )


#: significant digits of BSON's Decimal128 (IEEE 754-2008 decimal128)
BSON_DECIMAL_DIGITS = 34


def refuse_wide_decimals(parquet_path: str, destination: str, digits: int = BSON_DECIMAL_DIGITS) -> None:
    """Raise an error naming each decimal column holding values of more than ``digits``
    digits (scale included) for ``destination``, which would have to round them; checked before
    anything is written (MongoDB writes are not one transaction)."""
    parquet = pq.ParquetFile(parquet_path)
    wide = [f for f in parquet.schema_arrow if pa.types.is_decimal(f.type) and f.type.precision > digits]
    counts: dict[str, int] = {}
    for field in wide:
        limit = pa.scalar(decimal.Decimal(10) ** (digits - field.type.scale), field.type)
        for batch in parquet.iter_batches(columns=[field.name]):
            over = pc.greater_equal(pc.abs(batch.column(0)), limit)
            counts[field.name] = counts.get(field.name, 0) + (pc.sum(over.cast(pa.int64())).as_py() or 0)
    listed = ", ".join(f"'{name}' ({n} value{'s' if n > 1 else ''})" for name, n in counts.items() if n)
    if listed:
        raise IntegrationError(
            f"{destination} keeps decimals of at most {digits} digits, and column(s) {listed} hold longer "
            "ones, so nothing was written rather than round them; write them where they can be kept "
            "(Parquet or CSV files, a SQL database), or round them first with a formatting rule such as `round:2`"
        )

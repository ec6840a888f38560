"""Database result columns as Arrow columns of the database's own types.

A query's columns are typed once, from the driver's description of the result (PostgreSQL type
OIDs, MySQL/MariaDB field types), so every chunk of a large read gets the same schema: a BIGINT
stays a 64-bit integer even in a chunk where it is NULL, a NUMERIC stays a decimal, a TIMESTAMP
WITH TIME ZONE stays an instant with its microseconds. SQLite declares no result types, so its
columns take the types of their values (INTEGER, REAL, TEXT, BLOB), also exact.

Decimals: NUMERIC(p, s) with p <= 38 becomes DECIMAL(p, s). NUMERIC without a precision, or
with one past DuckDB's 38 digits, becomes DECIMAL(38, s) with s the largest scale among its
values, when every value fits in it; otherwise (or when a value is NaN or infinite) the column
is text holding each value exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from memories_dagster.connectors.inference import typed_by_values

MAX_DECIMAL_DIGITS = 38  # DuckDB's widest DECIMAL

_POSTGRES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 26: pa.int64(),
    700: pa.float32(), 701: pa.float64(),
    25: pa.string(), 1043: pa.string(), 1042: pa.string(), 19: pa.string(),
    114: pa.string(), 3802: pa.string(), 2950: pa.string(),  # json, jsonb, uuid: their text
    1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
    1083: pa.time64("us"), 1186: pa.duration("us"), 17: pa.binary(),
}
_POSTGRES_NUMERIC = 1700
_POSTGRES_AS_TEXT = (114, 3802, 2950)  # read as the server's text, not parsed into dicts or UUIDs

# pymysql FIELD_TYPE codes; unsigned integers take the next wider (or unsigned) type
_MYSQL = {
    1: (pa.int8(), pa.int16()), 2: (pa.int16(), pa.int32()), 9: (pa.int32(), pa.int32()),
    3: (pa.int32(), pa.int64()), 8: (pa.int64(), pa.uint64()), 13: (pa.int16(), pa.int16()),
    4: (pa.float32(), pa.float32()), 5: (pa.float64(), pa.float64()),
    7: (pa.timestamp("us", tz="UTC"),) * 2, 12: (pa.timestamp("us"), pa.timestamp("us")),  # TIMESTAMP: an instant (session in UTC)
    10: (pa.date32(), pa.date32()), 14: (pa.date32(), pa.date32()),
    11: (pa.duration("us"), pa.duration("us")), 16: (pa.binary(), pa.binary()), 245: (pa.string(), pa.string()),
}
_MYSQL_DECIMAL = (0, 246)
_MYSQL_TEXT = (15, 249, 250, 251, 252, 253, 254)  # strings and blobs: binary when the charset is 63
_MYSQL_BINARY_CHARSET = 63
_MYSQL_UNSIGNED_FLAG = 32


@dataclass
class _Decimal:
    """A decimal column read as exact text, cast once the whole result has been seen."""

    declared: tuple[int, int] | None
    integer_digits: int = 0
    scale: int = 0
    text_only: bool = False

    def target(self) -> str:
        if self.declared and self.declared[0] <= MAX_DECIMAL_DIGITS:
            return f"DECIMAL({self.declared[0]}, {self.declared[1]})"
        if self.text_only or self.integer_digits + self.scale > MAX_DECIMAL_DIGITS:
            return "VARCHAR"
        return f"DECIMAL({MAX_DECIMAL_DIGITS}, {self.scale})"


@dataclass
class ResultTypes:
    """The Arrow type of each column of one query's result; ``None``: the values' own type."""

    names: list[str]
    types: list[pa.DataType | None]
    decimals: dict[str, _Decimal] = field(default_factory=dict)
    geometries: list[str] = field(default_factory=list)

    def table(self, rows: list) -> pa.Table:
        """One chunk of rows (tuples from the driver) as an Arrow table of the result's types."""
        values = list(zip(*rows)) if rows else [()] * len(self.names)
        arrays = []
        for name, kind, column in zip(self.names, self.types, values):
            if name in self.decimals:
                arrays.append(self._decimal_text(name, column))
            elif name in self.geometries:
                arrays.append(_wkt(pa.array(column, pa.string())))
            elif kind is not None:
                arrays.append(pa.array(column, kind))
            else:
                arrays.append(typed_by_values(list(column)))  # SQLite: a column may mix kinds
        return pa.Table.from_arrays(arrays, names=self.names)

    def casts(self) -> dict[str, str]:
        """Column -> DuckDB type of the decimal columns, now that every chunk has been read."""
        return {name: plan.target() for name, plan in self.decimals.items()}

    def _decimal_text(self, name: str, column: tuple) -> pa.Array:
        plan = self.decimals[name]
        try:
            exact = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # NaN or infinity: no decimal holds them
            plan.text_only = True
            return _as_text(column)
        if pa.types.is_decimal(exact.type):
            plan.integer_digits = max(plan.integer_digits, exact.type.precision - exact.type.scale)
            plan.scale = max(plan.scale, exact.type.scale)
        elif not pa.types.is_null(exact.type):  # a driver that gave floats or text: keep them as text
            plan.text_only = True
        return pc.cast(exact, pa.string())


def result_types(dialect: str, description, fields=None, geometry_oids: frozenset[int] = frozenset()) -> ResultTypes:
    """The types of a result described by the DBAPI ``description`` (and, for pymysql, the
    result's ``fields``, which carry the unsigned flag and charset)."""
    names = [column[0] for column in description]
    types: list[pa.DataType | None] = []
    decimals: dict[str, _Decimal] = {}
    geometries: list[str] = []
    for i, column in enumerate(description):
        name, code = column[0], column[1]
        kind = None
        if dialect == "postgresql":
            if code == _POSTGRES_NUMERIC:
                precision, scale = column[4], column[5]
                declared = (precision, scale) if precision is not None and 0 < precision < 1000 else None
                decimals[name] = _Decimal(declared)
            elif code in geometry_oids:
                geometries.append(name)
            kind = _POSTGRES.get(code)
        elif dialect in ("mysql", "mariadb"):
            info = fields[i] if fields else None
            unsigned = bool(info and info.flags & _MYSQL_UNSIGNED_FLAG)
            if code in _MYSQL_DECIMAL:
                length, scale = column[4], column[5] or 0
                decimals[name] = _Decimal((length - (1 if scale else 0) - (0 if unsigned else 1), scale))
            elif code in _MYSQL_TEXT:
                kind = pa.binary() if info and info.charsetnr == _MYSQL_BINARY_CHARSET else pa.string()
            elif code in _MYSQL:
                kind = _MYSQL[code][1 if unsigned else 0]
        types.append(kind)
    return ResultTypes(names, types, decimals, geometries)


def postgres_text_casters(dbapi_connection) -> None:
    """Have psycopg2 hand json, jsonb and uuid values over as the server's text."""
    import psycopg2.extensions as ext  # on use: only PostgreSQL sources need it

    as_text = ext.new_type(_POSTGRES_AS_TEXT, "MEMORIES_AS_TEXT", lambda value, cursor: value)
    ext.register_type(as_text, dbapi_connection)


def _as_text(column: tuple) -> pa.Array:
    return pa.array([None if value is None else str(value) for value in column], pa.string())


def _wkt(values: pa.Array) -> pa.Array:
    """Hex EWKB geometries (as PostGIS sends them) as WKT text, all at once (shapely), nulls kept."""
    import shapely  # on use: only PostGIS sources need it

    shapes = shapely.from_wkb(values.to_numpy(zero_copy_only=False))
    return pa.array(shapely.to_wkt(shapes, rounding_precision=-1), pa.string())

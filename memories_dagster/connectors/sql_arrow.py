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

Dates, times and intervals arrive as the database's own text and are cast once the whole result
has been seen: a DATE, TIMESTAMP, TIMESTAMPTZ or TIME column whose every value the Arrow type
holds exactly takes that type; a column holding any other value (PostgreSQL's 'infinity', a
'24:00:00', a BC or five-digit year, a MariaDB TIME past a day or negative) stays that text, so no
value is rewritten into a real-looking one. A PostgreSQL TIMETZ (an offset no Arrow time keeps)
and INTERVAL (months are not a count of days) are always their text ('12:00:00+05:30', '1 mon').
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
    1083: pa.time64("us"), 1266: pa.string(), 1186: pa.string(), 17: pa.binary(),  # timetz, interval: text
}
_POSTGRES_NUMERIC = 1700
# read as the server's text, not parsed into dicts, UUIDs, or datetimes that clamp 'infinity'
_POSTGRES_AS_TEXT = (114, 3802, 2950, 1082, 1114, 1184, 1083, 1266, 1186)
_POSTGRES_ARRAYS_AS_TEXT = (1270, 1187)  # timetz[], interval[]

# The text of the values a date/time type holds exactly (ISO output); any other text stays text.
_DIGITS = r"\d{4}-\d\d-\d\d"
_CLOCK = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
_FITS = {
    "DATE": f"^{_DIGITS}$", "TIMESTAMP": f"^{_DIGITS} {_CLOCK}$",
    "TIMESTAMPTZ": f"^{_DIGITS} {_CLOCK}[+-]\\d\\d(?::\\d\\d)?$", "TIME": f"^{_CLOCK}$",
}
_POSTGRES_TEMPORAL = {1082: "DATE", 1114: "TIMESTAMP", 1184: "TIMESTAMPTZ", 1083: "TIME"}
_MYSQL_TIME = 11  # read as its text: '838:59:59' and '-01:00:00' are durations, not times of day

# pymysql FIELD_TYPE codes; unsigned integers take the next wider (or unsigned) type
_MYSQL = {
    1: (pa.int8(), pa.int16()), 2: (pa.int16(), pa.int32()), 9: (pa.int32(), pa.int32()),
    3: (pa.int32(), pa.int64()), 8: (pa.int64(), pa.uint64()), 13: (pa.int16(), pa.int16()),
    4: (pa.float32(), pa.float32()), 5: (pa.float64(), pa.float64()),
    7: (pa.timestamp("us", tz="UTC"),) * 2, 12: (pa.timestamp("us"), pa.timestamp("us")),  # TIMESTAMP: an instant (session in UTC)
    10: (pa.date32(), pa.date32()), 14: (pa.date32(), pa.date32()),
    11: (pa.time64("us"), pa.time64("us")), 16: (pa.binary(), pa.binary()), 245: (pa.string(), pa.string()),
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
class _Temporal:
    """A date/time column read as the database's text, cast to ``kind`` unless a value does not fit."""

    kind: str
    text_only: bool = False

    def target(self) -> str:
        return "VARCHAR" if self.text_only else self.kind


@dataclass
class ResultTypes:
    """The Arrow type of each column of one query's result; ``None``: the values' own type."""

    names: list[str]
    types: list[pa.DataType | None]
    decimals: dict[str, _Decimal] = field(default_factory=dict)
    geometries: list[str] = field(default_factory=list)
    temporals: dict[str, _Temporal] = field(default_factory=dict)

    def table(self, rows: list) -> pa.Table:
        """One chunk of rows (tuples from the driver) as an Arrow table of the result's types."""
        values = list(zip(*rows)) if rows else [()] * len(self.names)
        arrays = []
        for name, kind, column in zip(self.names, self.types, values):
            if name in self.decimals:
                arrays.append(self._decimal_text(name, column))
            elif name in self.temporals:
                arrays.append(self._temporal_text(name, column))
            elif name in self.geometries:
                arrays.append(_wkt(pa.array(column, pa.string())))
            elif kind is not None:
                arrays.append(pa.array(column, kind))
            else:
                arrays.append(typed_by_values(list(column)))  # SQLite: a column may mix kinds
        return pa.Table.from_arrays(arrays, names=self.names)

    def casts(self) -> dict[str, str]:
        """Column -> DuckDB type of the decimal and date/time columns, now that every chunk has been read."""
        plans = {**self.decimals, **self.temporals}
        return {name: plan.target() for name, plan in plans.items()}

    def _temporal_text(self, name: str, column: tuple) -> pa.Array:
        plan = self.temporals[name]
        text = pa.array(column, pa.string())
        if pc.any(pc.invert(pc.match_substring_regex(text, _FITS[plan.kind]))).as_py():
            plan.text_only = True
        return text

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
    temporals: dict[str, _Temporal] = {}
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
            elif code in _POSTGRES_TEMPORAL:
                temporals[name] = _Temporal(_POSTGRES_TEMPORAL[code])
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
            if code == _MYSQL_TIME:
                temporals[name] = _Temporal("TIME")
        types.append(kind)
    return ResultTypes(names, types, decimals, geometries, temporals)


def postgres_text_casters(dbapi_connection) -> None:
    """Have psycopg2 hand json, jsonb, uuid, date/time and interval values over as the server's
    text, in the ISO output that ``_FITS`` reads and PostgreSQL's own interval style ('1 mon')."""
    import psycopg2.extensions as ext  # on use: only PostgreSQL sources need it

    as_text = ext.new_type(_POSTGRES_AS_TEXT, "MEMORIES_AS_TEXT", lambda value, cursor: value)
    ext.register_type(as_text, dbapi_connection)
    # arrays of timetz and interval: lists of each element's text, as their single values are
    ext.register_type(ext.new_array_type(_POSTGRES_ARRAYS_AS_TEXT, "MEMORIES_ARRAY_AS_TEXT", as_text), dbapi_connection)
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'")


def mysql_text_casters(dbapi_connection) -> None:
    """Have pymysql hand TIME values over as the server's text, not as a timedelta."""
    dbapi_connection.decoders[_MYSQL_TIME] = str


def _as_text(column: tuple) -> pa.Array:
    return pa.array([None if value is None else str(value) for value in column], pa.string())


def _wkt(values: pa.Array) -> pa.Array:
    """Hex EWKB geometries (as PostGIS sends them) as WKT text, all at once (shapely), nulls kept."""
    import shapely  # on use: only PostGIS sources need it

    shapes = shapely.from_wkb(values.to_numpy(zero_copy_only=False))
    return pa.array(shapely.to_wkt(shapes, rounding_precision=-1), pa.string())

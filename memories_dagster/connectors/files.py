"""File sources (csv, json, parquet, excel) and file outputs, local or on any fsspec URL.

Reads go through DuckDB's scanners (parallel, streaming, typed) or, for Excel, openpyxl. Outputs are written in their formats here and committed by :mod:`file_outputs`.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import itertools
import os
import re
import zipfile
from pathlib import Path

import duckdb
import fsspec

from memories_dagster.connectors.inference import declares_types, lossless_csv_sql, lossless_json_sql, typed_by_values
from memories_dagster.engine.duck import sql_string
from memories_dagster.engine.errors import error_detail


class ConnectorError(RuntimeError):
    """A source or destination that cannot be read or written; the message names it."""


class UnavailableError(ConnectorError):
    """A source or destination that did not answer: unreachable, timed out, overloaded or
    disconnected. Trying again later may work, so runs retry it under their retry policy."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the other side did not answer
    (rather than that the declaration or the data are wrong)."""
    kinds = _transient_kinds()
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        if isinstance(current, kinds):
            return True
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def _transient_kinds() -> tuple[type[BaseException], ...]:
    """Network failures of the libraries the connectors use (those installed)."""
    kinds: list[type[BaseException]] = [UnavailableError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx

        kinds.append(httpx.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        kinds += [requests.ConnectionError, requests.Timeout]
    with contextlib.suppress(ImportError):
        import aiohttp

        kinds += [aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError]
    with contextlib.suppress(ImportError):
        from botocore import exceptions as botocore

        kinds += [botocore.EndpointConnectionError, botocore.ConnectionClosedError, botocore.ReadTimeoutError,
                  botocore.ConnectTimeoutError]
    return tuple(kinds)


_CSV_OPTION_NAMES = {"delimiter": "delim", "separator": "sep"}
_FORMAT_SUFFIX = {"csv": ".csv", "json": ".json", "parquet": ".parquet"}
NO_RECORDS_COLUMN = "_no_records"  # the one column of a source with neither rows nor columns
PART_SEPARATOR = "--"  # <partition stem>--<n>.<suffix>: the stem is what a partition run replaces


def stem_of(file_name: str) -> str:
    """The partition stem of a file written as ``<stem>--<n>.<suffix>``."""
    return file_name.rsplit(PART_SEPARATOR, 1)[0]


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL served by an fsspec filesystem other than the local one."""
    return "://" in path and not path.startswith("file://")


def _use_filesystem(con: duckdb.DuckDBPyConnection, path: str, storage_options: dict) -> None:
    if is_remote(path):
        protocol = path.split("://", 1)[0]
        try:
            con.register_filesystem(fsspec.filesystem(protocol, **storage_options))
        except (ImportError, ValueError) as exc:
            raise ConnectorError(f"cannot open {protocol}:// paths: {exc}") from None


# PostgreSQL COPY's CSV reading, which DuckDB's default departs from: a quoted empty field ("")
# is an empty string, only an unquoted empty field is NULL.
_CSV_DEFAULTS = {"allow_quoted_nulls": False}


def _csv_options(options: dict[str, object]) -> dict[str, object]:
    """Reader options of a CSV file: the user's, and ``_CSV_DEFAULTS`` where they do not say."""
    given = {name.lower() for name in options}
    return {**{k: v for k, v in _CSV_DEFAULTS.items() if k not in given}, **options}


def _options_sql(options: dict[str, object]) -> str:
    return "".join(f", {_CSV_OPTION_NAMES.get(name, name)} = {_option_value(value)}" for name, value in options.items())


def _option_value(value: object) -> str:
    """A reader option's value as a DuckDB literal: mappings (``types: {id: VARCHAR}``) as
    structs, lists as lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{sql_string(str(k))}: {_option_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_option_value(v) for v in value) + "]"
    return sql_string(str(value))


def scan_sql(source_type: str, path: str, options: dict[str, object]) -> str:
    """The DuckDB table function that reads ``path`` as ``source_type``."""
    extra = _options_sql(_csv_options(options) if source_type == "csv" else options)
    if source_type == "csv":
        return f"read_csv({sql_string(path)}, header = true, auto_detect = true{extra})"
    if source_type == "json":
        return f"read_json({sql_string(path)}, format = 'auto'{extra})"
    if source_type in ("parquet", "earth"):  # an earth source is an analyzer's statistics table
        return f"read_parquet({sql_string(path)}, union_by_name = true{extra})"
    raise ConnectorError(f"no file scanner for source_type '{source_type}'")


def _lossless_select(con: duckdb.DuckDBPyConnection, source_type: str, path: str, options: dict[str, object]) -> str:
    """The SELECT reading a file with types that change no value (see ``inference``), unless the
    options declare the types."""
    scan = scan_sql(source_type, path, options)
    if source_type not in ("csv", "json") or declares_types(options):
        return f"SELECT * FROM {scan}"
    if source_type == "csv":
        extra = _options_sql(_csv_options(options))
        return lossless_csv_sql(con, scan, f"read_csv({sql_string(path)}, header = true, auto_detect = true, all_varchar = true{extra})")
    extra = _options_sql(options)
    layout = sql_string(str(options.get("format", "auto")))
    objects = f"read_json_objects({sql_string(path)}, format = {layout})"

    def typed_as(types: dict[str, str]) -> str:
        declared = ", ".join(f"{sql_string(c)}: {sql_string(t)}" for c, t in types.items())
        return f"read_json({sql_string(path)}, format = 'auto', columns = {{{declared}}}{extra})"

    return lossless_json_sql(con, scan, objects, typed_as)


def open_file_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source_type: str,
    path: str,
    options: dict[str, object],
    sheet: str | int | None = None,
    storage_options: dict | None = None,
    allow_empty: bool = False,
) -> str:
    """Make view ``name`` over the file(s) at ``path``; return the view's name.

    ``storage_options`` (credentials, endpoint) open remote paths through fsspec. Files of
    0 bytes are an error unless ``allow_empty`` (then the view has no rows and the column
    ``_no_records``); so is a CSV whose lines do not all have the header's number of fields.
    """
    storage_options = storage_options or {}
    local = [] if is_remote(path) else sorted(glob.glob(path))
    if not is_remote(path) and not local:
        raise ConnectorError(f"source '{name}': no file at {path}")
    where = f"source '{name}' ({source_type} at {path})"
    if local and source_type in ("csv", "json") and all(os.path.getsize(f) == 0 for f in local):
        if not allow_empty:
            raise ConnectorError(
                f"source '{name}': {path} is empty (0 bytes), so it has neither columns nor rows; if an "
                "empty file is normal here, set allow_empty: true on the source"
            )
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT NULL::BOOLEAN AS {NO_RECORDS_COLUMN} WHERE FALSE')
        return name
    _use_filesystem(con, path, storage_options)
    try:
        if source_type == "excel":
            _open_excel(con, name, path, options, sheet, storage_options)
        elif source_type == "parquet" and _open_wide_decimals(con, name, path, storage_options):
            pass
        else:
            con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {_lossless_select(con, source_type, path, options)}')
            con.execute(f'SELECT * FROM "{name}" LIMIT 0')
            if source_type == "csv" and local:
                _check_csv_shape(con, local[0], options)
    except FileNotFoundError:
        raise ConnectorError(f"source '{name}': no file at {path}") from None
    except duckdb.Error as exc:
        raise ConnectorError(f"{where} cannot be read: {_explained(exc, local, options)}") from None
    except (ValueError, KeyError, OSError) as exc:
        raise ConnectorError(f"{where} cannot be read: {error_detail(exc)}") from None
    return name


def _open_excel(con: duckdb.DuckDBPyConnection, name: str, path: str, options: dict[str, object],
                sheet: str | int | None, storage_options: dict) -> None:
    import pyarrow as pa  # on use: the code location loads this module

    unknown = sorted(set(options) - {"header"})
    if unknown:
        raise ValueError(f"options {', '.join(unknown)} do not apply to Excel; it takes only header (the row "
                         "holding the column names, counted from 0; default 0)")
    with fsspec.open(path, "rb", **storage_options) as handle:
        _check_workbook(handle)
        handle.seek(0)
        rows = _sheet_rows(handle, sheet, int(options.get("header", 0)))
    while rows and all(v is None for v in rows[-1]):  # pandas' reading too: trailing empty rows are no rows
        rows.pop()
    columns = [c for c in itertools.zip_longest(*rows) if any(v is not None for v in c)]
    names = _column_names([c[0] for c in columns])
    # booleans beside other kinds as Excel shows them (pandas made TRUE the number 1)
    arrays = [typed_by_values(list(c[1:]), booleans=("TRUE", "FALSE")) for c in columns]
    con.register(f"{name}__excel", pa.Table.from_arrays(arrays, names=names))
    con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * FROM "{name}__excel"')


def _sheet_rows(handle, sheet: str | int | None, header: int) -> list[tuple]:
    """The cells of a sheet from its header row on, as openpyxl reads them: only an empty cell is
    None, and each value keeps its kind (pandas made the text NA, null, None, N/A missing, and
    a TRUE beside numbers the number 1)."""
    import openpyxl  # on use, as pyarrow

    try:
        book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except (KeyError, zipfile.BadZipFile, EOFError) as exc:  # openpyxl's words for a broken archive
        raise ValueError(f"it is a damaged Excel workbook ({error_detail(exc)}); save it again from Excel") from None
    try:
        chosen = sheet if sheet is not None else 0
        if (chosen not in book.sheetnames) if isinstance(chosen, str) else not 0 <= chosen < len(book.sheetnames):
            raise ValueError(f"it has no sheet {chosen!r}; its sheets: {', '.join(book.sheetnames)}")
        page = book[chosen] if isinstance(chosen, str) else book.worksheets[chosen]
        return list(page.iter_rows(min_row=header + 1, values_only=True))
    finally:
        book.close()


def _column_names(header: list[object]) -> list[str]:
    """Column names from a header row as pandas makes them: an empty cell ``Unnamed: <i>``, a
    repeated name ``<name>.<n>``."""
    names: list[str] = []
    for i, cell in enumerate(header):
        base = f"Unnamed: {i}" if cell is None else str(cell)
        candidate, n = base, 0
        while candidate in names:
            n += 1
            candidate = f"{base}.{n}"
        names.append(candidate)
    return names


def wide_decimals(schema) -> list[str]:
    """The columns of an Arrow schema holding decimals of more than 38 digits, which DuckDB reads
    as doubles."""
    import pyarrow as pa  # on use: the code location loads this module

    return [f.name for f in schema if pa.types.is_decimal(f.type) and f.type.precision > 38]


def _open_wide_decimals(con: duckdb.DuckDBPyConnection, name: str, path: str, storage_options: dict) -> bool:
    """Make view ``name`` over Parquet files holding decimals of more than 38 digits, which
    DuckDB reads as doubles (1234567890123456789012345678901234567890.0123456789 became
    1.2345678901234567e+39), with those columns as their exact text, read by Arrow; False, and
    no view, when the files hold none."""
    import pyarrow as pa  # on use: the code location loads this module
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    fs, root = fsspec.core.url_to_fs(path, **storage_options)
    files = sorted(fs.glob(root))
    schemas = []
    for file in files:
        with fs.open(file, "rb") as handle:
            schemas.append(pq.read_schema(handle))
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False  # files whose columns disagree: DuckDB's reading says how
    wide = wide_decimals(schema)
    if not wide:
        return False
    as_text = pa.schema([pa.field(f.name, pa.string()) if f.name in wide else f for f in schema])
    con.register(f"{name}__wide", ds.dataset(files, schema=as_text, format="parquet", filesystem=fs))
    con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * FROM "{name}__wide"')
    return True


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the container of .xls workbooks


def _check_workbook(handle) -> None:
    """Refuse, in words a user can act on, a file that is no Excel workbook: a zip archive of
    other files (.xlsx workbooks are zip archives holding xl/workbook.xml), or something else."""
    if zipfile.is_zipfile(handle):
        entries = zipfile.ZipFile(handle).namelist()
        if not any(e.startswith("xl/workbook.") for e in entries):  # .xlsx/.xlsm/.xlsb keep it there
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise ValueError(
                f"it is a zip archive, not an Excel workbook: it holds {shown or 'nothing'}; "
                "unzip it and point connection_string at the workbook (or the file) inside"
            )
        return
    handle.seek(0)
    start = handle.read(512)
    if start.startswith(_OLE2) or start.startswith(b"PK"):  # .xls, or a zip cut short (pandas says how)
        return
    try:
        text = start.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    kind = f"it is text beginning {text[:40]!r}; if it is CSV, set source_type: csv" if text is not None and text.strip() \
        else f"it begins with the bytes {start[:16]!r}"
    raise ValueError(f"it is not an Excel workbook (an .xlsx is a zip archive, an .xls an OLE2 file): {kind}")


_DELIMITERS = (",", ";", "\t", "|")


def _check_csv_shape(con: duckdb.DuckDBPyConnection, path: str, options: dict[str, object]) -> None:
    """Refuse a CSV whose reader had to give up on its header's columns.

    Where one line has more or fewer fields, DuckDB's dialect sniffer does not fail: it reads
    the file as one column of whole lines, or takes a later line as the header and skips the
    lines before it. Read strictly with the header's delimiter instead, so DuckDB names the line.
    """
    chosen = {_CSV_OPTION_NAMES.get(k, k) for k in options}
    try:
        sniffed = con.execute(f"SELECT Delimiter, SkipRows, Columns FROM sniff_csv({sql_string(path)}{_options_sql(options)})").fetchone()
    except duckdb.Error:
        return  # an option the sniffer does not take: the read itself went through
    delimiter, skipped, columns = sniffed
    with open(path, newline="", encoding=str(options.get("encoding", "utf-8")), errors="replace") as handle:
        header = next(itertools.islice(handle, int(options.get("skip", 0)), None), "")
    if "delim" not in chosen and "sep" not in chosen and len(columns) == 1:
        delimiter = max(_DELIMITERS, key=header.count)
        if not header.count(delimiter):
            return  # a one-column file
    elif not (skipped and "skip" not in chosen):
        return
    width = len(next(csv.reader([header], delimiter=delimiter)))
    names = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width))
    strict = {k: v for k, v in options.items() if _CSV_OPTION_NAMES.get(k, k) not in ("delim", "sep", "skip", "header")}
    try:
        con.execute(
            f"SELECT count(*) FROM read_csv({sql_string(path)}, header = true, auto_detect = false, "
            f"delim = {sql_string(delimiter)}, quote = '\"', escape = '\"', columns = {{{names}}}{_options_sql(strict)})"
        ).fetchone()
    except duckdb.Error as exc:
        found = re.search(r"Line: (\d+).*Expected Number of Columns: (\d+) Found: (\d+)", str(exc), re.S)
        if not found:
            raise
        line, expected, got = found.groups()
        raise ValueError(
            f"it is malformed: line {line} has {got} fields where the header has {expected} "
            f"(delimiter {delimiter!r}); fix that line, or if the lines before the header are a preamble, "
            "set options.skip to their number"
        ) from None


def _explained(exc: duckdb.Error, local: list[str], options: dict[str, object]) -> str:
    """DuckDB's cause, with the offending line's bytes where the file is not UTF-8 text."""
    line = re.search(r"CSV Error on Line: (\d+)", str(exc))
    if "not utf-8" not in str(exc).lower() or not line or not local:
        return error_detail(exc)
    number = int(line.group(1))
    with open(local[0], "rb") as handle:
        text = next(itertools.islice(handle, number - 1, None), b"").rstrip(b"\r\n")
    shown = repr(text[:200])[2:-1]
    return (f"line {number} is not UTF-8 text ({shown}); the file is in another encoding: set "
            "options.encoding to it, e.g. latin-1 or utf-16")


def suffix_for(output_format: str, destination: str) -> str:
    """File suffix of an output: the destination's own, else the format's."""
    own = Path(destination).suffix
    return own if own else _FORMAT_SUFFIX[output_format]


def copy_options(output_format: str, destination: str) -> str:
    """DuckDB COPY options for an output format (JSON arrays for .json, lines otherwise)."""
    if output_format == "parquet":
        return "FORMAT parquet, COMPRESSION snappy"
    if output_format == "csv":
        return "FORMAT csv, HEADER true"
    as_array = "true" if suffix_for(output_format, destination) == ".json" else "false"
    return f"FORMAT json, ARRAY {as_array}"


def modified_time(info: dict) -> float:
    """The modification time (seconds since the epoch) of an fsspec listing entry; each store
    names it its own way."""
    moment = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("last_modified")
    return moment.timestamp() if hasattr(moment, "timestamp") else float(moment or 0)


def file_signatures(pattern: str, storage_options: dict | None = None) -> dict[str, list[float]]:
    """Path -> [size, modification time] of every file matching a glob (local or fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
    signatures: dict[str, list[float]] = {}
    for path, info in fs.glob(root, detail=True).items():
        if info.get("type") == "directory":
            continue
        stamp = modified_time(info)
        shown = path if not is_remote(pattern) else f"{pattern.split('://', 1)[0]}://{path}"
        signatures[shown] = [float(info.get("size") or 0), stamp]
    return signatures

"""MongoDB through pymongo: documents in batches as a source, inserts or upserts as an output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from memories_dagster.connectors.file_outputs import DestinationError
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.engine.errors import error_detail
from memories_dagster.secrets import redact

WRITE_BATCH = 5_000
# The collection, in each database an output writes, that records which pipeline created which
# collection (``_id``: the collection's name): replace empties only a collection its pipeline created.
REGISTRY = "memories_outputs"


def _client(url: str, name: str, timeout: float = 10.0, read_timeout: float | None = None):
    """A client that waits ``timeout`` for the server and, with ``read_timeout``, that long for
    each answer (pymongo's default waits for ever on a server that stops answering)."""
    import pymongo  # on use: only pipelines with MongoDB need it

    try:
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000),
                                     socketTimeoutMS=int(read_timeout * 1000) if read_timeout else None)
        client.admin.command("ping")
    except (pymongo.errors.PyMongoError, ValueError) as exc:
        raise _error(exc, f"{name}: cannot reach MongoDB at {url}: {error_detail(exc)}") from exc
    return client


def _error(exc: Exception, message: str) -> ConnectorError:
    """A server that did not answer may answer later; refused credentials or a bad query do not."""
    import pymongo

    lost = isinstance(exc, (pymongo.errors.ConnectionFailure, pymongo.errors.ExecutionTimeout, pymongo.errors.WTimeoutError))
    return (UnavailableError if lost else ConnectorError)(redact(message))


def _database(client, url: str, database: str | None, name: str):
    import pymongo

    try:
        return client[database] if database else client.get_default_database()
    except pymongo.errors.ConfigurationError:
        raise ConnectorError(f"{name}: name the database in the URL (mongodb://host/db) or in `database`") from None


def _plain(value: Any) -> Any:
    """BSON values Parquet cannot hold (ObjectId, Decimal128, lists) as plain ones."""
    kind = type(value).__name__
    if kind == "ObjectId":
        return str(value)
    if kind == "Decimal128":
        return value.to_decimal()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return json.dumps(value, default=str)
    return value


def mongo_documents(url: str, source_name: str, settings) -> Iterator[dict[str, Any]]:
    """The documents a source's filter/projection or aggregation pipeline selects."""
    import pymongo

    where = f"source '{source_name}'"
    client = _client(url, where, settings.timeout_seconds, settings.timeout_seconds)
    try:
        collection = _database(client, url, settings.database, where)[settings.collection]
        if settings.pipeline:
            cursor = collection.aggregate(settings.pipeline, batchSize=settings.batch_size)
        else:
            cursor = collection.find(settings.filter, settings.projection or None, batch_size=settings.batch_size)
        for document in cursor:
            yield _plain(document)
    except pymongo.errors.PyMongoError as exc:
        raise _error(exc, f"{where}: reading {settings.collection} failed: {error_detail(exc)}") from exc
    finally:
        client.close()


def bson_ready(row: dict[str, Any]) -> dict[str, Any]:
    """A row as BSON can store it: decimals as Decimal128 (exact), dates as datetimes."""
    import datetime as dt
    import decimal

    from bson.decimal128 import Decimal128

    ready = {}
    for key, value in row.items():
        if isinstance(value, decimal.Decimal):
            value = Decimal128(value)
        elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        ready[key] = value
    return ready


def _last_per_key(batch: list[dict], keys: list[str], where: str) -> list[dict]:
    """One document per key, the last one given; a document without a key value is refused (it
    would match every keyless document, or none)."""
    missing = [k for k in keys if k not in batch[0]]
    if missing:
        raise ConnectorError(f"{where}: upsert keys {', '.join(missing)} are not columns of the data")
    last = {tuple(row[k] for k in keys): row for row in batch}
    keyless = sum(1 for row in batch if any(row[k] is None for k in keys))
    if keyless:
        raise ConnectorError(
            f"{where}: {keyless} rows have no value in upsert key {', '.join(keys)}; a row without its key "
            "cannot be matched, so writing stopped before this batch (give those rows a key, or quarantine them)"
        )
    return list(last.values())


def _claim(db, collection_name: str, mode: str, pipeline: str, overwrite: bool, where: str) -> None:
    """Record a new collection as ``pipeline``'s; refuse to replace the documents of an existing
    one it did not create (one the registry does not name: made by hand, by another tool, or by
    a version of this one from before the registry), unless ``overwrite``, which records it as
    its own from then on. Append and upsert may write any collection."""
    import datetime as dt

    registry = db[REGISTRY]
    exists = collection_name in db.list_collection_names()
    if exists and mode != "replace":
        return
    record = registry.find_one({"_id": collection_name})
    owner = record.get("pipeline") if record else None
    if exists and owner != pipeline and not overwrite:
        whose = f"{REGISTRY} records pipeline '{owner}' as its creator" if owner else f"no document of {REGISTRY} names it"
        raise DestinationError(
            f"{where} exists and pipeline '{pipeline}' did not create it ({whose}); mode replace would delete its "
            "documents, so nothing was written. A pipeline replaces only collections it created: name a new "
            "collection, or write with mode append or upsert, or, if this pipeline may take the collection over "
            f"(e.g. one an earlier version of this tool created before it kept {REGISTRY}), set "
            "output_config.overwrite: true once: the collection is then recorded as this pipeline's"
        )
    if owner != pipeline:
        registry.replace_one({"_id": collection_name}, {"pipeline": pipeline, "created_at": dt.datetime.now(dt.timezone.utc)},
                             upsert=True)


def write_documents(url: str, database: str | None, collection_name: str, batches: Iterator[list[dict]],
                    mode: str, keys: list[str], pipeline: str = "", overwrite: bool = False) -> int:
    """``replace`` the collection's documents (only in a collection ``pipeline`` created, see
    ``_claim``), ``append`` the rows, or ``upsert`` them (replace the documents with equal ``keys``).

    MongoDB writes here are not one transaction: a failure stops after the batches written so far,
    and the error says how many rows that was.
    """
    import pymongo

    where = f"output collection {collection_name}"
    if collection_name == REGISTRY:
        raise DestinationError(f"{where} is the registry of the collections this project's pipelines created; "
                               "name another collection")
    client = _client(url, where)
    written = 0
    try:
        db = _database(client, url, database, where)
        _claim(db, collection_name, mode, pipeline, overwrite, where)
        collection = db[collection_name]
        if mode == "replace":
            collection.delete_many({})
        for batch in batches:
            if not batch:
                continue
            if mode == "upsert":
                batch = _last_per_key(batch, keys, where)
                # Replace by keys as delete-then-insert per batch: two round trips per 5,000 rows
                # (ReplaceOne per row would be one per row on servers without bulk replace).
                if len(keys) == 1:
                    selector = {keys[0]: {"$in": [row[keys[0]] for row in batch]}}
                else:
                    selector = {"$or": [{k: row[k] for k in keys} for row in batch]}
                collection.delete_many(selector)
            collection.insert_many(batch, ordered=False)
            written += len(batch)
    except pymongo.errors.PyMongoError as exc:
        raise _error(exc, f"{where}: writing failed after {written} rows: {error_detail(exc)}") from exc
    finally:
        client.close()
    return written

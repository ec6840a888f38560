"""Redis as a source: the keys matching a pattern, read as hashes, JSON strings or streams.

Keys are found with SCAN (never KEYS, which blocks the server) and read in pipelined batches,
so a large keyspace costs one round trip per batch, not per key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.secrets import redact

BATCH_KEYS = 1_000
STREAM_BATCH = 10_000


def redis_records(url: str, name: str, pattern: str, kind: str) -> Iterator[dict[str, Any]]:
    """Every record of the keys matching ``pattern``: one per hash or JSON key, one per stream entry.

    Each record carries ``_key``; stream entries also ``_id``. ``kind`` ``auto`` reads each key
    by its Redis type; ``hash``, ``json`` or ``stream`` insist on one and fail on others.
    """
    import redis  # on use: only pipelines with a Redis source need it

    try:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10, decode_responses=True)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise _error(exc, f"source '{name}': cannot reach Redis at {url}: {exc}") from exc
    try:
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=BATCH_KEYS):
            batch.append(key)
            if len(batch) >= BATCH_KEYS:
                yield from _read_batch(client, batch, kind, name)
                batch = []
        if batch:
            yield from _read_batch(client, batch, kind, name)
    except redis.RedisError as exc:
        raise _error(exc, f"source '{name}': reading Redis at {url} failed: {exc}") from exc
    finally:
        client.close()


def _error(exc: Exception, message: str) -> ConnectorError:
    """A lost or refused connection may mend (a refused password does not)."""
    import redis

    lost = isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(exc, redis.AuthenticationError)
    return (UnavailableError if lost else ConnectorError)(redact(message))


def _read_batch(client, keys: list[str], kind: str, name: str) -> Iterator[dict[str, Any]]:
    types = _types(client, keys) if kind == "auto" else dict.fromkeys(keys, _REDIS_TYPE[kind])
    pipe = client.pipeline(transaction=False)
    plain = [k for k in keys if types[k] in ("hash", "string")]
    for key in plain:
        pipe.hgetall(key) if types[key] == "hash" else pipe.get(key)
    for key, value in zip(plain, pipe.execute(raise_on_error=False)):
        if isinstance(value, Exception):
            raise ConnectorError(f"source '{name}': key {key} is not a {types[key]}: {value}")
        if types[key] == "hash":
            yield {"_key": key, **value}
            continue
        try:
            document = json.loads(value) if value is not None else None
        except json.JSONDecodeError:
            raise ConnectorError(f"source '{name}': key {key} does not hold JSON text") from None
        if not isinstance(document, dict):
            raise ConnectorError(f"source '{name}': key {key} holds JSON that is not an object")
        yield {"_key": key, **document}
    for key in (k for k in keys if types[k] == "stream"):
        start = "-"
        while True:
            entries = client.xrange(key, min=start, count=STREAM_BATCH)
            for entry_id, fields in entries:
                yield {"_key": key, "_id": entry_id, **fields}
            if len(entries) < STREAM_BATCH:
                break
            start = "(" + entries[-1][0]
    unsupported = sorted({t for t in types.values() if t not in ("hash", "string", "stream")})
    if unsupported:
        raise ConnectorError(
            f"source '{name}': keys of type {', '.join(unsupported)} match the pattern; a Redis source "
            "reads hashes, JSON strings and streams (narrow `redis.pattern`)"
        )


_REDIS_TYPE = {"hash": "hash", "json": "string", "stream": "stream"}


def _types(client, keys: list[str]) -> dict[str, str]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    return dict(zip(keys, pipe.execute()))

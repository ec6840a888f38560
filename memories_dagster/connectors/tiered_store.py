"""A tiered memory store for bytes: hot (Redis), warm (a local folder), cold (an object store).

- ``put`` writes a value to the highest tier it fits in and always through to the cold tier,
  which is the durable copy (its durability and replication are the object store's own).
- A cache tier (hot, warm) over its size cap demotes its least recently used entries to the
  next tier down: hot to warm; from warm (or from hot when there is no warm tier) they are
  dropped, since the cold tier already holds them.
- ``get`` looks in hot, warm, cold in turn, counts a miss on each tier it looked in before the
  one that had the value and a hit on that one, and copies the value into the tiers above.
- Hot entries live ``ttl`` after their last write or read (Redis expiry); the LRU accounting
  forgets expired keys.

No Dagster import: the IO manager in ``memories_dagster.resources`` wraps this.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memories_dagster.engine.tables import atomic_file
from memories_dagster.secrets import redact

TIERS = ("hot", "warm", "cold")

# ---------------------------------------------------------------------------------------------
# sizes and durations

_SIZE_UNITS = {
    "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")
SIZE_FORMS = "a number of bytes, or a number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 32GB, 512MB, 1.5 GiB"

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
DURATION_FORMS = "a number of seconds, or numbers with units ms, s, m, h, d, w, e.g. 3600s, 30m, 1h, 7d, 1h30m"


def parse_size(value: str | int | float) -> int:
    """``'32GB'`` -> 32_000_000_000, ``'1.5 GiB'`` -> 1_610_612_736; a bare number is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"size {value!r} is not valid; use {SIZE_FORMS}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"size {value!r} is negative; use {SIZE_FORMS}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).upper() if match else ""
    if not match or (unit and unit not in _SIZE_UNITS):
        raise ValueError(f"size {value!r} is not valid; use {SIZE_FORMS}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit or "B"])


def parse_duration(value: str | int | float) -> float:
    """``'1h'`` -> 3600.0, ``'1h30m'`` -> 5400.0, ``'3600'`` -> 3600.0 (seconds); must be > 0."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(r"(\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+", text, re.IGNORECASE):
            seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in _DURATION_PART.findall(text))
    if seconds is None:
        raise ValueError(f"duration {value!r} is not valid; use {DURATION_FORMS}")
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be longer than 0; use {DURATION_FORMS}")
    return seconds


# ---------------------------------------------------------------------------------------------
# errors and names


class StoreUnavailableError(ConnectionError):
    """A tier of the memory store cannot be reached (message free of passwords)."""


def file_name(key: str) -> str:
    """A key as one safe file or object name: percent-escaped, hashed when very long."""
    if not key:
        raise ValueError("a memory store key must not be empty")
    name = urllib.parse.quote(key, safe="")
    if name.startswith("."):  # no hidden names, no '.' or '..'
        name = "%2E" + name[1:]
    if len(name) > 200:  # file systems allow 255 bytes a name
        name = f"{name[:150]}~{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return name


@dataclass
class TierStats:
    """What one tier did for this store object, and what it holds now."""

    hits: int = 0
    misses: int = 0


# ---------------------------------------------------------------------------------------------
# hot tier: Redis

# KEYS: value, lru, sizes, clock. ARGV: member, data, ttl_ms (0: none)
_PUT = """
redis.call('SET', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('HSET', KEYS[3], ARGV[1], string.len(ARGV[2]))
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
return 1
"""

# KEYS: value, lru, sizes, clock. ARGV: member, ttl_ms (0: none)
_GET = """
local value = redis.call('GET', KEYS[1])
if not value then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return false
end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
return value
"""

# Forget expired keys, then evict the least recently used until the total fits the cap.
# KEYS: lru, sizes. ARGV: value key prefix, cap (-1: only count). Returns {bytes, entries, k1, v1, ...}
_MAKE_ROOM = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local total, entries, live = 0, 0, {}
for _, member in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. member) == 1 then
    total = total + (tonumber(redis.call('HGET', KEYS[2], member)) or 0)
    entries = entries + 1
    table.insert(live, member)
  else
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
  end
end
local result = {0, 0}
local cap = tonumber(ARGV[2])
local i = 1
while cap >= 0 and total > cap and i <= #live do
  local member = live[i]
  local value = redis.call('GET', ARGV[1] .. member)
  total = total - (tonumber(redis.call('HGET', KEYS[2], member)) or 0)
  entries = entries - 1
  redis.call('DEL', ARGV[1] .. member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  if value then
    table.insert(result, member)
    table.insert(result, value)
  end
  i = i + 1
end
result[1], result[2] = total, entries
return result
"""

# KEYS: value, lru, sizes. ARGV: member
_DELETE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


def _redis_address(url: str) -> str:
    """host:port (or the socket path) of a Redis URL, never its user or password."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}"


class HotTier:
    """Redis: values under ``<prefix>v:<key>``, sizes in a hash, recency in a sorted set."""

    name = "hot"

    def __init__(self, url: str, cap: int, ttl_seconds: float | None = None, prefix: str = "memories:store:") -> None:
        import redis

        self.url, self.cap, self.prefix = url, cap, prefix
        self.ttl_ms = int(ttl_seconds * 1000) if ttl_seconds else 0
        self.address = _redis_address(url)
        try:
            self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as exc:
            raise ValueError(redact(f"hot tier: Redis URL is not valid: {exc}")) from None
        self._lru, self._sizes, self._clock = f"{prefix}lru", f"{prefix}sizes", f"{prefix}clock"
        self._put = self.client.register_script(_PUT)
        self._get = self.client.register_script(_GET)
        self._make_room = self.client.register_script(_MAKE_ROOM)
        self._delete = self.client.register_script(_DELETE)

    def _call(self, what: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return script(keys=keys, args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailableError(
                redact(f"hot tier: cannot reach Redis at {self.address} to {what} ({exc})")
            ) from None
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailableError(redact(f"hot tier: Redis at {self.address} failed to {what}: {exc}")) from None

    def _keys(self, key: str) -> list[str]:
        return [f"{self.prefix}v:{key}", self._lru, self._sizes, self._clock]

    def get(self, key: str) -> bytes | None:
        return self._call("read", self._get, self._keys(key), [key, self.ttl_ms])

    def put(self, key: str, data: bytes) -> list[tuple[str, bytes]]:
        """Store, then evict LRU entries beyond the cap; returns the evicted (key, value)s."""
        self._call("write", self._put, self._keys(key), [key, data, self.ttl_ms])
        result = self._call("make room", self._make_room, [self._lru, self._sizes], [f"{self.prefix}v:", self.cap])
        return [(result[i].decode(), result[i + 1]) for i in range(2, len(result), 2)]

    def delete(self, key: str) -> None:
        self._call("delete", self._delete, self._keys(key)[:3], [key])

    def has(self, key: str) -> bool:
        import redis

        try:
            return bool(self.client.exists(f"{self.prefix}v:{key}"))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailableError(redact(f"hot tier: cannot reach Redis at {self.address} ({exc})")) from None

    def usage(self) -> tuple[int, int]:
        """(bytes, entries) of the live keys; expired ones leave the accounting."""
        result = self._call("count", self._make_room, [self._lru, self._sizes], [f"{self.prefix}v:", -1])
        return int(result[0]), int(result[1])


# ---------------------------------------------------------------------------------------------
# warm tier: a local folder


class WarmTier:
    """One file a key; a file's mtime is its last use (set by this class, never by the OS)."""

    name = "warm"

    def __init__(self, path: str | Path, cap: int) -> None:
        self.root, self.cap = Path(path), cap
        self._clock = 0
        self._lock = threading.Lock()

    def _now(self) -> int:
        with self._lock:  # strictly increasing within the process, so LRU order has no ties
            self._clock = max(time.time_ns(), self._clock + 1000)
            return self._clock

    def _path(self, key: str) -> Path:
        return self.root / file_name(key)

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        now = self._now()
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, ns=(now, now))
        return data

    def put(self, key: str, data: bytes) -> list[tuple[str, bytes]]:
        """Store atomically, then drop LRU files beyond the cap (no value is handed down)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._path(key), data)
        now = self._now()
        os.utime(self._path(key), ns=(now, now))
        keep = self._path(key).name
        files = self._files()
        total = sum(size for _, size, _ in files)
        for name, size, _ in sorted(files, key=lambda f: f[2]):
            if total <= self.cap:
                break
            if name == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()
            total -= size
        return []

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def _files(self) -> list[tuple[str, int, int]]:
        """(name, size, mtime_ns) of each stored value."""
        found = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temporary files of writes under way
            with contextlib.suppress(FileNotFoundError):
                stat = entry.stat()
                if entry.is_file():
                    found.append((entry.name, stat.st_size, stat.st_mtime_ns))
        return found

    def usage(self) -> tuple[int, int]:
        files = self._files()
        return sum(size for _, size, _ in files), len(files)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file whole or not at all."""
    with atomic_file(path) as staged:
        staged.write_bytes(data)


# ---------------------------------------------------------------------------------------------
# cold tier: an fsspec URL


class ColdTier:
    """An object store (s3://, gs://, abfs://) or a folder: the durable copy of every value."""

    name = "cold"
    cap = None

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url if "://" in url else str(Path(url).absolute())
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = self.root.rstrip("/")
        self.local = "file" in self.fs.protocol or "local" in self.fs.protocol

    def _path(self, key: str) -> str:
        return f"{self.root}/{file_name(key)}"

    def _fail(self, what: str, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(redact(f"cold tier: cannot {what} {self.url}: {type(exc).__name__}: {exc}"))

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None
        except (IsADirectoryError, PermissionError, OSError) as exc:
            raise self._fail("read from", exc) from None

    def put(self, key: str, data: bytes) -> list[tuple[str, bytes]]:
        try:
            if self.local:
                Path(self.root).mkdir(parents=True, exist_ok=True)
                _atomic_write(Path(self._path(key)), data)
            else:
                self.fs.pipe_file(self._path(key), data)  # one object, replaced whole
        except OSError as exc:
            raise self._fail("write to", exc) from None
        return []

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def has(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(key)))
        except OSError as exc:
            raise self._fail("list", exc) from None

    def usage(self) -> tuple[int, int]:
        try:
            found = self.fs.find(self.root, maxdepth=1, detail=True)
        except FileNotFoundError:
            return 0, 0
        except OSError as exc:
            raise self._fail("list", exc) from None
        files = [info for path, info in found.items() if not path.rsplit("/", 1)[-1].startswith(".")
                 and info.get("type") != "directory"]
        return sum(int(info.get("size") or 0) for info in files), len(files)


# ---------------------------------------------------------------------------------------------
# the store


class TieredStore:
    """Bytes by string key over up to three tiers; see the module docstring for the rules.

    Parameters: ``hot_url`` (a ``redis://`` URL) with ``hot_size`` (cap) and ``hot_ttl``;
    ``warm_path`` (a folder) with ``warm_size``; ``cold_url`` (``s3://``, ``gs://``,
    ``abfs://``, ``file://`` or a path) with fsspec ``storage_options``. Sizes and TTLs take
    numbers or strings such as ``'256MB'`` and ``'1d'``. Any tier may be left out, not all.
    """

    def __init__(
        self,
        *,
        hot_url: str | None = None,
        hot_size: str | int = "256MB",
        hot_ttl: str | float | None = None,
        hot_prefix: str = "memories:store:",
        warm_path: str | Path | None = None,
        warm_size: str | int = "1GB",
        cold_url: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.hot = HotTier(hot_url, _cap("hot", hot_size), parse_duration(hot_ttl) if hot_ttl else None,
                           hot_prefix) if hot_url else None
        self.warm = WarmTier(warm_path, _cap("warm", warm_size)) if warm_path else None
        self.cold = ColdTier(cold_url, storage_options) if cold_url else None
        if not self.tiers:
            raise ValueError("a tiered store needs at least one tier: hot (Redis), warm (a folder) or cold (a URL)")
        self.counts = {tier.name: TierStats() for tier in self.tiers}

    @property
    def tiers(self) -> list[HotTier | WarmTier | ColdTier]:
        """The tiers present, highest first."""
        return [t for t in (self.hot, self.warm, self.cold) if t is not None]

    def _caches(self) -> list[HotTier | WarmTier]:
        return [t for t in (self.hot, self.warm) if t is not None]

    def put(self, key: str, data: bytes) -> str:
        """Write ``data`` to the highest tier it fits in and through to cold; returns that tier's name."""
        data = bytes(data)
        caches = self._caches()
        target = next((t for t in caches if len(data) <= t.cap), None)
        if target is None and self.cold is None:
            caps = ", ".join(f"{t.name} {t.cap} bytes" for t in caches)
            raise ValueError(f"a value of {len(data)} bytes for '{key}' is larger than every tier's cap ({caps}) "
                             "and there is no cold tier")
        if self.cold is not None:
            self.cold.put(key, data)  # the durable copy first: a cache never holds what cold lacks
        for tier in caches:  # no stale copy may stay in another cache tier
            if tier is not target:
                tier.delete(key)
        if target is not None:
            self._store(target, key, data)
        return (target or self.cold).name

    def get(self, key: str) -> bytes | None:
        """The value, from the highest tier holding it (copied into the tiers above), or None."""
        looked: list[HotTier | WarmTier | ColdTier] = []
        for tier in self.tiers:
            data = tier.get(key)
            if data is None:
                looked.append(tier)
                continue
            for missed in looked:
                self.counts[missed.name].misses += 1
            self.counts[tier.name].hits += 1
            for above in looked:  # promotion into every cache tier above that the value fits
                if above is not self.cold and len(data) <= above.cap:
                    self._store(above, key, data)
            return data
        for missed in looked:
            self.counts[missed.name].misses += 1
        return None

    def found_in(self, key: str) -> str | None:
        """Name of the highest tier holding ``key``, without counting, promoting or touching it."""
        for tier in self.tiers:
            if tier.has(key):
                return tier.name
        return None

    def delete(self, key: str) -> None:
        """Remove ``key`` from every tier."""
        for tier in self.tiers:
            tier.delete(key)

    def _store(self, tier: HotTier | WarmTier, key: str, data: bytes) -> None:
        """Put into a cache tier; what it evicts goes one tier down (cold already has it)."""
        evicted = tier.put(key, data)
        if tier is self.hot and self.warm is not None:
            for old_key, old_data in evicted:  # one too big for warm is left to cold (or lost without one)
                if len(old_data) <= self.warm.cap:
                    self.warm.put(old_key, old_data)

    def stats(self) -> dict[str, dict[str, int | None]]:
        """Per tier present: hits and misses of this store object, bytes and entries held, cap."""
        result = {}
        for tier in self.tiers:
            used, entries = tier.usage()
            counts = self.counts[tier.name]
            result[tier.name] = {"hits": counts.hits, "misses": counts.misses, "bytes": used,
                                 "entries": entries, "cap": tier.cap}
        return result


def _cap(tier: str, size: str | int) -> int:
    try:
        cap = parse_size(size)
    except ValueError as exc:
        raise ValueError(f"{tier} tier size: {exc}") from None
    if cap <= 0:
        raise ValueError(f"{tier} tier size {size!r} must be larger than 0 bytes")
    return cap

"""The tiered memory store against the machine's real Redis, a local folder, and moto's S3 server."""

import time
import uuid

import pytest

from memories_dagster.connectors.tiered_store import (
    StoreUnavailableError,
    TieredStore,
    parse_duration,
    parse_size,
)
from tests.conftest import REDIS_URL, free_port


@pytest.fixture
def make_store(tmp_path, redis_prefix):
    """A store with hot (Redis), warm (tmp folder) and cold (tmp folder) tiers, caps in bytes."""
    _, prefix = redis_prefix

    def make(hot_size=250, warm_size=250, **options) -> TieredStore:
        settings = dict(hot_url=REDIS_URL, hot_size=hot_size, hot_prefix=prefix, warm_path=tmp_path / "warm",
                        warm_size=warm_size, cold_url=str(tmp_path / "cold"))
        settings.update(options)
        return TieredStore(**settings)

    return make


@pytest.fixture
def s3_bucket(s3_store):
    """A fresh prefix on moto's S3 server: (url, storage_options, filesystem)."""
    root, connection, fs = s3_store
    options = {"key": "testing", "secret": "testing", "endpoint_url": connection["endpoint_url"]}
    return f"{root}/store-{uuid.uuid4().hex[:8]}", options, fs


def value(letter: str, size: int = 100) -> bytes:
    return letter.encode() * size


def test_sizes_and_durations_take_the_documented_forms():
    assert parse_size("32GB") == 32 * 1000**3
    assert parse_size("512MB") == 512 * 1000**2
    assert parse_size("1.5 GiB") == int(1.5 * 1024**3)
    assert parse_size("100KB") == 100_000
    assert parse_size("4kib") == 4096
    assert parse_size("2TiB") == 2 * 1024**4
    assert parse_size(1234) == parse_size("1234") == parse_size("1234B") == 1234
    assert [parse_duration(v) for v in ("1h", "30m", "7d", "3600s", "1h30m", "500ms", 90)] == [
        3600, 1800, 7 * 86400, 3600, 5400, 0.5, 90]
    for bad in ("32 GBs", "lots", "-1GB", "1.2.3MB", "", "32G"):
        with pytest.raises(ValueError, match="KiB, MiB, GiB") as error:
            parse_size(bad)
        assert repr(bad) in str(error.value)
    for bad in ("1 fortnight", "h", "", "0s", "-5m"):
        with pytest.raises(ValueError, match=r"units ms, s, m, h, d, w") as error:
            parse_duration(bad)
        assert repr(bad) in str(error.value)


def test_a_full_hot_tier_demotes_its_least_recently_used_entries_down_to_cold(make_store):
    store = make_store(hot_size=250, warm_size=250)  # two 100-byte values fit in each
    for letter in "abc":
        assert store.put(letter, value(letter)) == "hot"
    assert [store.found_in(k) for k in "abc"] == ["warm", "hot", "hot"]  # a was used least recently
    assert store.get("b") == value("b")  # now c is the least recently used in hot
    store.put("d", value("d"))
    assert [store.found_in(k) for k in "bcd"] == ["hot", "warm", "hot"]
    store.put("e", value("e"))  # b leaves hot; warm, over its cap, drops a (cold has it)
    assert [store.found_in(k) for k in "abcde"] == ["cold", "warm", "warm", "hot", "hot"]
    stats = store.stats()
    assert (stats["hot"]["entries"], stats["hot"]["bytes"], stats["hot"]["cap"]) == (2, 200, 250)
    assert (stats["warm"]["entries"], stats["warm"]["bytes"]) == (2, 200)
    assert (stats["cold"]["entries"], stats["cold"]["bytes"]) == (5, 500)  # written through
    assert all(store.get(k) == value(k) for k in "abcde")


def test_reads_promote_and_count_hits_and_misses_per_tier(make_store):
    store = make_store(hot_size=150, warm_size=150)  # one value a tier
    store.put("a", value("a"))
    store.put("b", value("b"))  # a demoted to warm
    store.put("c", value("c"))  # b demoted to warm, a dropped from warm: only cold has it
    assert [store.found_in(k) for k in "abc"] == ["cold", "warm", "hot"]

    assert store.get("b") == value("b")  # miss hot, hit warm; promoted to hot (c goes to warm)
    assert [store.found_in(k) for k in "bc"] == ["hot", "warm"]
    assert store.get("a") == value("a")  # miss hot, miss warm, hit cold; promoted to hot and warm
    assert store.found_in("a") == "hot"
    assert store.get("a") == value("a")  # hit hot
    assert store.get("nothing") is None  # a miss everywhere
    stats = store.stats()
    assert {tier: (s["hits"], s["misses"]) for tier, s in stats.items()} == {
        "hot": (1, 3), "warm": (1, 2), "cold": (1, 1)}


def test_hot_entries_expire_after_their_ttl_and_are_then_read_from_lower_tiers(make_store, redis_prefix):
    client, prefix = redis_prefix
    store = make_store(hot_size="1MB", warm_size="1MB", hot_ttl="500ms")
    store.put("tile", value("t"))
    assert store.found_in("tile") == "hot"
    time.sleep(0.7)
    assert store.stats()["hot"]["entries"] == 0 and store.stats()["hot"]["bytes"] == 0
    assert client.hlen(f"{prefix}sizes") == 0 and client.zcard(f"{prefix}lru") == 0  # accounting forgot it
    assert store.get("tile") == value("t")  # from cold, the durable copy; promoted to hot and warm
    assert {t: (s["hits"], s["misses"]) for t, s in store.stats().items()} == {"hot": (0, 1), "warm": (0, 1),
                                                                               "cold": (1, 0)}
    assert 0 < client.pttl(f"{prefix}v:tile") <= 500  # the promotion set the TTL again
    time.sleep(0.7)
    assert store.get("tile") == value("t")  # expired from hot again: now a warm hit
    assert {t: (s["hits"], s["misses"]) for t, s in store.stats().items()} == {"hot": (0, 2), "warm": (1, 1),
                                                                               "cold": (1, 0)}


def test_a_value_larger_than_a_tier_skips_it_and_a_new_value_replaces_old_copies(make_store):
    store = make_store(hot_size="1KB", warm_size="10KB")
    assert store.put("big", value("b", 5000)) == "warm"
    assert store.found_in("big") == "warm" and store.stats()["hot"]["entries"] == 0
    assert store.put("big", value("s", 10)) == "hot"  # the stale warm copy is gone
    assert store.stats()["warm"]["entries"] == 0
    assert store.get("big") == value("s", 10)
    assert store.put("huge", value("h", 50_000)) == "cold"


def test_keys_become_safe_file_names(make_store, tmp_path):
    store = make_store(hot_url=None, warm_size="1MB")
    keys = ["earth/terrain/2024-01-01", "../../escape", ".hidden", "x" * 400, "a b?c#d"]
    for number, key in enumerate(keys):
        store.put(key, value(str(number)))
    names = [p.name for p in (tmp_path / "warm").iterdir()]
    assert len(names) == len(keys) and all("/" not in n and not n.startswith(".") and len(n) <= 200 for n in names)
    assert not (tmp_path / "escape").exists()
    assert [store.get(k) for k in keys] == [value(str(n)) for n in range(len(keys))]


def test_writes_go_through_to_an_s3_cold_tier(make_store, s3_bucket):
    url, options, fs = s3_bucket
    store = make_store(warm_path=None, cold_url=url, storage_options=options)
    store.put("climate/2024", b"parquet bytes")
    assert fs.cat_file(url.removeprefix("s3://") + "/climate%2F2024") == b"parquet bytes"  # the durable copy, at once
    assert store.stats()["cold"]["entries"] == 1

    elsewhere = TieredStore(cold_url=url, storage_options=options)  # e.g. another machine, no Redis
    assert elsewhere.get("climate/2024") == b"parquet bytes"
    assert elsewhere.stats()["cold"]["hits"] == 1
    assert elsewhere.get("climate/2025") is None


def test_an_unreachable_redis_is_named_without_its_password(tmp_path):
    port = free_port()
    store = TieredStore(hot_url=f"redis://:s3cr3t-pw@127.0.0.1:{port}/0", warm_path=tmp_path / "warm")
    with pytest.raises(StoreUnavailableError) as error:
        store.put("k", b"v")
    message = str(error.value)
    assert message.startswith(f"hot tier: cannot reach Redis at 127.0.0.1:{port}")
    assert "s3cr3t-pw" not in message
    with pytest.raises(StoreUnavailableError) as error:
        store.get("k")
    assert "s3cr3t-pw" not in str(error.value)


def test_a_store_needs_a_tier_and_valid_caps(tmp_path):
    with pytest.raises(ValueError, match="at least one tier"):
        TieredStore()
    with pytest.raises(ValueError, match="warm tier size: size '1 GBs' is not valid"):
        TieredStore(warm_path=tmp_path, warm_size="1 GBs")

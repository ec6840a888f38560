"""The DuckDB connection every step uses."""

import pytest

from memories_dagster.engine.duck import connect, copy_parquet, default_memory_limit
from memories_dagster.specs.loading import SpecError
from memories_dagster.specs.profile import load_profile


def test_memory_limit_is_applied_and_defaults_to_a_tenth_of_ram():
    con = connect("1GB")
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("953.6 MiB", "1.0 GiB", "1000.0 MB")
    assert int(default_memory_limit().removesuffix("MB")) >= 1024


def test_profile_memory_limit_is_validated(tmp_path):
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "big.yaml").write_text("engine_memory_limit: lots\n")
    with pytest.raises(SpecError, match="engine_memory_limit: String should match pattern"):
        load_profile(tmp_path, "big")
    (tmp_path / "resources" / "big.yaml").write_text("engine_memory_limit: 4GB\n")
    assert load_profile(tmp_path, "big").engine_memory_limit == "4GB"


def test_copy_parquet_keeps_128_bit_sums_exact(tmp_path):
    """A sum of BIGINTs is a HUGEINT; Parquet has no such type and DuckDB would store a DOUBLE."""
    con = connect()
    path = str(tmp_path / "sums.parquet")
    copy_parquet(con, "SELECT sum(v) AS total FROM (VALUES (9007199254740993::BIGINT), (9223372036854775807::BIGINT)) t(v)", path)
    import pyarrow.parquet as pq

    column = pq.read_table(path).column("total")
    assert str(column.type) == "decimal128(38, 0)"
    assert int(column[0].as_py()) == 9007199254740993 + 9223372036854775807

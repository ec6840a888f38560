"""The DuckDB connection every step uses."""

import pytest

from memories_dagster.engine.duck import connect, default_memory_limit
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

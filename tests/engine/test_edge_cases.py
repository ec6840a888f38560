"""Inputs that once broke the engine: odd names, mixed types, zero rows, arithmetic faults."""

import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.integrate import SourceAccount
from memories_dagster.engine.window import glob_of


def keys(left, right, how="inner"):
    return {"join_type": how, "join_keys": [{"source1_key": left, "source2_key": right}]}


def test_right_join_keeps_key_values_of_another_type(run_integration):
    run = run_integration(
        {"o": pd.DataFrame({"id": [1, 2]}), "c": pd.DataFrame({"cid": ["1", "X9"], "v": ["a", "b"]})},
        integration_strategy=keys("id", "cid", "right"),
    )
    assert sorted(run.data["id"]) == ["1", "X9"]


def test_reserved_column_names_are_refused_with_the_source_named(run_integration):
    with pytest.raises(IntegrationError, match="source 'a' has column\\(s\\) rowid, __reason"):
        run_integration({"a": pd.DataFrame({"rowid": [1], "__reason": ["x"], "v": [1]})})


def test_source2_may_name_a_source_with_characters_outside_names(tmp_path):
    from memories_dagster.engine.integrate import integrate
    from memories_dagster.specs.integration import IntegrationSpec

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pd.DataFrame({"k": [1, 2]}).to_parquet(a)
    pd.DataFrame({"k": [1], "v": ["x"]}).to_parquet(b)
    spec = IntegrationSpec.model_validate({"integration_config": {
        "data_sources": [{"source_name": "orders", "source_type": "parquet", "connection_string": "a"},
                         {"source_name": "crm-db", "source_type": "parquet", "connection_string": "b"}],
        "integration_strategy": {"join_type": "left", "join_keys": [{"source1_key": "k", "source2_key": "k", "source2": "crm-db"}]}}})
    outcome = integrate(spec.integration_config, {"orders": str(a), "crm_db": str(b)}, str(tmp_path / "i.parquet"), str(tmp_path / "q.parquet"))
    assert outcome.report["integration_report"]["successful_integrations"] == 2


def test_division_by_zero_gives_null_and_counts_as_a_failed_calculation(run_integration):
    run = run_integration(
        {"a": pd.DataFrame({"x": [4, 1, 3], "y": [2, 0, 0]})},
        transformation_rules=[
            {"rule_name": "ratio", "transformation_type": "calculation", "target_column": "r", "transformation_logic": "x / y"},
            {"rule_name": "rest", "transformation_type": "calculation", "target_column": "m", "transformation_logic": "x % y"},
        ],
    )
    data = run.data.sort_values("x")
    assert data["r"].isna().sum() == 2 and data["m"].isna().sum() == 2
    assert {t["rule"]: t["failed_rows"] for t in run.report["transformations"]} == {"ratio": 2, "rest": 2}


def test_a_mapping_mixing_numbers_and_text_gives_text(run_integration):
    run = run_integration(
        {"a": pd.DataFrame({"c": ["a", "b"]})},
        transformation_rules=[{"rule_name": "m", "transformation_type": "mapping", "source_column": "c",
                               "target_column": "d", "transformation_logic": {"a": 1, "b": "x"}}],
    )
    assert sorted(run.data["d"]) == ["1", "x"]


def test_null_fill_of_the_wrong_type_names_the_column(run_integration):
    with pytest.raises(IntegrationError, match="null_fill for column 'id': 'unknown' is not a BIGINT value"):
        run_integration({"a": pd.DataFrame({"id": [1, None]}, dtype="Int64")},
                        data_quality_checks={"null_check": True, "null_fill": {"id": "unknown"}})


def test_conflicting_columns_of_different_kinds_meet_as_text(run_integration):
    run = run_integration(
        {"l": pd.DataFrame({"k": [1, 2], "v": [1.5, None]}), "r": pd.DataFrame({"k": [1, 2], "v": ["x", "y"]})},
        integration_strategy={**keys("k", "k"), "conflict_resolution": "first"},
    )
    assert sorted(run.data["v"]) == ["1.5", "y"]


def test_a_union_of_clashing_types_names_the_columns(run_integration):
    with pytest.raises(IntegrationError, match=r"columns whose types differ between sources: d \(a: BIGINT, b: DATE\)"):
        run_integration({"a": pd.DataFrame({"d": [1]}), "b": pd.DataFrame({"d": pd.to_datetime(["2024-01-01"]).date})},
                        integration_strategy={"merge_strategy": "union"})


def test_zero_rows_integrate_cleanly(run_integration):
    run = run_integration(
        {"a": pd.DataFrame({"x": pd.Series([], dtype="int64")})},
        transformation_rules=[{"rule_name": "v", "transformation_type": "validation", "transformation_logic": "x > 0"}],
    )
    assert len(run.data) == 0
    assert run.report["integration_metrics"]["transformation_success_rate"] == 1.0
    assert run.report["reconciliation"]["balanced"]


def test_rows_vanishing_where_none_may_is_unbalanced():
    assert SourceAccount(rows_read=3, may_drop=True, in_output=2, not_matched=1).balanced
    assert not SourceAccount(rows_read=3, may_drop=False, in_output=2, not_matched=1).balanced
    assert not SourceAccount(rows_read=3, may_drop=True, in_output=1, not_matched=1).balanced


def test_the_first_source_of_a_left_join_may_not_lose_rows(run_integration):
    run = run_integration({"a": pd.DataFrame({"k": [1, 2]}), "b": pd.DataFrame({"k": [3]})}, integration_strategy=keys("k", "k", "left"))
    accounts = run.report["reconciliation"]["by_source"]
    assert accounts["a"]["not_matched"] == 0 and accounts["b"]["not_matched"] == 1 and run.report["reconciliation"]["balanced"]


def test_sensor_glob_spans_the_folders_of_a_date_template():
    assert glob_of("data/{partition_start:%Y/%m/%d}/orders.csv") == "data/*/*/*/orders.csv"
    assert glob_of("data/{partition_key}.csv") == "data/*.csv"

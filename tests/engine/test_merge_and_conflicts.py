"""Merge strategies without join keys, and the five conflict rules."""

import math

import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError

A = pd.DataFrame({"id": [1, 2, 3], "city": ["x", "y", "z"]})
B = pd.DataFrame({"id": [2, 3, 4], "city": ["y", "q", "w"], "extra": [1, 2, 3]})


def test_union_stacks_and_aligns_columns(run_integration):
    run = run_integration({"a": A, "b": B}, integration_strategy={"merge_strategy": "union"})
    assert len(run.data) == 6
    assert run.data["extra"].isna().sum() == 3
    assert run.report["reconciliation"]["by_source"]["b"]["in_output"] == 3


def test_intersection_keeps_rows_in_every_source(run_integration):
    run = run_integration({"a": A, "b": B}, integration_strategy={"merge_strategy": "intersection"})
    assert list(zip(run.data["id"], run.data["city"])) == [(2, "y")]
    assert "extra" not in run.data.columns


def test_complement_keeps_rows_in_no_other_source(run_integration):
    run = run_integration({"a": A, "b": B}, integration_strategy={"merge_strategy": "complement"})
    assert sorted(zip(run.data["id"], run.data["city"])) == [(1, "x"), (3, "z")]
    account = run.report["reconciliation"]["by_source"]["a"]
    assert account["not_matched"] == 1 and account["in_output"] == 2 and account["balanced"]


def test_union_is_the_default_without_keys(run_integration):
    run = run_integration({"a": A, "b": B})
    assert len(run.data) == 6


LEFT = pd.DataFrame({"id": [1, 2, 3], "score": [10.0, None, 30.0], "label": ["a", None, "c"]})
RIGHT = pd.DataFrame({"id": [1, 2, 3], "score": [20.0, 5.0, None], "label": ["A", "B", None]})


@pytest.mark.parametrize(
    "rule, scores, labels",
    [
        ("first", [10.0, 5.0, 30.0], ["a", "B", "c"]),
        ("last", [20.0, 5.0, 30.0], ["A", "B", "c"]),
        ("average", [15.0, 5.0, 30.0], ["a", "B", "c"]),
        ("sum", [30.0, 5.0, 30.0], ["a", "B", "c"]),
    ],
)
def test_conflict_rules(run_integration, rule, scores, labels):
    run = run_integration(
        {"left": LEFT, "right": RIGHT},
        integration_strategy={"join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}], "conflict_resolution": rule},
    )
    data = run.data.sort_values("id")
    assert list(data["score"]) == scores
    assert list(data["label"]) == labels
    resolved = run.report["conflicts_resolved"]
    assert resolved["score"] == rule
    # text cannot be averaged or summed: it falls back to first, and the report says so
    assert resolved["label"] == (rule if rule in ("first", "last") else f"first ({rule} needs numbers)")
    assert sorted(run.outcome.lineage["score"]) == ["left.score", "right.score"]


def test_custom_conflict_rule_uses_source_columns(run_integration):
    run = run_integration(
        {"left": LEFT, "right": RIGHT},
        integration_strategy={
            "join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}],
            "conflict_resolution": "custom",
            "custom_resolution": {"score": "max(coalesce(left.score, 0), coalesce(right.score, 0))", "label": "coalesce(right.label, left.label)"},
        },
    )
    data = run.data.sort_values("id")
    assert list(data["score"]) == [20.0, 5.0, 30.0]
    assert list(data["label"]) == ["A", "B", "c"]


def test_custom_rule_missing_for_a_conflicting_column(run_integration):
    with pytest.raises(IntegrationError, match="no expression for column 'label'"):
        run_integration(
            {"left": LEFT, "right": RIGHT},
            integration_strategy={
                "join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}],
                "conflict_resolution": "custom", "custom_resolution": {"score": "left.score"},
            },
        )


def test_average_of_all_null_is_null(run_integration):
    run = run_integration(
        {"l": pd.DataFrame({"id": [1], "v": [None]}, dtype="float"), "r": pd.DataFrame({"id": [1.0], "v": [None]}, dtype="float")},
        integration_strategy={"join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}], "conflict_resolution": "average"},
    )
    assert math.isnan(run.data["v"].iloc[0])

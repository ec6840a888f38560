"""Errors keep their cause: the rule, column, type and value that failed, in one paragraph."""

import duckdb
import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError, error_detail

LABELS = pd.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "c"], "n": [1, 2, 3]})


def rule(kind: str, logic, **columns) -> dict:
    return {"rule_name": "r", "transformation_type": kind, "transformation_logic": logic, **columns}


def failure(run_integration, *rules) -> str:
    with pytest.raises(IntegrationError) as caught:
        run_integration({"a": LABELS}, transformation_rules=list(rules), data_quality_checks={"business_rule_check": True})
    message = str(caught.value)
    assert "\n" not in message and "LINE 1" not in message
    return message


def test_an_in_place_numeric_mapping_on_text_says_what_to_do(run_integration):
    message = failure(run_integration, rule("mapping", {"a": 1, "b": 2}, source_column="label"))
    assert "transformation rule 'r' maps column 'label' (VARCHAR) in place to numbers" in message
    assert "(e.g. 'c')" in message  # a value the map does not list
    assert "`target_column`" in message and '"*"' in message


def test_an_in_place_numeric_mapping_with_a_default_runs(run_integration):
    run = run_integration({"a": LABELS}, transformation_rules=[rule("mapping", {"a": 1, "*": 0}, source_column="label")])
    assert sorted(run.data["label"]) == [0, 0, 1]


def test_a_pattern_read_from_the_data_that_does_not_compile_fails_its_row_not_the_run(run_integration):
    # a literal pattern is checked when the spec is validated; one read from a column can only be
    # judged per row: that row fails the rule (quarantined under its name), the others pass
    patterns = LABELS.assign(pattern=["a", "[", "c"])
    run = run_integration({"a": patterns}, transformation_rules=[rule("validation", "matches(label, pattern)")],
                          data_quality_checks={"business_rule_check": True})
    assert sorted(run.data["label"]) == ["a", "c"]
    assert list(run.quarantine["_reason"]) == ["business_rule_check: rule 'r' failed (matches(label, pattern))"]


def test_a_rule_that_cannot_bind_names_the_types_it_reads(run_integration):
    message = failure(run_integration, rule("calculation", "label + n", target_column="d"))
    assert "rule 'r' (calculation: label + n) cannot run on label (VARCHAR), n (BIGINT): " in message
    assert "No function matches" in message and "Candidate functions" not in message


def test_every_line_of_the_cause_is_kept_but_the_sql_excerpt():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (label VARCHAR)")
    with pytest.raises(duckdb.Error) as caught:
        con.execute("SELECT labl FROM t")
    detail = error_detail(caught.value)
    assert detail == 'Binder Error: Referenced column "labl" not found in FROM clause! Candidate bindings: "label"'


def test_a_target_differing_only_in_case_writes_the_column(run_integration):
    run = run_integration({"a": LABELS}, transformation_rules=[rule("calculation", "upper(Label)", target_column="LABEL")],
                          data_quality_checks={"business_rule_check": True})
    assert list(run.data.columns) == ["id", "label", "n"]
    assert sorted(run.data["label"]) == ["A", "B", "C"]

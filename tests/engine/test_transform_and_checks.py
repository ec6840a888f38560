"""Transformation rules, the four quality checks, quarantine reasons and reconciled counts."""

import json
import time

import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError

SALES = pd.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "amount": [10.0, -5.0, None, 20.0],
        "currency": ["EUR", "USD", "GBP", "XXX"],
        "email": [" Ann@X.com", "bob@x.com", None, "DEE@x.com"],
        "day": ["2024-01-05", "2024-02-10", "2024-03-15", "2024-04-20"],
    }
)


def rule(name, kind, logic, source=None, target=None):
    return {"rule_name": name, "transformation_type": kind, "transformation_logic": logic,
            "source_column": source, "target_column": target}


def test_mapping_then_calculation_in_order(run_integration):
    run = run_integration(
        {"sales": SALES},
        transformation_rules=[
            rule("rate", "mapping", '{"EUR": 1.1, "USD": 1.0, "GBP": 1.3}', "currency", "rate"),
            rule("usd", "calculation", "round(amount * rate, 2)", target="amount_usd"),
        ],
    )
    data = run.data.sort_values("id")
    assert list(data["rate"].fillna(-1)) == [1.1, 1.0, 1.3, -1]
    assert list(data["amount_usd"].fillna(-1)) == [11.0, -5.0, -1, -1]
    failed = {t["rule"]: t["failed_rows"] for t in run.report["transformations"]}
    # XXX has no rate (mapping failure); its amount can then not be converted, but null inputs
    # are not a calculation failure
    assert failed == {"rate": 1, "usd": 0}
    assert run.report["integration_metrics"]["transformation_success_rate"] == 0.75
    assert run.outcome.lineage["amount_usd"] == ["sales.amount", "sales.currency"]


def test_mapping_in_place_keeps_unknown_values_and_a_default_applies(run_integration):
    run = run_integration(
        {"sales": SALES},
        transformation_rules=[
            rule("cur", "mapping", {"EUR": "euro"}, "currency"),
            rule("region", "mapping", {"EUR": "EU", "*": "other"}, "currency", "region"),
        ],
    )
    data = run.data.sort_values("id")
    assert list(data["currency"]) == ["euro", "USD", "GBP", "XXX"]
    assert list(data["region"]) == ["other", "other", "other", "other"]  # mapped after the recode


@pytest.mark.parametrize(
    "logic, expected",
    [
        ("lower", [" ann@x.com", "bob@x.com", None, "dee@x.com"]),
        ("upper", [" ANN@X.COM", "BOB@X.COM", None, "DEE@X.COM"]),
        ("strip", ["Ann@X.com", "bob@x.com", None, "DEE@x.com"]),
    ],
)
def test_formatting_text(run_integration, logic, expected):
    run = run_integration({"sales": SALES}, transformation_rules=[rule("f", "formatting", logic, "email")])
    assert list(run.data.sort_values("id")["email"].where(lambda s: s.notna(), None)) == expected


def test_formatting_dates_and_rounding(run_integration):
    run = run_integration(
        {"sales": SALES},
        transformation_rules=[
            rule("month", "formatting", "date:%Y-%m", "day", "month"),
            rule("r", "formatting", "round:0", "amount", "rounded"),
            rule("t", "formatting", "title", "currency", "cur_title"),
        ],
    )
    data = run.data.sort_values("id")
    assert list(data["month"]) == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert list(data["rounded"].fillna(0)) == [10.0, -5.0, 0, 20.0]
    assert list(data["cur_title"]) == ["Eur", "Usd", "Gbp", "Xxx"]


def test_validation_quarantines_false_rows_and_lets_nulls_pass(run_integration):
    run = run_integration(
        {"sales": SALES},
        transformation_rules=[rule("positive", "validation", "amount >= 0")],
        data_quality_checks={"business_rule_check": True},
    )
    assert sorted(run.data["id"]) == [1, 3, 4]  # id 3 has a null amount: unknown passes
    assert list(run.quarantine["_reason"]) == ["business_rule_check: rule 'positive' failed (amount >= 0)"]
    assert json.loads(run.quarantine["_record"].iloc[0])["id"] == 2
    check = run.check("business_rule_check")
    assert not check.passed and check.metadata["failures_by_rule"] == {"positive": 1}


def test_rule_on_a_missing_column_names_rule_and_columns(run_integration):
    with pytest.raises(IntegrationError, match=r"rule 'x' refers to column\(s\) amt .*columns at that point: id, amount"):
        run_integration({"sales": SALES}, transformation_rules=[rule("x", "calculation", "amt * 2", target="y")])


def test_duplicate_check_removes_exact_duplicates_and_counts_them(run_integration):
    frame = pd.concat([SALES, SALES.iloc[[0, 0, 1]]])
    run = run_integration({"sales": frame}, data_quality_checks={"duplicate_check": True})
    assert len(run.data) == 4
    check = run.check("duplicate_check")
    assert check.passed and check.metadata["duplicates_removed"] == 3
    assert run.report["data_quality_summary"]["duplicates_removed"] == 3
    assert run.report["reconciliation"]["by_source"]["sales"]["balanced"]


def test_without_duplicate_check_duplicates_stay(run_integration):
    run = run_integration({"sales": pd.concat([SALES, SALES])})
    assert len(run.data) == 8


def test_null_check_counts_fills_and_quarantines_required(run_integration):
    run = run_integration(
        {"sales": SALES},
        data_quality_checks={"null_check": True, "required_columns": ["email"], "null_fill": {"amount": 0}},
    )
    assert sorted(run.data["id"]) == [1, 2, 4]
    assert run.quarantine["_reason"].tolist() == ["null_check: required column 'email' is null"]
    check = run.check("null_check")
    assert not check.passed
    assert check.metadata["null_counts"]["amount"] == 1 and check.metadata["null_counts"]["email"] == 1
    # the only null amount was on the quarantined row: nothing left to fill
    assert check.metadata["nulls_filled"] == 0
    assert run.report["data_quality_summary"]["null_values_handled"] == 1


def test_null_fill_fills_kept_rows(run_integration):
    run = run_integration({"sales": SALES}, data_quality_checks={"null_check": True, "null_fill": {"amount": 0, "email": "none"}})
    assert run.data["amount"].isna().sum() == 0
    assert (run.data["email"] == "none").sum() == 1
    assert run.check("null_check").metadata["nulls_filled"] == 2


def test_format_check_coerces_and_quarantines_unparseable(run_integration):
    raw = pd.DataFrame({"id": ["1", "2", "3", " "], "when": ["05/01/2024", "31/12/2024", "2024-01-01", "01/01/2024"], "n": ["1.5", "x", "2", "3"]})
    run = run_integration(
        {"raw": raw},
        data_quality_checks={"format_check": True, "columns": {"id": "integer", "when": "date:%d/%m/%Y", "n": "float"}},
    )
    assert str(run.data["when"].dtype).startswith(("datetime64", "object"))
    assert sorted(run.data["id"].dropna().astype(int)) == [1]
    reasons = sorted(run.quarantine["_reason"])
    assert reasons == [
        "format_check: column 'n' value 'x' is not a valid float",
        "format_check: column 'when' value '2024-01-01' is not a valid date:%d/%m/%Y",
    ]
    check = run.check("format_check")
    assert not check.passed and check.metadata["rows_quarantined"] == 2
    # blank text is a missing value, not a malformed one
    assert run.data["id"].isna().sum() == 1


def test_counts_reconcile_through_every_stage(run_integration):
    orders = pd.DataFrame({"oid": [1, 1, 2, 3, 4, 5], "cust": [1, 1, 2, 9, None, 1], "qty": ["1", "1", "2", "3", "1", "zz"]})
    customers = pd.DataFrame({"cid": [1, 2, 3], "name": ["a", "b", "c"]})
    run = run_integration(
        {"orders": orders, "customers": customers},
        integration_strategy={"join_type": "left", "join_keys": [{"source1_key": "cust", "source2_key": "cid"}]},
        transformation_rules=[rule("known", "validation", "name is not None")],
        data_quality_checks={"duplicate_check": True, "null_check": True, "format_check": True, "business_rule_check": True, "columns": {"qty": "integer"}},
    )
    report = run.report
    orders_account = report["reconciliation"]["by_source"]["orders"]
    assert orders_account == {
        "rows_read": 6, "duplicates_removed": 1, "quarantined_at_source": 1, "in_output": 2,
        "quarantined_after_integration": 2, "outside_partition": 0, "superseded": 0, "not_matched": 0, "balanced": True,
    }
    customers_account = report["reconciliation"]["by_source"]["customers"]
    assert customers_account["in_output"] == 2 and customers_account["not_matched"] == 1
    assert report["successful_integrations"] == len(run.data) == 2
    assert report["failed_integrations"] == len(run.quarantine) == 3
    assert report["total_records"] == 9
    assert report["reconciliation"]["balanced"]
    steps = [s["step"] for s in run.outcome.report["data_lineage"]["transformation_history"]]
    assert steps[:3] == ["read orders", "duplicate_check orders", "format_check orders"]
    assert "join left" in steps and steps[-1] == "write quarantine"


def test_format_check_also_types_calculated_columns(run_integration):
    run = run_integration(
        {"sales": SALES},
        transformation_rules=[rule("label", "calculation", "concat(str(id), '-', currency)", target="label"),
                              rule("when", "calculation", "day", target="when")],
        data_quality_checks={"format_check": True, "columns": {"when": "date", "label": "integer"}},
    )
    # 'label' never parses as an integer: every row is quarantined with the reason
    assert len(run.data) == 0
    assert sorted(run.quarantine["_reason"]) == [
        f"format_check: column 'label' value '{label}' is not a valid integer"
        for label in ("1-EUR", "2-USD", "3-GBP", "4-XXX")
    ]


def test_format_check_on_a_column_nobody_produces(run_integration):
    with pytest.raises(IntegrationError, match="format_check declares column\\(s\\) ghost"):
        run_integration({"sales": SALES}, data_quality_checks={"format_check": True, "columns": {"ghost": "date"}})


NUMBERS = pd.DataFrame({"id": [1, 2, 3, 4], "x": [4.0, -4.0, 0.0, None], "a": [7, -7, 7, 2**62],
                        "b": [2, 2, 0, 1], "email": ["a@x", None, "c@x", "d@x"]})


def test_a_math_error_is_a_null_counted_against_its_rule_never_an_aborted_run(run_integration):
    run = run_integration(
        {"n": NUMBERS},
        transformation_rules=[
            rule("root", "calculation", "sqrt(x)", target="root"),  # sqrt(-4): Python raises
            rule("log", "calculation", "ln(x)", target="log"),  # ln(0), ln(-4)
            rule("halves", "calculation", "a // b", target="halves"),  # 7 // 0
            rule("bigger", "calculation", "a * 4", target="bigger"),  # 2**64: past 64 bits
            rule("real_root", "validation", "sqrt(x) >= 0"),  # x = -4 fails; x null passes
        ],
        data_quality_checks={"business_rule_check": True},
    )
    data = run.data.sort_values("id")
    assert list(data["id"]) == [1, 3, 4]
    assert list(data["root"].fillna(-1)) == [2.0, 0.0, -1]
    assert list(data["halves"].fillna(-1)) == [7 // 2, -1, 2**62 // 1]
    failed = {t["rule"]: t["failed_rows"] for t in run.report["transformations"]}
    assert failed == {"root": 1, "log": 2, "halves": 1, "bigger": 1, "real_root": 1}
    assert list(run.quarantine["_reason"]) == ["business_rule_check: rule 'real_root' failed (sqrt(x) >= 0)"]


def test_none_compares_the_same_on_either_side(run_integration):
    run = run_integration({"n": NUMBERS}, transformation_rules=[rule("has_email", "validation", "None != email")],
                          data_quality_checks={"business_rule_check": True})
    assert sorted(run.data["id"]) == [1, 3, 4]
    assert len(run.quarantine) == 1


def timed_rules(run_integration, count: int) -> float:
    rules = [rule(f"v{n}", "validation", f"x > {-1000 - n}") if n % 2 else rule(f"c{n}", "calculation", f"x * {n}", target=f"c{n}")
             for n in range(count)]
    started = time.perf_counter()
    run = run_integration({"n": NUMBERS}, transformation_rules=rules)
    elapsed = time.perf_counter() - started
    assert len(run.report["transformations"]) == count
    assert list(run.data.sort_values("id")[f"c{count - 2}"].fillna(-1)) == [4.0 * (count - 2), -4.0 * (count - 2), 0.0, -1]
    return elapsed


def test_rule_cost_grows_linearly_with_the_number_of_rules(run_integration):
    # 300 rules on one row took 44 s when each rule nested the SQL of all before it (and was
    # checked against it): the time grew with the cube of the count
    small, large = timed_rules(run_integration, 100), timed_rules(run_integration, 300)
    assert large < 10, f"300 rules took {large:.1f} s"
    assert large < 6 * small + 1, f"100 rules: {small:.2f} s, 300 rules: {large:.2f} s: not linear"


def test_rules_that_each_read_the_previous_result_run_in_order(run_integration):
    # 40 layers, each reading the column the one before wrote, twice (value and failure flag)
    rules = [rule(f"r{n}", "calculation", f"{'x' if n == 0 else f'c{n - 1}'} + 1", target=f"c{n}") for n in range(40)]
    started = time.perf_counter()
    run = run_integration({"n": NUMBERS}, transformation_rules=rules)
    assert time.perf_counter() - started < 10
    assert list(run.data.sort_values("id")["c39"].fillna(-1)) == [44.0, 36.0, 40.0, -1]


def test_too_many_dependent_rule_layers_are_a_clear_error(run_integration, monkeypatch):
    from memories_dagster.engine import transform

    monkeypatch.setattr(transform, "MAX_LAYERS", 3)
    rules = [rule(f"r{n}", "calculation", f"{'x' if n == 0 else f'c{n - 1}'} + 1", target=f"c{n}") for n in range(5)]
    with pytest.raises(IntegrationError, match="rule 'r3' would start layer 4 of rules that each read a column"):
        run_integration({"n": NUMBERS}, transformation_rules=rules)


def python_int(text: str):
    try:
        return int(text)
    except ValueError:
        return None


@pytest.mark.parametrize("values", [["3", "3.7", " 12 ", "2.5", "-4", "1e3"], [3.0, 3.7, -4.0, 2.5]])
def test_format_check_integer_keeps_whole_numbers_and_quarantines_the_rest(run_integration, values):
    # a cast to BIGINT made '3.7' and 3.7 the integer 4; Python's int() refuses '3.7', and 3.7 is
    # not a whole number: both are values that do not parse, quarantined with their text
    frame = pd.DataFrame({"id": range(len(values)), "n": values})
    run = run_integration({"raw": frame}, data_quality_checks={"format_check": True, "columns": {"n": "integer"}})
    if isinstance(values[0], str):  # oracle: Python's int() of the text
        whole = {i: python_int(v) for i, v in enumerate(values)}
    else:  # oracle: Python's float.is_integer()
        whole = {i: int(v) if v.is_integer() else None for i, v in enumerate(values)}
    kept = dict(zip(run.data["id"], run.data["n"]))
    assert kept == {i: v for i, v in whole.items() if v is not None}
    assert len(run.quarantine) == sum(v is None for v in whole.values())


def test_round_format_rounds_half_to_even_like_round_in_expressions(run_integration):
    values = [2.5, 3.5, -2.5, 0.125, 2.675, 1.005]
    frame = pd.DataFrame({"id": range(len(values)), "x": values})
    run = run_integration({"raw": frame}, transformation_rules=[
        rule("r0", "formatting", "round:0", "x", "r0"), rule("r2", "formatting", "round:2", "x", "r2")])
    data = run.data.sort_values("id")
    assert list(data["r0"]) == [float(round(v)) for v in values]  # Python's round
    assert list(data["r2"]) == [round(v, 2) for v in values]


def test_a_map_to_booleans_gives_booleans_and_in_place_on_text_says_what_to_do(run_integration):
    answers = pd.DataFrame({"id": [1, 2, 3, 4], "answer": ["yes", "no", "maybe", None]})
    values = {"yes": True, "no": False}
    run = run_integration({"a": answers}, transformation_rules=[
        rule("agreed", "mapping", values, "answer", "agreed")])
    data = run.data.sort_values("id")
    # oracle: Python's own lookup; booleans stay booleans (they were the text 'True'/'False')
    assert list(data["agreed"]) == [values.get(a) for a in answers["answer"]]
    assert {t["rule"]: t["failed_rows"] for t in run.report["transformations"]} == {"agreed": 1}  # maybe
    with pytest.raises(IntegrationError, match=r"maps column 'answer' \(VARCHAR\) in place to booleans, but the "
                                               r"values it does not list \(e.g. 'maybe'\) would keep their type"):
        run_integration({"a": answers}, transformation_rules=[rule("agreed", "mapping", values, "answer")])


def test_a_null_in_a_map_to_numbers_keeps_the_numbers_numbers(run_integration):
    answers = pd.DataFrame({"id": [1, 2, 3], "size": ["s", "m", "l"]})
    values = {"s": 1, "m": 2.5, "l": None}
    run = run_integration({"a": answers}, transformation_rules=[rule("n", "mapping", values, "size", "n")])
    data = run.data.sort_values("id")
    assert list(data["n"].fillna(-1)) == [1, 2.5, -1]  # were the text '1', '2.5'


@pytest.mark.parametrize("values", [
    ["1.2345678", "3", " -2.5e-3 ", "0.000000001", "12345678901234567890.5", "abc", ""],
    [0.1, 1e-7, 123.456, -2.5],
])
def test_format_check_decimal_keeps_every_digit(run_integration, values):
    # DECIMAL(38, 6) rounded '1.2345678' to 1.234568; oracle: Python's Decimal of the text
    # (of a float: its shortest repr, the value the float prints as)
    import decimal

    frame = pd.DataFrame({"id": range(len(values)), "n": values})
    run = run_integration({"raw": frame}, data_quality_checks={"format_check": True, "columns": {"n": "decimal"}})

    def exact(v):
        try:
            return decimal.Decimal(v.strip() if isinstance(v, str) else repr(v))
        except decimal.InvalidOperation:
            return None

    expected = {i: exact(v) for i, v in enumerate(values) if not (isinstance(v, str) and not v.strip())}
    kept = dict(zip(run.data["id"], run.data["n"]))
    assert {i: v for i, v in kept.items() if i in expected} == {i: v for i, v in expected.items() if v is not None}
    assert len(run.quarantine) == sum(v is None for v in expected.values())


def test_round_format_on_decimals_is_exact_and_equals_round_in_expressions(run_integration):
    from decimal import ROUND_HALF_EVEN, Decimal

    values = [Decimal("1.115"), Decimal("2.675"), Decimal("-0.125"), None]
    frame = pd.DataFrame({"id": range(len(values)), "x": values})  # Parquet decimal(_, 3)
    run = run_integration({"raw": frame}, transformation_rules=[
        rule("fmt", "formatting", "round:2", "x", "by_format"),
        rule("calc", "calculation", "round(x, 2)", target="by_expression")])
    data = run.data.sort_values("id")
    # oracle: Python's Decimal, half to even on the exact value (a double would give 1.11, 2.67)
    expected = [v.quantize(Decimal("0.01"), ROUND_HALF_EVEN) if v is not None else None for v in values]
    assert list(data["by_format"]) == expected
    assert list(data["by_format"]) == list(data["by_expression"])
    assert all(isinstance(v, Decimal) for v in data["by_format"].dropna())


def test_quarantined_records_with_infinities_are_strict_json(run_integration):
    frame = pd.DataFrame({"id": [1, 2, 3], "v": [1.5, float("inf"), -float("inf")]})
    run = run_integration({"raw": frame}, transformation_rules=[rule("small", "validation", "id < 2")],
                          data_quality_checks={"business_rule_check": True})

    def refuse(token):
        raise ValueError(f"not JSON (RFC 8259): {token}")

    # oracle: Python's reader without its NaN/Infinity extension
    records = sorted((json.loads(r, parse_constant=refuse) for r in run.quarantine["_record"]), key=lambda r: r["id"])
    assert records == [{"id": 2, "v": "inf"}, {"id": 3, "v": "-inf"}]


def test_formatting_strip_removes_what_python_strip_removes(run_integration):
    values = ["\tann\n", "\u00a0bob\u2003", " dee\r\x0b", None]
    run = run_integration({"s": pd.DataFrame({"id": range(4), "name": values})},
                          transformation_rules=[rule("f", "formatting", "strip", "name")])
    assert list(run.data.sort_values("id")["name"].where(lambda s: s.notna(), None)) == [
        v.strip() if v is not None else None for v in values]

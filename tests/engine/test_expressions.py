import math
import re
import warnings
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from pydantic import ValidationError

from memories_dagster.engine.duck import connect
from memories_dagster.engine.expressions import FUNCTIONS, ExpressionError, parse_expression
from memories_dagster.specs.integration import IntegrationSpec


def evaluate(text: str, **row):
    con = duckdb.connect()
    names = ", ".join(f"{value!r} AS {name}" if not isinstance(value, type(None)) else f"NULL AS {name}" for name, value in row.items())
    return con.execute(f"SELECT {parse_expression(text).to_sql()} FROM (SELECT {names or '1 AS one'})").fetchone()[0]


@pytest.mark.parametrize(
    "text, row, expected",
    [
        ("amount * rate", {"amount": 10, "rate": 1.5}, 15.0),
        ("round(price * 1.2, 2)", {"price": 9.99}, 11.99),
        ("balance >= 0 and status == 'open'", {"balance": 5, "status": "open"}, True),
        ("not (a > 1 or b < 0)", {"a": 0, "b": 1}, True),
        ("1 < x <= 3", {"x": 3}, True),
        ("x in (1, 2, 3)", {"x": 4}, False),
        ("x not in ['a', 'b']", {"x": "c"}, True),
        ("x is None", {"x": None}, True),
        ("'big' if x > 10 else 'small'", {"x": 11}, "big"),
        ("max(a, b) - min(a, b)", {"a": 3, "b": 8}, 5),
        ("a ** 2 % 7", {"a": 4}, 2.0),
        ("lower(strip(name))", {"name": "  Ann "}, "ann"),
        ("coalesce(x, 0) + 1", {"x": None}, 1),
        ("matches(email, '[^@]+@[^@]+')", {"email": "a@b"}, True),
    ],
)
def test_expressions_compute_like_python(text, row, expected):
    assert evaluate(text, **row) == pytest.approx(expected) if isinstance(expected, float) else evaluate(text, **row) == expected


def test_columns_are_reported():
    assert parse_expression("round(a * b, 2) > c and src.d == 1").columns == {"a", "b", "c", "src.d"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('x')", "only plain function calls"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("[x for x in y]", "ListComp is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("a.b.c", "write a source column as source.column"),
        ("x is 3", "'is' compares only with None"),
        ("a +", "cannot parse"),
        ("round()", "round() takes 1 to 2 arguments"),
        ("a @ b", "operator MatMult is not allowed"),
        ("x[0]", "Subscript is not allowed"),
    ],
)
def test_unsafe_or_broken_expressions_are_refused(text, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_expression(text)


def test_equality_with_none_means_is_null():
    assert evaluate("s != None", s="x") is True
    assert evaluate("s == None", s=None) is True


def test_deeply_nested_or_huge_expressions_are_refused():
    with pytest.raises(ExpressionError, match="nests more than 100 levels"):
        parse_expression("+".join(["a"] * 1999))
    with pytest.raises(ExpressionError, match="longer than 4000"):
        parse_expression("a" * 5000)


@pytest.mark.parametrize("text", [
    "not " * 120 + "x",  # parses, then recursed without limit
    "-" * 3999 + "x",  # the parser itself runs out of stack
    "abs(" * 120 + "x" + ")" * 120,
    "+".join(["a"] * 150),
])
def test_nesting_past_the_limit_is_a_clear_error_not_a_recursion_error(text):
    with pytest.raises(ExpressionError, match="nests more than 100 levels deep.*split it into several calculation rules"):
        parse_expression(text)


def test_nesting_up_to_the_limit_runs_in_duckdb():
    # 99 calls and the column: 100 levels, the most allowed; DuckDB must bind and run it
    assert evaluate("abs(" * 99 + "x" + ")" * 99, x=-3) == 3


def test_nested_floor_divisions_compile_to_sql_that_grows_with_the_text(monkeypatch):
    # each // names its operands more than once; they are bound once, not copied per level
    assert evaluate("x" + " // 2" * 40, x=-(10**12)) == -(10**12) // 2**40
    assert len(parse_expression("x" + " // 2" * 40).to_sql()) < 40 * 400
    monkeypatch.setattr("memories_dagster.engine.expressions.MAX_SQL_LENGTH", 1000)
    with pytest.raises(ExpressionError, match="compiles to more than 1000 characters of SQL"):
        parse_expression("x" + " // 2" * 40)


@pytest.mark.parametrize("pattern", ["[", "(?<=a)b", "a{2,1}", "(a"])
def test_a_pattern_that_re2_refuses_is_refused_at_parse(pattern):
    # (?<=a)b compiles in Python's re but not in RE2, the engine that runs it: checked by RE2 itself
    with pytest.raises(ExpressionError, match=r"matches\(\) pattern .* is not a regular expression \(RE2 syntax"):
        parse_expression(f"matches(email, '{pattern}')")


def test_an_invalid_pattern_is_a_spec_error_naming_the_rule():
    rule = {"rule_name": "mail", "transformation_type": "validation", "transformation_logic": "matches(email, '[a-z')"}
    with pytest.raises(ValidationError, match=r"transformation_rules.0\n.*matches\(\) pattern '\[a-z' is not a regular expression"):
        IntegrationSpec.model_validate({"integration_config": {
            "data_sources": [{"source_name": "s", "source_type": "csv", "connection_string": "s.csv"}],
            "transformation_rules": [rule]}})


def test_if_as_the_readme_writes_it_is_a_function_and_python_conditionals_still_parse():
    assert evaluate("if(x > 10, 'big', 'small')", x=11) == "big"
    assert evaluate("1 + if(x > 10, 1, 2)", x=3) == 3
    assert evaluate("iif(x > 10, 'big', 'small')", x=3) == "small"
    assert evaluate("'big' if(x > 10) else 'small'", x=3) == "small"  # Python's conditional
    assert evaluate("x if (x > 10) else 0", x=3) == 0
    with pytest.raises(ExpressionError, match=r"if\(\) takes 3 arguments"):
        parse_expression("if(x > 10, 'big')")


def readme_functions() -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    listed = re.search(r"the functions `([^`]+)`", readme)
    assert listed, "README.md lists the expression functions as: the functions `abs ceil ...`"
    return listed.group(1).split()


def test_the_readme_lists_exactly_the_functions_that_parse():
    listed = readme_functions()
    assert sorted(listed) == sorted(FUNCTIONS)
    for name in listed:
        low = FUNCTIONS[name][1]
        parse_expression(f"{name}({', '.join(['x'] * low)})")  # raises for an unknown function
    with pytest.raises(ExpressionError, match="unknown function 'nosuch'"):
        parse_expression("nosuch(x)")


# -- one semantics: Python's answers on values, checked against Python itself ----------------------

INTS = [-7, 7, 2, -2, 3, -3, 0, 1, None, 25, -15, 9007199254740993, -(2**63), 2**63 - 1]
FLOATS = [-7.5, 2.5, 0.0, -0.5, 1.5, 2.675, 0.1, 1e-20, None, -3.7, 0.285, 1e300, 1.0]
ORACLE_FUNCTIONS = {"sqrt": math.sqrt, "ln": math.log, "log10": math.log10, "exp": math.exp, "round": round,
                    "abs": abs, "int": int, "pow": math.pow}


def python_value(text: str, row: dict):
    """Python's own answer, with the language's rules for what Python raises or cannot hold:
    a null input, an error (ZeroDivisionError, ValueError, OverflowError), a complex number or
    an integer past 64 bits is null."""
    if any(row[name] is None for name in parse_expression(text).columns):
        return None
    try:
        value = eval(compile(text, "<oracle>", "eval"), {"__builtins__": {}}, {**ORACLE_FUNCTIONS, **row})
    except (ArithmeticError, ValueError):
        return None
    if isinstance(value, complex):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    return value


def evaluate_table(text: str, columns: dict[str, list], types: pa.DataType) -> list:
    """The expression computed by DuckDB over a whole table at once, on the engine's connection."""
    con = connect()
    con.register("t", pa.table({**{k: pa.array(v, types) for k, v in columns.items()},
                                "n": pa.array(range(len(next(iter(columns.values())))))}))
    return [r[0] for r in con.execute(f"SELECT {parse_expression(text).to_sql()} FROM t ORDER BY n").fetchall()]


def pairs(values):
    return [a for a in values for _ in values], [b for _ in values for b in values]


def assert_like_python(text: str, columns: dict[str, list], types: pa.DataType, close: bool = False):
    got = evaluate_table(text, columns, types)
    for number, value in enumerate(got):
        row = {name: values[number] for name, values in columns.items()}
        expected = python_value(text, row)
        where = f"{text} with {row}: got {value!r}, Python says {expected!r}"
        if expected is None or value is None:
            assert value is None and expected is None, where
        else:
            assert type(value) is type(expected), where  # integers stay integers
            assert (math.isclose(value, expected, rel_tol=1e-12) if close else value == expected), where


@pytest.mark.parametrize("text", ["a // b", "a % b", "a / b", "a + b", "a - b", "a * b", "-a", "abs(a)",
                                  "round(a, -1)", "a // 2 % 3"])
def test_integer_arithmetic_is_pythons(text):
    # -7 // 2 is -4 (SQL: -3), -7 % 3 is 2 (SQL: -1), x // 0 is null, past 64 bits is null
    a, b = pairs(INTS)
    # `/` divides doubles: past 2**53 Python's exactly rounded int / int can differ in the last bit
    assert_like_python(text, {"a": a, "b": b}, pa.int64(), close=text == "a / b")


@pytest.mark.parametrize("text", ["x // y", "x % y", "x / y", "round(x)", "round(x, 1)", "round(x, 2)", "int(x)",
                                  "x - y"])
def test_float_arithmetic_and_rounding_are_pythons(text):
    # round(2.5) is 2 (SQL: 3), 1 // 0.1 is 9.0, -1e-20 % 1 is 1.0, int(-3.7) is -3 (a cast: -4)
    x, y = pairs(FLOATS)
    assert_like_python(text, {"x": x, "y": y}, pa.float64())


@pytest.mark.parametrize("text", ["sqrt(x)", "ln(x)", "log10(x)", "exp(x)", "x ** y", "pow(x, y)"])
def test_math_errors_are_null_per_row_not_an_aborted_query(text):
    # math.sqrt(-1), math.log(0), math.exp(1000), 0.0 ** -0.5 raise in Python: null here
    x, y = pairs(FLOATS + [1000.0, -4.0])
    assert_like_python(text, {"x": x, "y": y}, pa.float64(), close=True)


def test_the_language_rounds_python_round_on_many_values():
    values = [n / 1000 for n in range(-3000, 3000, 5)] + [n + 0.5 for n in range(-10, 10)]
    for text in ["round(x)", "round(x, 2)", "round(x, 1)"]:
        assert_like_python(text, {"x": values}, pa.float64())


def test_string_literals_are_raw_as_in_sql_and_as_regexes_expect():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python would warn about '\d' and turn '\b' into a backspace
        parse_expression(r"matches(s, '\d+')")
    pattern = r".*\bcat\b.*"
    for text in ["a cat here", "concatenate", "cat", "tomcat"]:
        assert evaluate(f"matches(s, '{pattern}')", s=text) == (re.fullmatch(pattern, text) is not None), text
    assert evaluate(r"len('\n')") == len(r"\n") == 2
    assert evaluate(r"'a\'b'") == r"a\'b"


@pytest.mark.parametrize("text, value, expected", [
    ("None != s", None, False), ("None != s", "x", True), ("None == s", None, True), ("None == s", "x", False),
    ("s != None", None, False), ("s != None", "x", True), ("None is s", None, True), ("None is not s", "x", True),
])
def test_comparisons_with_none_are_symmetric_and_mean_is_null(text, value, expected):
    assert evaluate(text, s=value) is expected


def test_shipped_demo_specs_load_without_warnings():
    from memories_dagster.specs.loading import load_integration_spec

    folder = Path(__file__).parents[2] / "assets" / "integrations"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for file in sorted(folder.glob("*.yaml")):
            loaded = load_integration_spec(file)
            for rule in loaded.spec.integration_config.transformation_rules:
                if rule.transformation_type in ("calculation", "validation"):
                    parse_expression(str(rule.transformation_logic)).to_sql()

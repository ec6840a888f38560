"""A safe expression language for calculations, validations and custom conflict rules.

Config text is parsed with :mod:`ast` (parsing only, never ``eval``), every node is checked
against a short allow-list, and the tree is compiled to a DuckDB SQL expression so that it runs
vectorised over the whole table. Names are columns; ``source.column`` names a column of one
source (used by custom conflict rules).

The syntax is Python's and so are the answers on values: ``//`` floors, ``%`` takes the sign of
the divisor, ``round`` rounds half to even, a math error (division by zero, ``sqrt`` of a
negative, ``ln(0)``, overflow past 64-bit integers) is null for that row. Where SQL differs from
Python the compiled SQL spells Python's answer out; where that depends on a column's type (text
never equals a number, ``s or 'n/a'`` gives an operand) it asks ``typeof()``, which DuckDB folds
to a constant when it binds the SQL. Two things are SQL's on purpose: nulls
propagate (``x == None`` is ``x IS NULL``), and string literals are raw (a backslash stays as
written, as in SQL and as regular expressions expect).
"""

from __future__ import annotations

import ast
import functools
import io
import math
import re
import tokenize
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import duckdb


class ExpressionError(ValueError):
    """An expression that cannot be parsed or uses something not allowed."""


_BINARY = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}
_COMPARE = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
MAX_EXPRESSION_LENGTH = 4000
MAX_DEPTH = 100  # levels of nested operations; deeper is an error, not a RecursionError
MAX_SQL_LENGTH = 200_000  # operands are bound once (_Compiler.let), so SQL grows with the text
_LITERAL_NAMES = {"true": "TRUE", "false": "FALSE"}
# Spellings of null that are not Python's: refused with a hint rather than read as columns
_NOT_NONE = {"null", "none"}
_INT64 = (-(2**63), 2**63 - 1)
# DuckDB type names (typeof) of integers, and of numbers (integers, floats, decimals, booleans,
# which Python also treats as numbers)
_INTEGER_TYPE = "regexp_full_match(typeof({0}), 'U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?')"
_NUMBER_TYPE = "regexp_full_match(typeof({0}), 'U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|DECIMAL.*|BOOLEAN')"
# Python's truth of a value: text when not empty, a number when not zero; None is false, but a
# null boolean stays null (three-valued logic, as the README says for booleans)
_TRUTHY = ("CASE WHEN typeof({0}) IN ('BOOLEAN', 'NULL') THEN TRY_CAST({0} AS BOOLEAN) "
           "WHEN typeof({0}) = 'VARCHAR' THEN coalesce(length(CAST({0} AS VARCHAR)) > 0, FALSE) "
           f"WHEN {_NUMBER_TYPE} THEN coalesce(TRY_CAST({{0}} AS DOUBLE) <> 0, FALSE) "
           "ELSE {0} IS NOT NULL END")
# Python's str.strip() removes every character str.isspace() accepts, not only spaces; as an RE2
# class (regexp_replace runs about three times faster than trim given these characters)
_WHITESPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x110000)) if c.isspace()) + "]"

# The functions of the language: name -> (SQL template with {0}, {1}... or {args}, min args, max args)
FUNCTIONS: dict[str, tuple[str, int, int | None]] = {
    # Python's round: half to even; with one argument an integer
    "round": ("round_even({0}, {1})", 1, 2),
    "abs": ("abs({0})", 1, 1),
    # math.floor and math.ceil give an int; of an integer, that integer (DuckDB's are doubles)
    "floor": (f"CASE WHEN {_INTEGER_TYPE} THEN TRY_CAST({{0}} AS BIGINT) ELSE TRY_CAST(floor({{0}}) AS BIGINT) END", 1, 1),
    "ceil": (f"CASE WHEN {_INTEGER_TYPE} THEN TRY_CAST({{0}} AS BIGINT) ELSE TRY_CAST(ceil({{0}}) AS BIGINT) END", 1, 1),
    # Outside a function's domain Python raises (math.sqrt(-1), math.log(0)); here that row is null.
    "sqrt": ("sqrt(CASE WHEN {0} >= 0 THEN {0} END)", 1, 1),
    "exp": ("exp({0})", 1, 1),
    "ln": ("ln(CASE WHEN {0} > 0 THEN {0} END)", 1, 1),
    "log10": ("log10(CASE WHEN {0} > 0 THEN {0} END)", 1, 1),
    "pow": ("pow({0}, {1})", 2, 2),
    "min": ("least({args})", 2, None),
    "max": ("greatest({args})", 2, None),
    "coalesce": ("coalesce({args})", 1, None),
    "lower": ("lower({0})", 1, 1),
    "upper": ("upper({0})", 1, 1),
    "strip": ("regexp_replace({0}, '^%s+|%s+$', '', 'g')" % ((_WHITESPACE.replace("{", "{{").replace("}", "}}"),) * 2), 1, 1),
    "len": ("length({0})", 1, 1),
    "concat": ("concat({args})", 1, None),
    "substr": ("substr({0}, {1}, {2})", 2, 3),
    "replace": ("replace({0}, {1}, {2})", 3, 3),
    "contains": ("contains({0}, {1})", 2, 2),
    "startswith": ("starts_with({0}, {1})", 2, 2),
    "endswith": ("ends_with({0}, {1})", 2, 2),
    "matches": ("regexp_full_match({0}, {1})", 2, 2),
    "year": ("year({0})", 1, 1),
    "month": ("month({0})", 1, 1),
    "day": ("day({0})", 1, 1),
    "date": ("TRY_CAST({0} AS DATE)", 1, 1),
    # Python's int() truncates toward zero; a cast to BIGINT would round. trunc of a double is
    # exact (a detour through DECIMAL is not: 2365.0 became 2364); of text, only whole numbers.
    "int": ("CASE WHEN typeof({0}) IN ('DOUBLE', 'FLOAT') THEN TRY_CAST(trunc(TRY_CAST({0} AS DOUBLE)) AS BIGINT) "
            "WHEN typeof({0}) = 'VARCHAR' THEN CASE WHEN regexp_full_match(CAST({0} AS VARCHAR), "
            "'\\s*[+-]?[0-9]+(_[0-9]+)*\\s*') THEN TRY_CAST(replace(CAST({0} AS VARCHAR), '_', '') AS BIGINT) END "
            "ELSE TRY_CAST(trunc(TRY_CAST({0} AS DECIMAL(38, 18))) AS BIGINT) END", 1, 1),
    "float": ("TRY_CAST({0} AS DOUBLE)", 1, 1),
    "str": ("CAST({0} AS VARCHAR)", 1, 1),
    "isnull": ("({0} IS NULL)", 1, 1),
    "notnull": ("({0} IS NOT NULL)", 1, 1),
    "if": (f"CASE WHEN {_TRUTHY} THEN {{1}} ELSE {{2}} END", 3, 3),
}
_FUNCTION_ALIASES = {"trim": "strip", "length": "len", "iif": "if", "least": "min", "greatest": "max"}
_REGEX_FUNCTIONS = {"matches": 1}  # function -> position of its pattern argument
# Functions whose result is a float that is not a number (nan, inf) when Python would raise.
_FINITE = {"exp", "pow"}


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, its tree and the columns it reads."""

    text: str
    tree: ast.expr
    columns: frozenset[str]

    def to_sql(self, column: Callable[[str | None, str], str] | None = None) -> str:
        """Compile to DuckDB SQL; ``column(source, name)`` renders a column reference.

        TRY makes a row whose value cannot be computed (an integer overflow, an error only that
        row's values cause) null, counted as a failure of its rule, instead of aborting the run.
        """
        return f"TRY({_Compiler(column or _plain_column, self.text).visit(self.tree)})"


def _plain_column(source: str | None, name: str) -> str:
    return quote_identifier(f"{source}.{name}" if source else name)


def quote_identifier(name: str) -> str:
    """Quote a column name for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: object) -> str:
    """Render a Python scalar as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):  # Python floats, not SQL's exact DECIMAL; inf and nan by name
        return f"'{value!r}'::DOUBLE" if not math.isfinite(value) else f"CAST({value!r} AS DOUBLE)"
    if isinstance(value, int):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def parse_expression(text: str) -> Expression:
    """Parse and check an expression in full (syntax, nesting, functions and their arguments,
    regular expressions, compiled size); raise ExpressionError naming what is wrong."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression of {len(text)} characters is longer than {MAX_EXPRESSION_LENGTH}")
    written, inserted = _as_python(text.strip())
    try:
        with warnings.catch_warnings():  # e.g. "'is' with a literal": refused below with a reason
            warnings.simplefilter("ignore")
            tree = ast.parse(written, mode="eval").body
    except SyntaxError as exc:
        line, offset = exc.lineno or 1, exc.offset or 0
        offset -= sum(1 for at in inserted if at[0] == line and at[1] < offset)
        where = f"line {line}, column {offset}" if "\n" in written else f"column {offset}"
        if not exc.offset:  # Python gives offset 0 where the text ended too early ('x +')
            where = "the end of the expression"
        raise ExpressionError(f"cannot parse '{text}': {exc.msg} at {where}") from None
    except (RecursionError, MemoryError):
        raise _too_deep(text) from None
    _check_depth(tree, text)
    _names_as_written(tree, written)
    columns: set[str] = set()
    _check(tree, text, columns)
    expression = Expression(text=text, tree=tree, columns=frozenset(columns))
    expression.to_sql()  # refuses an expression whose SQL would be too large
    return expression


def _names_as_written(tree: ast.expr, written: str) -> None:
    """Python's parser NFKC-normalises names (``ｘ`` reads as ``x``, the micro sign as Greek mu);
    a column is named as written, so each name is taken back from the text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = ast.get_source_segment(written, node) or node.id
        elif isinstance(node, ast.Attribute):
            segment = ast.get_source_segment(written, node)
            if segment:
                node.attr = segment.rsplit(".", 1)[1].strip()


def _is_int64_min(node: ast.AST) -> bool:
    """``-9223372036854775808``: Python parses it as minus a literal one past the 64-bit range."""
    return (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int and node.operand.value == -_INT64[0])


def _too_deep(text: str) -> ExpressionError:
    return ExpressionError(
        f"expression nests more than {MAX_DEPTH} levels deep: '{text[:60]}...'; split it into "
        "several calculation rules, each writing a column the next one reads"
    )


def _check_depth(tree: ast.expr, text: str) -> None:
    """Refuse trees deeper than MAX_DEPTH, measured without recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(text)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))


_KEYWORDS_BEFORE_OPERAND = {"and", "or", "not", "in", "is", "if", "else", "lambda"}


def _as_python(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text as Python should parse it, and the (line, column) of each character inserted.

    String literals become raw (``'\\b'`` stays backslash-b, as in SQL and as a regex means it),
    and ``if(c, a, b)`` where an operand is expected (the README's spelling) becomes ``iif(...)``;
    ``x if (c) else y`` stays Python's conditional. Text that does not tokenize is left to
    :func:`ast.parse` to report.
    """
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError):
        return text, []
    edits: list[tuple[int, int, str, int]] = []  # line, column, text, characters it replaces
    for number, token in enumerate(tokens):
        if token.type == tokenize.STRING:
            prefix = token.string[: len(token.string) - len(token.string.lstrip("rRbBuUfF"))]
            if not prefix:
                edits.append((*token.start, "r", 0))
            elif prefix in ("u", "U"):
                edits.append((*token.start, "r", 1))
        elif token.type == tokenize.NAME and token.string == "if":
            before = tokens[number - 1] if number else None
            after = tokens[number + 1] if number + 1 < len(tokens) else None
            operand_ends = before is not None and (
                before.type in (tokenize.NUMBER, tokenize.STRING)
                or (before.type == tokenize.NAME and before.string not in _KEYWORDS_BEFORE_OPERAND)
                or before.string in (")", "]", "}")
            )
            if after is not None and after.string == "(" and not operand_ends:
                edits.append((*token.start, "i", 0))
    lines = text.split("\n")
    for line, column, insert, replaces in sorted(edits, reverse=True):
        row = lines[line - 1]
        lines[line - 1] = row[:column] + insert + row[column + replaces:]
    return "\n".join(lines), [(line, column + 1) for line, column, _, replaces in edits if not replaces]


@functools.lru_cache(maxsize=512)
def regex_problem(pattern: str) -> str | None:
    """Why DuckDB's regex engine (RE2, the one that runs the rule) refuses ``pattern``, or None."""
    con = duckdb.connect()
    try:
        con.execute("SELECT regexp_full_match('', ?)", [pattern]).fetchall()
    except duckdb.Error as exc:
        return str(exc).split(":", 1)[-1].strip().splitlines()[0]
    finally:
        con.close()
    return None


def _check(node: ast.AST, text: str, columns: set[str], listed: bool = False) -> None:
    """Refuse what the language does not have; ``listed``: ``node`` is the right side of ``in``."""
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(f"in '{text}': only plain function calls are allowed")
        name = _FUNCTION_ALIASES.get(node.func.id, node.func.id)
        if name not in FUNCTIONS:
            raise ExpressionError(
                f"in '{text}': unknown function '{node.func.id}'; allowed: "
                + ", ".join(sorted(FUNCTIONS))
            )
        _, low, high = FUNCTIONS[name]
        called = "if" if node.func.id == "iif" else node.func.id
        if node.keywords or len(node.args) < low or (high is not None and len(node.args) > high):
            expected = f"{low}" if low == high else f"{low} to {high or 'any number of'}"
            raise ExpressionError(f"in '{text}': {called}() takes {expected} arguments")
        position = _REGEX_FUNCTIONS.get(name)
        pattern = node.args[position] if position is not None else None
        if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            problem = regex_problem(pattern.value)
            if problem:
                raise ExpressionError(
                    f"in '{text}': {called}() pattern '{pattern.value}' is not a regular expression "
                    f"(RE2 syntax, matched against the whole value): {problem}"
                )
        for arg in node.args:
            _check(arg, text, columns)
        return
    if isinstance(node, ast.Name):
        if node.id.lower() in _NOT_NONE:
            raise ExpressionError(f"in '{text}': '{node.id}' is not a value here: write None for null")
        if node.id.lower() not in _LITERAL_NAMES:
            columns.add(node.id)
        return
    if isinstance(node, ast.Attribute):
        if not isinstance(node.value, ast.Name):
            raise ExpressionError(f"in '{text}': write a source column as source.column")
        columns.add(f"{node.value.id}.{node.attr}")
        return
    if _is_int64_min(node):
        return
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExpressionError(f"in '{text}': literal {node.value!r} is not allowed")
        if type(node.value) is int and not _INT64[0] <= node.value <= _INT64[1]:
            raise ExpressionError(f"in '{text}': integer {node.value} does not fit in 64 bits")
        return
    if isinstance(node, (ast.Tuple, ast.List)) and not listed:
        raise ExpressionError(f"in '{text}': a tuple or list is allowed only after 'in' or 'not in'")
    allowed = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Tuple, ast.List)
    if not isinstance(node, allowed):
        raise ExpressionError(
            f"in '{text}': {type(node).__name__} is not allowed; use columns, literals, "
            "arithmetic, comparisons, and/or/not, 'x if c else y' and the listed functions"
        )
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY and not isinstance(
        node.op, ast.Pow
    ):
        raise ExpressionError(f"in '{text}': operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.Compare):
        for left, op, right in zip([node.left, *node.comparators], node.ops, node.comparators):
            if isinstance(op, (ast.Is, ast.IsNot)) and not any(
                _is_none(side) or (isinstance(side, ast.Name) and side.id.lower() in _NOT_NONE)  # hinted below
                for side in (left, right)
            ):
                raise ExpressionError(f"in '{text}': 'is' compares only with None")
    if isinstance(node, ast.Compare):
        _check(node.left, text, columns)
        for op, comparator in zip(node.ops, node.comparators):
            _check(comparator, text, columns, isinstance(op, (ast.In, ast.NotIn)))
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
            continue
        _check(child, text, columns)


def _finite(sql: str) -> str:
    """``sql`` with nan and infinities made null: where Python raises (``math.exp(1000)``,
    ``0.0 ** -1``, ``(-8) ** 0.5`` which is not a real number) a float function gives those.
    A list of one value, filtered, names ``sql`` once (nullif would copy it, per nesting level)."""
    return f"list_filter([{sql}], lambda __finite: isfinite(__finite))[1]"


def _python_floor_division(left: str, right: str, modulo: bool) -> str:
    """Python's ``left // right`` or ``left % right`` from SQL's, which truncate toward zero.

    SQL's remainder has the sign of ``left``; where it is non-zero and the signs of remainder and
    divisor differ, Python's quotient is one less and its remainder one divisor more. The exact
    quotient comes from dividing the exact multiple ``left - remainder``: integers stay integers
    (no detour through a double that would lose bits past 2**53), and on floats ``round`` removes
    the last-bit error of that division, as Python's own float floor division does.
    """
    right = f"nullif({right}, 0)"  # Python raises ZeroDivisionError: null for that row
    remainder = f"({left} % {right})"
    differs = f"({remainder} <> 0 AND ({remainder} < 0) <> ({right} < 0))"
    if modulo:
        return f"(CASE WHEN {differs} THEN {remainder} + {right} ELSE {remainder} END)"
    return f"(round(({left} - {remainder}) // {right}) - CASE WHEN {differs} THEN 1 ELSE 0 END)"


_BOOLEAN_FUNCTIONS = {"contains", "startswith", "endswith", "matches", "isnull", "notnull"}


def _is_boolean(node: ast.expr) -> bool:
    """Whether ``node``'s value is a boolean whatever the columns' types (its truth is itself)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _FUNCTION_ALIASES.get(node.func.id, node.func.id) in _BOOLEAN_FUNCTIONS
    if isinstance(node, ast.BoolOp):
        return all(_is_boolean(v) for v in node.values)
    return isinstance(node, ast.Compare) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not))


_NUMBER_FUNCTIONS = {"round", "abs", "floor", "ceil", "sqrt", "exp", "ln", "log10", "pow", "int", "float", "len",
                     "year", "month", "day"}


def _never_text(node: ast.expr) -> bool:
    """Whether ``node``'s value is a number or a boolean whatever the columns' types (arithmetic
    on text is an error of its own, so an operator's result is a number)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _FUNCTION_ALIASES.get(node.func.id, node.func.id) in _NUMBER_FUNCTIONS or _is_boolean(node)
    return isinstance(node, (ast.BinOp, ast.UnaryOp)) or _is_boolean(node)


def _truthy(sql: str) -> str:
    """Python's truth of ``sql``'s value (see _TRUTHY)."""
    return f"({_TRUTHY.format(sql)})"


def _python_compare(left: str, op: ast.cmpop, right: str) -> str:
    """``left op right`` as Python compares: text and a number are never equal (SQL would convert
    one to the other: '010' = 10), and ordering them raises (null here). Column types are known
    only when the SQL is bound, so the SQL asks typeof(), which DuckDB folds into a constant."""
    differ = (f"((typeof({left}) = 'VARCHAR' AND {_NUMBER_TYPE.format(right)}) OR "
              f"({_NUMBER_TYPE.format(left)} AND typeof({right}) = 'VARCHAR'))")
    mismatch = {ast.Eq: "FALSE", ast.NotEq: "TRUE"}.get(type(op), "NULL")
    return (f"(CASE WHEN {differ} THEN CASE WHEN {left} IS NOT NULL AND {right} IS NOT NULL THEN {mismatch} END "
            f"ELSE {left} {_COMPARE[type(op)]} {right} END)")


def _is_none(node: ast.expr) -> bool:
    """``x == None`` means ``x is None``: SQL's ``= NULL`` would never be true."""
    return isinstance(node, ast.Constant) and node.value is None


_SIMPLE_SQL = re.compile(r'"(?:[^"]|"")*"|-?[0-9]+|NULL|TRUE|FALSE|\'(?:[^\']|\'\')*\'')


class _Compiler(ast.NodeVisitor):
    def __init__(self, column: Callable[[str | None, str], str], text: str) -> None:
        self.column = column
        self.text = text
        self.bound = 0

    def let(self, values: list[str], body: Callable[..., str]) -> str:
        """``body`` over ``values``, each computed once. SQL that names an operand more than once
        (CASE, nullif) would otherwise repeat it, and nested, multiply it: five nested ``**``
        took minutes to compile. A column or literal is used as is; any other value is bound
        to the parameter of a lambda over a list of one element."""
        names, wrappers = [], []
        for value in values:
            if _SIMPLE_SQL.fullmatch(value):
                names.append(value)
                continue
            self.bound += 1
            names.append(f"__v{self.bound}")
            wrappers.append((value, names[-1]))
        sql = body(*names)
        for value, name in reversed(wrappers):
            sql = f"list_transform([{value}], lambda {name}: {sql})[1]"
        return sql

    def visit(self, node: ast.AST) -> str:
        sql = super().visit(node)
        if len(sql) > MAX_SQL_LENGTH:
            raise ExpressionError(
                f"'{self.text[:60]}' compiles to more than {MAX_SQL_LENGTH} characters of SQL; "
                "split it into several calculation rules"
            )
        return sql

    def visit_Constant(self, node: ast.Constant) -> str:
        return sql_literal(node.value)

    def visit_Name(self, node: ast.Name) -> str:
        literal = _LITERAL_NAMES.get(node.id.lower())
        return literal if literal else self.column(None, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> str:
        return self.column(node.value.id, node.attr)  # type: ignore[attr-defined]

    def visit_BinOp(self, node: ast.BinOp) -> str:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Pow):
            return _finite(f"pow({left}, {right})")
        if isinstance(node.op, ast.Div):
            right = f"nullif({right}, 0)"  # Python raises ZeroDivisionError: null for that row
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)):
            modulo = isinstance(node.op, ast.Mod)
            return self.let([left, right], lambda a, b: _python_floor_division(a, b, modulo))
        return f"({left} {_BINARY[type(node.op)]} {right})"

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        if _is_int64_min(node):
            return f"CAST({_INT64[0]} AS BIGINT)"
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return f"(NOT {operand if _is_boolean(node.operand) else self.let([operand], _truthy)})"
        if isinstance(node.op, ast.Invert):  # Python's ~ of an integer, -x - 1; of a float an error
            return f"(~{operand})"
        return f"({'-' if isinstance(node.op, ast.USub) else '+'}{operand})"

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        """Booleans: SQL's three-valued AND/OR. Other operands: Python's answer, an operand (``s or
        'n/a'`` is s unless s is empty or null); typeof() picks one, folded at bind."""
        conjunction = isinstance(node.op, ast.And)
        if all(_is_boolean(v) for v in node.values):  # no operand to return: SQL's own, faster
            return "(" + (" AND " if conjunction else " OR ").join(self.visit(v) for v in node.values) + ")"

        def python(*values: str) -> str:
            *leading, last = values
            booleans = "(" + " AND ".join(f"typeof({v}) IN ('BOOLEAN', 'NULL')" for v in values) + ")"
            # `and` stops at the first falsy operand, `or` at the first truthy one; None is falsy,
            # but among booleans a null neither stops `and` nor ends three-valued logic
            stops = [f"NOT coalesce({_truthy(v)}, {booleans})" if conjunction else f"coalesce({_truthy(v)}, FALSE)"
                     for v in leading]
            whens = " ".join(f"WHEN {stop} THEN {v}" for stop, v in zip(stops, leading))
            unknown = " OR ".join(f"{v} IS NULL" for v in leading)
            decided = f"{last} IS DISTINCT FROM FALSE" if conjunction else f"{last} IS DISTINCT FROM TRUE"
            return f"(CASE {whens} WHEN {booleans} AND ({unknown}) AND {decided} THEN NULL ELSE {last} END)"

        return self.let([self.visit(v) for v in node.values], python)

    def _compare(self, left: str, op: ast.cmpop, right: str, nodes: list[ast.expr]) -> str:
        """Python's comparison; operands that are never text need no binding: their own SQL
        appears only in the branch for text, which DuckDB folds away."""
        if all(_never_text(n) for n in nodes):
            return f"({left} {_COMPARE[type(op)]} {right})"
        bound = [sql for sql, n in zip((left, right), nodes) if not _never_text(n)]

        def compare(*names: str) -> str:
            given = iter(names)
            a, b = (sql if _never_text(n) else next(given) for sql, n in zip((left, right), nodes))
            return _python_compare(a, op, b)

        return self.let(bound, compare)

    def visit_Compare(self, node: ast.Compare) -> str:
        parts, left = [], self.visit(node.left)
        for previous, op, comparator in zip([node.left, *node.comparators], node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                negate = "NOT " if isinstance(op, ast.NotIn) else ""
                if isinstance(comparator, (ast.Tuple, ast.List)):  # membership: any item ==, as Python
                    items = [self.visit(i) for i in comparator.elts]
                    right = "(" + ", ".join(items) + ")"
                    parts.append(self.let([left], lambda a: f"({negate}(" + " OR ".join(
                        _python_compare(a, ast.Eq(), i) for i in items) + "))"))
                else:  # in a text: a substring of it; in anything else Python raises (null)
                    right = self.visit(comparator)
                    parts.append(self.let([left, right], lambda a, b: (
                        f"(CASE WHEN typeof({a}) = 'VARCHAR' AND typeof({b}) = 'VARCHAR' "
                        f"THEN {negate}contains(CAST({b} AS VARCHAR), CAST({a} AS VARCHAR)) END)")))
            elif isinstance(op, (ast.Is, ast.IsNot)) or _is_none(comparator) or left == "NULL":
                # compared with None, either side: `None != x` is `x IS NOT NULL`, as `x != None` is
                negate = "NOT " if isinstance(op, (ast.IsNot, ast.NotEq)) else ""
                right = self.visit(comparator)
                subject = left if right == "NULL" else right
                if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
                    parts.append(f"({subject} IS {negate}NULL)")
                else:  # None < x: Python raises; SQL's unknown
                    parts.append("CAST(NULL AS BOOLEAN)")
            else:
                right = self.visit(comparator)
                parts.append(self._compare(left, op, right, [previous, comparator]))
            left = right
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def visit_IfExp(self, node: ast.IfExp) -> str:
        return (
            f"(CASE WHEN {self.visit(node.test) if _is_boolean(node.test) else self.let([self.visit(node.test)], _truthy)} "
            f"THEN {self.visit(node.body)} "
            f"ELSE {self.visit(node.orelse)} END)"
        )

    def visit_Call(self, node: ast.Call) -> str:
        name = _FUNCTION_ALIASES.get(node.func.id, node.func.id)  # type: ignore[attr-defined]
        template, _, _ = FUNCTIONS[name]
        args = [self.visit(a) for a in node.args]
        if name == "round" and len(args) == 1:  # round(x) is an integer in Python
            return f"CAST(round_even({args[0]}, 0) AS BIGINT)"
        if name == "substr" and len(args) == 2:
            template = "substr({0}, {1})"
        sql = self.let(args, lambda *names: template.format(*names, args=", ".join(names))) if any(
            template.count(f"{{{i}}}") > 1 for i in range(len(args))) else template.format(*args, args=", ".join(args))
        return _finite(sql) if name in _FINITE else sql

    def generic_visit(self, node: ast.AST) -> str:  # pragma: no cover - _check rejects these
        raise ExpressionError(f"{type(node).__name__} is not allowed")

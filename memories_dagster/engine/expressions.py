"""A safe expression language for calculations, validations and custom conflict rules.

Config text is parsed with :mod:`ast` (parsing only, never ``eval``), every node is checked
against a short allow-list, and the tree is compiled to a DuckDB SQL expression so that it runs
vectorised over the whole table. Names are columns; ``source.column`` names a column of one
source (used by custom conflict rules).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass


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
_LITERAL_NAMES = {"true": "TRUE", "false": "FALSE", "null": "NULL", "none": "NULL"}

# name -> (SQL template with {0}, {1}... or {args}, min args, max args)
_FUNCTIONS: dict[str, tuple[str, int, int | None]] = {
    "round": ("round({0}, {1})", 1, 2),
    "abs": ("abs({0})", 1, 1),
    "floor": ("floor({0})", 1, 1),
    "ceil": ("ceil({0})", 1, 1),
    "sqrt": ("sqrt({0})", 1, 1),
    "exp": ("exp({0})", 1, 1),
    "ln": ("ln({0})", 1, 1),
    "log10": ("log10({0})", 1, 1),
    "pow": ("pow({0}, {1})", 2, 2),
    "min": ("least({args})", 2, None),
    "max": ("greatest({args})", 2, None),
    "coalesce": ("coalesce({args})", 1, None),
    "lower": ("lower({0})", 1, 1),
    "upper": ("upper({0})", 1, 1),
    "strip": ("trim({0})", 1, 1),
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
    "int": ("TRY_CAST({0} AS BIGINT)", 1, 1),
    "float": ("TRY_CAST({0} AS DOUBLE)", 1, 1),
    "str": ("CAST({0} AS VARCHAR)", 1, 1),
    "isnull": ("({0} IS NULL)", 1, 1),
    "notnull": ("({0} IS NOT NULL)", 1, 1),
    "if": ("CASE WHEN {0} THEN {1} ELSE {2} END", 3, 3),
}
_FUNCTION_ALIASES = {"trim": "strip", "length": "len", "iif": "if", "least": "min", "greatest": "max"}


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, its tree and the columns it reads."""

    text: str
    tree: ast.expr
    columns: frozenset[str]

    def to_sql(self, column: Callable[[str | None, str], str] | None = None) -> str:
        """Compile to DuckDB SQL; ``column(source, name)`` renders a column reference."""
        return _Compiler(column or _plain_column).visit(self.tree)


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
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"  # Python floats, not SQL's exact DECIMAL
    if isinstance(value, int):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def parse_expression(text: str) -> Expression:
    """Parse and check an expression; raise ExpressionError naming what is wrong."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression of {len(text)} characters is longer than {MAX_EXPRESSION_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        columns: set[str] = set()
        _check(tree, text, columns)
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse '{text}': {exc.msg} at column {exc.offset}") from None
    except RecursionError:
        raise ExpressionError(f"expression nests too deeply: '{text[:60]}...'") from None
    return Expression(text=text, tree=tree, columns=frozenset(columns))


def _check(node: ast.AST, text: str, columns: set[str]) -> None:
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(f"in '{text}': only plain function calls are allowed")
        name = _FUNCTION_ALIASES.get(node.func.id, node.func.id)
        if name not in _FUNCTIONS:
            raise ExpressionError(
                f"in '{text}': unknown function '{node.func.id}'; allowed: "
                + ", ".join(sorted(_FUNCTIONS))
            )
        _, low, high = _FUNCTIONS[name]
        if node.keywords or len(node.args) < low or (high is not None and len(node.args) > high):
            expected = f"{low}" if low == high else f"{low} to {high or 'any number of'}"
            raise ExpressionError(f"in '{text}': {node.func.id}() takes {expected} arguments")
        for arg in node.args:
            _check(arg, text, columns)
        return
    if isinstance(node, ast.Name):
        if node.id.lower() not in _LITERAL_NAMES:
            columns.add(node.id)
        return
    if isinstance(node, ast.Attribute):
        if not isinstance(node.value, ast.Name):
            raise ExpressionError(f"in '{text}': write a source column as source.column")
        columns.add(f"{node.value.id}.{node.attr}")
        return
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExpressionError(f"in '{text}': literal {node.value!r} is not allowed")
        return
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
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Is, ast.IsNot)) and not (
                isinstance(right, ast.Constant) and right.value is None
            ):
                raise ExpressionError(f"in '{text}': 'is' compares only with None")
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
            continue
        _check(child, text, columns)


def _is_none(node: ast.expr) -> bool:
    """``x == None`` means ``x is None``: SQL's ``= NULL`` would never be true."""
    return isinstance(node, ast.Constant) and node.value is None


class _Compiler(ast.NodeVisitor):
    def __init__(self, column: Callable[[str | None, str], str]) -> None:
        self.column = column

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
            return f"pow({left}, {right})"
        return f"({left} {_BINARY[type(node.op)]} {right})"

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return f"(NOT {operand})"
        return f"({'-' if isinstance(node.op, ast.USub) else '+'}{operand})"

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        joiner = " AND " if isinstance(node.op, ast.And) else " OR "
        return "(" + joiner.join(self.visit(v) for v in node.values) + ")"

    def visit_Compare(self, node: ast.Compare) -> str:
        parts, left = [], self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                items = comparator.elts if isinstance(comparator, (ast.Tuple, ast.List)) else [
                    comparator
                ]
                negate = "NOT " if isinstance(op, ast.NotIn) else ""
                right = "(" + ", ".join(self.visit(i) for i in items) + ")"
                parts.append(f"({left} {negate}IN {right})")
            elif isinstance(op, (ast.Is, ast.IsNot)) or _is_none(comparator):
                negate = isinstance(op, (ast.IsNot, ast.NotEq))
                parts.append(f"({left} IS {'NOT ' if negate else ''}NULL)")
                right = "NULL"
            else:
                right = self.visit(comparator)
                parts.append(f"({left} {_COMPARE[type(op)]} {right})")
            left = right
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def visit_IfExp(self, node: ast.IfExp) -> str:
        return (
            f"(CASE WHEN {self.visit(node.test)} THEN {self.visit(node.body)} "
            f"ELSE {self.visit(node.orelse)} END)"
        )

    def visit_Call(self, node: ast.Call) -> str:
        name = _FUNCTION_ALIASES.get(node.func.id, node.func.id)  # type: ignore[attr-defined]
        template, _, _ = _FUNCTIONS[name]
        args = [self.visit(a) for a in node.args]
        if name == "round" and len(args) == 1:
            args.append("0")
        if name == "substr" and len(args) == 2:
            template = "substr({0}, {1})"
        return template.format(*args, args=", ".join(args))

    def generic_visit(self, node: ast.AST) -> str:  # pragma: no cover - _check rejects these
        raise ExpressionError(f"{type(node).__name__} is not allowed")

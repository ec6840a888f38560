"""Reading a declaration's text into Python values, strictly: a repeated key is an error naming
both lines (YAML and JSON parsers keep the last one silently), YAML aliases cannot blow a small
file up into millions of values, mapping keys are the text written (as in JSON; YAML 1.1 made a
value map `{yes: 1, no: 0}` into `{True: 1, False: 0}`, which matches no text), and other
scalars follow YAML 1.2's core schema (`on` is text, `010` is ten, `1.5e3` a number).

Every YAML or JSON file a user writes (specs, regions, resource profiles, pandera schema files)
goes through here. Imports nothing of ours, so every layer may use it.
"""

from __future__ import annotations

import json
import re
from json.decoder import JSONObject, WHITESPACE, scanstring
from json.scanner import py_make_scanner

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Aliases may add this many values to those a document writes out; a document without aliases is
# never refused for its size.
MAX_EXPANDED_VALUES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class DocumentError(ValueError):
    """The text cannot become a declaration; ``line`` and ``column`` (1-based) say where, if known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line, self.column = line, column
        super().__init__(message)

    def described(self, kind: str) -> str:
        """'invalid YAML at line 3, column 5: why', for a message that names the file first."""
        where = f" at line {self.line}, column {self.column}" if self.line else ""
        return f"invalid {kind}{where}: {self}"


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader: mapping keys are text, repeated keys refused, YAML 1.2's scalars."""

    def compose_scalar_node(self, anchor: str | None) -> ScalarNode:
        guessed = anchor is None and self.peek_event().tag is None  # no tag written: the type is guessed from the text
        node = super().compose_scalar_node(anchor)
        node.plain_text = guessed and node.style is None
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        first_of: dict[object, ScalarNode] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # `<<: *base` and keys overriding what it merges are YAML's merge, not a repeat
            if getattr(key_node, "plain_text", False):
                key_node.tag = _STR_TAG  # keys are the text written, as in JSON: {yes: 1, 010: 2} maps "yes" and "010"
            key = self.construct_object(key_node)
            first = first_of.setdefault(key, key_node)
            if first is not key_node:
                line = key_node.start_mark.line + 1
                raise DocumentError(
                    f"key '{key_node.value}' is given twice, on line {first.start_mark.line + 1} and on line "
                    f"{line}; YAML would keep only the last one: merge them into one",
                    line, key_node.start_mark.column + 1)
        return node

    def construct_document(self, node: Node) -> object:
        _refuse_alias_bombs(node)
        return super().construct_document(node)


# YAML 1.2 core schema booleans and numbers instead of YAML 1.1's: `yes`/`on` are text, `010` is
# ten (not octal eight), `12:30` is text (not 750 in base 60), `1_000` is text, `1.5e3` is a
# number (YAML 1.1 left it text). Ints are tried before floats, which would match them too.
_CORE_SCALARS = [
    (_BOOL_TAG, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_INT_TAG, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (_FLOAT_TAG, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
]
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _firsts in _CORE_SCALARS:
    _StrictLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_firsts))


def _core_int(loader: _StrictLoader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text, 0) if text.startswith(("0o", "0x")) else int(text)  # int("010") is ten
    except ValueError:  # an explicit `!!int` on text that is none
        raise yaml.constructor.ConstructorError(None, None, f"'{text}' is not an integer", node.start_mark) from None


_StrictLoader.add_constructor(_INT_TAG, _core_int)


def _refuse_alias_bombs(root: Node) -> None:
    """Count the values the document becomes once every alias is expanded, without expanding it."""
    size: dict[int, int] = {}  # id(node) -> values it expands to (memoized: counting stays linear)
    open_nodes: set[int] = set()
    first_too_large: Node | None = None  # the innermost value past the limit, to point at
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in children)
            if first_too_large is None and size[id(node)] > MAX_EXPANDED_VALUES:
                first_too_large = node
            continue
        if id(node) in open_nodes:
            raise DocumentError(
                "an alias (*name) refers to a value that contains it, which would never end",
                node.start_mark.line + 1, node.start_mark.column + 1)
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)
    if size[id(root)] - len(size) > MAX_EXPANDED_VALUES:  # values added by aliases, beyond those written
        where = first_too_large or root
        raise DocumentError(
            f"its aliases (*name) add more than {MAX_EXPANDED_VALUES:,} values to those written; an alias repeats the "
            "whole value its anchor (&name) marks, so aliases of aliases multiply. Write the values out, or use "
            "fewer levels of aliases", where.start_mark.line + 1, where.start_mark.column + 1)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_yaml(text: str) -> object:
    """The value of one YAML document; DocumentError when it cannot be read."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(problem, mark.line + 1, mark.column + 1) if mark else DocumentError(problem) from None
    except RecursionError:
        raise DocumentError("it is nested too deeply to be a declaration") from None


def parse_json(text: str) -> object:
    """The value of one JSON document; DocumentError when it cannot be read."""
    decoder = json.JSONDecoder()
    decoder.parse_object = _object_without_repeats
    decoder.scan_once = py_make_scanner(decoder)  # the Python scanner calls parse_object; the C one does not
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise DocumentError("it is nested too deeply to be a declaration") from None


def _object_without_repeats(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None, _w=WHITESPACE.match):
    """json's JSONObject, refusing an object that repeats a key (json.loads keeps the last)."""
    text, start = s_and_end
    pairs, end = JSONObject(s_and_end, strict, scan_once, None, list, memo, _w)
    if len(pairs) != len({key for key, _ in pairs}):
        seen: dict[str, int] = {}
        for key, at in _keys_at(text, start, scan_once):
            if key in seen:
                (first, first_column), (line, column) = _place(text, seen[key]), _place(text, at)
                where = f"on line {first} and on line {line}" if first != line else \
                    f"on line {line}, columns {first_column} and {column}"
                raise DocumentError(f"key \"{key}\" is given twice, {where}; JSON readers would keep only the last "
                                    "one: merge them into one", line, column)
            seen[key] = at
    return dict(pairs), end


def _place(text: str, offset: int) -> tuple[int, int]:
    """(line, column), both from 1, of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _keys_at(text: str, start: int, scan_once) -> list[tuple[str, int]]:
    """(key, offset) of each member of the well-formed object whose '{' is just before ``start``."""
    found = []
    at = WHITESPACE.match(text, start).end()
    while text[at] == '"':
        key, after = scanstring(text, at + 1)
        found.append((key, at))
        value_at = WHITESPACE.match(text, WHITESPACE.match(text, after).end() + 1).end()  # past ':'
        _, after_value = scan_once(text, value_at)
        at = WHITESPACE.match(text, after_value).end()
        at = WHITESPACE.match(text, at + 1).end() if text[at] == "," else at
    return found

"""COBOL copybooks: the record layout of mainframe files, as a flat list of fields with offsets.

Supports what record layouts use: levels 01-49 with groups, ``PIC`` strings (``X``, ``A``,
``9``, ``S``, ``V``, repeat counts), ``USAGE`` ``DISPLAY`` (zoned decimal), ``COMP-3`` /
``PACKED-DECIMAL``, ``COMP`` / ``COMP-4`` / ``COMP-5`` / ``BINARY`` (big-endian), ``OCCURS n
[TIMES]`` on fields and groups, ``REDEFINES``, ``FILLER``, ``VALUE`` clauses (ignored) and level
88 condition names (ignored), in fixed (columns 7-72) or free format.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field


class CopybookError(ValueError):
    """A copybook that cannot be parsed; the message names the statement."""


@dataclass(frozen=True)
class Field:
    """One elementary field of a record, after OCCURS expansion."""

    name: str
    offset: int
    size: int
    kind: str  # "text", "zoned", "packed" or "binary"
    digits: int = 0
    scale: int = 0
    signed: bool = False
    path: tuple[str, ...] = ()  # the groups it sits in, outermost first


@dataclass
class _Item:
    level: int
    name: str
    pic: str | None = None
    usage: str = "display"
    occurs: int = 1
    redefines: str | None = None
    children: list[_Item] = field(default_factory=list)


_CLAUSES = {"PIC", "PICTURE", "USAGE", "OCCURS", "REDEFINES", "VALUE", "VALUES", "COMP", "COMP-3", "BINARY",
            "ASCENDING", "DESCENDING", "SYNC", "SYNCHRONIZED", "DISPLAY", "PACKED-DECIMAL"}
_PIC_PART = re.compile(r"([XA9SVP])(?:\((\d+)\))?")
_USAGES = {
    "COMP-3": "packed", "COMPUTATIONAL-3": "packed", "PACKED-DECIMAL": "packed",
    "COMP": "binary", "COMP-4": "binary", "COMP-5": "binary", "BINARY": "binary",
    "COMPUTATIONAL": "binary", "COMPUTATIONAL-4": "binary", "COMPUTATIONAL-5": "binary",
    "DISPLAY": "display",
}


def column_name(cobol_name: str) -> str:
    """COBOL names as columns: lower case, ``-`` as ``_``."""
    return cobol_name.lower().replace("-", "_")


@dataclass(frozen=True)
class Layout:
    """A record layout: its elementary fields and its length in bytes (FILLER included)."""

    fields: list[Field]
    length: int


def parse_copybook(text: str) -> Layout:
    """The layout of the record described by ``text``, fields in record order."""
    statements = _statements(text)
    if not statements:
        raise CopybookError("the copybook describes no fields")
    roots: list[_Item] = []
    stack: list[_Item] = []
    for statement in statements:
        item = _item(statement)
        if item is None:
            continue
        while stack and stack[-1].level >= item.level:
            stack.pop()
        (stack[-1].children if stack else roots).append(item)
        stack.append(item)
    fields: list[Field] = []
    # Several 01 records describe the same storage (alternative layouts): they overlay.
    for root in roots:
        if root.pic is None:
            _layout(root, 0, "", fields, [])
        else:
            _layout(_Item(1, "RECORD", children=[root]), 0, "", fields, [])
    if not fields:
        raise CopybookError("the copybook describes no named elementary field")
    return Layout(_unique_names(fields), max(_size(root) for root in roots))


def _unique_names(fields: list[Field]) -> list[Field]:
    """Fields of the same name (CITY under BILL and under SHIP) get their groups' names."""
    counts: dict[str, int] = {}
    for spec in fields:
        counts[spec.name] = counts.get(spec.name, 0) + 1
    named = []
    for spec in fields:
        if counts[spec.name] > 1 and spec.path:
            spec = dataclasses.replace(spec, name="_".join([*spec.path, spec.name]))
        named.append(spec)
    seen = [f.name for f in named]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise CopybookError(f"field names {', '.join(repeated)} repeat even with their groups' names")
    return named


def _statements(text: str) -> list[str]:
    raw_lines = [line for line in text.splitlines() if line.strip()]
    # Fixed format: sequence numbers in columns 1-6, or every line's text from column 8 on.
    fixed = any(re.fullmatch(r"\d{6}", line[:6]) for line in raw_lines) or all(
        len(line) - len(line.lstrip()) >= 7 or line[6:7] in ("*", "/") for line in raw_lines
    )
    lines = []
    for line in raw_lines:
        if fixed:
            if line[6:7] in ("*", "/"):
                continue
            line = line[7:72]
        if line.lstrip().startswith("*"):
            continue
        lines.append(line)
    return _split_statements(" ".join(lines))


def _split_statements(body: str) -> list[str]:
    """Statements end with a period followed by a space, outside quoted literals."""
    statements, current, quote = [], [], None
    for position, char in enumerate(body):
        if quote:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "." and (position + 1 == len(body) or body[position + 1].isspace()):
            statements.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _item(statement: str) -> _Item | None:
    words = statement.split()
    if not words[0].isdigit():
        raise CopybookError(f"statement '{statement}' does not start with a level number")
    level = int(words[0])
    if level == 88:
        return None
    if level == 66:
        raise CopybookError(f"level 66 (RENAMES) is not supported: '{statement}'")
    if len(words) < 2:
        raise CopybookError(f"statement '{statement}' has no name")
    item = _Item(level, words[1].upper())
    position = 2
    while position < len(words):
        word = words[position].upper()
        if word in ("PIC", "PICTURE"):
            position += 1
            if position < len(words) and words[position].upper() == "IS":
                position += 1
            item.pic = words[position].upper()
        elif word == "USAGE":
            position += 1
            if words[position].upper() == "IS":
                position += 1
            item.usage = _usage(words[position], statement)
        elif word in _USAGES:
            item.usage = _usage(word, statement)
        elif word == "OCCURS":
            position += 1
            item.occurs = int(words[position])
            if position + 2 < len(words) and words[position + 1].upper() == "TO":
                raise CopybookError(f"OCCURS ... DEPENDING ON is not supported: '{statement}'")
        elif word == "REDEFINES":
            position += 1
            item.redefines = words[position].upper()
        elif word == "VALUE" or word == "VALUES":
            break  # a VALUE clause describes initial contents, not layout
        elif word == "INDEXED":
            position += 2 if position + 1 < len(words) and words[position + 1].upper() == "BY" else 1
            while position + 1 < len(words) and words[position + 1].upper() not in _CLAUSES:
                position += 1  # the index names
        elif word in ("ASCENDING", "DESCENDING"):
            break  # KEY IS ... describes a sort order, not layout
        elif word in ("SIGN", "SEPARATE", "LEADING", "TRAILING"):
            raise CopybookError(f"SIGN clauses are not supported (overpunched signs are): '{statement}'")
        elif word.startswith("COMP"):
            _usage(word, statement)
        elif word not in ("TIMES", "IS", "SYNC", "SYNCHRONIZED"):
            raise CopybookError(f"clause {word} is not supported in '{statement}'")
        position += 1
    return item


def _usage(word: str, statement: str) -> str:
    usage = _USAGES.get(word.upper().rstrip("."))
    if usage is None:
        raise CopybookError(f"usage {word} is not supported in '{statement}'; supported: {', '.join(_USAGES)}")
    return usage


def _pic(item: _Item) -> tuple[str, int, int, bool]:
    """(kind, digits or characters, scale, signed) of a PIC string."""
    pic = item.pic or ""
    parts = _PIC_PART.findall(pic)
    if "".join(c + (f"({n})" if n else "") for c, n in parts) != pic:
        raise CopybookError(f"PIC {pic} of {item.name} is not supported (X, A, 9, S, V with repeat counts)")
    signed = any(c == "S" for c, _ in parts)
    counts = [(c, int(n or 1)) for c, n in parts if c != "S"]
    if any(c in "XA" for c, _ in counts):
        if any(c in "9V" for c, _ in counts):
            raise CopybookError(f"PIC {pic} of {item.name} mixes text and digits")
        return "text", sum(n for _, n in counts), 0, False
    if any(c == "P" for c, _ in counts):
        raise CopybookError(f"PIC {pic} of {item.name}: scaling positions (P) are not supported")
    before, after, seen_v = 0, 0, False
    for c, n in counts:
        if c == "V":
            seen_v = True
        elif seen_v:
            after += n
        else:
            before += n
    return "number", before + after, after, signed


def _size(item: _Item) -> int:
    """Bytes of one occurrence of an item."""
    if item.pic is None:
        total = 0
        for child in item.children:
            if child.redefines is None:
                total += _size(child) * child.occurs
        return total
    kind, digits, _, _ = _pic(item)
    if kind == "text":
        return digits
    if item.usage == "packed":
        return digits // 2 + 1
    if item.usage == "binary":
        return 2 if digits <= 4 else 4 if digits <= 9 else 8
    return digits


def _layout(item: _Item, offset: int, suffix: str, fields: list[Field], path: list[str]) -> None:
    if item.pic is None:
        positions: dict[str, int] = {}
        cursor = offset
        for child in item.children:
            if child.redefines and child.redefines not in positions:
                raise CopybookError(f"{child.name} REDEFINES {child.redefines}, which is not an earlier item of its group")
            start = positions[child.redefines] if child.redefines else cursor
            positions[child.name] = start
            width = _size(child)
            for occurrence in range(child.occurs):
                label = suffix + (f"_{occurrence + 1}" if child.occurs > 1 else "")
                inner = path if item.level == 1 else [*path, column_name(item.name)]
                _layout(child, start + occurrence * width, label, fields, inner)
            if not child.redefines:
                cursor = start + width * child.occurs
        return
    if item.name == "FILLER":
        return
    kind, digits, scale, signed = _pic(item)
    if kind == "number":
        kind = {"packed": "packed", "binary": "binary"}.get(item.usage, "zoned")
    elif item.usage != "display":
        raise CopybookError(f"{item.name}: a text PIC cannot be {item.usage}")
    fields.append(Field(column_name(item.name) + suffix, offset, _size(item), kind, digits, scale, signed, tuple(path)))

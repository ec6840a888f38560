"""Combining sources: joins in declared order, merge strategies, and conflict resolution.

Everything is built as one SQL query over the cleaned source tables, so DuckDB plans the joins
together. Each source keeps a row id column (``__rid_<source>``) through the combination; the
caller uses them to account for every input row.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field

from memories_dagster.engine.duck import column_named, is_numeric, q
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.expressions import parse_expression
from memories_dagster.engine.window import wall_time_sql
from memories_dagster.specs.integration import IntegrationStrategy, JoinKey, asset_name

_INTEGER = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER)$")
_JOIN_SQL = {"inner": "JOIN", "left": "LEFT JOIN", "right": "RIGHT JOIN", "outer": "FULL OUTER JOIN"}


def rid(source: str) -> str:
    """Name of the row id column of ``source``."""
    return f"__rid_{source}"


@dataclass
class SourceTable:
    """A cleaned source: its name, the relation holding it and its column types (no row id)."""

    name: str
    relation: str
    types: dict[str, str]

    def column(self, name: str) -> str | None:
        """This source's spelling of column ``name``, matched as DuckDB matches names: ignoring case."""
        return column_named(self.types, name)


@dataclass
class Combined:
    """The combined rows as SQL, with column provenance and how conflicts were settled."""

    sql: str
    columns: list[str]
    lineage: dict[str, list[str]]
    resolved: dict[str, str] = field(default_factory=dict)
    first_source_keys: list[str] = field(default_factory=list)
    mode: str = "single"
    may_drop: set[str] = field(default_factory=set)
    right_keys: dict[str, list[str]] = field(default_factory=dict)


def combine(sources: list[SourceTable], strategy: IntegrationStrategy) -> Combined:
    """Combine the sources as the strategy says (see DESIGN: Semantics of the integration spec)."""
    if len(sources) == 1:
        only = sources[0]
        sql = f"SELECT * EXCLUDE (__rid), __rid AS {q(rid(only.name))} FROM {only.relation}"
        lineage = {c: [f"{only.name}.{c}"] for c in only.types}
        return Combined(sql, list(only.types), lineage)
    if strategy.joins:
        return _Joiner(sources, strategy).run()
    return _merge(sources, strategy.merge_strategy or "union")


@dataclass
class _Column:
    """A column of the joined rows: its output name, where each source's values sit, and lineage."""

    name: str
    holders: list[tuple[str, str, str]]  # (source, physical column of the joined rows, type)
    lineage: list[str]


class _Joiner:
    """Joins sources one after the other, keeping each source's copy of a column apart until the end.

    Every data column gets a positional physical name (``__j<n>``) in the joined rows, so copies
    never collide, whatever the number of sources or the case of their names; the final select
    resolves the copies and gives each column its output name.
    """

    def __init__(self, sources: list[SourceTable], strategy: IntegrationStrategy) -> None:
        self.sources = sources
        self.strategy = strategy
        self.join_type = strategy.join_type or "inner"
        # lower-cased name -> column: DuckDB identifiers ignore case, so `Name` and `name` are one
        self.columns: dict[str, _Column] = {}
        self.numbers = itertools.count()
        self.pairs_left = list(strategy.join_keys)
        self.right_keys: dict[str, list[str]] = {}
        first = sources[0]
        project = [f"{q(c)} AS {q(self._add(first, c))}" for c in first.types]
        self.sql = f"SELECT {', '.join([*project, f'__rid AS {q(rid(first.name))}'])} FROM {first.relation}"
        self.rids = [rid(first.name)]

    def run(self) -> Combined:
        first_keys: list[str] = []
        for number, source in enumerate(self.sources[1:]):
            pairs = self._pairs_for(source)
            if number == 0:
                first_keys = [self.columns[p.source1_key.lower()].name for p in pairs]
            self._join(source, pairs)
        if self.pairs_left:
            described = ", ".join(f"{p.source1_key} = {p.source2_key}" for p in self.pairs_left)
            raise IntegrationError(
                f"join key pair(s) {described} matched no source: each source2_key must be a "
                "column of a later source and source1_key a column joined before it"
            )
        select, resolved = self._resolve()
        return Combined(
            sql=f"SELECT {select}, {', '.join(q(r) for r in self.rids)} FROM ({self.sql}) AS joined",
            columns=self._names(),
            lineage={c.name: c.lineage for c in self.columns.values()},
            resolved=resolved,
            first_source_keys=list(dict.fromkeys(first_keys)),
            mode=f"join:{self.join_type}",
            may_drop=self._may_drop(),
            right_keys=self.right_keys,
        )

    def _add(self, source: SourceTable, column: str) -> str:
        """Give ``source``'s ``column`` a physical column of its own; returns its name."""
        physical = f"__j{next(self.numbers)}"
        found = self.columns.setdefault(column.lower(), _Column(column, [], []))
        found.holders.append((source.name, physical, source.types[column]))
        found.lineage.append(f"{source.name}.{column}")
        return physical

    def _may_drop(self) -> set[str]:
        """Sources whose rows this join type may leave out of the result."""
        names = [s.name for s in self.sources]
        kept = {"left": names[:1], "right": names[-1:], "outer": names}.get(self.join_type, [])
        return set(names) - set(kept)

    def _pairs_for(self, source: SourceTable) -> list[JoinKey]:
        if self.join_type == "cross":
            return []
        pairs: list[JoinKey] = []
        for p in self.pairs_left:
            if p.source2:
                belongs = asset_name(p.source2) == source.name
            else:  # the same pair twice is meant for two steps (e.g. id = id for every source)
                belongs = (source.column(p.source2_key) is not None and p.source1_key.lower() in self.columns
                           and not any(_same_pair(p, taken) for taken in pairs))
            if belongs:
                pairs.append(p)
        if not pairs:
            raise IntegrationError(
                f"source '{source.name}' has no join key: add a join_keys pair whose source2_key "
                f"is one of its columns ({', '.join(source.types)}) and whose source1_key is a "
                f"column joined before it ({', '.join(self._names())})"
            )
        for p in pairs:
            self.pairs_left.remove(p)
            if source.column(p.source2_key) is None:
                raise IntegrationError(f"join key '{p.source2_key}' is not a column of source '{source.name}'; its columns: {', '.join(source.types)}")
            left = self.columns.get(p.source1_key.lower())
            if left is None or len(left.holders) > 1:
                raise IntegrationError(
                    f"join key '{p.source1_key}' is not a single column of the sources joined before "
                    f"'{source.name}'; columns so far: {', '.join(self._names())}"
                )
        return pairs

    def _join(self, source: SourceTable, pairs: list[JoinKey]) -> None:
        keys = [(self.columns[p.source1_key.lower()], source.column(p.source2_key) or "") for p in pairs]
        self.right_keys[source.name] = list(dict.fromkeys(right for _, right in keys))
        conditions, folded = [], []
        for left, right in keys:
            owner, physical, ltype = left.holders[0]
            a, b = f"a.{q(physical)}", f"b.{q(right)}"
            conditions.append(key_condition(a, ltype, b, source.types[right]))
            left.lineage.append(f"{source.name}.{right}")
            # a DATE matched on the day by a timestamp (or ISO text): the right side's value holds
            # the date and its time, so a matched row keeps it (the date alone would lose the time)
            finer = _family(ltype) == "DATE" and _family(source.types[right]) in ("TIMESTAMP", "TEXT")
            if (self.join_type in ("right", "outer") or finer) and physical not in {f for f, _ in folded}:
                kind = folded_type(ltype, source.types[right])
                sides = (b, a) if finer else (a, b)
                both = ", ".join(sides) if _compatible(ltype, source.types[right]) else ", ".join(f"CAST({s} AS {kind})" for s in sides)
                folded.append((physical, f"coalesce({both}) AS {q(physical)}"))
                left.holders[0] = (owner, physical, kind)
        replace = f" REPLACE ({', '.join(sql for _, sql in folded)})" if folded else ""
        project = [f"b.{q(c)} AS {q(self._add(source, c))}" for c in source.types if c not in self.right_keys[source.name]]
        project.append(f"b.__rid AS {q(rid(source.name))}")
        self.rids.append(rid(source.name))
        join = "CROSS JOIN" if self.join_type == "cross" else _JOIN_SQL[self.join_type]
        condition = f" ON {' AND '.join(conditions)}" if conditions else ""
        self.sql = f"SELECT a.*{replace}, {', '.join(project)} FROM ({self.sql}) AS a {join} {source.relation} AS b{condition}"

    def _resolve(self) -> tuple[str, dict[str, str]]:
        rule = self.strategy.conflict_resolution
        custom = {name.lower(): text for name, text in self.strategy.custom_resolution.items()}
        select: list[str] = []
        resolved: dict[str, str] = {}
        for column in self.columns.values():
            holders = column.holders
            if len(holders) == 1:
                select.append(f"{q(holders[0][1])} AS {q(column.name)}")
                continue
            types = [t for _, _, t in holders]
            numeric = all(is_numeric(t) for t in types)
            alike = all(_compatible(types[0], t) for t in types)
            # values of different kinds meet as the type that holds them all: dates beside
            # timestamps as timestamps, a number here and text there as text
            common = functools.reduce(folded_type, types)
            refs = [q(p) if alike else f"CAST({q(p)} AS {common})" for _, p, _ in holders]
            how = rule
            if rule == "custom":
                expression = custom.pop(column.name.lower(), None)
                if expression is None:
                    owners = ", ".join(h[0] for h in holders)
                    raise IntegrationError(
                        f"conflict_resolution is 'custom' but custom_resolution has no expression "
                        f"for column '{column.name}' (present in sources {owners})"
                    )
                sql = self._custom(column.name, expression)
            elif rule in ("average", "sum") and not numeric:
                how, sql = f"first ({rule} needs numbers)", f"coalesce({', '.join(refs)})"
            elif rule == "average":
                sql = f"list_avg(list_value({', '.join(refs)}))"
            elif rule == "sum":
                sql = f"list_sum(list_value({', '.join(refs)}))"
                if all(_INTEGER.match(t) for t in types):  # list_sum gives HUGEINT, which Parquet holds as a double
                    sql = f"CAST({sql} AS BIGINT)"
            elif rule == "last":
                sql = f"coalesce({', '.join(reversed(refs))})"
            else:
                sql = f"coalesce({', '.join(refs)})"
            resolved[column.name] = how
            select.append(f"{sql} AS {q(column.name)}")
        if rule == "custom" and custom:
            named = {n.lower(): n for n in self.strategy.custom_resolution}
            conflicts = [c.name for c in self.columns.values() if len(c.holders) > 1]
            raise IntegrationError(
                f"custom_resolution has expressions for column(s) {', '.join(named[c] for c in custom)}, which "
                f"no two sources share, so there is no conflict to resolve; columns in conflict: "
                f"{', '.join(conflicts) or 'none'}"
            )
        return ", ".join(select), resolved

    def _custom(self, column: str, text: str) -> str:
        expression = parse_expression(text)
        sources = {s.name.lower(): s.name for s in self.sources}
        where = f"custom_resolution for '{column}'"

        def reference(source: str | None, name: str) -> str:
            found = self.columns.get(name.lower())
            holders = found.holders if found else []
            if source is None:
                if not holders:
                    raise IntegrationError(f"{where} refers to unknown column '{name}'; columns: {', '.join(self._names())}")
                if len(holders) > 1:
                    raise IntegrationError(
                        f"{where}: '{name}' is in several sources; "
                        f"write one of {', '.join(f'{h[0]}.{name}' for h in holders)}"
                    )
                return q(holders[0][1])
            owner = sources.get(source.lower())
            if owner is None:
                raise IntegrationError(f"{where} refers to '{source}.{name}', but '{source}' is not a source; sources: {', '.join(sources.values())}")
            for holder, physical, _ in holders:
                if holder == owner:
                    return q(physical)
            if any(k.lower() == name.lower() for k in self.right_keys.get(owner, [])):
                raise IntegrationError(f"{where}: '{owner}.{name}' is a join key, folded into the column it joins; write that column")
            raise IntegrationError(
                f"{where}: source '{owner}' has no column '{name}'; "
                f"'{name}' is in: {', '.join(h[0] for h in holders) or 'no source'}"
            )

        return expression.to_sql(reference)

    def _names(self) -> list[str]:
        return [c.name for c in self.columns.values()]


def _same_pair(one: JoinKey, other: JoinKey) -> bool:
    return (one.source1_key.lower(), one.source2_key.lower()) == (other.source1_key.lower(), other.source2_key.lower())


def _compatible(left: str, right: str) -> bool:
    """Whether two column types compare and combine without converting to text."""
    return left == right or (is_numeric(left) and is_numeric(right))


def _family(column_type: str) -> str | None:
    if column_type == "DATE":
        return "DATE"
    if column_type.startswith("TIMESTAMP"):
        return "TIMESTAMP"
    return "TEXT" if column_type == "VARCHAR" else None


def key_condition(a: str, a_type: str, b: str, b_type: str) -> str:
    """SQL: key ``a`` equals key ``b``. Numbers compare as numbers; a DATE with a TIMESTAMP, or
    with ISO text, compares as dates (a timestamp's day), a TIMESTAMP with text as timestamps;
    keys of other different kinds (1 and 'X9') compare as text."""
    if _compatible(a_type, b_type):
        return f"{a} = {b}"
    families = {_family(a_type), _family(b_type)}
    if families <= {"DATE", "TIMESTAMP", "TEXT"} and families != {"TEXT"}:
        on = "DATE" if "DATE" in families else "TIMESTAMP"
        # instants (TIMESTAMPTZ, or text naming an offset) compare as their UTC times
        return f"CAST({wall_time_sql(a, 'UTC')} AS {on}) = CAST({wall_time_sql(b, 'UTC')} AS {on})"
    return f"CAST({a} AS VARCHAR) = CAST({b} AS VARCHAR)"


def folded_type(a_type: str, b_type: str) -> str:
    """The type of a column that holds the values of both sides (a key folded by an outer or
    right join, a resolved conflict): a DATE beside a TIMESTAMP (of any precision or zone) is a
    TIMESTAMP, so neither loses anything; other different kinds are text."""
    if _compatible(a_type, b_type):
        return a_type
    if {_family(a_type), _family(b_type)} <= {"DATE", "TIMESTAMP"}:
        return "TIMESTAMP"
    return "VARCHAR"


def type_clashes(sources: list[SourceTable]) -> list[str]:
    """Columns that several sources hold with types that do not combine, described."""
    clashes = []
    for column in dict.fromkeys(c.lower() for s in sources for c in s.types):
        holders = [(s.name, found, s.types[found]) for s in sources if (found := s.column(column))]
        if any(not _compatible(holders[0][2], t) for _, _, t in holders[1:]):
            clashes.append(f"{holders[0][1]} ({', '.join(f'{n}: {t}' for n, _, t in holders)})")
    return clashes


def _shared(first: SourceTable, other: SourceTable) -> list[tuple[str, str]]:
    """(first's column, other's column) for every column the two sources both have."""
    return [(c, found) for c in first.types if (found := other.column(c))]


def found_in(first: SourceTable, other: SourceTable) -> str:
    """SQL: row ``a`` of ``first`` has an equal row in ``other`` on the columns both have (nulls equal)."""
    shared = _shared(first, other)
    if not shared:
        raise IntegrationError(
            f"merge strategies compare a row of the first source with the rows of each other source "
            f"on the columns both have, but sources '{first.name}' ({', '.join(first.types)}) and "
            f"'{other.name}' ({', '.join(other.types)}) share none"
        )
    tests = []
    for mine, theirs in shared:
        a, b = f"a.{q(mine)}", f"b.{q(theirs)}"
        both_null = f"({a} IS NULL AND {b} IS NULL)"
        tests.append(f"coalesce({key_condition(a, first.types[mine], b, other.types[theirs])}, {both_null})")
    return f"EXISTS (SELECT 1 FROM {other.relation} AS b WHERE {' AND '.join(tests)})"


def found_in_every_other(sources: list[SourceTable]) -> str:
    """SQL: row ``a`` of the first source is found (see :func:`found_in`) in every other source."""
    return " AND ".join(found_in(sources[0], other) for other in sources[1:])


def _merge(sources: list[SourceTable], strategy: str) -> Combined:
    names: dict[str, str] = {}  # lower-cased -> first spelling: DuckDB's UNION BY NAME ignores case too
    lineage: dict[str, list[str]] = {}
    for source in sources:
        for column in source.types:
            lineage.setdefault(names.setdefault(column.lower(), column), []).append(f"{source.name}.{column}")
    if strategy == "union":
        parts = [
            f"SELECT * EXCLUDE (__rid), __rid AS {q(rid(s.name))} FROM {s.relation}" for s in sources
        ]
        return Combined(" UNION ALL BY NAME ".join(parts), list(lineage), lineage, mode="merge:union")
    first = sources[0]
    if strategy == "intersection":
        where = found_in_every_other(sources)
    else:
        where = " AND ".join(f"NOT {found_in(first, other)}" for other in sources[1:])
    sql = (
        f"SELECT a.* EXCLUDE (__rid), a.__rid AS {q(rid(first.name))} FROM {first.relation} AS a WHERE {where}"
    )
    # the first source's rows and columns; a column it shares with another source was compared equal
    first_lineage = {c: lineage[names[c.lower()]] for c in first.types}
    return Combined(sql, list(first.types), first_lineage, mode=f"merge:{strategy}", may_drop={s.name for s in sources})

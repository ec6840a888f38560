"""Combining sources: joins in declared order, merge strategies, and conflict resolution.

Everything is built as one SQL query over the cleaned source tables, so DuckDB plans the joins
together. Each source keeps a row id column (``__rid_<source>``) through the combination; the
caller uses them to account for every input row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memories_dagster.engine.duck import q
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.expressions import parse_expression
from memories_dagster.specs.integration import IntegrationStrategy, JoinKey, asset_name

_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|REAL|DECIMAL.*)$")
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
    if strategy.join_keys or strategy.join_type == "cross":
        return _Joiner(sources, strategy).run()
    return _merge(sources, strategy.merge_strategy or "union")


class _Joiner:
    """Joins sources one after the other, keeping conflicting columns apart until the end."""

    def __init__(self, sources: list[SourceTable], strategy: IntegrationStrategy) -> None:
        self.sources = sources
        self.strategy = strategy
        self.join_type = strategy.join_type or "inner"
        first = sources[0]
        self.order: list[str] = list(first.types)
        # logical column -> [(source, physical column, type)]; one entry unless in conflict
        self.holders: dict[str, list[tuple[str, str, str]]] = {
            c: [(first.name, c, t)] for c, t in first.types.items()
        }
        self.lineage: dict[str, list[str]] = {c: [f"{first.name}.{c}"] for c in first.types}
        self.sql = f"SELECT * EXCLUDE (__rid), __rid AS {q(rid(first.name))} FROM {first.relation}"
        self.rids = [rid(first.name)]
        self.pairs_left = list(strategy.join_keys)
        self.right_keys: dict[str, list[str]] = {}

    def run(self) -> Combined:
        first_keys: list[str] = []
        for number, source in enumerate(self.sources[1:]):
            pairs = self._pairs_for(source)
            if number == 0:
                first_keys = [p.source1_key for p in pairs if p.source1_key in self.sources[0].types]
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
            columns=list(self.order),
            lineage=self.lineage,
            resolved=resolved,
            first_source_keys=first_keys,
            mode=f"join:{self.join_type}",
            may_drop=self._may_drop(),
            right_keys=self.right_keys,
        )

    def _may_drop(self) -> set[str]:
        """Sources whose rows this join type may leave out of the result."""
        names = [s.name for s in self.sources]
        kept = {"left": names[:1], "right": names[-1:], "outer": names}.get(self.join_type, [])
        return set(names) - set(kept)

    def _pairs_for(self, source: SourceTable) -> list[JoinKey]:
        if self.join_type == "cross":
            return []
        pairs = [
            p
            for p in self.pairs_left
            if (p.source2 and asset_name(p.source2) == source.name)
            or (not p.source2 and p.source2_key in source.types and p.source1_key in self.holders)
        ]
        if not pairs:
            raise IntegrationError(
                f"source '{source.name}' has no join key: add a join_keys pair whose source2_key "
                f"is one of its columns ({', '.join(source.types)}) and whose source1_key is a "
                f"column joined before it ({', '.join(self.order)})"
            )
        for p in pairs:
            self.pairs_left.remove(p)
            if p.source2_key not in source.types:
                raise IntegrationError(f"join key '{p.source2_key}' is not a column of source '{source.name}'; its columns: {', '.join(source.types)}")
            if p.source1_key not in self.holders or len(self.holders[p.source1_key]) > 1:
                raise IntegrationError(
                    f"join key '{p.source1_key}' is not a single column of the sources joined before "
                    f"'{source.name}'; columns so far: {', '.join(self.order)}"
                )
        return pairs

    def _join(self, source: SourceTable, pairs: list[JoinKey]) -> None:
        keys = {p.source1_key: p.source2_key for p in pairs}
        right_keys = set(keys.values())
        self.right_keys[source.name] = list(keys.values())
        added = [c for c in source.types if c not in right_keys]
        renamed = {c: self._split_conflict(c) for c in added if c in self.holders}
        project: list[str] = []
        for column in self.order:
            for _, physical, ptype in self.holders[column]:
                before = column if renamed.get(column) == physical else physical
                if column in keys and self.join_type in ("right", "outer"):
                    other, rtype = q(keys[column]), source.types[keys[column]]
                    if _compatible(ptype, rtype):
                        project.append(f"coalesce(a.{q(before)}, b.{other}) AS {q(physical)}")
                    else:  # e.g. 1 and 'X9': text keeps every key value
                        project.append(f"coalesce(CAST(a.{q(before)} AS VARCHAR), CAST(b.{other} AS VARCHAR)) AS {q(physical)}")
                else:
                    project.append(f"a.{q(before)} AS {q(physical)}")
        project += [f"a.{q(r)}" for r in self.rids]
        for left, right in keys.items():
            self.lineage[left].append(f"{source.name}.{right}")
        for column in added:
            ctype = source.types[column]
            if column in self.holders:
                physical = f"__conflict__{source.name}__{column}"
                self.holders[column].append((source.name, physical, ctype))
                self.lineage[column].append(f"{source.name}.{column}")
            else:
                physical = column
                self.holders[column] = [(source.name, column, ctype)]
                self.order.append(column)
                self.lineage[column] = [f"{source.name}.{column}"]
            project.append(f"b.{q(column)} AS {q(physical)}")
        project.append(f"b.__rid AS {q(rid(source.name))}")
        self.rids.append(rid(source.name))
        join = "CROSS JOIN" if self.join_type == "cross" else _JOIN_SQL[self.join_type]
        on = " AND ".join(self._equal(left, right, source) for left, right in keys.items())
        condition = f" ON {on}" if on else ""
        self.sql = f"SELECT {', '.join(project)} FROM ({self.sql}) AS a {join} {source.relation} AS b{condition}"

    def _equal(self, left: str, right: str, source: SourceTable) -> str:
        if _compatible(self.holders[left][0][2], source.types[right]):
            return f"a.{q(left)} = b.{q(right)}"
        return f"CAST(a.{q(left)} AS VARCHAR) = CAST(b.{q(right)} AS VARCHAR)"

    def _split_conflict(self, column: str) -> str:
        """Give a column that is about to be in conflict its source-qualified name."""
        holders = self.holders[column]
        if len(holders) == 1 and holders[0][1] == column:
            owner, _, ctype = holders[0]
            holders[0] = (owner, f"__conflict__{owner}__{column}", ctype)
        return holders[0][1]

    def _resolve(self) -> tuple[str, dict[str, str]]:
        rule = self.strategy.conflict_resolution
        select: list[str] = []
        resolved: dict[str, str] = {}
        for column in self.order:
            holders = self.holders[column]
            if len(holders) == 1:
                select.append(q(holders[0][1]))
                continue
            numeric = all(_NUMERIC.match(t) for _, _, t in holders)
            alike = all(_compatible(holders[0][2], t) for _, _, t in holders)
            # values of different kinds (a number here, text there) meet as text
            refs = [q(p) if alike else f"CAST({q(p)} AS VARCHAR)" for _, p, _ in holders]
            how = rule
            if rule == "custom":
                expression = self.strategy.custom_resolution.get(column)
                if expression is None:
                    owners = ", ".join(h[0] for h in holders)
                    raise IntegrationError(
                        f"conflict_resolution is 'custom' but custom_resolution has no expression "
                        f"for column '{column}' (present in sources {owners})"
                    )
                sql = self._custom(column, expression)
            elif rule in ("average", "sum") and not numeric:
                how, sql = f"first ({rule} needs numbers)", f"coalesce({', '.join(refs)})"
            elif rule == "average":
                sql = f"list_avg(list_value({', '.join(refs)}))"
            elif rule == "sum":
                sql = f"list_sum(list_value({', '.join(refs)}))"
            elif rule == "last":
                sql = f"coalesce({', '.join(reversed(refs))})"
            else:
                sql = f"coalesce({', '.join(refs)})"
            resolved[column] = how
            select.append(f"{sql} AS {q(column)}")
        return ", ".join(select), resolved

    def _custom(self, column: str, text: str) -> str:
        expression = parse_expression(text)

        def reference(source: str | None, name: str) -> str:
            holders = self.holders.get(name)
            if holders is None:
                raise IntegrationError(f"custom_resolution for '{column}' refers to unknown column '{name}'")
            if source is None:
                if len(holders) > 1:
                    raise IntegrationError(
                        f"custom_resolution for '{column}': '{name}' is in several sources; "
                        f"write one of {', '.join(f'{h[0]}.{name}' for h in holders)}"
                    )
                return q(holders[0][1])
            for owner, physical, _ in holders:
                if owner == source:
                    return q(physical)
            raise IntegrationError(f"custom_resolution for '{column}': source '{source}' has no column '{name}'")

        return expression.to_sql(reference)


def _compatible(left: str, right: str) -> bool:
    """Whether two column types compare and combine without converting to text."""
    return left == right or bool(_NUMERIC.match(left) and _NUMERIC.match(right))


def type_clashes(sources: list[SourceTable]) -> list[str]:
    """Columns that several sources hold with types that do not combine, described."""
    clashes = []
    for column in dict.fromkeys(c for s in sources for c in s.types):
        holders = [(s.name, s.types[column]) for s in sources if column in s.types]
        if any(not _compatible(holders[0][1], t) for _, t in holders[1:]):
            clashes.append(f"{column} ({', '.join(f'{n}: {t}' for n, t in holders)})")
    return clashes


def common_columns(sources: list[SourceTable]) -> list[str]:
    """Columns of the first source that every other source has too."""
    return [c for c in sources[0].types if all(c in s.types for s in sources[1:])]


def same_row_in(relation: str, columns: list[str]) -> str:
    """SQL: row ``a`` has an equal row (nulls equal) on ``columns`` in ``relation``."""
    same = " AND ".join(f"a.{q(c)} IS NOT DISTINCT FROM b.{q(c)}" for c in columns)
    return f"EXISTS (SELECT 1 FROM {relation} AS b WHERE {same})"


def _merge(sources: list[SourceTable], strategy: str) -> Combined:
    lineage: dict[str, list[str]] = {}
    for source in sources:
        for column in source.types:
            lineage.setdefault(column, []).append(f"{source.name}.{column}")
    if strategy == "union":
        parts = [
            f"SELECT * EXCLUDE (__rid), __rid AS {q(rid(s.name))} FROM {s.relation}" for s in sources
        ]
        return Combined(" UNION ALL BY NAME ".join(parts), list(lineage), lineage, mode="merge:union")
    names = {s.name for s in sources}
    first = sources[0]
    common = common_columns(sources)
    if not common:
        raise IntegrationError(
            f"merge_strategy '{strategy}' compares rows on the columns all sources share, "
            f"but sources {', '.join(s.name for s in sources)} share none"
        )
    tests = []
    for other in sources[1:]:
        exists = same_row_in(other.relation, common)
        tests.append(exists if strategy == "intersection" else f"NOT {exists}")
    sql = (
        f"SELECT a.* EXCLUDE (__rid), a.__rid AS {q(rid(first.name))} FROM {first.relation} AS a "
        f"WHERE {' AND '.join(tests)}"
    )
    first_lineage = {c: (lineage[c] if c in common else [f"{first.name}.{c}"]) for c in first.types}
    return Combined(sql, list(first.types), first_lineage, mode=f"merge:{strategy}", may_drop=names)

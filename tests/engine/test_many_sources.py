"""Joins, merges and conflict rules over 3, 4 and 5 sources, checked against pandas.

The oracle is pandas: ``DataFrame.merge`` for the joins, ``Series.combine_first`` for first /
last non-null in source order, ``mean`` / ``sum(min_count=1)`` over the non-null values, and
``concat`` / ``merge(indicator=True)`` for the merge strategies. Sources are random (seeded) with
many nulls, overlapping and missing keys, and columns that only some sources share.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError

RULES = ("first", "last", "average", "sum")


def random_sources(seed: int, count: int) -> dict[str, pd.DataFrame]:
    """``count`` sources keyed on ``id``; ``v`` (float) in all, ``w`` (int) and ``t`` (text) in some."""
    rng = np.random.default_rng(seed)
    frames = {}
    for number in range(count):
        size = int(rng.integers(3, 10))
        ids = np.sort(rng.choice(12, size=size, replace=False)).astype("int64")
        frame = pd.DataFrame({"id": ids})
        frame["v"] = np.where(rng.random(size) < 0.3, np.nan, rng.integers(-50, 50, size) / 4)
        if number < 2 or rng.random() < 0.6:
            frame["w"] = pd.array([None if rng.random() < 0.3 else int(x) for x in rng.integers(-9, 9, size)], dtype="Int64")
        if number == 0 or rng.random() < 0.6:
            frame["t"] = [None if rng.random() < 0.3 else f"s{number}-{x}" for x in rng.integers(0, 99, size)]
        frame[f"only{number}"] = rng.integers(0, 100, size)
        frames[f"s{number}"] = frame
    return frames


def id_joins(frames: dict[str, pd.DataFrame], how: str, **extra) -> dict:
    """integration_strategy joining every source on ``id``, one key pair per step."""
    pairs = [{"source1_key": "id", "source2_key": "id", "source2": name} for name in list(frames)[1:]]
    return {"join_type": how, "join_keys": pairs, **extra}


def oracle_join(frames: dict[str, pd.DataFrame], how: str) -> pd.DataFrame:
    """pandas' join of the sources on ``id``, each non-key column renamed ``<column>@<source>``."""
    renamed = [f.rename(columns={c: f"{c}@{n}" for c in f.columns if c != "id"}) for n, f in frames.items()]
    return functools.reduce(lambda left, right: left.merge(right, on="id", how=how), renamed)


def resolve(joined: pd.DataFrame, frames: dict[str, pd.DataFrame], column: str, rule: str) -> pd.Series:
    """The conflict rule applied by pandas to the copies of ``column``, in source order."""
    copies = [joined[f"{column}@{n}"] for n, f in frames.items() if column in f.columns]
    text = copies[0].dtype == object
    if rule == "last":
        copies = copies[::-1]
    if rule in ("first", "last") or text:
        return functools.reduce(lambda a, b: a.combine_first(b), copies)
    values = pd.concat(copies, axis=1).astype("float64")
    return values.mean(axis=1) if rule == "average" else values.sum(axis=1, min_count=1)


def values(series: pd.Series) -> list:
    return [None if pd.isna(x) else x for x in series]


def shared(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Non-key columns held by more than one source."""
    names = [c for f in frames.values() for c in f.columns if c != "id"]
    return sorted({c for c in names if names.count(c) > 1})


@pytest.mark.parametrize("count", [3, 4, 5])
@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", range(2))
def test_join_conflicts_match_pandas(run_integration, count, how, rule, seed):
    frames = random_sources(seed * 10 + count, count)
    run = run_integration(frames, integration_strategy=id_joins(frames, how, conflict_resolution=rule))
    joined = oracle_join(frames, how).sort_values("id").reset_index(drop=True)
    data = run.data.sort_values("id").reset_index(drop=True)
    expected_columns = {"id", *(c for f in frames.values() for c in f.columns)}
    assert set(data.columns) == expected_columns and len(data.columns) == len(expected_columns)
    assert values(data["id"]) == values(joined["id"])
    for column in shared(frames):
        assert values(data[column]) == pytest.approx(values(resolve(joined, frames, column, rule))), column
    for number in range(count):
        assert values(data[f"only{number}"]) == values(joined[f"only{number}@s{number}"])
    text_rule = rule if rule in ("first", "last") else f"first ({rule} needs numbers)"
    assert run.report["conflicts_resolved"] == {c: (text_rule if c == "t" else rule) for c in shared(frames)}
    assert run.report["reconciliation"]["balanced"]
    holders = sorted(f"{n}.v" for n in frames)
    assert run.outcome.lineage["v"] == holders


@pytest.mark.parametrize("count", [3, 4, 5])
def test_custom_rule_names_a_column_of_every_source(run_integration, count):
    frames = random_sources(100 + count, count)
    names = list(frames)
    picked = list(reversed(names))  # last source first
    run = run_integration(frames, integration_strategy=id_joins(
        frames, "outer", conflict_resolution="custom",
        custom_resolution={
            "v": " + ".join(f"{n}.v" for n in names),
            "w": f"coalesce({', '.join(f'{n}.w' for n in picked if 'w' in frames[n].columns)})",
            "t": f"coalesce({', '.join(f'{n}.t' for n in picked if 't' in frames[n].columns)})",
        },
    ))
    joined = oracle_join(frames, "outer").sort_values("id").reset_index(drop=True)
    data = run.data.sort_values("id").reset_index(drop=True)
    total = functools.reduce(lambda a, b: a + b, [joined[f"v@{n}"] for n in names])
    assert values(data["v"]) == pytest.approx(values(total))
    assert values(data["w"]) == values(resolve(joined, frames, "w", "last"))
    assert values(data["t"]) == values(resolve(joined, frames, "t", "last"))
    assert run.report["conflicts_resolved"] == {"v": "custom", "w": "custom", "t": "custom"}


def test_repeated_key_pairs_without_source2_take_one_step_each(run_integration):
    frames = random_sources(7, 4)
    pairs = [{"source1_key": "id", "source2_key": "id"}] * 3
    run = run_integration(frames, integration_strategy={"join_type": "inner", "join_keys": pairs, "conflict_resolution": "last"})
    joined = oracle_join(frames, "inner").sort_values("id").reset_index(drop=True)
    data = run.data.sort_values("id").reset_index(drop=True)
    assert values(data["id"]) == values(joined["id"])
    assert values(data["v"]) == pytest.approx(values(resolve(joined, frames, "v", "last")))


def test_sums_of_64_bit_integers_stay_exact_integers(run_integration):
    big = 2**53 + 1  # a double cannot hold it
    frames = {n: pd.DataFrame({"id": [1], "n": pd.array([value], dtype="Int64")})
              for n, value in (("a", big), ("b", 2), ("c", None))}
    run = run_integration(frames, integration_strategy=id_joins(frames, "inner", conflict_resolution="sum"))
    assert run.data["n"].dtype == "int64"
    assert int(run.data["n"].iloc[0]) == sum([big, 2])


CASED = {
    "a": pd.DataFrame({"id": [1, 2, 3], "Name": ["Ann", None, None]}),
    "b": pd.DataFrame({"id": [1, 2, 3], "name": ["ann", "bob", None]}),
    "c": pd.DataFrame({"id": [1, 2, 3], "NAME": ["ANN", "BOB", "CY"]}),
}


@pytest.mark.parametrize("rule", ["first", "last"])
def test_names_that_differ_only_in_case_are_one_column(run_integration, rule):
    run = run_integration(CASED, integration_strategy=id_joins(CASED, "inner", conflict_resolution=rule))
    data = run.data.sort_values("id")
    assert list(data.columns) == ["id", "Name"]  # the first source's spelling
    copies = [CASED["a"]["Name"], CASED["b"]["name"], CASED["c"]["NAME"]]
    expected = functools.reduce(lambda x, y: x.combine_first(y), copies if rule == "first" else copies[::-1])
    assert values(data["Name"]) == values(expected)
    assert run.report["conflicts_resolved"] == {"Name": rule}
    assert run.outcome.lineage["Name"] == ["a.Name", "b.name", "c.NAME"]


def test_custom_rule_over_case_different_names(run_integration):
    run = run_integration(CASED, integration_strategy=id_joins(
        CASED, "inner", conflict_resolution="custom", custom_resolution={"name": "coalesce(C.name, b.Name, a.name)"}))
    assert values(run.data.sort_values("id")["Name"]) == ["ANN", "BOB", "CY"]


def test_union_of_case_different_names_is_one_column(run_integration):
    run = run_integration(CASED, integration_strategy={"merge_strategy": "union"})
    expected = pd.concat([f.set_axis(["id", "Name"], axis=1) for f in CASED.values()])
    assert list(run.data.columns) == ["id", "Name"]
    assert sorted(map(tuple, run.data.fillna("-").values.tolist())) == sorted(map(tuple, expected.fillna("-").values.tolist()))
    assert run.outcome.lineage["Name"] == ["a.Name", "b.name", "c.NAME"]


def test_a_source_with_two_columns_differing_only_in_case_is_an_error(run_integration):
    with pytest.raises(IntegrationError, match=r"source 'a' has columns that differ only in case: Name, NAME"):
        run_integration({"a": pd.DataFrame({"id": [1], "Name": ["x"], "NAME": ["y"]})})


def found_in(first: pd.DataFrame, other: pd.DataFrame) -> pd.Series:
    """Whether each row of ``first`` has an equal row (nulls equal) in ``other`` on the columns both have."""
    both = [c for c in first.columns if c in other.columns]
    marked = first[both].merge(other[both].drop_duplicates(), how="left", on=both, indicator=True)
    return (marked["_merge"] == "both").to_numpy()


@pytest.mark.parametrize("count", [3, 4, 5])
@pytest.mark.parametrize("strategy", ["intersection", "complement"])
@pytest.mark.parametrize("seed", range(3))
def test_intersection_and_complement_match_pandas(run_integration, count, strategy, seed):
    rng = np.random.default_rng(seed)
    # few distinct values so that rows do repeat across sources; 'x' only in some of them
    frames = {}
    for number in range(count):
        size = int(rng.integers(4, 12))
        frame = pd.DataFrame({"k": rng.integers(0, 4, size), "m": [None if rng.random() < 0.2 else f"m{x}" for x in rng.integers(0, 2, size)]})
        if number == 0 or rng.random() < 0.5:
            frame["x"] = rng.integers(0, 2, size)
        frames[f"s{number}"] = frame
    run = run_integration(frames, integration_strategy={"merge_strategy": strategy})
    first = frames["s0"]
    hits = [found_in(first, other) for other in list(frames.values())[1:]]
    keep = np.logical_and.reduce(hits) if strategy == "intersection" else ~np.logical_or.reduce(hits)
    expected = first[keep]
    assert sorted(map(tuple, run.data[list(first.columns)].fillna("-").values.tolist())) == sorted(
        map(tuple, expected.fillna("-").values.tolist()))
    assert run.report["reconciliation"]["balanced"]


@pytest.mark.parametrize("count", [3, 5])
def test_union_of_many_sources_matches_pandas_concat(run_integration, count):
    frames = random_sources(40 + count, count)
    run = run_integration(frames, integration_strategy={"merge_strategy": "union"})
    expected = pd.concat(list(frames.values()), ignore_index=True)
    columns = list(expected.columns)
    assert set(run.data.columns) == set(columns)

    def rows(frame):
        return sorted(tuple("-" if pd.isna(x) else repr(float(x)) if isinstance(x, (int, float, np.number)) else x
                            for x in row) for row in frame[columns].astype(object).values.tolist())

    assert rows(run.data) == rows(expected)


@pytest.mark.parametrize("rule", RULES)
def test_cross_join_of_three_sources_resolves_like_pandas(run_integration, rule):
    frames = {f"s{n}": pd.DataFrame({"v": [float(n), None], f"only{n}": [n, n + 10]}) for n in range(3)}
    run = run_integration(frames, integration_strategy={"join_type": "cross", "conflict_resolution": rule})
    renamed = [f.rename(columns={c: f"{c}@{n}" for c in f.columns}) for n, f in frames.items()]
    joined = functools.reduce(lambda left, right: left.merge(right, how="cross"), renamed)
    key = ["only0", "only1", "only2"]
    data = run.data.sort_values(key).reset_index(drop=True)
    joined = joined.sort_values([f"{c}@s{i}" for i, c in enumerate(key)]).reset_index(drop=True)
    assert len(data) == 8
    assert values(data["v"]) == pytest.approx(values(resolve(joined, frames, "v", rule)))

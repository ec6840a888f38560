"""DATE and TIMESTAMP join keys compare as dates, not as text.

Oracle: pandas merge on the keys parsed as dates (a timestamp's day), independent of DuckDB.
"""

import datetime as dt

import pandas as pd
import pytest

DAYS = pd.DataFrame({"day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 3, 1)], "budget": [10, 20, 30]})
STAMPS = pd.DataFrame({"at": pd.to_datetime(["2024-01-01 00:00:00", "2024-01-02 10:30:00", "2024-02-01 00:00:00"]),
                       "spent": [1, 2, 3]})
ISO_TEXT = pd.DataFrame({"at": ["2024-01-01", "2024-01-02T10:30:00", "n/a"], "spent": [1, 2, 3]})


def _pairs(budgets, spent) -> list[tuple]:
    return sorted(((-1 if pd.isna(b) else int(b)), (-1 if pd.isna(s) else int(s))) for b, s in zip(budgets, spent))


def _pandas_join(right: pd.DataFrame, how: str) -> list[tuple]:
    left = DAYS.assign(key=pd.to_datetime(DAYS["day"]).dt.normalize())
    parsed = right.assign(key=pd.to_datetime(right["at"], errors="coerce", format="ISO8601").dt.normalize())
    merged = left.merge(parsed, on="key", how=how)
    return _pairs(merged["budget"], merged["spent"])


@pytest.mark.parametrize("right", ["timestamps", "iso text"])
@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_date_keys_match_timestamps_and_iso_text_as_dates(run_integration, right, how):
    frame = STAMPS if right == "timestamps" else ISO_TEXT
    run = run_integration({"budgets": DAYS, "spending": frame}, integration_strategy={
        "join_type": how, "join_keys": [{"source1_key": "day", "source2_key": "at"}]})
    assert _pairs(run.data["budget"], run.data["spent"]) == _pandas_join(frame, how)


def test_an_outer_join_keeps_every_key_value(run_integration):
    run = run_integration({"budgets": DAYS, "spending": STAMPS}, integration_strategy={
        "join_type": "outer", "join_keys": [{"source1_key": "day", "source2_key": "at"}]})
    kept = set(pd.to_datetime(run.data["day"]))
    # every date (as the day of its row's key) and every timestamp, with its time
    assert {k.normalize() for k in kept} >= set(pd.to_datetime(DAYS["day"])) and kept >= set(STAMPS["at"])


def test_intersection_finds_dates_among_timestamps(run_integration):
    run = run_integration({"a": DAYS[["day"]], "b": STAMPS.rename(columns={"at": "day"})[["day"]]},
                          integration_strategy={"merge_strategy": "intersection"})
    assert sorted(run.data["day"]) == [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]



def test_a_conflict_between_a_date_and_a_timestamp_resolves_as_timestamps(run_integration):
    first = pd.DataFrame({"id": [1, 2, 3], "seen": [dt.date(2024, 1, 1), None, dt.date(2024, 3, 1)]})
    second = pd.DataFrame({"id": [1, 2, 3], "seen": pd.to_datetime(["2024-05-05 10:00", "2024-01-02 10:30:00.25", None], format="ISO8601")})
    run = run_integration({"a": first, "b": second}, integration_strategy={
        "join_type": "inner", "join_keys": [{"source1_key": "id", "source2_key": "id"}], "conflict_resolution": "first"})
    oracle = pd.to_datetime(first["seen"]).combine_first(second["seen"])
    got = run.data.sort_values("id")["seen"]
    assert pd.api.types.is_datetime64_any_dtype(got)
    assert list(got) == list(oracle)


def test_timestamp_keys_match_text_with_offsets_as_the_same_instant(run_integration):
    instants = pd.DataFrame({"at": pd.to_datetime(["2024-01-01 04:30:00", "2024-01-01 10:00:00"], utc=True), "budget": [10, 20]})
    texts = pd.DataFrame({"at": ["2024-01-01T10:00:00+05:30", "2024-01-01T02:00:00-08:00", "2024-01-01T10:00:00+01:00"],
                          "spent": [1, 2, 3]})
    run = run_integration({"budgets": instants, "spending": texts}, integration_strategy={
        "join_type": "inner", "join_keys": [{"source1_key": "at", "source2_key": "at"}]})
    # Python's reading of each text: the instant its offset names
    parsed = [dt.datetime.fromisoformat(text) for text in texts["at"]]
    oracle = sorted((b, s) for b, t in zip(instants["budget"], instants["at"]) for s, p in zip(texts["spent"], parsed) if t == p)
    assert _pairs(run.data["budget"], run.data["spent"]) == oracle == [(10, 1), (20, 2)]


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_a_date_key_matched_by_a_timestamp_keeps_the_timestamp(run_integration, how):
    days = pd.DataFrame({"d": [dt.date(2024, 1, 1), dt.date(2024, 1, 5)], "budget": [10, 50]})
    stamps = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 10:00:00", "2024-01-01 11:30:00", "2024-02-01 08:15:00"]),
                           "spent": [1, 2, 3]})
    run = run_integration({"budgets": days, "spending": stamps}, integration_strategy={
        "join_type": how, "join_keys": [{"source1_key": "d", "source2_key": "ts"}]})
    # oracle: pandas joins on the day; a row keeps the timestamp where one matched, else the date
    merged = days.assign(day=pd.to_datetime(days["d"])).merge(stamps.assign(day=stamps["ts"].dt.normalize()), on="day", how=how)
    expected = sorted(zip(merged["ts"].fillna(merged["day"]), merged["budget"].fillna(-1), merged["spent"].fillna(-1)))
    got = sorted(zip(pd.to_datetime(run.data["d"]), run.data["budget"].fillna(-1), run.data["spent"].fillna(-1)))
    assert got == expected  # 10:00 and 11:30 were folded into 2024-01-01 00:00:00

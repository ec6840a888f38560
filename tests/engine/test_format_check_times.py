"""format_check on dates and timestamps keeps every value exactly or quarantines it: offsets make
instants, nothing past the microsecond and no time of day is cut off.

Oracle: Python's datetime.fromisoformat and zoneinfo for what each text means.
"""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd

ZONED = ["2024-01-01T10:00:00+05:30", "2024-01-01T10:00:00.123456789-08:00", "2024-01-01T10:00:00-08",
         "2024-01-01T10:00:00Z", "2024-01-01 10:00:00 America/Los_Angeles", "2024-01-01T10:00:00",
         "2024-01-01T10:00:00.123456000+01:00"]


def _meaning(text: str) -> dt.datetime | None:
    """Python's instant for a text, None where it would lose digits (nanoseconds) or has no zone."""
    if ".123456789" in text:
        return None  # Python's datetime holds microseconds: nothing to compare with but a refusal
    if text.endswith("America/Los_Angeles"):
        return dt.datetime.fromisoformat(text.rsplit(" ", 1)[0]).replace(tzinfo=ZoneInfo("America/Los_Angeles"))
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else None


def _quarantined(run) -> dict[int, str]:
    """id -> the text of each quarantined row, as the quarantine keeps it."""
    records = [json.loads(record) for record in run.quarantine["_record"]]
    return {record["id"]: record["v"] for record in records}


def _run(run_integration, values: list[str], declared: str):
    frame = pd.DataFrame({"id": range(len(values)), "v": values})
    return run_integration({"raw": frame}, data_quality_checks={"format_check": True, "columns": {"v": declared}})


def test_text_with_offsets_becomes_utc_instants_and_nothing_is_cut(run_integration):
    run = _run(run_integration, ZONED, "timestamp")
    expected = {i: _meaning(text) for i, text in enumerate(ZONED)}
    kept = dict(zip(run.data["id"], (t.to_pydatetime() for t in run.data["v"])))
    assert str(run.data["v"].dtype).endswith("UTC]")
    assert kept == {i: t for i, t in expected.items() if t is not None}
    quarantined = _quarantined(run)
    assert quarantined == {i: ZONED[i] for i, t in expected.items() if t is None}  # with their text
    assert sorted(quarantined) == [1, 5]
    assert "a time without one is ambiguous" in run.quarantine["_reason"].iloc[0]


def test_naive_text_stays_a_wall_time_and_nanoseconds_are_not_cut(run_integration):
    values = ["2024-01-01T10:00:00", "2024-01-01 10:00:00.123456789", "2024-01-01 10:00:00.5"]
    run = _run(run_integration, values, "timestamp")
    assert dict(zip(run.data["id"], (t.to_pydatetime() for t in run.data["v"]))) == {
        0: dt.datetime.fromisoformat(values[0]), 2: dt.datetime.fromisoformat(values[2])}
    assert _quarantined(run) == {1: values[1]}


def test_a_date_with_a_time_of_day_is_not_cut_to_its_date(run_integration):
    values = ["2024-12-31T10:30:00", "2024-12-31", "2024-12-31T00:00:00", "2024-12-31T00:00:00+05:00"]
    run = _run(run_integration, values, "date")

    def date_of(text: str) -> dt.date | None:  # a date where the text is exactly one: midnight, no zone
        parsed = dt.datetime.fromisoformat(text)
        return parsed.date() if parsed.tzinfo is None and parsed.time() == dt.time() else None

    expected = {i: date_of(text) for i, text in enumerate(values)}
    assert dict(zip(run.data["id"], pd.to_datetime(run.data["v"]).dt.date)) == {i: d for i, d in expected.items() if d}
    assert _quarantined(run) == {i: values[i] for i, d in expected.items() if d is None}
    assert "time of day other than midnight" in run.quarantine["_reason"].iloc[0]


def test_a_pattern_reading_an_offset_gives_instants(run_integration):
    pattern = "%d/%m/%Y %H:%M %z"
    values = ["10/03/2024 07:30 +0000", "10/03/2024 07:30 -0800"]
    run = _run(run_integration, values, f"timestamp:{pattern}")
    assert [t.to_pydatetime() for t in run.data["v"]] == [dt.datetime.strptime(v, pattern) for v in values]

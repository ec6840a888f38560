"""Outputs do not depend on the host's time zone; time partitions follow `partitions.timezone`.

The same partitioned pipeline runs in two processes with TZ set to two zones and must write the
same bytes. Oracles: Dagster's own TimeWindowPartitionsDefinition for the partition's window,
and pandas' tz_convert for which instants fall in it.
"""

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from memories_dagster.engine.duck import connect
from memories_dagster.engine.window import Window, condition_sql
from memories_dagster.factory.partitions import partitions_definition
from memories_dagster.specs.integration import PartitionsSpec

INSTANTS = pd.to_datetime(["2024-01-01 14:59:59", "2024-01-01 15:00:00", "2024-01-02 09:30:00.123456",
                           "2024-01-02 14:59:59.999999", "2024-01-02 15:00:00"], utc=True, format="ISO8601")

RUN = """
import os, sys
import dagster as dg
from memories_dagster.definitions import build_definitions
job = build_definitions().resolve_job_def("zoned_job")
result = job.execute_in_process(partition_key=sys.argv[1], instance=dg.DagsterInstance.ephemeral())
sys.exit(0 if result.success else 1)
"""


def _project(root: Path) -> None:
    (root / "assets" / "integrations").mkdir(parents=True)
    table = pa.table({"id": list(range(len(INSTANTS))), "at": pa.array(INSTANTS.to_pydatetime(), pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, root / "events.parquet")
    spec = {
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "at", "timezone": "Asia/Tokyo"},
        "integration_config": {"data_sources": [
            {"source_name": "events", "source_type": "parquet", "connection_string": str(root / "events.parquet")}]},
        "output_config": {"output_format": "csv", "output_destination": str(root / "out"),
                          "partitioning": {"partition_by": "at", "partition_type": "date"}},
    }
    (root / "assets" / "integrations" / "zoned.yaml").write_text(yaml.safe_dump(spec))


def _run(root: Path, zone: str) -> dict[str, bytes]:
    env = {**os.environ, "TZ": zone, "MEMORIES_ASSETS_DIR": str(root / "assets")}
    done = subprocess.run([sys.executable, "-c", RUN, "2024-01-02"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = root / "out"
    # file names may carry a run's unique tag (<partition>--<tag>_<n>.csv): compared without it
    return {re.sub(r"--[0-9a-f]+", "", p.relative_to(out).as_posix()): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def test_the_same_partition_writes_the_same_bytes_in_any_host_zone(tmp_path):
    _project(tmp_path)
    written = {zone: _run(tmp_path, zone) for zone in ("America/Los_Angeles", "Asia/Tokyo")}
    assert written["America/Los_Angeles"] == written["Asia/Tokyo"]
    rows = pd.concat(pd.read_csv(pd.io.common.BytesIO(data)) for data in written["Asia/Tokyo"].values())
    tokyo_day = INSTANTS.tz_convert("Asia/Tokyo").date == dt.date(2024, 1, 2)
    assert sorted(rows["id"]) == [i for i, inside in enumerate(tokyo_day) if inside]


def test_a_partition_window_is_dagsters_window_in_the_declared_zone():
    spec = PartitionsSpec.model_validate({"type": "daily", "start": "2024-01-01", "column": "at", "timezone": "Asia/Tokyo"})
    oracle = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="Asia/Tokyo").time_window_for_partition_key("2024-01-02")
    window = partitions_definition("zoned", spec).time_window_for_partition_key("2024-01-02")
    assert (window.start, window.end) == (oracle.start, oracle.end)
    con = connect()
    con.register("events", pa.table({"at": pa.array(INSTANTS.to_pydatetime(), pa.timestamp("us", tz="UTC"))}))
    condition = condition_sql(Window("2024-01-02", oracle.start, oracle.end), "at")
    inside = [row[0] for row in con.execute(f"SELECT {condition} FROM events").fetchall()]
    assert inside == [bool(oracle.start <= t < oracle.end) for t in INSTANTS.to_pydatetime()]
    assert json.dumps(inside) == json.dumps([False, True, True, True, False])


def test_text_with_an_offset_falls_in_the_day_of_its_instant_in_the_partition_zone():
    texts = ["2024-03-10T07:30:00+00:00", "2024-03-11T06:30:00Z", "2024-03-10 12:00:00", "2024-03-10T23:30:00-05:00",
             "2024-03-10", "2024-03-10T01:30:00.5+0100", "2024-03-09 23:59:59.999999"]
    zone = ZoneInfo("America/Los_Angeles")

    def day(text: str) -> dt.date:  # Python's reading: an offset makes an instant, else a wall time there
        parsed = dt.datetime.fromisoformat(text)
        return (parsed.astimezone(zone) if parsed.tzinfo else parsed).date()

    days = dg.DailyPartitionsDefinition(start_date="2024-03-01", timezone="America/Los_Angeles")
    con = connect()
    con.register("events", pa.table({"at": texts}))
    for key in ("2024-03-09", "2024-03-10", "2024-03-11"):
        span = days.time_window_for_partition_key(key)
        condition = condition_sql(Window(key, span.start, span.end), "at")
        inside = [row[0] for row in con.execute(f"SELECT {condition} FROM events").fetchall()]
        assert inside == [day(text).isoformat() == key for text in texts], key
    assert [day(text).isoformat() for text in texts[:2]] == ["2024-03-09", "2024-03-10"]


def test_date_folders_of_text_with_an_offset_are_the_utc_dates_of_its_instants():
    from memories_dagster.engine.write import partition_column
    from memories_dagster.specs.integration import Partitioning

    texts = ["2024-03-10T23:30:00-05:00", "2024-03-10T01:30:00+05:30", "2024-03-10 23:30:00", "2024-03-10"]
    folder, sql = partition_column(Partitioning(partition_by="at", partition_type="date"), "VARCHAR")
    con = connect()
    con.register("events", pa.table({"at": texts}))
    days = [row[0] for row in con.execute(f"SELECT {sql} FROM events").fetchall()]
    # Python's reading: an offset makes an instant (its UTC date, as a TIMESTAMPTZ column's), else the written date
    parsed = [dt.datetime.fromisoformat(text) for text in texts]
    assert days == [(p.astimezone(dt.timezone.utc) if p.tzinfo else p).date().isoformat() for p in parsed]
    assert days[:2] == ["2024-03-11", "2024-03-09"]


def test_a_date_format_of_text_with_an_offset_formats_its_utc_time():
    from memories_dagster.engine.formats import format_sql

    texts = ["2024-03-10T23:30:00-05:00", "2024-03-10 23:30:00", "2024-03-10T01:30:00+05:30"]
    con = connect()
    con.register("events", pa.table({"at": texts}))
    sql = format_sql("date:%Y-%m-%d %H:%M", '"at"', "VARCHAR")
    formatted = [row[0] for row in con.execute(f"SELECT {sql} FROM events").fetchall()]
    parsed = [dt.datetime.fromisoformat(text) for text in texts]  # Python's reading: an offset makes an instant
    assert formatted == [(p.astimezone(dt.timezone.utc) if p.tzinfo else p).strftime("%Y-%m-%d %H:%M") for p in parsed]
    assert formatted[0] == "2024-03-11 04:30"

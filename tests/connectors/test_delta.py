"""Delta Lake outputs: read back by delta-rs's own reader (DuckDB's delta extension cannot be
downloaded on this machine), the commit log checked through kill -9 and concurrent readers, and
the same writes on moto's S3 server."""

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import zoneinfo
from pathlib import Path

import deltalake
import duckdb
import pandas as pd
import pytest

from memories_dagster.connectors.files import ConnectorError
from memories_dagster.engine.duck import connect, copy_parquet
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.engine.tables import Access
from memories_dagster.factory.connections import _storage_options
from memories_dagster.specs.integration import IntegrationSpec, OutputConfig
from tests.conftest import materialization_of

UTC = dt.timezone.utc
DAILY = {"partition_by": "day", "partition_type": "date"}


def parquet(path: Path, sql: str) -> str:
    """The rows of ``sql`` as the integrated Parquet file a write step gets (the engine's writer)."""
    con = connect()
    copy_parquet(con, sql, str(path))
    con.close()
    return str(path)


def day_window(day: str, zone: str = "UTC") -> Window:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return Window(key=day, start=start, end=start + dt.timedelta(days=1))


def orders(tag: int, days: list[str], per_day: int) -> str:
    """SQL for ``per_day`` orders on each day, every row carrying ``tag``."""
    listed = ", ".join(f"DATE '{d}'" for d in days)
    return (f"SELECT d AS day, i::BIGINT AS order_id, {tag}::INTEGER AS tag, (i * 0.01)::DECIMAL(18,2) AS amount "
            f"FROM unnest([{listed}]) u(d), range({per_day}) r(i)")


def read(uri: str, options: dict | None = None) -> pd.DataFrame:
    frame = deltalake.DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pandas()
    return frame.sort_values(["day", "order_id"]).reset_index(drop=True)


def expected(sql: str) -> pd.DataFrame:
    """The oracle: DuckDB computes the rows a table must hold."""
    frame = duckdb.sql(sql).arrow().read_all().to_pandas()
    return frame.sort_values(["day", "order_id"]).reset_index(drop=True)


def test_types_are_kept_and_hugeint_becomes_decimal_38_0(tmp_path):
    source = parquet(tmp_path / "in.parquet", """
        SELECT sum(i::BIGINT) OVER () * 1000000000000 AS total, 9007199254740993::BIGINT + i AS big,
               (i + 0.125)::DECIMAL(38,9) AS price, TIMESTAMPTZ '2024-03-10 01:30:00.123456+05' + INTERVAL (i) HOUR AS at,
               TIMESTAMP_NS '2024-01-01 10:00:00.123456000' AS seen, 18446744073709551615::UBIGINT AS unsigned,
               'näive ' || i AS text
        FROM range(3) t(i)""")
    target = str(tmp_path / "table")
    written = write_output(source, OutputConfig(output_format="delta"), target, "t")
    table = deltalake.DeltaTable(target)
    types = {f.name: str(f.type) for f in table.schema().fields}
    assert types == {"total": 'PrimitiveType("decimal(38,0)")', "big": 'PrimitiveType("long")',
                     "price": 'PrimitiveType("decimal(38,9)")', "at": 'PrimitiveType("timestamp")',
                     "seen": 'PrimitiveType("timestamp_ntz")', "unsigned": 'PrimitiveType("decimal(20,0)")',
                     "text": 'PrimitiveType("string")'}
    got = table.to_pyarrow_table().to_pylist()
    want = duckdb.sql(f"SELECT * FROM '{source}'").arrow().read_all().to_pylist()
    key = lambda row: row["text"]  # noqa: E731
    assert [{k: (int(v) if k in ("total", "unsigned") else v) for k, v in r.items()} for r in sorted(got, key=key)] == \
        [{k: (int(v) if k in ("total", "unsigned") else v) for k, v in r.items()} for r in sorted(want, key=key)]
    assert written["table_version"] == 0 and written["rows_written"] == 3


def test_nanoseconds_are_refused_and_no_table_is_left(tmp_path):
    source = parquet(tmp_path / "in.parquet", "SELECT TIMESTAMP_NS '2024-01-01 10:00:00.123456789' AS seen, range AS i FROM range(5)")
    target = tmp_path / "table"
    with pytest.raises(ConnectorError, match="column .seen. holds nanoseconds"):
        write_output(source, OutputConfig(output_format="delta"), str(target), "t")
    assert not target.exists()


def test_a_partition_rerun_replaces_only_that_partition_in_one_commit(tmp_path):
    target = str(tmp_path / "table")
    output = OutputConfig(output_format="delta", partitioning=DAILY)
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    first = write_output(parquet(tmp_path / "a.parquet", orders(1, days, 50)), output, target, "t")
    rerun = write_output(parquet(tmp_path / "b.parquet", orders(2, ["2024-01-02"], 7)), output, target, "t",
                         window=day_window("2024-01-02"), window_column="day")
    assert (first["table_version"], rerun["table_version"]) == (0, 1)
    pd.testing.assert_frame_equal(read(target), expected(
        f"{orders(1, ['2024-01-01', '2024-01-03'], 50)} UNION ALL {orders(2, ['2024-01-02'], 7)}"), check_dtype=False)
    assert deltalake.DeltaTable(target).metadata().partition_columns == ["day"]
    assert deltalake.DeltaTable(target, version=0).to_pyarrow_table().num_rows == 150  # the old version stays readable


def test_a_dynamic_key_replaces_the_rows_of_that_key(tmp_path):
    target = str(tmp_path / "table")
    output = OutputConfig(output_format="delta", partitioning={"partition_by": "region", "partition_type": "category"})
    rows = "SELECT * FROM (VALUES ('north', 1), ('south', 2), ('o''hara', 3)) v(region, n)"
    write_output(parquet(tmp_path / "a.parquet", rows), output, target, "t")
    write_output(parquet(tmp_path / "b.parquet", "SELECT 'o''hara' AS region, 30 AS n"), output, target, "t",
                 window=Window(key="o'hara"), window_column="region")
    got = deltalake.DeltaTable(target).to_pyarrow_table().to_pandas().sort_values("n")
    assert got.to_dict("list") == {"region": ["north", "south", "o'hara"], "n": [1, 2, 30]}


def test_rows_outside_the_partition_are_refused_and_the_table_is_unchanged(tmp_path):
    target = str(tmp_path / "table")
    output = OutputConfig(output_format="delta")
    write_output(parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01", "2024-01-02"], 5)), output, target, "t")
    with pytest.raises(ConnectorError, match="rows outside the partition being replaced"):
        write_output(parquet(tmp_path / "b.parquet", orders(2, ["2024-01-01", "2024-01-02"], 5)), output, target, "t",
                     window=day_window("2024-01-02"), window_column="day")
    assert deltalake.DeltaTable(target).version() == 0
    pd.testing.assert_frame_equal(read(target), expected(orders(1, ["2024-01-01", "2024-01-02"], 5)), check_dtype=False)


def test_timestamp_windows_follow_the_partitions_timezone(tmp_path):
    """Berlin's 2 January is 1 January 23:00 to 2 January 23:00 in UTC; a TIMESTAMPTZ column
    is compared as instants, so the UTC rows at 23:30 on 1 January belong to Berlin's 2 January."""
    target = str(tmp_path / "table")
    output = OutputConfig(output_format="delta")
    instants = "SELECT TIMESTAMPTZ '2024-01-01 22:30:00+00' + INTERVAL (i) HOUR AS at, 1 AS tag FROM range(27) t(i)"
    write_output(parquet(tmp_path / "a.parquet", instants), output, target, "t")
    inside = "SELECT TIMESTAMPTZ '2024-01-01 23:00:00+00' + INTERVAL (i) HOUR AS at, 2 AS tag FROM range(24) t(i)"
    write_output(parquet(tmp_path / "b.parquet", inside), output, target, "t",
                 window=day_window("2024-01-02", "Europe/Berlin"), window_column="at")
    got = deltalake.DeltaTable(target).to_pyarrow_table().to_pandas()
    berlin = got["at"].dt.tz_convert("Europe/Berlin").dt.date
    assert (got[berlin == dt.date(2024, 1, 2)]["tag"] == 2).all() and len(got) == 27
    assert (got[berlin != dt.date(2024, 1, 2)]["tag"] == 1).sum() == 3


def test_a_location_holding_other_files_is_refused(tmp_path):
    target = tmp_path / "table"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ConnectorError, match="holding files that are no Delta table"):
        write_output(parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01"], 3)), OutputConfig(output_format="delta"), str(target), "t")
    assert (target / "notes.txt").read_text() == "mine" and sorted(os.listdir(target)) == ["notes.txt"]


def test_spec_validation_of_delta_outputs():
    sources = {"data_sources": [{"source_name": "a", "source_type": "csv", "connection_string": "a.csv"}]}
    with pytest.raises(ValueError, match="local folder or an s3:// location"):
        OutputConfig(output_format="delta", output_destination="gs://lake/t")
    with pytest.raises(ValueError, match="`mode: upsert` is for sql and mongodb"):
        OutputConfig(output_format="delta", mode="upsert", upsert_keys=["id"])
    with pytest.raises(ValueError, match="partitioned delta output needs partitions.column"):
        IntegrationSpec(integration_config=sources, output_config={"output_format": "delta"},
                        partitions={"type": "daily", "start": "2024-01-01"})


WRITER = textwrap.dedent("""
    import sys, datetime as dt
    from memories_dagster.engine.window import Window
    from memories_dagster.engine.write import write_output
    from memories_dagster.specs.integration import OutputConfig
    source, target, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    window = Window(key="2024-01-02", start=start, end=start + dt.timedelta(days=1))
    output = OutputConfig(output_format="delta", partitioning={"partition_by": "day", "partition_type": "date"})
    for _ in range(rounds):
        write_output(source, output, target, "t", window=window, window_column="day")
        print("committed", flush=True)
""")


def test_kill_9_during_a_partition_overwrite_leaves_the_previous_version_whole(tmp_path):
    target = tmp_path / "table"
    output = OutputConfig(output_format="delta", partitioning=DAILY)
    write_output(parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01", "2024-01-02"], 1000)), output, str(target), "t")
    # small data files, so the overwrite writes many and the kill falls between two of them
    deltalake.DeltaTable(str(target)).alter.set_table_properties({"delta.targetFileSize": str(2**20)})
    before = read(str(target))
    big = parquet(tmp_path / "b.parquet", orders(2, ["2024-01-02"], 4_000_000))
    old_files = set(target.rglob("*.parquet"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, big, str(target), "1"], env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    while not set(target.rglob("*.parquet")) - old_files:  # the new partition's data is being written
        assert writer.poll() is None and time.monotonic() < deadline, "the writer ended before it wrote data"
        time.sleep(0.005)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert set(target.rglob("*.parquet")) - old_files, "killed before any new data file existed"
    assert deltalake.DeltaTable(str(target)).version() == 1  # the property's commit, not the overwrite
    pd.testing.assert_frame_equal(read(str(target)), before)
    again = write_output(parquet(tmp_path / "c.parquet", orders(3, ["2024-01-02"], 10)), output, str(target), "t",
                         window=day_window("2024-01-02"), window_column="day")
    assert again["table_version"] == 2
    pd.testing.assert_frame_equal(read(str(target)), expected(
        f"{orders(1, ['2024-01-01'], 1000)} UNION ALL {orders(3, ['2024-01-02'], 10)}"), check_dtype=False)


def test_a_concurrent_reader_sees_the_old_or_the_new_partition_never_a_mix(tmp_path):
    target = tmp_path / "table"
    output = OutputConfig(output_format="delta", partitioning=DAILY)
    write_output(parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01", "2024-01-02"], 20_000)), output, str(target), "t")
    replacement = parquet(tmp_path / "b.parquet", orders(2, ["2024-01-02"], 30_000))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, replacement, str(target), "6"],
                              env={**os.environ, "PYTHONPATH": os.getcwd()}, stdout=subprocess.PIPE)
    seen = set()
    while writer.poll() is None:
        frame = deltalake.DeltaTable(str(target)).to_pyarrow_table(columns=["day", "tag"]).to_pandas()
        counts = frame.groupby(["day", "tag"]).size().to_dict()
        assert counts in ({(dt.date(2024, 1, 1), 1): 20_000, (dt.date(2024, 1, 2), 1): 20_000},
                          {(dt.date(2024, 1, 1), 1): 20_000, (dt.date(2024, 1, 2), 2): 30_000}), counts
        seen.add(tuple(sorted(counts.items())))
    assert writer.wait() == 0 and writer.stdout.read().count(b"committed") == 6
    assert len(seen) == 2, "the reader never saw both versions"
    assert deltalake.DeltaTable(str(target)).version() == 6


def test_s3_full_run_and_partition_replace_on_moto(s3_store, tmp_path):
    root, connection, fs = s3_store
    target = f"{root}/{tmp_path.name}/table"
    values = {k: v for k, v in connection.items() if k != "type"}
    access = Access(storage_options=_storage_options("s3", values))
    output = OutputConfig(output_format="delta", partitioning=DAILY)
    write_output(parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01", "2024-01-02"], 40)), output, target, "t", access=access)
    written = write_output(parquet(tmp_path / "b.parquet", orders(2, ["2024-01-02"], 3)), output, target, "t",
                           window=day_window("2024-01-02"), window_column="day", access=access)
    assert written["table_version"] == 1
    options = {"AWS_ACCESS_KEY_ID": values["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": values["aws_secret_access_key"],
               "AWS_ENDPOINT_URL": values["endpoint_url"], "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    pd.testing.assert_frame_equal(read(target, options), expected(
        f"{orders(1, ['2024-01-01'], 40)} UNION ALL {orders(2, ['2024-01-02'], 3)}"), check_dtype=False)
    logs = sorted(f.rsplit("/", 1)[-1] for f in fs.find(f"lake/{tmp_path.name}/table/_delta_log"))
    assert logs == ["00000000000000000000.json", "00000000000000000001.json"]


def test_s3_a_stale_writer_commits_after_the_other_not_over_it(s3_store, tmp_path):
    """moto honours If-None-Match, which delta-rs 1.x uses to commit: no locking service needed."""
    root, connection, _ = s3_store
    target = f"{root}/{tmp_path.name}/table"
    values = {k: v for k, v in connection.items() if k != "type"}
    access = Access(storage_options=_storage_options("s3", values))
    output = OutputConfig(output_format="delta", mode="append")
    rows = parquet(tmp_path / "a.parquet", orders(1, ["2024-01-01"], 4))
    write_output(rows, output, target, "t", access=access)
    from memories_dagster.connectors.delta import delta_storage_options

    options = delta_storage_options(target, access.storage_options)
    stale = deltalake.DeltaTable(target, storage_options=options)  # at version 0
    write_output(rows, output, target, "t", access=access)  # version 1
    deltalake.write_deltalake(stale, duckdb.sql(f"SELECT * FROM '{rows}'").arrow(), mode="append")
    table = deltalake.DeltaTable(target, storage_options=options)
    assert table.version() == 2 and table.to_pyarrow_table().num_rows == 12


def test_a_partitioned_pipeline_on_s3_reports_the_table_version(s3_store, tmp_path, monkeypatch):
    import dagster as dg
    import yaml

    from memories_dagster.definitions import build_definitions

    root, connection, fs = s3_store
    prefix = f"lake/{tmp_path.name}"
    fs.pipe(f"{prefix}/in/orders.csv", b"order_id,day,amount\n1,2024-01-01,1.50\n2,2024-01-02,2.25\n3,2024-01-02,-1\n")
    (tmp_path / "assets" / "integrations").mkdir(parents=True)
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "cloud.yaml").write_text(yaml.safe_dump({"connections": {"lake": connection}}))
    (tmp_path / "assets" / "integrations" / "orders.yaml").write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [{"source_name": "orders", "source_type": "csv", "connection": "lake",
                                                 "connection_string": f"s3://{prefix}/in/orders.csv"}]},
        "output_config": {"output_format": "delta", "connection": "lake", "output_destination": f"s3://{prefix}/out",
                          "partitioning": DAILY},
        "partitions": {"type": "daily", "start": "2024-01-01", "column": "day"},
    }))
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.setenv("MEMORIES_PROFILE", "cloud")
    monkeypatch.chdir(tmp_path)
    job = build_definitions().resolve_job_def("orders_job")
    instance = dg.DagsterInstance.ephemeral()
    versions = []
    for key in ("2024-01-01", "2024-01-02", "2024-01-02"):
        result = job.execute_in_process(instance=instance, partition_key=key)
        metadata = materialization_of(result, "orders", "output").metadata
        versions.append((metadata["table_version"].value, metadata["integration_report"].value["table_version"]))
    assert versions == [(0, 0), (1, 1), (2, 2)]
    options = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": connection["aws_secret_access_key"],
               "AWS_ENDPOINT_URL": connection["endpoint_url"], "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    got = deltalake.DeltaTable(f"s3://{prefix}/out", storage_options=options).to_pyarrow_table().to_pandas()
    assert sorted(got["order_id"]) == [1, 2, 3] and str(got["amount"].dtype) in ("object", "float64")


def test_text_with_offsets_is_replaced_by_the_day_of_its_instant(tmp_path):
    """A text column mixing offsets and wall times: the windowed read places each row by its
    instant in Los Angeles (naive text: its wall time there); replacing a day must remove
    exactly the rows of that day, as Python's zoneinfo reads them."""
    from memories_dagster.engine.window import condition_sql

    zone = zoneinfo.ZoneInfo("America/Los_Angeles")
    texts = ["2024-03-10T07:30:00+00:00", "2024-03-11T06:30:00Z", "2024-03-10 12:00:00", "2024-03-10T23:30:00-05:00",
             "2024-03-09 23:59:59"]

    def day(text: str) -> str:
        parsed = dt.datetime.fromisoformat(text)
        return (parsed.astimezone(zone) if parsed.tzinfo else parsed).date().isoformat()

    target = str(tmp_path / "table")
    output = OutputConfig(output_format="delta")
    rows = " UNION ALL ".join(f"SELECT '{t}' AS ts, {i} AS n" for i, t in enumerate(texts))
    write_output(parquet(tmp_path / "a.parquet", rows), output, target, "t")
    window = day_window("2024-03-10", "America/Los_Angeles")
    fresh = f"SELECT * FROM ({rows}) WHERE {condition_sql(window, 'ts')}"  # the day's rows, as a windowed read keeps them
    write_output(parquet(tmp_path / "b.parquet", f"SELECT ts, n + 100 AS n FROM ({fresh})"), output, target, "t",
                 window=window, window_column="ts")
    got = sorted(deltalake.DeltaTable(target).to_pyarrow_table().column("n").to_pylist())
    assert got == sorted(i + 100 if day(t) == "2024-03-10" else i for i, t in enumerate(texts))
    assert [day(t) for t in texts] == ["2024-03-09", "2024-03-10", "2024-03-10", "2024-03-10", "2024-03-09"]

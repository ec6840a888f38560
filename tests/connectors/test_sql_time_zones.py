"""Partitioned SQL reads and writes across daylight saving changes, on servers without time
zone tables (this machine's MariaDB has none: CONVERT_TZ gives NULL).

Oracles: Python's zoneinfo for the partition day of each instant, Dagster's own daily windows,
and the database's own unix_timestamp() / extract(epoch) for the instants it stores.
"""

import datetime as dt
import zoneinfo

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from memories_dagster.engine.extract import extract
from memories_dagster.engine.window import Window
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import DataSource, OutputConfig

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
UTC = dt.timezone.utc
DAYS = dg.DailyPartitionsDefinition(start_date="2024-03-01", timezone="America/Los_Angeles")


def _window(key: str) -> Window:
    span = DAYS.time_window_for_partition_key(key)
    return Window(key, span.start, span.end)


def _day(instant: dt.datetime) -> str:
    return instant.astimezone(LA).date().isoformat()


# around the spring change (2024-03-10 02:00 PST -> 03:00 PDT) and the autumn one (2024-11-03)
WRITTEN = {1: dt.datetime(2024, 3, 10, 7, 59, 59, 999999, UTC), 2: dt.datetime(2024, 3, 10, 8, 0, tzinfo=UTC),
           3: dt.datetime(2024, 3, 10, 9, 59, 59, tzinfo=UTC), 4: dt.datetime(2024, 3, 10, 10, 0, tzinfo=UTC),
           5: dt.datetime(2024, 3, 11, 6, 59, 59, 999999, UTC)}


@pytest.mark.parametrize("kind", ["mariadb", "postgres", "sqlite"])
def test_rewriting_partitions_keeps_every_instant_and_every_other_partition(kind, table_name, tmp_path, request):
    database = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}") if kind == "sqlite" else request.getfixturevalue(kind)
    url = database.url.render_as_string(hide_password=False)
    config = OutputConfig(output_format="sql", output_destination=url, table=table_name)
    try:
        for key in ("2024-03-10", "2024-03-09", "2024-03-10"):  # create, add a partition, replace the first
            rows = {i: t for i, t in WRITTEN.items() if _day(t) == key}
            part = tmp_path / f"{key}.parquet"
            pq.write_table(pa.table({"id": list(rows), "t": pa.array(list(rows.values()), pa.timestamp("us", tz="UTC"))}), part)
            write_output(str(part), config, url, table_name, _window(key), "t")
        epoch = {"mariadb": "unix_timestamp(t)", "postgres": "extract(epoch from t)", "sqlite": "t"}[kind]
        with database.connect() as conn:
            if kind == "mariadb":  # the DATETIME column holds UTC wall times
                conn.execute(sa.text("SET time_zone = '+00:00'"))
            rows = conn.execute(sa.text(f"SELECT id, {epoch} FROM {table_name}")).all()
        if kind == "sqlite":  # UTC times as text, read by Python
            stored = {i: dt.datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for i, t in rows}
        else:
            stored = {i: float(e) for i, e in rows}
        assert len(rows) == len(stored)  # no row written twice
        assert stored == {i: t.timestamp() for i, t in WRITTEN.items()}
    finally:
        with database.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table_name}"))


@pytest.mark.parametrize(("column", "bounds"), [("TIMESTAMP(6) NULL", None), ("DATETIME(6)", None),
                                                ("TIMESTAMP(6) NULL", "_utc"), ("DATETIME(6)", "")])
def test_mariadb_partitioned_reads_place_each_row_in_its_own_day_across_dst(column, bounds, mariadb, table_name, tmp_path):
    """Filtered on partitions.column (bounds None), or by the query's own :partition_start /
    :partition_end (wall times of the zone, for DATETIME) or their _utc forms (for TIMESTAMP)."""
    instants = {1: dt.datetime(2024, 3, 10, 10, 0, tzinfo=UTC), 2: dt.datetime(2024, 3, 11, 7, 0, tzinfo=UTC),
                3: dt.datetime(2024, 11, 4, 7, 59, 59, tzinfo=UTC), 4: dt.datetime(2024, 11, 3, 8, 30, tzinfo=UTC),
                5: dt.datetime(2024, 11, 3, 9, 30, tzinfo=UTC)}
    instant_column = column.startswith("TIMESTAMP")
    # a TIMESTAMP holds the instant (written in a UTC session); a DATETIME the wall time in Los Angeles
    stored = {i: t if instant_column else t.astimezone(LA) for i, t in instants.items()}
    with mariadb.begin() as conn:
        conn.execute(sa.text("SET time_zone = '+00:00'"))
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER, t {column})"))
        for i, t in stored.items():
            conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (:i, :t)"), {"i": i, "t": t.replace(tzinfo=None)})
    where = {} if bounds is None else {
        "query": f"SELECT id, t FROM {table_name} WHERE t >= :partition_start{bounds} AND t < :partition_end{bounds}"}
    source = DataSource(source_name="s", source_type="sql", table=None if where else table_name, **where,
                        connection_string=mariadb.url.render_as_string(hide_password=False))
    try:
        read = {}
        for key in ("2024-03-09", "2024-03-10", "2024-03-11", "2024-11-02", "2024-11-03", "2024-11-04"):
            out = tmp_path / f"{key}.parquet"
            result = extract(source, source.connection_string, str(out), _window(key), "t")
            assert result.meta["window_filter"] == ("column t" if bounds is None else "query parameters")
            table = pq.read_table(out)
            read[key] = sorted(table.column("id").to_pylist())
            if instant_column and table.num_rows:  # the values are the instants themselves
                values = dict(zip(table.column("id").to_pylist(), table.column("t").to_pylist()))
                assert values == {i: instants[i] for i in values}
        expected = {key: sorted(i for i, t in stored.items() if t.astimezone(LA).date().isoformat() == key) for key in read}
        assert read == expected
        assert expected == {"2024-03-09": [], "2024-03-10": [1], "2024-03-11": [2], "2024-11-02": [],
                            "2024-11-03": [3, 4, 5], "2024-11-04": []}
    finally:
        with mariadb.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))

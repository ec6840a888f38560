"""Accounting in partitioned runs and upserts: no row vanishes, checked against pandas.

Every input row must be in the output, in the quarantine with a reason, or in a named count, and
the reconciliation must add up; the last row in source order wins an upsert.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from memories_dagster.engine.extract import extract
from memories_dagster.engine.integrate import integrate
from memories_dagster.engine.window import Window
from memories_dagster.specs.integration import DataSource, IntegrationSpec, OutputConfig

DAY = Window("2024-01-05", dt.datetime(2024, 1, 5), dt.datetime(2024, 1, 6))
DATES = ["2024-01-05", "", None, "not-a-date", "01/02/2024", "2024-01-06", "2024-01-05 10:30:00"]


def config_of(**extra):
    source = {"source_name": "events", "source_type": "parquet", "connection_string": "events.parquet"}
    return IntegrationSpec.model_validate({"integration_config": {"data_sources": [source], **extra}}).integration_config


def run(tmp_path, frame, window=None, column=None, output=None, **extra):
    source = tmp_path / "events.parquet"
    frame.to_parquet(source, index=False)
    integrated, quarantine = tmp_path / "integrated.parquet", tmp_path / "quarantine.parquet"
    outcome = integrate(config_of(**extra), {"events": str(source)}, str(integrated), str(quarantine), window, column, output)
    return outcome, pd.read_parquet(integrated), pd.read_parquet(quarantine)


def test_rows_whose_partition_column_is_empty_or_unparseable_are_quarantined(tmp_path):
    frame = pd.DataFrame({"id": range(len(DATES)), "d": DATES})
    outcome, data, quarantine = run(tmp_path, frame, DAY, "d")
    # the oracle: pandas parses ISO dates or gives NaT; NaT rows belong to no partition
    parsed = pd.to_datetime(frame["d"], errors="coerce", format="ISO8601")
    inside = (parsed >= DAY.start) & (parsed < DAY.end)
    assert sorted(data["id"]) == sorted(frame["id"][inside])
    assert sorted(quarantine["_record"].map(lambda r: pd.read_json(pd.io.common.StringIO(f"[{r}]"))["id"][0])) == \
        sorted(frame["id"][parsed.isna()])
    reasons = set(quarantine["_reason"])
    assert "partitions.column 'd' is empty, so the row belongs to no partition" in reasons
    assert any("value 'not-a-date' is not a date or time" in r for r in reasons)
    assert any("value '01/02/2024' is not a date or time" in r and "date:%m/%d/%Y" in r for r in reasons)
    account = outcome.report["integration_report"]["reconciliation"]["by_source"]["events"]
    assert account["rows_read"] == len(frame)
    assert account["in_output"] == inside.sum()
    assert account["quarantined_after_integration"] == parsed.isna().sum()
    assert account["outside_partition"] == (parsed.notna() & ~inside).sum()
    assert account["balanced"] and outcome.report["integration_report"]["reconciliation"]["balanced"]


def test_a_declared_format_places_the_row_in_its_partition(tmp_path):
    frame = pd.DataFrame({"id": [1, 2, 3], "d": ["01/05/2024", "01/06/2024", "13/45/2024"]})
    checks = {"format_check": True, "columns": {"d": "date:%m/%d/%Y"}}
    outcome, data, quarantine = run(tmp_path, frame, DAY, "d", data_quality_checks=checks)
    assert data["id"].tolist() == [1]
    assert quarantine["_reason"].tolist() == ["format_check: column 'd' value '13/45/2024' is not a valid date:%m/%d/%Y"]
    account = outcome.report["integration_report"]["reconciliation"]["by_source"]["events"]
    assert (account["in_output"], account["outside_partition"], account["quarantined_at_source"]) == (1, 1, 1)
    assert account["balanced"]


def test_a_windowed_read_keeps_the_rows_that_belong_to_no_partition(tmp_path):
    csv = tmp_path / "events.csv"
    pd.DataFrame({"id": range(len(DATES)), "d": DATES}).to_csv(csv, index=False)
    source = DataSource(source_name="events", source_type="csv", connection_string=str(csv))
    table = extract(source, str(csv), str(tmp_path / "out.parquet"), DAY, "d")
    oracle = pd.read_csv(csv, keep_default_na=False, na_values=[""])  # pandas reads the same file
    parsed = pd.to_datetime(oracle["d"], errors="coerce", format="ISO8601")
    expected = ((parsed >= DAY.start) & (parsed < DAY.end)) | parsed.isna()
    assert table.meta["window_filter"] == "column d"
    assert sorted(pd.read_parquet(tmp_path / "out.parquet")["id"]) == sorted(oracle["id"][expected])


def upsert_output(*keys):
    return OutputConfig(output_format="sql", output_destination="sqlite:///x.db", mode="upsert", upsert_keys=list(keys))


def test_an_upsert_keeps_the_last_row_per_key_in_source_order(tmp_path):
    rng = np.random.default_rng(7)
    n = 400_000  # several row groups and threads: an order DuckDB does not keep by itself
    frame = pd.DataFrame({"id": rng.integers(0, 50_000, n).astype("float64"), "seq": np.arange(n)})
    frame.loc[rng.choice(n, 25, replace=False), "id"] = np.nan
    outcome, data, quarantine = run(tmp_path, frame, output=upsert_output("id"))
    oracle = frame.dropna(subset=["id"]).drop_duplicates("id", keep="last")  # pandas: last one wins
    assert data.sort_values("id")["seq"].tolist() == oracle.sort_values("id")["seq"].tolist()
    assert len(quarantine) == 25 and set(quarantine["_reason"]) == {
        "upsert: key column 'id' is empty, so the row cannot replace or be replaced"}
    account = outcome.report["integration_report"]["reconciliation"]["by_source"]["events"]
    assert account["superseded"] == n - 25 - len(oracle)
    assert account["in_output"] == len(oracle) and account["quarantined_after_integration"] == 25
    assert account["balanced"] and outcome.report["integration_report"]["reconciliation"]["balanced"]


def test_an_upsert_over_a_union_lets_the_later_source_win(tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pd.DataFrame({"id": [1, 2, 2], "v": ["a1", "a2", "a2b"]}).to_parquet(first, index=False)
    pd.DataFrame({"id": [2, 3], "v": ["b2", "b3"]}).to_parquet(second, index=False)
    spec = IntegrationSpec.model_validate({"integration_config": {
        "data_sources": [{"source_name": n, "source_type": "parquet", "connection_string": "x"} for n in ("a", "b")],
        "integration_strategy": {"merge_strategy": "union"},
        "data_quality_checks": {"duplicate_check": True}}})
    outcome = integrate(spec.integration_config, {"a": str(first), "b": str(second)}, str(tmp_path / "i.parquet"),
                        str(tmp_path / "q.parquet"), output=upsert_output("id"))
    frames = pd.concat([pd.read_parquet(first), pd.read_parquet(second)])
    oracle = frames.drop_duplicates("id", keep="last")
    data = pd.read_parquet(tmp_path / "i.parquet").sort_values("id")
    assert data.values.tolist() == oracle.sort_values("id").values.tolist()
    reconciliation = outcome.report["integration_report"]["reconciliation"]
    assert reconciliation["by_source"]["a"]["superseded"] == 2 and reconciliation["by_source"]["b"]["superseded"] == 0
    assert reconciliation["balanced"]


def test_upsert_keys_the_integrated_data_lacks_are_named(tmp_path):
    from memories_dagster.engine.errors import IntegrationError

    with pytest.raises(IntegrationError, match="upsert_keys code: not a column of the integrated data; its columns: id, d"):
        run(tmp_path, pd.DataFrame({"id": [1], "d": ["x"]}), output=upsert_output("code"))


@pytest.mark.parametrize("backend", ["postgres", "mariadb", "sqlite"])
def test_a_windowed_sql_read_keeps_the_rows_that_belong_to_no_partition(request, backend, table_name, tmp_path):
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}") if backend == "sqlite" else request.getfixturevalue(backend)
    days = pd.to_datetime(["2024-01-05", None, "2024-01-06", "2024-01-05 23:59:59"], format="ISO8601")
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "day": days})
    frame.to_sql(table_name, engine, index=False)
    try:
        if backend == "sqlite":  # SQLite keeps dates as text: a malformed one is possible there
            with engine.begin() as conn:
                conn.execute(sa.text(f"INSERT INTO {table_name} (id, day) VALUES (5, '05/01/2024')"))
        url = engine.url.render_as_string(hide_password=False)
        source = DataSource(source_name="s", source_type="sql", connection_string=url, table=table_name)
        table = extract(source, url, str(tmp_path / "out.parquet"), DAY, "day")
        oracle = pd.read_sql(f"SELECT id, day FROM {table_name}", engine)  # the database's own rows
        parsed = pd.to_datetime(oracle["day"], errors="coerce", format="ISO8601")
        expected = ((parsed >= DAY.start) & (parsed < DAY.end)) | parsed.isna()
        assert table.meta["window_filter"] == "column day"
        assert sorted(pd.read_parquet(tmp_path / "out.parquet")["id"]) == sorted(oracle["id"][expected])
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_an_extract_for_an_upsert_keeps_the_source_order(tmp_path):
    csv = tmp_path / "changes.csv"
    n = 1_000_000  # large enough for DuckDB's threads to reorder rows unless told not to
    pd.DataFrame({"seq": np.arange(n), "k": np.arange(n) % 977}).to_csv(csv, index=False)
    source = DataSource(source_name="changes", source_type="csv", connection_string=str(csv))
    extract(source, str(csv), str(tmp_path / "out.parquet"), keep_order=True)
    assert (pd.read_parquet(tmp_path / "out.parquet")["seq"].to_numpy() == pd.read_csv(csv)["seq"].to_numpy()).all()

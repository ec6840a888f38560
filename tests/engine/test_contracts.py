"""Column contracts are pandera schemas: the rows the pipeline quarantines are the rows pandera's
own pandas backend (the oracle, a different backend from the engine's polars one) finds failing."""

import json

import numpy as np
import pandas as pd
import pandera.pandas as ppa
import pandera.polars as pla
import polars as pl
import pytest

from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.contracts import contract_from_file
from memories_dagster.engine.integrate import integrate
from memories_dagster.specs.integration import IntegrationConfig
from tests.conftest import materialization_of

CONTRACT = {
    "age": {"type": "integer", "min": 0, "max": 120, "nullable": False},
    "status": {"allowed": ["open", "closed"]},
    "email": {"pattern": r"^[a-z]+@[a-z]+\.com$", "unique": True},
}
ORACLE = ppa.DataFrameSchema({
    "age": ppa.Column(checks=[ppa.Check.ge(0), ppa.Check.le(120)], nullable=False),
    "status": ppa.Column(checks=ppa.Check.isin(["open", "closed"]), nullable=True),
    "email": ppa.Column(checks=ppa.Check.str_matches(r"^[a-z]+@[a-z]+\.com$"), nullable=True, unique=True),
})


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ages = pd.array(rng.integers(-5, 130, rows), dtype="Int64")
    ages[rng.random(rows) < 0.05] = pd.NA
    emails = pd.Series([f"{w}@{d}.com" for w, d in zip(rng.choice(list("abcdefgh"), rows), rng.choice(["x", "y"], rows))])
    emails[rng.random(rows) < 0.1] = "not an email"
    return pd.DataFrame({"id": np.arange(rows), "age": ages,
                         "status": rng.choice(["open", "closed", "lost", None], rows), "email": emails})


def run(tmp_path, data: pd.DataFrame, contract=CONTRACT, **extra):
    data.to_parquet(tmp_path / "s.parquet")
    config = IntegrationConfig.model_validate({
        "data_sources": [{"source_name": "s", "source_type": "parquet", "connection_string": "x"}],
        "data_quality_checks": {"columns": contract, **extra},
    })
    outcome = integrate(config, {"s": str(tmp_path / "s.parquet")}, str(tmp_path / "i.parquet"), str(tmp_path / "q.parquet"))
    quarantine = pd.read_parquet(tmp_path / "q.parquet")
    ids = sorted(json.loads(r)["id"] for r in quarantine["_record"])
    return outcome, pd.read_parquet(tmp_path / "i.parquet"), quarantine, ids


def oracle_failing(data: pd.DataFrame, schema=ORACLE) -> list[int]:
    try:
        schema.validate(data, lazy=True)
        return []
    except ppa.errors.SchemaErrors as exc:
        return sorted(data.loc[exc.failure_cases["index"].dropna().astype(int).unique(), "id"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quarantined_rows_are_the_rows_pandera_finds_failing(tmp_path, seed):
    data = frame(400, seed)
    outcome, kept, quarantine, ids = run(tmp_path, data)
    failing = oracle_failing(data)
    assert failing and ids == failing
    assert sorted(kept["id"]) == sorted(set(data["id"]) - set(failing))
    check = next(c for c in outcome.checks if c.name == "contract_check")
    assert not check.passed and check.metadata["rows_quarantined"] == len(failing)
    assert outcome.report["integration_report"]["reconciliation"]["balanced"]
    assert outcome.report["integration_report"]["data_quality_summary"]["contract_violations"] == len(failing)


def test_the_reason_is_pandera_s_naming_column_check_and_value(tmp_path):
    data = pd.DataFrame({"id": [1, 2, 3], "age": pd.array([5, -1, None], dtype="Int64"),
                         "status": ["open", "lost", "open"], "email": ["a@b.com", "a@b.com", "c@d.com"]})
    _, kept, quarantine, ids = run(tmp_path, data)
    reasons = dict(zip([json.loads(r)["id"] for r in quarantine["_record"]], quarantine["_reason"]))
    assert kept["id"].tolist() == [] and ids == [1, 2, 3]
    assert reasons[1] == "contract: column 'email' failed field_uniqueness (value a@b.com)"
    assert "column 'age' failed greater_than_or_equal_to(0) (value -1)" in reasons[2]
    assert "column 'status' failed isin(['open', 'closed']) (value lost)" in reasons[2]
    assert reasons[3] == "contract: column 'age' failed not_nullable (value null)"


def test_a_schema_file_in_pandera_s_yaml_and_json_forms(tmp_path):
    data = frame(300, 7)
    schema = pla.DataFrameSchema({
        "age": pla.Column(pl.Int64, checks=[pla.Check.ge(0), pla.Check.le(120)], nullable=False),
        "status": pla.Column(pl.String, checks=pla.Check.isin(["open", "closed"]), nullable=True),
    })
    oracle = ppa.DataFrameSchema({"age": ORACLE.columns["age"], "status": ORACLE.columns["status"]})
    (tmp_path / "schema.yaml").write_text(schema.to_yaml())
    import yaml
    (tmp_path / "schema.json").write_text(json.dumps(yaml.safe_load(schema.to_yaml())))
    for name in ("schema.yaml", "schema.json"):
        data.to_parquet(tmp_path / "s.parquet")
        config = IntegrationConfig.model_validate({"data_sources": [{"source_name": "s", "source_type": "parquet", "connection_string": "x"}]})
        outcome = integrate(config, {"s": str(tmp_path / "s.parquet")}, str(tmp_path / "i.parquet"), str(tmp_path / "q.parquet"),
                            schema_file=contract_from_file(str(tmp_path / name)))
        ids = sorted(json.loads(r)["id"] for r in pd.read_parquet(tmp_path / "q.parquet")["_record"])
        assert ids == oracle_failing(data, oracle) and ids
        assert any(c.name == "contract_check" and not c.passed for c in outcome.checks)


def test_a_schema_file_s_dtype_is_checked_as_pandera_checks_it(tmp_path):
    (tmp_path / "schema.yaml").write_text("columns:\n  age:\n    dtype: String\n")
    pd.DataFrame({"id": [1], "age": [3]}).to_parquet(tmp_path / "s.parquet")
    config = IntegrationConfig.model_validate({"data_sources": [{"source_name": "s", "source_type": "parquet", "connection_string": "x"}]})
    with pytest.raises(IntegrationError, match=r"schema_file .*schema.yaml.*age.*String"):
        integrate(config, {"s": str(tmp_path / "s.parquet")}, str(tmp_path / "i.parquet"), str(tmp_path / "q.parquet"),
                  schema_file=contract_from_file(str(tmp_path / "schema.yaml")))


@pytest.mark.parametrize("text, message", [
    ("columns: [1, 2", "is invalid YAML at line"),
    ("title: x\n", "needs a mapping `columns`"),
    ("columns:\n  a:\n    dtype: NoSuchType\n", "[Nn]o[Ss]uch[Tt]ype"),
])
def test_a_bad_schema_file_is_named(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=f"schema_file .*bad.yaml.*{message}"):
        contract_from_file(str(tmp_path / "bad.yaml"))


def test_a_contract_type_the_data_does_not_have_is_an_error_naming_the_column(tmp_path):
    data = pd.DataFrame({"id": [1], "age": ["3"], "status": ["open"], "email": ["a@b.com"]})
    with pytest.raises(IntegrationError, match="column 'age' should be integer but is VARCHAR"):
        run(tmp_path, data)


def test_with_format_check_the_type_converts_first_then_the_contract_applies(tmp_path):
    data = pd.DataFrame({"id": [1, 2, 3], "age": ["3", "x", "300"], "status": ["open"] * 3, "email": ["a@b.com", "b@b.com", "c@b.com"]})
    _, kept, quarantine, ids = run(tmp_path, data, format_check=True)
    reasons = sorted(quarantine["_reason"])
    assert kept["id"].tolist() == [1] and ids == [2, 3]
    assert reasons[0].startswith("contract: column 'age' failed less_than_or_equal_to(120) (value 300)")
    assert reasons[1].startswith("format_check: column 'age' value 'x'")


def test_a_contract_after_a_one_to_many_join_judges_each_joined_row(tmp_path):
    pd.DataFrame({"cid": [1, 2], "tier": ["gold", "tin"]}).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame({"oid": [10, 11, 12], "cid": [1, 1, 2], "amount": [5, -3, 7]}).to_parquet(tmp_path / "o.parquet")
    config = IntegrationConfig.model_validate({
        "data_sources": [{"source_name": "c", "source_type": "parquet", "connection_string": "x"},
                         {"source_name": "o", "source_type": "parquet", "connection_string": "x"}],
        "integration_strategy": {"join_keys": [{"source1_key": "cid", "source2_key": "cid"}], "join_type": "inner"},
        "data_quality_checks": {"columns": {"amount": {"min": 0}, "tier": {"allowed": ["gold", "silver"]}}},
    })
    outcome = integrate(config, {"c": str(tmp_path / "c.parquet"), "o": str(tmp_path / "o.parquet")},
                        str(tmp_path / "i.parquet"), str(tmp_path / "q.parquet"))
    assert pd.read_parquet(tmp_path / "i.parquet")["oid"].tolist() == [10]
    assert sorted(json.loads(r)["oid"] for r in pd.read_parquet(tmp_path / "q.parquet")["_record"]) == [11, 12]
    assert outcome.report["integration_report"]["reconciliation"]["balanced"]


def test_a_bad_pattern_is_refused_at_validation():
    with pytest.raises(ValueError, match="pattern '\\[' is not a regular expression"):
        IntegrationConfig.model_validate({
            "data_sources": [{"source_name": "s", "source_type": "parquet", "connection_string": "x"}],
            "data_quality_checks": {"columns": {"a": {"pattern": "["}}},
        })


def test_contract_check_and_column_constraints_through_dagster(tmp_path, materialize_spec):
    frame(50, 4).to_parquet(tmp_path / "s.parquet")
    spec = {"integration_config": {"data_sources": [{"source_name": "s", "source_type": "parquet", "connection_string": str(tmp_path / "s.parquet")}],
                                   "data_quality_checks": {"columns": CONTRACT}},
            "output_config": {"output_format": "parquet", "output_destination": "output/c.parquet"}}
    result = materialize_spec("contracted", spec)
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "contract_check")
    assert not check.passed and check.metadata["rows_quarantined"].value == len(oracle_failing(frame(50, 4)))
    schema = materialization_of(result, "contracted", "integrated").metadata["dagster/column_schema"].schema
    age = next(c for c in schema.columns if c.name == "age")
    assert age.constraints.nullable is False and "type integer" in age.constraints.other
    assert "greater_than_or_equal_to(0)" in age.constraints.other
    assert next(c for c in schema.columns if c.name == "email").constraints.unique


def test_memories_validate_names_a_bad_schema_file(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "assets" / "integrations"
    folder.mkdir(parents=True)
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "orders.yaml").write_text("columns:\n  a:\n    dtype: Int64\n    greater_than_or_equal_to: 0\n")
    spec = ("integration_config:\n  data_sources: [{source_name: s, source_type: csv, connection_string: s.csv}]\n"
            "  data_quality_checks: {schema_file: contracts/orders.yaml}\n")
    (folder / "good.yaml").write_text(spec)
    (folder / "bad.yaml").write_text(spec.replace("orders.yaml", "missing.yaml"))
    done = subprocess.run([sys.executable, "-m", "memories_dagster.cli", "validate", str(folder)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bad.yaml" in done.stdout and "schema_file" in done.stdout and "missing.yaml cannot be read" in done.stdout
    assert "1 valid, 1 invalid" in done.stdout

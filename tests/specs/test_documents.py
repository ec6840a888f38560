"""Declarations are read strictly: repeated keys, alias bombs and YAML 1.1's yes/no booleans."""

import json
import textwrap
import time

import pandas as pd
import pytest
import yaml

from memories_dagster.engine.integrate import integrate
from memories_dagster.specs.loading import SpecError, load_integration_spec, load_region
from memories_dagster.specs.profile import load_profile

SPEC = textwrap.dedent("""\
    integration_config:
      data_sources:
        - {source_name: orders, source_type: csv, connection_string: orders.csv}
      transformation_rules:
        - {rule_name: positive, transformation_type: validation, transformation_logic: "amount > 0"}
      data_quality_checks: {business_rule_check: true}
      transformation_rules:
        - {rule_name: doubled, transformation_type: calculation, target_column: d, transformation_logic: "amount * 2"}
    """)


def line_of(text: str, needle: str, occurrence: int) -> int:
    """1-based line of the n-th line holding ``needle`` (counted from the text, not the parser)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line][occurrence]


def test_a_repeated_yaml_key_names_the_key_and_both_lines(tmp_path):
    file = tmp_path / "orders.yaml"
    file.write_text(SPEC)
    assert len(yaml.safe_load(SPEC)["integration_config"]["transformation_rules"]) == 1  # PyYAML drops the rule
    first, second = line_of(SPEC, "transformation_rules:", 0), line_of(SPEC, "transformation_rules:", 1)
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    message = str(caught.value)
    assert message.startswith(f"{file}: invalid YAML at line {second}, column 3: "), message
    assert f"key 'transformation_rules' is given twice, on line {first} and on line {second}" in message


JSON_SPEC = """\
{
  "integration_config": {
    "data_sources": [
      {"source_name": "a",
       "source_type": "csv",
       "source_type": "json",
       "connection_string": "a.csv"}
    ]
  }
}
"""


def test_a_repeated_json_key_names_the_key_and_both_lines(tmp_path):
    file = tmp_path / "orders.json"
    file.write_text(JSON_SPEC)
    assert json.loads(JSON_SPEC)["integration_config"]["data_sources"][0]["source_type"] == "json"  # json keeps the last
    first, second = line_of(JSON_SPEC, '"source_type"', 0), line_of(JSON_SPEC, '"source_type"', 1)
    column = JSON_SPEC.splitlines()[second - 1].index('"') + 1
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    message = str(caught.value)
    assert message.startswith(f"{file}: invalid JSON at line {second}, column {column}: "), message
    assert f'key "source_type" is given twice, on line {first} and on line {second}' in message


def test_a_mapping_rule_written_as_a_json_string_refuses_a_repeated_value(tmp_path):
    logic = '{"EUR": 1.1, "EUR": 1.2}'
    assert json.loads(logic) == {"EUR": 1.2}  # json keeps the last
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump({"integration_config": {
        "data_sources": [{"source_name": "a", "source_type": "csv", "connection_string": "a.csv"}],
        "transformation_rules": [{"rule_name": "rate", "transformation_type": "mapping", "source_column": "c",
                                  "transformation_logic": logic}]}}))
    columns = logic.index('"EUR"') + 1, logic.rindex('"EUR"') + 1
    with pytest.raises(SpecError, match=r"transformation_rules\[0\]: a mapping's transformation_logic must be a JSON "
                                        rf"object: key \"EUR\" is given twice, on line 1, columns {columns[0]} and {columns[1]}"):
        load_integration_spec(file)


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path):
    text = textwrap.dedent("""\
        integration_config:
          data_sources:
            - &csv {source_name: a, source_type: csv, connection_string: a.csv}
            - {<<: *csv, source_name: b, connection_string: b.csv}
          integration_strategy: {merge_strategy: union}
        """)
    file = tmp_path / "p.yaml"
    file.write_text(text)
    sources = load_integration_spec(file).spec.integration_config.data_sources
    expected = yaml.safe_load(text)["integration_config"]["data_sources"]
    assert [s.model_dump(include={"source_name", "source_type", "connection_string"}) for s in sources] == expected


BOMB = textwrap.dedent("""\
    integration_config:
      data_sources:
        - source_name: api
          source_type: api
          connection_string: http://127.0.0.1:9/records
          api:
            method: POST
            body:
              a: &a [x, x, x, x, x, x, x, x, x, x]
              b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
              c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
              d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
              e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
              f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
              g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
              h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    """)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    file = tmp_path / "bomb.yaml"
    file.write_text(BOMB)
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    assert time.perf_counter() - started < 5.0  # the bomb took 42 s and 3.2 GB when aliases were expanded
    message = str(caught.value)
    assert message.startswith(f"{file}: invalid YAML at line "), message
    assert "aliases (*name) add more than 100,000 values to those written" in message


def test_a_few_aliases_are_fine(tmp_path):
    text = BOMB.split("c: &c")[0]
    file = tmp_path / "small.yaml"
    file.write_text(text)
    body = load_integration_spec(file).spec.integration_config.data_sources[0].api.body
    assert body == yaml.safe_load(text)["integration_config"]["data_sources"][0]["api"]["body"]


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    file = tmp_path / "loop.yaml"
    file.write_text("integration_config: &loop\n  data_sources: [*loop]\n")
    with pytest.raises(SpecError, match=r"loop\.yaml: invalid YAML at line \d+, column \d+: an alias \(\*name\) refers to a value that contains it"):
        load_integration_spec(file)


VALUE_MAP = textwrap.dedent("""\
    integration_config:
      data_sources:
        - {source_name: people, source_type: parquet, connection_string: people.parquet}
      transformation_rules:
        - rule_name: subscribed
          transformation_type: mapping
          source_column: answer
          target_column: subscribed
          transformation_logic: {yes: 1, no: 0, on: 1, off: 0, true: 1, 010: 0, 1e5: 1}
      data_quality_checks: {null_check: yes, required_columns: [answer]}
    """)


def test_unquoted_keys_of_a_value_map_are_the_text_written(tmp_path):
    file = tmp_path / "people.yaml"
    file.write_text(VALUE_MAP)
    assert yaml.safe_load(VALUE_MAP)["integration_config"]["transformation_rules"][0]["transformation_logic"] == {
        True: 1, False: 0, 8: 0, "1e5": 1}  # YAML 1.1: four keys folded into two booleans, 010 read as octal
    written_map = {"yes": 1, "no": 0, "on": 1, "off": 0, "true": 1, "010": 0, "1e5": 1}
    spec = load_integration_spec(file).spec.integration_config
    assert spec.transformation_rules[0].transformation_logic == written_map
    assert spec.data_quality_checks.null_check is True  # a flag still reads `yes` as true
    people = pd.DataFrame({"id": range(7), "answer": list(written_map)})
    people.to_parquet(tmp_path / "people.parquet", index=False)
    integrate(spec, {"people": str(tmp_path / "people.parquet")}, str(tmp_path / "out.parquet"), str(tmp_path / "q.parquet"))
    written = pd.read_parquet(tmp_path / "out.parquet").sort_values("id")
    expected = people["answer"].map(written_map)
    assert written["subscribed"].tolist() == expected.tolist()


def test_the_other_declarations_are_read_strictly_too(tmp_path):
    """Regions and resource profiles share the reader; a pandera schema file has its own path to it."""
    (tmp_path / "earth").mkdir()
    region = tmp_path / "earth" / "r.yaml"
    region.write_text("bbox: [0, 0, 1, 1]\nbbox: [0, 0, 2, 2]\n")
    with pytest.raises(SpecError, match="key 'bbox' is given twice, on line 1 and on line 2"):
        load_region(region)
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "local.yaml").write_text("executor: in_process\nexecutor: multiprocess\n")
    with pytest.raises(SpecError, match="key 'executor' is given twice, on line 1 and on line 2"):
        load_profile(tmp_path)
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  id: {dtype: int64}\n  id: {dtype: str}\n")
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({"integration_config": {
        "data_sources": [{"source_name": "a", "source_type": "csv", "connection_string": "a.csv"}],
        "data_quality_checks": {"schema_file": str(schema)}}}))
    with pytest.raises(SpecError, match=r"schema_file: schema_file .*schema\.yaml is invalid YAML at line 3, column 3: "
                                        r"key 'id' is given twice, on line 2 and on line 3"):
        load_integration_spec(spec)


# YAML 1.2.2, example 10.9 "Core Tag Resolution", and its stated results (the oracle), plus YAML
# 1.1's implicit types that the core schema reads as text (no core pattern matches them).
CORE_EXAMPLE = textwrap.dedent("""\
    A null: null
    Also a null: # Empty
    Not a null: ""
    Booleans: [ true, True, false, FALSE ]
    Integers: [ 0, 0o7, 0x3A, -19 ]
    Floats: [ 0., -0.0, .5, +12e03, -2E+05 ]
    Also floats: [ .inf, -.Inf, +.INF, .NAN ]
    YAML 1.1 only: [ yes, No, on, OFF, y, 12:30, 1_000 ]
    Leading zero: 010
    """)


def test_scalars_follow_the_yaml_1_2_core_schema(tmp_path):
    from memories_dagster.specs.documents import parse_yaml

    read = parse_yaml(CORE_EXAMPLE)
    nan = read["Also floats"].pop()
    assert nan != nan
    assert read == {
        "A null": None, "Also a null": None, "Not a null": "",
        "Booleans": [True, True, False, False],
        "Integers": [0, 7, 58, -19],
        "Floats": [0.0, -0.0, 0.5, 12000.0, -200000.0],
        "Also floats": [float("inf"), float("-inf"), float("inf")],
        "YAML 1.1 only": ["yes", "No", "on", "OFF", "y", "12:30", "1_000"],
        "Leading zero": 10,
    }
    assert [type(v) for v in read["Integers"] + read["Floats"]] == [int] * 4 + [float] * 5


def test_the_alias_limit_counts_only_what_aliases_add(monkeypatch):
    from memories_dagster.specs import documents

    monkeypatch.setattr(documents, "MAX_EXPANDED_VALUES", 50)
    written = "m: {" + ", ".join(f"k{i}: {i}" for i in range(60)) + "}\n"  # 121 values, no alias
    assert len(documents.parse_yaml(written)["m"]) == 60
    repeated = "a: &a [" + ", ".join(str(i) for i in range(30)) + "]\nb: [*a, *a]\n"  # aliases add 62
    assert documents.parse_yaml(repeated.replace("*a, *a", "*a"))["b"] == [list(range(30))]  # they add 31
    with pytest.raises(documents.DocumentError, match="aliases .* add more than 50 values to those written"):
        documents.parse_yaml(repeated)

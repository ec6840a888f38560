"""Broken specs: each error names the file, the field path and what is allowed."""

import copy
import json

import pytest
import yaml

from memories_dagster.specs.loading import SpecError, discover_integrations, load_integration_spec

VALID = {
    "integration_config": {
        "data_sources": [
            {"source_name": "orders", "source_type": "csv", "connection_string": "orders.csv"},
            {"source_name": "customers", "source_type": "json", "connection_string": "customers.json"},
        ],
        "integration_strategy": {"join_type": "left", "join_keys": [{"source1_key": "cust", "source2_key": "id"}]},
        "transformation_rules": [
            {"rule_name": "r", "transformation_type": "calculation", "target_column": "t", "transformation_logic": "a * 2"}
        ],
        "data_quality_checks": {"null_check": True},
    },
    "output_config": {"output_format": "parquet", "output_destination": "out"},
}


def broken(change):
    document = copy.deepcopy(VALID)
    change(document)
    return document


def set_(path, value):
    def change(document):
        target = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return change


def delete(path):
    def change(document):
        target = document
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return change


CASES = [
    (set_(["integration_config", "data_sources", 1, "source_type"], "xml"),
     "integration_config.data_sources[1].source_type: 'xml' is not allowed; input should be 'csv', 'json', 'excel', 'sql', 'mongodb', 'redis', 'api', 'parquet', 'odata', 'graphql', 'soap', 'mainframe' or 'earth'"),
    (set_(["integration_config", "joinkeys"], []),
     "integration_config.joinkeys: unknown key 'joinkeys'; allowed here: data_sources, integration_strategy, transformation_rules, data_quality_checks"),
    (delete(["integration_config", "data_sources", 0, "connection_string"]),
     "integration_config.data_sources[0]: `connection_string` is required (a sql source may name a `connection` of the resource profile instead)"),
    (delete(["integration_config"]), "integration_config: required, but missing"),
    (set_(["integration_config", "data_sources"], []),
     "integration_config.data_sources: List should have at least 1 item after validation, not 0"),
    (set_(["integration_config", "integration_strategy", "join_type"], "sideways"),
     "integration_config.integration_strategy.join_type: 'sideways' is not allowed; input should be 'inner', 'left', 'right', 'outer' or 'cross'"),
    (set_(["integration_config", "integration_strategy", "conflict_resolution"], "custom"),
     "integration_config.integration_strategy: conflict_resolution 'custom' needs `custom_resolution`"),
    (set_(["integration_config", "transformation_rules", 0, "transformation_logic"], "a *"),
     "integration_config.transformation_rules[0]: transformation_logic: cannot parse 'a *'"),
    (set_(["integration_config", "transformation_rules", 0, "transformation_logic"], "__import__('os')"),
     "integration_config.transformation_rules[0]: transformation_logic: in '__import__('os')': unknown function '__import__'"),
    (set_(["integration_config", "transformation_rules", 0, "transformation_type"], "pivot"),
     "integration_config.transformation_rules[0].transformation_type: 'pivot' is not allowed; input should be 'mapping', 'calculation', 'formatting' or 'validation'"),
    (set_(["integration_config", "transformation_rules", 0],
          {"rule_name": "m", "transformation_type": "mapping", "source_column": "c", "transformation_logic": "{not json"}),
     "integration_config.transformation_rules[0]: a mapping's transformation_logic must be a JSON object"),
    (set_(["integration_config", "transformation_rules", 0],
          {"rule_name": "f", "transformation_type": "formatting", "source_column": "c", "transformation_logic": "sparkle"}),
     "integration_config.transformation_rules[0]: unknown format 'sparkle'; allowed: date, digits, lower, round, strip, title, upper"),
    (set_(["integration_config", "data_quality_checks", "duplicate_chek"], True),
     "integration_config.data_quality_checks.duplicate_chek: unknown key 'duplicate_chek'; allowed here: duplicate_check, null_check, format_check, business_rule_check, required_columns, null_fill, columns"),
    (set_(["integration_config", "data_quality_checks", "null_check"], "sometimes"),
     "integration_config.data_quality_checks.null_check: Input should be a valid boolean, unable to interpret input"),
    (set_(["integration_config", "data_quality_checks", "columns"], {"x": "integer"}),
     "integration_config.data_quality_checks: `columns` acts only with `format_check: true`"),
    (set_(["integration_config", "data_quality_checks"], {"format_check": True, "columns": {"x": "money"}}),
     "integration_config.data_quality_checks.columns: column 'x' has type 'money'; allowed: string, integer, float, decimal, boolean, date, timestamp"),
    (set_(["output_config", "output_format"], "xlsx"),
     "output_config.output_format: 'xlsx' is not allowed; input should be 'csv', 'json', 'parquet', 'sql', 'mongodb' or 'delta'"),
    (set_(["output_config", "partitioning"], {"partition_by": "d", "partition_type": "weekly"}),
     "output_config.partitioning.partition_type: 'weekly' is not allowed; input should be 'date', 'category' or 'hash'"),
    (set_(["output_config", "output_format"], "sql"),
     "output_config: a sql output needs `output_destination`: a SQLAlchemy URL such as sqlite:///output/data.db, not 'out'"),
    (set_(["partitions"], {"type": "daily"}), "partitions: daily partitions need `start`"),
    (set_(["schedule"], "every day"), "schedule: 'every day' is not a cron schedule Dagster accepts (it has 2 fields)"),
    (set_(["integration_config", "data_sources", 1, "source_name"], "orders"),
     "integration_config: source names must be unique; repeated: orders"),
    (set_(["integration_config", "integration_strategy"], {"join_type": "inner"}),
     "integration_config: join_type 'inner' needs join_keys (or give a merge_strategy)"),
    (set_(["integration_config", "data_sources", 1, "source_name"], "Orders"),
     "integration_config: source names must be unique; repeated: Orders, orders (compared ignoring case, as SQL compares names)"),
    (set_(["integration_config", "integration_strategy", "join_type"], "cross"),
     "integration_config.integration_strategy: join_type 'cross' pairs every row with every row and takes no `join_keys`"),
    (set_(["integration_config", "integration_strategy", "custom_resolution"], {"email": "crm.email"}),
     "integration_config.integration_strategy: `custom_resolution` acts only with `conflict_resolution: custom` (it is 'first')"),
    (set_(["integration_config", "integration_strategy"],
          {"join_keys": [{"source1_key": "cust", "source2_key": "id"}], "conflict_resolution": "custom",
           "custom_resolution": {"Email": "a.email", "email": "b.email"}}),
     "integration_config.integration_strategy: custom_resolution has columns that differ only in case: Email, email"),
    (set_(["integration_config", "data_sources", 0, "source_type"], "sql"),
     "integration_config.data_sources[0]: a sql source needs `query` or `table`"),
    (set_(["integration_config", "data_sources", 0, "source_type"], "mongodb"),
     "integration_config.data_sources[0]: a mongodb source needs `mongodb.collection`"),
]


def load_error(file, change) -> str:
    """The message of loading the broken spec ``change`` makes, written to ``file``."""
    file.write_text(yaml.safe_dump(broken(change)))
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    return str(caught.value)


@pytest.mark.parametrize("change, message", CASES)
def test_broken_spec_messages(tmp_path, change, message):
    file = tmp_path / "pipeline.yaml"
    text = load_error(file, change)
    assert text.startswith(f"{file}: ")
    assert message in text, text


def test_yaml_syntax_error_names_the_line(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text("integration_config:\n  data_sources: [\n")
    with pytest.raises(SpecError, match=r"p\.yaml: invalid YAML at line 3"):
        load_integration_spec(file)


def test_json_syntax_error_names_line_and_column(tmp_path):
    file = tmp_path / "p.json"
    file.write_text('{"integration_config": {,}}')
    with pytest.raises(SpecError, match=r"p\.json: invalid JSON at line 1, column 25"):
        load_integration_spec(file)


def test_a_file_that_is_not_a_mapping(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_integration_spec(file)


def test_every_error_of_a_file_is_reported(tmp_path):
    file = tmp_path / "p.json"
    document = broken(set_(["output_config", "output_format"], "xlsx"))
    document["integration_config"]["data_sources"][0]["source_type"] = "xml"
    file.write_text(json.dumps(document))
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    assert len(caught.value.problems) == 2


def test_discovery_keeps_good_specs_and_reports_broken_ones(tmp_path):
    folder = tmp_path / "assets" / "integrations"
    folder.mkdir(parents=True)
    (folder / "good.json").write_text(json.dumps(VALID))
    (folder / "bad.yaml").write_text("integration_config: {data_sources: []}\n")
    (folder / "notes.txt").write_text("ignored")
    loaded, errors = discover_integrations(tmp_path / "assets")
    assert [spec.name for spec in loaded] == ["good"]
    assert len(errors) == 1 and "bad.yaml" in str(errors[0])


def test_names_are_made_safe_for_asset_keys(tmp_path):
    file = tmp_path / "assets" / "integrations" / "sales-2024.json"
    file.parent.mkdir(parents=True)
    document = copy.deepcopy(VALID)
    document["integration_config"]["data_sources"][0]["source_name"] = "Orders CSV"
    file.write_text(json.dumps(document))
    loaded = load_integration_spec(file)
    assert loaded.name == "sales_2024"
    assert loaded.spec.integration_config.data_sources[0].key == "Orders_CSV"


@pytest.mark.parametrize(
    "change, message",
    [
        (set_(["partitions"], {"type": "daily", "start": "2024-01-01", "timezone": "Mars/Olympus"}),
         "partitions.timezone: unknown timezone 'Mars/Olympus'"),
        (set_(["schedule"], "99 99 * * *"), r"schedule: '99 99 \* \* \*' is not a cron schedule Dagster accepts \(.*out of range\)"),
    ],
)
def test_values_the_scheduler_would_reject_are_spec_errors(tmp_path, change, message):
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(broken(change)))
    with pytest.raises(SpecError, match=message):
        load_integration_spec(file)


def test_a_file_that_is_not_utf8(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_bytes(b"integration_config: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_integration_spec(file)


def test_a_mainframe_source_needs_its_copybook(tmp_path):
    document = broken(set_(["integration_config", "data_sources", 0], {
        "source_name": "ledger", "source_type": "mainframe", "connection_string": "ledger.dat"}))
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError, match=r"data_sources\[0\]: a mainframe source needs `copybook`"):
        load_integration_spec(file)


@pytest.mark.parametrize("change, field", [
    (set_(["integration_config", "data_sources", 0, "source_type"], "x" * 100_000), "source_type"),
    (set_(["partitions"], {"type": "daily", "start": "2024-01-01", "timezone": "Europe/" + "y" * 100_000}), "partitions"),
])
def test_a_huge_value_is_echoed_cut_short(tmp_path, change, field):
    message = load_error(tmp_path / "big.yaml", change)
    assert field in message and "(100" in message and "characters)" in message and len(message) < 1500, message[:300]

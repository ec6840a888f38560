"""Settings that are valid but change nothing are warned about, with file and field."""

import copy

import pytest
import yaml

from memories_dagster.specs.loading import load_integration_spec, spec_warnings

SOURCES = [
    {"source_name": "a", "source_type": "csv", "connection_string": "a.csv"},
    {"source_name": "b", "source_type": "csv", "connection_string": "b.csv"},
]
KEYS = [{"source1_key": "id", "source2_key": "id"}]
VALIDATION = {"rule_name": "v", "transformation_type": "validation", "transformation_logic": "id > 0"}


def warnings_of(tmp_path, config: dict) -> list[str]:
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump({"integration_config": {"data_sources": copy.deepcopy(SOURCES), **config}}))
    return [str(w) for w in spec_warnings(load_integration_spec(file))]


@pytest.mark.parametrize("config, field, says", [
    ({"integration_strategy": {"join_keys": KEYS, "merge_strategy": "union"}},
     "integration_config.integration_strategy.merge_strategy", "merge_strategy 'union' is not used: with join_keys the sources are joined"),
    ({"integration_strategy": {"join_type": "cross", "merge_strategy": "intersection"}},
     "integration_config.integration_strategy.merge_strategy", "with join_type cross the sources are joined"),
    ({"integration_strategy": {"join_type": "left", "merge_strategy": "union"}},
     "integration_config.integration_strategy.join_type", "join_type 'left' is not used: without join_keys the sources are merged (union)"),
    ({"integration_strategy": {"merge_strategy": "union", "conflict_resolution": "average"}},
     "integration_config.integration_strategy.conflict_resolution", "conflict_resolution 'average' is not used: merged sources have no conflicts"),
    ({"integration_strategy": {"join_keys": KEYS}, "data_quality_checks": {"format_check": True}},
     "integration_config.data_quality_checks.format_check", "format_check is on but declares no `columns`"),
    ({"integration_strategy": {"join_keys": KEYS}, "data_quality_checks": {"business_rule_check": True}},
     "integration_config.data_quality_checks.business_rule_check", "no transformation rule is a validation"),
])
def test_a_setting_without_effect_is_warned_about(tmp_path, config, field, says):
    found = warnings_of(tmp_path, config)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'p.yaml'}: {field}: ") and says in found[0], found


@pytest.mark.parametrize("config", [
    {"integration_strategy": {"join_keys": KEYS, "conflict_resolution": "last"}},
    {"integration_strategy": {"merge_strategy": "intersection"}},
    {"integration_strategy": {"join_type": "cross", "conflict_resolution": "sum"}},
    {"integration_strategy": {"join_keys": KEYS}, "transformation_rules": [VALIDATION],
     "data_quality_checks": {"format_check": True, "columns": {"id": "integer"}, "business_rule_check": True}},
])
def test_settings_that_act_are_not_warned_about(tmp_path, config):
    assert warnings_of(tmp_path, config) == []

"""The layer limit of chained transformation rules is checked when the spec is validated, and
counts layers as the run builds them."""

import re

import pandas as pd
import pytest
from pydantic import ValidationError

from memories_dagster.engine import layers, transform
from memories_dagster.engine.errors import IntegrationError
from tests.conftest import spec_of


def chain(count: int) -> list[dict]:
    return [{"rule_name": f"r{n}", "transformation_type": "calculation",
             "transformation_logic": f"{'x' if n == 0 else f'c{n - 1}'} + 1", "target_column": f"c{n}"} for n in range(count)]


def test_a_chain_past_the_layer_limit_is_refused_at_validation():
    spec_of(["n"], transformation_rules=chain(layers.MAX_LAYERS))
    with pytest.raises(ValidationError, match=f"rule 'r{layers.MAX_LAYERS}' .* would start layer {layers.MAX_LAYERS + 1}"):
        spec_of(["n"], transformation_rules=chain(layers.MAX_LAYERS + 1))


def test_validation_counts_layers_as_the_run_builds_them(run_integration, monkeypatch):
    # independent rules share a layer, a rewrite of a column written in the layer starts one,
    # names match ignoring case, mappings and validations read their columns
    rules = [
        {"rule_name": "a", "transformation_type": "calculation", "transformation_logic": "x + 1", "target_column": "A1"},
        {"rule_name": "b", "transformation_type": "calculation", "transformation_logic": "x * 2", "target_column": "b1"},
        {"rule_name": "c", "transformation_type": "validation", "transformation_logic": "a1 > 0"},
        {"rule_name": "d", "transformation_type": "mapping", "transformation_logic": {"2": "two"}, "source_column": "B1",
         "target_column": "m"},
        {"rule_name": "e", "transformation_type": "calculation", "transformation_logic": "x - 1", "target_column": "y"},
        {"rule_name": "f", "transformation_type": "calculation", "transformation_logic": "x - 2", "target_column": "Y"},
        {"rule_name": "g", "transformation_type": "calculation", "transformation_logic": "m", "target_column": "z"},
    ]
    monkeypatch.setattr(transform, "MAX_LAYERS", 2)
    with pytest.raises(IntegrationError) as run_error:
        run_integration({"n": pd.DataFrame({"x": [1, 2]})}, transformation_rules=rules)
    refused_at_run = re.search(r"rule '(\w+)' would start layer", str(run_error.value)).group(1)
    monkeypatch.setattr(layers, "MAX_LAYERS", 2)
    with pytest.raises(ValidationError) as validation_error:
        spec_of(["n"], transformation_rules=rules)
    assert re.search(r"rule '(\w+)' \(rule \d+\) would start layer", str(validation_error.value)).group(1) == refused_at_run

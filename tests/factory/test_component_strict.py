"""A defs.yaml of the integration Component is read as strictly as a spec file."""

import textwrap

import pytest

from memories_dagster.specs.loading import SpecError


HEAD = """\
type: memories_dagster.factory.component.IntegrationComponent
attributes:
  integration_config:
    data_sources:
      - {source_name: customers, source_type: csv, connection_string: customers.csv}
"""


def spec_error_of(rules: str) -> str:
    """The SpecError that building the Component from HEAD + ``rules`` raises, as text."""
    from dagster.components.testing.utils import create_defs_folder_sandbox

    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "crm"
        folder.mkdir(parents=True)
        (folder / "defs.yaml").write_text(HEAD + textwrap.indent(textwrap.dedent(rules), "    "))
        with pytest.raises(Exception) as caught:
            with sandbox.load_component_and_build_defs(defs_path=folder):
                pass
    chain = [caught.value]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    found = [str(e) for e in chain if isinstance(e, SpecError)]
    assert found, chain
    return found[0]


def test_a_repeated_key_in_a_components_defs_yaml_is_refused():
    message = spec_error_of("""\
        transformation_rules:
          - {rule_name: positive, transformation_type: validation, transformation_logic: "id > 0"}
        transformation_rules: []
        """)
    assert "key 'transformation_rules' is given twice, on line 6 and on line 8" in message


def test_yes_and_no_keys_that_dagsters_yaml_made_booleans_get_a_message_to_act_on():
    message = spec_error_of("""\
        transformation_rules:
          - {rule_name: flag, transformation_type: mapping, source_column: answer, transformation_logic: {yes: 1, no: 0}}
        """)
    assert "transformation_rules[0].transformation_logic: the keys of a value map are text, but True, False are not: " \
           "quote them ('yes': 1, '010': 2)" in message

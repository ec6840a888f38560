"""A defs.yaml of the integration Component is read as strictly as a spec file."""

import textwrap

import pytest

from memories_dagster.specs.loading import SpecError


def test_a_repeated_key_in_a_components_defs_yaml_is_refused():
    from dagster.components.testing.utils import create_defs_folder_sandbox

    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "crm"
        folder.mkdir(parents=True)
        (folder / "defs.yaml").write_text(textwrap.dedent("""\
            type: memories_dagster.factory.component.IntegrationComponent
            attributes:
              integration_config:
                data_sources:
                  - {source_name: customers, source_type: csv, connection_string: customers.csv}
                transformation_rules:
                  - {rule_name: positive, transformation_type: validation, transformation_logic: "id > 0"}
                transformation_rules: []
            """))
        with pytest.raises(Exception) as caught:
            with sandbox.load_component_and_build_defs(defs_path=folder):
                pass
        chain = [caught.value]
        while chain[-1].__cause__ or chain[-1].__context__:
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        assert any(isinstance(e, SpecError) and "key 'transformation_rules' is given twice, on line 6 and on line 8" in str(e)
                   for e in chain), chain

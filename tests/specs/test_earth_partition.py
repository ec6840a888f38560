"""An earth `partition` names a folder of the earth store (`<storage>/earth/<region>/<step>/<partition>`),
so a value that could leave that folder is refused at validation, by the rule partition keys
follow (issue 9 item 18's sibling)."""

import pytest
import yaml

from memories_dagster.specs.loading import SpecError, load_integration_spec

EARTH = {"source_name": "terrain", "source_type": "earth", "connection_string": "ridges/terrain"}
SAMPLED = {"source_name": "sites", "source_type": "csv", "connection_string": "sites.csv",
           "sample_rasters": {"layers": {"slope": "ridges/terrain/slope"}}}


def spec_file(tmp_path, source):
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump({"integration_config": {"data_sources": [source]},
                                    "output_config": {"output_format": "csv", "output_destination": "out/p.csv"}}))
    return file


def with_partition(source, where, value):
    if where == "partition":
        return {**source, "partition": value}
    return {**source, "sample_rasters": {**source["sample_rasters"], "partition": value}}


@pytest.mark.parametrize("source, where", [(EARTH, "partition"), (SAMPLED, "sample_rasters.partition")])
@pytest.mark.parametrize("value", ["../../../etc", "..", "/etc", "2024/06", "*", "~root", "a\nb"])
def test_a_partition_that_could_leave_the_earth_store_is_refused(tmp_path, source, where, value):
    file = spec_file(tmp_path, with_partition(source, where, value))
    with pytest.raises(SpecError) as caught:
        load_integration_spec(file)
    assert f"{file}: integration_config.data_sources[0].{where}: partition {value!r} names a folder of the earth store, " \
           "so it must be one plain name" in str(caught.value)


@pytest.mark.parametrize("source, where", [(EARTH, "partition"), (SAMPLED, "sample_rasters.partition")])
def test_a_partition_key_is_accepted(tmp_path, source, where):
    loaded = load_integration_spec(spec_file(tmp_path, with_partition(source, where, "2024-06-01")))
    source = loaded.spec.integration_config.data_sources[0]
    assert (source.partition if where == "partition" else source.sample_rasters.partition) == "2024-06-01"

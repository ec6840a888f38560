"""The integration spec as a Dagster Component, for ``defs.yaml`` users.

.. code-block:: yaml

    type: memories_dagster.factory.component.IntegrationComponent
    attributes:
      integration_config: {...}   # seed 003 input schema, as in assets/integrations/
      output_config: {...}

Relative paths are taken from the folder that holds ``defs.yaml``; data handed between assets
is kept as the resource profile of the project (the folder with pyproject.toml) says. The name is
``name`` or that folder's name; assets, checks, sensor and schedule are the same as for a spec
file in ``assets/integrations/``.
"""

from typing import Any

import dagster as dg

from memories_dagster.factory.integration import pipeline_definitions
from memories_dagster.resources import profile_resources
from memories_dagster.specs.integration import IntegrationSpec, asset_name
from memories_dagster.specs.loading import LoadedSpec, parse_model, read_document
from memories_dagster.specs.profile import load_profile


class IntegrationComponent(dg.Component, dg.Resolvable, dg.Model):
    """A seed-003 integration spec declared in ``defs.yaml``."""

    integration_config: dict[str, Any]
    output_config: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    partitions: dict[str, Any] | None = None
    schedule: str | None = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        folder = context.path
        if (folder / "defs.yaml").exists():  # Dagster's YAML reader keeps the last of repeated keys: ours refuses them
            read_document(folder / "defs.yaml")
        spec = parse_model(IntegrationSpec, self.model_dump(exclude_none=True), folder / "defs.yaml")
        assert isinstance(spec, IntegrationSpec)
        loaded = LoadedSpec(name=asset_name(self.name or folder.name), file=folder / "defs.yaml", spec=spec, root=folder)
        project = next((p for p in (folder, *folder.parents) if (p / "pyproject.toml").exists()), folder)
        profile = load_profile(project)
        resources = profile_resources(project, profile)
        connections = dict(profile.connections)
        return dg.Definitions.merge(pipeline_definitions(loaded, connections), dg.Definitions(resources=resources))

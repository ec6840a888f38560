"""The code location: every declaration under the assets folder as Dagster definitions."""

from __future__ import annotations

import dagster as dg

from memories_dagster.factory.earth import region_definitions
from memories_dagster.factory.integration import pipeline_definitions
from memories_dagster.factory.invalid import invalid_spec_assets
from memories_dagster.resources import profile_resources
from memories_dagster.specs.loading import SpecError, SpecProblem, assets_root, discover_integrations, discover_regions
from memories_dagster.specs.profile import ResourceProfile, load_profile


def executor_for(profile: ResourceProfile) -> dg.ExecutorDefinition:
    """In-process by default: measured faster for pipelines of this size (BENCHMARKS.md)."""
    if profile.executor == "multiprocess":
        config = {"max_concurrent": profile.max_concurrent} if profile.max_concurrent else {}
        return dg.multiprocess_executor.configured(config)
    return dg.in_process_executor


def build_definitions() -> dg.Definitions:
    """Load the resource profile, every integration spec and every earth region; broken
    declarations become visible errors."""
    root = assets_root()
    project = root.parent
    profile = load_profile(project)
    pipelines, errors = discover_integrations(root)
    regions, region_errors = discover_regions(root)
    errors += region_errors
    built, built_names = [], set()
    connection_types = dict(profile.connections)
    for loaded, factory in [(p, pipeline_definitions) for p in pipelines] + [(r, region_definitions) for r in regions]:
        try:
            built.append(factory(loaded, connection_types))
            built_names.add(loaded.name)
        except Exception as exc:  # one bad declaration must not take the code location down
            errors.append(SpecError([SpecProblem(loaded.file, "", f"cannot be turned into Dagster definitions: {exc}")]))
    shared = dg.Definitions(
        assets=invalid_spec_assets(errors, built_names), resources=profile_resources(project, profile),
        executor=executor_for(profile),
    )
    return dg.Definitions.merge(shared, *built)


defs = build_definitions()

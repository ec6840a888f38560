"""Connections of the resource profile as used by a pipeline: checked names, and engine access."""

import dagster as dg

from memories_dagster.engine.tables import Access
from memories_dagster.resources import SqlDatabase
from memories_dagster.specs.loading import LoadedSpec

_STORAGE_TYPES = ("s3", "gcs", "adls2")


def used_connections(loaded: LoadedSpec, known: dict[str, str]) -> set[str]:
    """Names of the profile connections a spec uses; an unknown or unfit one is an error."""
    spec = loaded.spec
    uses = [(s.connection, s.source_type, f"source '{s.source_name}'") for s in spec.integration_config.data_sources]
    uses.append((spec.output_config.connection, spec.output_config.output_format, "output_config"))
    names = set()
    for name, kind, where in uses:
        if name is None:
            continue
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{where} names connection '{name}', which the resource profile does not have (it has: {listed})")
        wanted = ("sql",) if kind == "sql" else _STORAGE_TYPES
        if known[name] not in wanted:
            raise ValueError(f"{where} ({kind}) names connection '{name}' of type {known[name]}; it needs one of type {' or '.join(wanted)}")
        names.add(name)
    return names


def access_of(context: dg.AssetExecutionContext | dg.SensorEvaluationContext, name: str | None) -> tuple[Access, str | None]:
    """How the engine reaches a connection, and the database URL it gives (SQL connections)."""
    if name is None:
        return Access(), None
    resource = getattr(context.resources, name)
    if isinstance(resource, SqlDatabase):
        return Access(engine_options=resource.engine_options()), resource.url
    return Access(storage_options=resource.storage_options()), None

"""An integration spec as Dagster definitions: source assets, integrated + quarantine, output.

Asset keys (DESIGN contract): ``<name>/sources/<source>``, ``<name>/integrated``,
``<name>/output``, plus ``<name>/quarantine`` for rejected rows; all in group ``<name>``. The
checks ``duplicate_check``, ``null_check``, ``format_check`` and ``business_rule_check`` sit on
``<name>/integrated``. Data work happens in :mod:`memories_dagster.engine`; this module wires.
"""


import shutil
from pathlib import Path
from typing import Any

import dagster as dg

from memories_dagster.engine.contracts import Contract, column_schema, contract_from_file, declared_contract
from memories_dagster.engine.earth.products import published_file, stored_statistics
from memories_dagster.engine.extract import extract
from memories_dagster.engine.integrate import IntegrationOutcome, integrate
from memories_dagster.engine.tables import TableFile, write_json
from memories_dagster.engine.window import Window
from memories_dagster.connectors.file_outputs import Ownership, protected_places
from memories_dagster.engine.write import default_destination, destination_check, partition_scheme, write_output
from memories_dagster.factory.connections import access_of, resource_keys, used_connections
from memories_dagster.factory.failures import retry_policy, step_failure
from memories_dagster.factory.partitions import partitions_definition, window_of
from memories_dagster.factory.schedules import pipeline_schedule
from memories_dagster.factory.sensors import file_sensor
from memories_dagster.resources import IO_MANAGER_KEY, STORE_IO_MANAGER_KEY, MemoriesSettings, store_metadata
from memories_dagster.secrets import redact, resolve
from memories_dagster.specs.integration import DataSource
from memories_dagster.specs.loading import LoadedSpec, spec_warnings

SETTINGS_KEY = "memories_settings"
URL_SOURCES = ("sql", "api", "odata", "graphql", "redis", "mongodb")  # connection strings that are URLs, not paths
CHECK_NAMES = ("duplicate_check", "null_check", "format_check", "business_rule_check")
CONTRACT_CHECK = "contract_check"
EMPTY_CHECK = "not_empty"
STORAGE_FOLDER = ".memories"  # the project's own storage (the default profile's storage and reports)


def table_metadata(rows: int, columns: dict[str, str], contracts: list[Contract] = ()) -> dict[str, Any]:
    """Row count and column schema in Dagster's standard metadata keys; a contracted column
    carries its contract (not null, unique, pandera's checks) as constraints."""
    constrained = {name: (nullable, unique, checks) for c in contracts for name, nullable, unique, checks in column_schema(c)}

    def column(name: str, kind: str) -> dg.TableColumn:
        if name not in constrained:
            return dg.TableColumn(name, kind)
        nullable, unique, checks = constrained[name]
        return dg.TableColumn(name, kind, constraints=dg.TableColumnConstraints(nullable=nullable, unique=unique, other=checks))

    schema = dg.TableSchema(columns=[column(name, kind) for name, kind in columns.items()])
    return {"dagster/row_count": rows, "dagster/column_schema": schema}


def column_lineage(pipeline: str, lineage: dict[str, list[str]]) -> dg.TableColumnLineage:
    """Engine lineage ("source.column") as Dagster column lineage on the source assets."""
    deps = {
        column: [
            dg.TableColumnDep(asset_key=dg.AssetKey([pipeline, "sources", origin.split(".", 1)[0]]),
                              column_name=origin.split(".", 1)[1])
            for origin in origins
        ]
        for column, origins in lineage.items()
    }
    return dg.TableColumnLineage(deps_by_column=deps)


def _locate(loaded: LoadedSpec, text: str, where: str, is_url: bool) -> str:
    """A declared location with ${ENV} resolved and relative paths taken from the project."""
    text = resolve(text, where)
    if not is_url:
        return loaded.resolve_path(text)
    if text.startswith("sqlite:///") and not text.startswith("sqlite:////"):
        return "sqlite:///" + loaded.resolve_path(text[len("sqlite:///"):])
    return text


def earth_dependencies(source: DataSource) -> list[dg.AssetKey]:
    """The earth analyzers a source reads: its statistics table, or the rasters it samples."""
    references = [source.connection_string] if source.source_type == "earth" and source.connection_string else []
    references += list(source.sample_rasters.layers.values()) if source.sample_rasters else []
    keys = {tuple(ref.split("/")[:2]) for ref in references}
    return [dg.AssetKey([region, "analysis", analyzer]) for region, analyzer in sorted(keys)]


def _window(context: dg.AssetExecutionContext) -> Window | None:
    return window_of(context) if context.has_partition_key else None


def pipeline_definitions(loaded: LoadedSpec, connections: dict[str, Any] | None = None) -> dg.Definitions:
    """Every Dagster definition of one integration spec; ``connections`` are the resource
    profile's, which the spec may name."""
    name, spec = loaded.name, loaded.spec
    connections = connections or {}
    used_connections(loaded, connections)
    problems, _ = destination_check(name, spec.output_config, loaded.root, spec.partitions is not None,
                                    [str(loaded.root / STORAGE_FOLDER)], deep=False)
    if problems:
        raise ValueError(problems[0])
    partitions_def = partitions_definition(name, spec.partitions)
    window_column = spec.partitions.column if spec.partitions else None
    description = spec.description or f"Integration pipeline declared in {loaded.file.name}"
    source_assets = [_source_asset(loaded, s, partitions_def, window_column, connections.get(s.connection or ""))
                     for s in spec.integration_config.data_sources]
    integrated = _integrated_asset(loaded, partitions_def, window_column)
    output = _output_asset(loaded, partitions_def, window_column, connections.get(spec.output_config.connection or ""))
    job = dg.define_asset_job(f"{name}_job", selection=dg.AssetSelection.groups(name), description=description)
    sensors = [s for s in [file_sensor(loaded, job, partitions_def, connections)] if s is not None]
    schedules = [pipeline_schedule(loaded, job, partitions_def)] if spec.schedule else []
    return dg.Definitions(assets=[*source_assets, integrated, output], jobs=[job], sensors=sensors, schedules=schedules)


def _source_asset(loaded: LoadedSpec, source: DataSource, partitions_def: dg.PartitionsDefinition | None,
                  window_column: str | None, connection: Any) -> dg.AssetsDefinition:
    key = dg.AssetKey([loaded.name, "sources", source.key])
    # An empty source fails its read, unless the spec allows it: then this check says so.
    checks = [dg.AssetCheckSpec(EMPTY_CHECK, asset=key, description="the source has rows (allow_empty: true lets it have none)")
              ] if source.allow_empty else []

    @dg.asset(
        key=key,
        check_specs=checks,
        group_name=loaded.name,
        partitions_def=partitions_def,
        io_manager_key=IO_MANAGER_KEY,
        kinds={source.source_type, "parquet"},
        description=f"Rows of source '{source.source_name}' ({source.source_type}), read as declared in {loaded.file.name}.",
        required_resource_keys={SETTINGS_KEY, *resource_keys(connection, source.connection),
                                *([STORE_IO_MANAGER_KEY] if source.source_type == "earth" else [])},
        deps=earth_dependencies(source),
        retry_policy=retry_policy(loaded.spec.retry),
    )
    def read_source(context: dg.AssetExecutionContext):
        memories_settings: MemoriesSettings = context.resources.memories_settings
        staging = memories_settings.staging_dir()
        try:
            access, url = access_of(connection, source.connection or "", context.resources)
            store_facts: dict[str, Any] = {}
            if source.source_type == "earth":  # through the memory store: its hits and misses count
                store = context.resources.memories_store_io.store()
                location = str(staging / "stored.parquet")
                store_facts = stored_statistics(store, memories_settings.storage_dir, source.connection_string,
                                                source.partition, Path(location))
                store_facts |= store_metadata(store.stats())
            else:
                location = _locate(loaded, source.connection_string or url or "", f"source '{source.source_name}' connection_string",
                                   source.source_type in URL_SOURCES)
            copybook = _locate(loaded, source.copybook, f"source '{source.source_name}' copybook", False) if source.copybook else None
            snapshots = Path(memories_settings.storage_dir, loaded.name, "sources", source.key, ".snapshots")
            table = extract(source, location, str(staging / "source.parquet"), _window(context), window_column,
                            memories_settings.engine_memory_limit, copybook, access, snapshots,
                            keep_order=loaded.spec.output_config.mode == "upsert")
            if store_facts:
                Path(location).unlink()
                table.meta["location"] = f"memory store: {store_facts['store/key']}"
            if source.sample_rasters:
                sampling = source.sample_rasters
                layers = {column: published_file(memories_settings.storage_dir, ref, sampling.partition)
                          for column, ref in sampling.layers.items()}
                from memories_dagster.engine.earth.sampling import sample_rasters  # rasterio: only when used

                table = sample_rasters(table, sampling.longitude, sampling.latitude, layers)
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise step_failure(exc, f"pipeline '{loaded.name}' ({loaded.file}) could not read source '{source.source_name}'")
        facts = {k: v for k, v in table.meta.items() if k not in ("source", "location", "window_filter")} | store_facts
        metadata = {**table_metadata(table.rows, table.columns), **facts, "location": table.meta["location"],
                    "window_filter": table.meta["window_filter"] or "none (whole source)"}
        yield dg.Output(table, metadata=metadata)
        if source.allow_empty:
            yield dg.AssetCheckResult(
                asset_key=key, check_name=EMPTY_CHECK, passed=table.rows > 0, severity=dg.AssetCheckSeverity.WARN,
                description=f"source '{source.source_name}' has {table.rows} rows" if table.rows else
                f"source '{source.source_name}' has no rows (allowed by allow_empty: true)",
                metadata={"rows": table.rows},
            )

    return read_source


def _integrated_asset(loaded: LoadedSpec, partitions_def: dg.PartitionsDefinition | None, window_column: str | None) -> dg.AssetsDefinition:
    name, config, output = loaded.name, loaded.spec.integration_config, loaded.spec.output_config
    flags = config.data_quality_checks
    sources = [s.key for s in config.data_sources]
    integrated_key, quarantine_key = dg.AssetKey([name, "integrated"]), dg.AssetKey([name, "quarantine"])
    checks = [
        dg.AssetCheckSpec(check, asset=integrated_key, description=f"seed 003 {check.replace('_', ' ')}")
        for check in CHECK_NAMES if getattr(flags, check)
    ]
    if flags.contracts or flags.schema_file:
        checks.append(dg.AssetCheckSpec(CONTRACT_CHECK, asset=integrated_key,
                                        description="the column contracts (pandera schemas) the integrated rows must meet"))

    @dg.multi_asset(
        name=f"{name}__integrate",
        outs={
            "integrated": dg.AssetOut(
                key=integrated_key, group_name=name, io_manager_key=IO_MANAGER_KEY, kinds={"duckdb", "parquet"},
                description="Sources joined/merged, cleaned and transformed as declared; rejected rows are in quarantine.",
            ),
            "quarantine": dg.AssetOut(
                key=quarantine_key, group_name=name, io_manager_key=IO_MANAGER_KEY, kinds={"parquet"},
                description="Rows the integration rejected: stage, source, reason, and the row as JSON.",
            ),
        },
        ins={s: dg.AssetIn(key=[name, "sources", s]) for s in sources},
        check_specs=checks,
        partitions_def=partitions_def,
        retry_policy=retry_policy(loaded.spec.retry),
    )
    def integrate_sources(context: dg.AssetExecutionContext, memories_settings: MemoriesSettings, **inputs: TableFile):
        for warning in spec_warnings(loaded):
            context.log.warning(str(warning))
        staging = memories_settings.staging_dir()
        try:
            schema_file = contract_from_file(_locate(loaded, flags.schema_file, "data_quality_checks.schema_file", False)
                                             ) if flags.schema_file else None
            outcome = integrate(
                config, {s: inputs[s].path for s in sources},
                str(staging / "integrated.parquet"), str(staging / "quarantine.parquet"),
                _window(context), window_column, output, memories_settings.engine_memory_limit, schema_file,
            )
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise step_failure(exc, f"pipeline '{name}' ({loaded.file}) could not integrate its sources")
        contracts = [c for c in (declared_contract(flags.contracts), schema_file) if c is not None]
        yield from _integration_events(name, outcome, contracts)

    return integrate_sources


def _integration_events(name: str, outcome: IntegrationOutcome, contracts: list[Contract]):
    report = outcome.report["integration_report"]
    yield dg.Output(
        outcome.integrated, output_name="integrated",
        metadata={
            **table_metadata(outcome.integrated.rows, outcome.integrated.columns, contracts),
            "dagster/column_lineage": column_lineage(name, outcome.lineage),
            "integration_metrics": report["integration_metrics"],
            "reconciliation": report["reconciliation"],
        },
    )
    yield dg.Output(outcome.quarantine, output_name="quarantine", metadata=table_metadata(outcome.quarantine.rows, outcome.quarantine.columns))
    for check in outcome.checks:
        yield dg.AssetCheckResult(
            asset_key=dg.AssetKey([name, "integrated"]), check_name=check.name, passed=check.passed,
            severity=dg.AssetCheckSeverity.WARN, description=check.description, metadata=check.metadata,
        )


def _output_asset(loaded: LoadedSpec, partitions_def: dg.PartitionsDefinition | None, window_column: str | None,
                  connection: Any) -> dg.AssetsDefinition:
    name, output = loaded.name, loaded.spec.output_config
    declared = output.output_destination or default_destination(name, output, partitions_def is not None)

    @dg.asset(
        key=[name, "output"],
        group_name=name,
        partitions_def=partitions_def,
        ins={"integrated": dg.AssetIn(key=[name, "integrated"])},
        kinds={output.output_format},
        required_resource_keys={SETTINGS_KEY, *resource_keys(connection, output.connection)},
        description=f"The integrated data written as {output.output_format} to {redact(declared)}, with the integration report.",
        retry_policy=retry_policy(loaded.spec.retry),
    )
    def write(context: dg.AssetExecutionContext, integrated: TableFile) -> dg.MaterializeResult:
        memories_settings: MemoriesSettings = context.resources.memories_settings
        window = _window(context)
        try:
            access, url = access_of(connection, output.connection or "", context.resources)
            destination = _locate(loaded, output.output_destination or url or declared, "output_config.output_destination",
                                  output.output_format in URL_SOURCES)
            storage = [memories_settings.storage_dir, memories_settings.report_dir, str(loaded.root / STORAGE_FOLDER)]
            written = write_output(
                integrated.path, output, destination, output.table or name, window, window_column,
                laid_out=integrated.meta.get("laid_out"), memory_limit=memories_settings.engine_memory_limit,
                access=access, ownership=Ownership(name, output.overwrite, protected_places(loaded.root, storage),
                                                  partition_scheme(loaded.spec.partitions, output), str(loaded.root.resolve())),
            )
        except Exception as exc:
            raise step_failure(exc, f"pipeline '{name}' ({loaded.file}) could not write its output; the previous output is unchanged")
        report = dict(integrated.meta["report"])
        report["integrated_data_path"] = written["integrated_data_path"]
        if "table_version" in written:  # a table format's commit: readers can ask for this version
            report["table_version"] = written["table_version"]
        path = memories_settings.report_path(name, context.partition_key if context.has_partition_key else None)
        write_json(path, report)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(written["rows_written"], integrated.columns),
                "dagster/column_lineage": column_lineage(name, report["data_lineage"]["source_mapping"]),
                "integration_report": dg.MetadataValue.json(report),
                "report_path": dg.MetadataValue.path(str(path)),
                "integrated_data_path": dg.MetadataValue.path(written["integrated_data_path"]),
                "files_written": len(written["files"]),
                **({"table_version": written["table_version"]} if "table_version" in written else {}),
            }
        )

    return write

"""An earth region as Dagster definitions.

Asset keys (DESIGN contract): ``<region>/earth/<source kind>`` for each source and
``<region>/analysis/<analyzer>`` for each analyzer, all in group ``<region>``. Analyzers depend
only on sources, never on each other, so a multiprocess executor runs them side by side. Their
statistics tables go to the tiered memory store; their rasters, tables and previews are files
whose paths are materialization metadata. Data work happens in
:mod:`memories_dagster.engine.earth`; this module wires.
"""

from pathlib import Path
from typing import Any, Callable, Iterator

import dagster as dg

from memories_dagster.engine.earth.products import SOURCE_FILES, Product, product_folder, staged_product, stats_table
from memories_dagster.engine.window import expand
from memories_dagster.factory.connections import STORAGE_TYPES, access_of, check_connection
from memories_dagster.factory.failures import retry_policy, step_failure
from memories_dagster.factory.partitions import window_of
from memories_dagster.resources import STORE_IO_MANAGER_KEY
from memories_dagster.secrets import named_secret, resolve
from memories_dagster.specs.earth import ANALYZER_NEEDS, EarthRegion
from memories_dagster.specs.loading import LoadedSpec

SETTINGS_KEY = "memories_settings"
SOURCE_KINDS = {"terrain": {"raster", "geotiff"}, "satellite": {"stac", "raster", "geotiff"}, "climate": {"xarray", "netcdf"}}
CHECK_DESCRIPTIONS = {
    "coverage": "share of the region's cells holding data is at least checks.min_coverage",
    "grid": "rasters are in the declared CRS and resolution",
    "nodata_fraction": "share of cells without data is at most checks.max_nodata_fraction",
    "cloud_fraction": "share of observed cells under cloud or shadow is at most checks.max_cloud_fraction",
    "value_range": "every value lies in its physical range (NDVI in [-1, 1], slope in [0, 90], ...)",
}
SOURCE_CHECKS = {"terrain": ("coverage", "grid", "nodata_fraction"),
                 "satellite": ("coverage", "grid", "nodata_fraction", "cloud_fraction"),
                 "climate": ("coverage",)}
ANALYZER_CHECKS = {"terrain": ("coverage", "grid", "value_range"), "vegetation": ("coverage", "grid", "value_range"),
                   "urban": ("coverage", "grid", "value_range"), "climate": ("coverage",)}


def region_partitions(region: EarthRegion) -> dg.TimeWindowPartitionsDefinition | None:
    """Daily or monthly partitions of the satellite source and the analyzers reading it."""
    spec = region.partitions
    if spec is None:
        return None
    kind = dg.DailyPartitionsDefinition if spec.type == "daily" else dg.MonthlyPartitionsDefinition
    return kind(start_date=spec.start.isoformat(), end_date=spec.end.isoformat() if spec.end else None)


def region_definitions(loaded: LoadedSpec, connections: dict[str, Any]) -> dg.Definitions:
    """The source and analyzer assets of one region, with their asset checks."""
    region: EarthRegion = loaded.spec
    for kind in ("terrain", "satellite", "climate"):
        name = getattr(getattr(region.sources, kind), "connection", None)
        if name:
            check_connection(connections, name, STORAGE_TYPES, f"sources.{kind}")
    partitions = region_partitions(region)
    # satellite data, and climate data declared per partition, arrive one window at a time; a DEM
    # does not change, and the climate analyzer needs the whole record (all partitions)
    by_partition = {"satellite": partitions is not None, "climate": region.sources.climate_by_partition(), "terrain": False}
    assets = [
        _source_asset(loaded, kind, partitions if by_partition[kind] else None, connections)
        for kind in ("terrain", "satellite", "climate") if getattr(region.sources, kind) is not None
    ]
    assets += [
        _analyzer_asset(loaded, analyzer, partitions if ANALYZER_NEEDS[analyzer] == "satellite" else None,
                        source_partitioned=by_partition[ANALYZER_NEEDS[analyzer]])
        for analyzer in ANALYZER_NEEDS if getattr(region.analyzers, analyzer) is not None
    ]
    return dg.Definitions(assets=assets)


def _source_asset(loaded: LoadedSpec, kind: str, partitions: Any, connections: dict[str, Any]) -> dg.AssetsDefinition:
    region: EarthRegion = loaded.spec
    key = dg.AssetKey([loaded.name, "earth", kind])
    source = getattr(region.sources, kind)
    checks = tuple(c for c in SOURCE_CHECKS[kind] if c != "cloud_fraction" or source.cloud_mask)

    @dg.asset(
        key=key,
        group_name=loaded.name,
        partitions_def=partitions,
        kinds=SOURCE_KINDS[kind],
        description=f"{type(source).__doc__} Dataset {source.dataset}, on the grid of {_about(loaded)}",
        check_specs=[dg.AssetCheckSpec(c, asset=key, description=CHECK_DESCRIPTIONS[c]) for c in checks],
        required_resource_keys={SETTINGS_KEY},
        retry_policy=retry_policy(region.retry),
    )
    def _source(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from memories_dagster.engine.earth import analyzers as steps
        from memories_dagster.engine.earth.grid import Grid, raster_opener

        settings = context.resources.memories_settings
        partition = context.partition_key if partitions else None
        grid = Grid.for_region(region.bbox, region.crs, region.resolution)
        where = f"region {loaded.name} ({loaded.file.name}), sources.{kind}"
        storage = _storage_options(source, connections)
        target = product_folder(settings.storage_dir, loaded.name, f"earth/{kind}", partition)
        with _errors_named(where), staged_product(target) as product:
            if kind == "terrain":
                locations = [_location(loaded, source.path, f"{where}.path")] if source.path else \
                    steps.dem_tiles(**_stac_arguments(loaded, source.stac, f"{where}.stac"), bbox=grid.padded(1).lonlat_bounds())
                steps.prepare_terrain(product, locations, grid, band=source.band, resampling=source.resampling,
                                      nodata=source.nodata, opener=raster_opener(locations[0], storage), where=where)
            elif kind == "satellite":
                start, end = _days(window_of(context)) if partitions else (source.start, source.end)
                steps.prepare_satellite(
                    product, grid, dataset=source.dataset, bbox=grid.lonlat_bounds(), start=start, end=end,
                    **_stac_arguments(loaded, source.stac, f"{where}.stac"), max_cloud_cover=source.stac.max_cloud_cover,
                    bands=source.bands, resampling=source.resampling, cloud_mask=source.cloud_mask,
                    mask_snow=source.mask_snow, storage_options=storage,
                )
            else:
                window = window_of(context) if partitions else None
                location = expand(_location(loaded, source.path, f"{where}.path"), window) if source.path else None
                steps.prepare_climate(product, source, region.bbox, location, storage, where=where, window=window)
        return dg.MaterializeResult(metadata=_metadata(product), check_results=list(_check_results(key, checks, product, region)))

    return _source


def _analyzer_asset(loaded: LoadedSpec, analyzer: str, partitions: Any, source_partitioned: bool) -> dg.AssetsDefinition:
    region: EarthRegion = loaded.spec
    key = dg.AssetKey([loaded.name, "analysis", analyzer])
    source_kind = ANALYZER_NEEDS[analyzer]
    params = getattr(region.analyzers, analyzer)
    checks = ANALYZER_CHECKS[analyzer]

    @dg.asset(
        key=key,
        group_name=loaded.name,
        partitions_def=partitions,
        deps=[dg.AssetKey([loaded.name, "earth", source_kind])],
        kinds={"numpy", "geotiff", "parquet"},
        description=f"{type(params).__doc__} Statistics table in the tiered memory store. {_about(loaded)}",
        check_specs=[dg.AssetCheckSpec(c, asset=key, description=CHECK_DESCRIPTIONS[c]) for c in checks],
        io_manager_key=STORE_IO_MANAGER_KEY,
        required_resource_keys={SETTINGS_KEY},
        retry_policy=retry_policy(region.retry),
    )
    def _analyze(context: dg.AssetExecutionContext) -> Iterator[Any]:
        from memories_dagster.engine.earth import analyzers as steps
        from memories_dagster.engine.earth.grid import Grid

        settings = context.resources.memories_settings
        partition = context.partition_key if partitions else None
        inputs = _source_files(settings.storage_dir, loaded.name, source_kind, partition,
                               every_partition=source_partitioned and not partitions)
        target = product_folder(settings.storage_dir, loaded.name, f"analysis/{analyzer}", partition)
        run: dict[str, Callable[[Product], None]] = {
            "terrain": lambda p: steps.analyze_terrain(p, inputs[0], Grid.for_region(region.bbox, region.crs, region.resolution),
                                                       params.azimuth, params.altitude, params.z_factor),
            "vegetation": lambda p: steps.analyze_vegetation(p, inputs[0], params.vegetated_ndvi, params.savi_l),
            "urban": lambda p: steps.analyze_urban(p, inputs[0], params.ndbi_threshold, params.ndvi_max),
            "climate": lambda p: steps.analyze_climate(p, inputs, params.base_period, params.hot_above, params.cold_below),
        }
        with _errors_named(f"region {loaded.name} ({loaded.file.name}), analyzers.{analyzer}"), staged_product(target) as product:
            run[analyzer](product)
            table = stats_table(product)
            # the table goes to the memory store while the files are still staged: if storing
            # fails, the step ends here and the last good files stay published
            yield dg.Output(table, metadata=_metadata(product) | {"dagster/row_count": len(table)})
        yield from _check_results(key, checks, product, region)

    return _analyze


def _about(loaded: LoadedSpec) -> str:
    """The region in a sentence: its name and, when declared, its description."""
    description = loaded.spec.description
    return f"region {loaded.name} ({loaded.file.name}){': ' + description if description else '.'}"


def _source_files(storage_dir: str, region: str, kind: str, partition: str | None, every_partition: bool) -> list[str]:
    """The file a source asset published (for one partition), or with ``every_partition`` the
    files of all its partitions, oldest first; a clear error when there is none."""
    name = SOURCE_FILES[kind]
    folder = product_folder(storage_dir, region, f"earth/{kind}", partition)
    if every_partition:  # partition keys only: a `static` folder is from when the source had no partitions
        files = sorted(str(p) for p in folder.parent.glob(f"[!.]*/{name}") if p.parent.name != "static")
        problem = f"{region}/earth/{kind} has no partition at {folder.parent}: materialize some first"
    else:
        files = [str(folder / name)] if (folder / name).is_file() else []
        which = f" partition {partition}" if partition else ""
        problem = f"{region}/earth/{kind}{which} has no data at {folder}: materialize it first"
    if not files:
        raise dg.Failure(problem)
    return files


def _metadata(product: Product) -> dict[str, Any]:
    """Raster paths under their names, ``stats_path``, the preview shown in the UI, the facts;
    paths as published (the product may still be staged)."""
    metadata: dict[str, Any] = {name: dg.MetadataValue.path(product.final(path)) for name, path in product.rasters.items()}
    if product.stats_path:
        metadata["stats_path"] = dg.MetadataValue.path(product.final(product.stats_path))
    if product.preview_path:
        metadata["preview_path"] = dg.MetadataValue.path(product.final(product.preview_path))
        metadata["preview"] = dg.MetadataValue.md(_image_markdown(product.preview_path))
    metadata["facts"] = dg.MetadataValue.json(product.facts)
    return metadata


def _image_markdown(path: str) -> str:
    """The PNG inlined as a data URL: the UI's markdown renders it without a file server."""
    import base64

    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![preview](data:image/png;base64,{encoded})"


def _check_results(key: dg.AssetKey, checks: tuple[str, ...], product: Product, region: EarthRegion) -> Iterator[dg.AssetCheckResult]:
    """Each declared check judged on the facts the engine recorded."""
    from memories_dagster.engine.earth.analyzers import grid_problem

    facts, limits = product.facts, region.checks
    for check in checks:
        if check == "coverage":
            value = facts.get("coverage", 0.0)
            yield dg.AssetCheckResult(check_name=check, asset_key=key, passed=value >= limits.min_coverage,
                                      metadata={"coverage": value, "min_coverage": limits.min_coverage})
        elif check == "grid":
            problem = grid_problem(facts, region.crs, region.resolution)
            yield dg.AssetCheckResult(check_name=check, asset_key=key, passed=problem is None,
                                      severity=dg.AssetCheckSeverity.ERROR,
                                      metadata={"crs": str(facts.get("crs")), "resolution": str(facts.get("resolution")),
                                                "problem": problem or "none"})
        elif check == "nodata_fraction":
            value = facts.get("nodata_fraction", 1.0)
            yield dg.AssetCheckResult(check_name=check, asset_key=key, passed=value <= limits.max_nodata_fraction,
                                      metadata={"nodata_fraction": value, "max_nodata_fraction": limits.max_nodata_fraction})
        elif check == "cloud_fraction":
            value = facts.get("cloud_fraction")
            yield dg.AssetCheckResult(check_name=check, asset_key=key,
                                      passed=value is not None and value <= limits.max_cloud_fraction,
                                      metadata={"cloud_fraction": value if value is not None else "no observation",
                                                "max_cloud_fraction": limits.max_cloud_fraction})
        elif check == "value_range":
            ranges = facts.get("ranges", {})
            outside = {name: r["outside"] for name, r in ranges.items() if r["outside"]}
            yield dg.AssetCheckResult(check_name=check, asset_key=key, passed=not outside,
                                      severity=dg.AssetCheckSeverity.ERROR,
                                      metadata={"ranges": dg.MetadataValue.json(ranges), "cells_outside": sum(outside.values())})


def _location(loaded: LoadedSpec, text: str, where: str) -> str:
    """A declared path with ${ENV} resolved, relative paths taken from the project folder."""
    return loaded.resolve_path(resolve(text, where))


def _stac_arguments(loaded: LoadedSpec, search: Any, where: str) -> dict[str, Any]:
    """Where and how to search STAC, with ${ENV} resolved (headers may hold an API key)."""
    return {
        "api": resolve(search.api, f"{where}.api") if search.api else None,
        "catalog": _location(loaded, search.catalog, f"{where}.catalog") if search.catalog else None,
        "collection": search.collection, "max_items": search.max_items,
        "headers": {k: named_secret(resolve, k, v, f"{where}.headers.{k}") for k, v in search.headers.items()},
    }


def _storage_options(source: Any, connections: dict[str, Any]) -> dict[str, Any]:
    name = getattr(source, "connection", None)
    return access_of(connections[name], name)[0].storage_options if name else {}


def _days(window: Any) -> tuple[Any, Any]:
    """A partition's window as first and last day, both inclusive: a STAC search given a bare
    end date takes that whole day, so the window's exclusive end would add the first day of the
    next partition to this one."""
    import datetime as dt

    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


class _errors_named:
    """Engine errors as a Dagster failure naming the region and field, secrets redacted."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, dg.Failure) or not isinstance(exc, Exception):
            return False
        raise step_failure(exc, None if self.where in str(exc) else self.where)

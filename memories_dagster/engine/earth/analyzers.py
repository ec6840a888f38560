"""The region steps: a source put on the region's grid, and the analyzers that read it.

Each step fills a :class:`Product` (rasters as COGs, a statistics table, a PNG preview, facts for
the asset checks) inside a staged folder; the caller publishes it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from memories_dagster.engine.earth import spectral
from memories_dagster.engine.earth.grid import Grid, read_onto_grid, read_raster, write_cog
from memories_dagster.engine.earth.products import SOURCE_FILES, Product, json_number, preview_png, raster_statistics, write_stats
from memories_dagster.engine.earth.terrain import terrain_layers
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.window import Window, expand

# the range every analyzer raster must stay in (asset check `value_range`)
VALUE_RANGES = {
    "slope": (0.0, 90.0), "aspect": (0.0, 360.0), "hillshade": (1.0, 255.0),
    # EVI has no hard bound (its denominator can near 0 over bright targets): not range-checked
    "ndvi": (-1.0, 1.0), "savi": (-1.5, 1.5), "ndbi": (-1.0, 1.0),
    "vegetated": (0.0, 1.0), "built_up": (0.0, 1.0),
}


LANDSAT_8_9 = ("landsat-8", "landsat-9")


class EarthDataError(IntegrationError):
    """An earth source cannot be read or does not cover what the region declares."""


def raster_facts(path: str, layer: np.ndarray) -> dict[str, Any]:
    """CRS, resolution and shape as written in the file, and the share of cells holding data."""
    with rasterio.open(path) as src:
        crs, res, shape = src.crs.to_string(), (abs(src.transform.a), abs(src.transform.e)), (src.height, src.width)
    valid = np.isfinite(layer)
    return {"crs": crs, "resolution": list(res), "shape": list(shape),
            "coverage": float(valid.mean()) if valid.size else 0.0}


def grid_problem(facts: dict[str, Any], crs: str, resolution: float) -> str | None:
    """Why a written raster is not on the declared grid, or None when it is."""
    from rasterio.crs import CRS

    if "crs" not in facts:
        return "no raster was written"
    if CRS.from_user_input(facts["crs"]) != CRS.from_user_input(crs):
        return f"CRS is {facts['crs']}, declared {crs}"
    if any(abs(r - resolution) > 1e-9 * max(1.0, resolution) for r in facts["resolution"]):
        return f"resolution is {facts['resolution']}, declared {resolution}"
    return None


def range_facts(layers: dict[str, np.ndarray]) -> dict[str, Any]:
    """Observed min/max of every layer with a declared range, and the cells outside it."""
    facts = {}
    for name, array in layers.items():
        if name not in VALUE_RANGES:
            continue
        low, high = VALUE_RANGES[name]
        valid = array[np.isfinite(array)]
        facts[name] = {"min": float(valid.min()) if valid.size else None, "max": float(valid.max()) if valid.size else None,
                       "allowed": [low, high], "outside": int(((valid < low) | (valid > high)).sum())}
    return facts


def prepare_terrain(
    product: Product, locations: list[str], grid: Grid, *, band: int = 1, resampling: str = "bilinear",
    nodata: float | None = None, opener: Callable | None = None, where: str = "terrain source",
) -> None:
    """The DEM (one file, or tiles mosaicked in the order given) warped onto the region's grid
    grown by one cell on every side, as ``elevation.tif``: Horn's window then has neighbours at
    the region's edge cells too, wherever the DEM reaches beyond the region."""
    padded = grid.padded(1)
    dem = np.full(padded.shape, np.nan, dtype="float32")
    for location in locations:
        try:
            tile = read_onto_grid(location, padded, [band], resampling, opener, nodata)[0]
        except (RasterioError, OSError, IndexError) as exc:
            raise EarthDataError(f"{where}: cannot read the DEM '{location}': {exc}") from None
        gaps = np.isnan(dem)
        dem[gaps] = tile[gaps]
    path = write_cog(product.folder / SOURCE_FILES["terrain"], {"elevation": dem}, padded)
    product.rasters["elevation"] = path
    inner = dem[grid.window_in(padded)]
    product.facts |= raster_facts(path, inner) | {"nodata_fraction": float(np.isnan(inner).mean()), "tiles": len(locations)}
    write_stats(product, raster_statistics({"elevation": inner}))
    product.preview_path = preview_png(product.folder / "preview.png", inner, "terrain", *_limits(inner))


def analyze_terrain(product: Product, dem_path: str, grid: Grid, azimuth: float, altitude: float, z_factor: float) -> None:
    """Slope, aspect, hillshade and elevation statistics of the DEM, on the region's ``grid``
    (the DEM may extend beyond it: its margin feeds the edge cells)."""
    dem, dem_grid = read_raster(dem_path)
    ew, ns = dem_grid.cell_size_metres()
    layers = terrain_layers(dem, ew, ns, azimuth=azimuth, altitude=altitude, z_factor=z_factor)
    try:
        window = grid.window_in(dem_grid)
    except ValueError as exc:
        raise EarthDataError(f"{dem_path}: {exc}: materialize the region's terrain source again") from None
    arrays = {"elevation": dem[window], "slope": layers.slope[window], "aspect": layers.aspect[window],
              "hillshade": layers.hillshade[window]}
    for name in ("slope", "aspect"):
        product.rasters[name] = write_cog(product.folder / f"{name}.tif", {name: arrays[name]}, grid)
    # grey levels as gdaldem writes them: bytes, 0 = no value
    shade = np.where(np.isfinite(arrays["hillshade"]), np.rint(arrays["hillshade"]), 0)
    product.rasters["hillshade"] = write_cog(product.folder / "hillshade.tif", {"hillshade": shade}, grid, dtype="uint8", nodata=0)
    write_stats(product, raster_statistics(arrays))
    product.preview_path = preview_png(product.folder / "hillshade.png", arrays["hillshade"], "gray", 0, 255)
    product.facts |= raster_facts(product.rasters["slope"], arrays["slope"]) | {"ranges": range_facts(arrays)}


def read_bands(path: str) -> tuple[dict[str, np.ndarray], Grid]:
    """Every band of a multi-band raster by its description (float32, NaN for nodata)."""
    with rasterio.open(path) as src:
        bands = {name: src.read(i + 1, masked=True).astype("float32").filled(np.nan) for i, name in enumerate(src.descriptions)}
        return bands, Grid.of_dataset(src)


def analyze_vegetation(product: Product, composite_path: str, vegetated_ndvi: float, savi_l: float) -> None:
    """NDVI, EVI, SAVI and the vegetated fraction of a reflectance composite."""
    bands, grid = read_bands(composite_path)
    layers = {
        "ndvi": spectral.ndvi(bands["nir"], bands["red"]),
        "evi": spectral.evi(bands["nir"], bands["red"], bands["blue"]),
        "savi": spectral.savi(bands["nir"], bands["red"], L=savi_l),
    }
    layers["vegetated"] = _mask_where_known(layers["ndvi"] > vegetated_ndvi, layers["ndvi"])
    _write_index_product(product, layers, grid, preview=("ndvi", "RdYlGn"))
    product.facts["vegetated_fraction"] = json_number(spectral.vegetated_fraction(layers["ndvi"], vegetated_ndvi))


def analyze_urban(product: Product, composite_path: str, ndbi_threshold: float, ndvi_max: float) -> None:
    """NDBI and the built-up fraction (NDBI above a threshold where NDVI is low)."""
    bands, grid = read_bands(composite_path)
    ndvi = spectral.ndvi(bands["nir"], bands["red"])
    layers = {"ndbi": spectral.ndbi(bands["swir16"], bands["nir"])}
    layers["built_up"] = _mask_where_known(spectral.built_up_mask(layers["ndbi"], ndvi, ndbi_threshold, ndvi_max),
                                           layers["ndbi"] + ndvi)
    _write_index_product(product, layers, grid, preview=("ndbi", "RdBu_r"))
    product.facts["built_up_fraction"] = json_number(spectral.built_up_fraction(layers["ndbi"], ndvi, ndbi_threshold, ndvi_max))


def _write_index_product(product: Product, layers: dict[str, np.ndarray], grid: Grid, preview: tuple[str, str]) -> None:
    for name, array in layers.items():
        product.rasters[name] = write_cog(product.folder / f"{name}.tif", {name: array}, grid)
    write_stats(product, raster_statistics(layers))
    name, cmap = preview
    product.preview_path = preview_png(product.folder / f"{name}.png", layers[name], cmap, *_limits(layers[name]))
    product.facts |= raster_facts(product.rasters[name], layers[name]) | {"ranges": range_facts(layers)}


def _mask_where_known(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A 0/1 float raster of ``mask``, NaN where ``values`` has no data."""
    return np.where(np.isfinite(values), mask.astype("float32"), np.float32(np.nan)).astype("float32")


def _limits(array: np.ndarray) -> tuple[float, float]:
    """The colour range of a preview: the 2nd to 98th percentile, so a few outliers do not wash
    the map out (an arid scene's NDVI spans 0 to 0.2, not -1 to 1)."""
    valid = array[np.isfinite(array)]
    if not valid.size:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(valid, [2, 98]))
    return (low, high) if high > low else (low - 0.5, low + 0.5)


def find_scenes(api: str | None, catalog: str | None, collection: str, bbox: tuple[float, float, float, float],
                start: Any, end: Any, max_cloud_cover: float | None, max_items: int, headers: dict[str, str],
                required: bool = True) -> list[Any]:
    """STAC items of a collection over the box: from the API's item search, or a static catalog.
    ``required``: finding none is an error."""
    from memories_dagster.connectors.stac import catalog_scenes, search_scenes

    if api:
        return search_scenes(api, collection, bbox, start, end, max_cloud_cover, limit=max_items, headers=headers,
                             required=required)
    return catalog_scenes(catalog, collection, bbox, start, end, max_cloud_cover, limit=max_items, required=required)


def dem_tiles(*, api: str | None, catalog: str | None, collection: str, max_items: int, headers: dict[str, str],
              bbox: tuple[float, float, float, float]) -> list[str]:
    """Hrefs of the DEM tiles over the box (the items' elevation / dem / data asset)."""
    scenes = find_scenes(api, catalog, collection, bbox, None, None, None, max_items, headers)
    missing = [scene.id for scene in scenes if "elevation" not in scene.assets]
    if missing:
        raise EarthDataError(f"STAC items {', '.join(missing)} of {collection} have no DEM asset (elevation, dem or data)")
    return [scene.assets["elevation"] for scene in scenes]


def prepare_satellite(
    product: Product, grid: Grid, *, dataset: str, bbox: tuple[float, float, float, float], start: Any, end: Any,
    api: str | None, catalog: str | None, collection: str, max_cloud_cover: float, max_items: int,
    headers: dict[str, str], bands: list[str], resampling: str, cloud_mask: bool = True, mask_snow: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Scenes of the window found by STAC, cloud-masked, scaled to reflectance and composited
    (per-pixel median) on the region's grid as ``composite.tif``.

    A window without a scene (most days, for daily partitions) is an empty observation, not an
    error: the composite holds no data and the coverage check says so.
    """
    from memories_dagster.engine.earth.satellite import composite

    scenes = find_scenes(api, catalog, collection, bbox, start, end, max_cloud_cover, max_items, headers, required=False)
    found = len(scenes)
    if dataset == "landsat-c2-l2":  # the collection also holds Landsat 4, 5 and 7, scaled alike but not asked for
        scenes = [s for s in scenes if not s.platform or s.platform.lower().replace("_", "-") in LANDSAT_8_9]
    if scenes:
        result = composite(scenes, grid, dataset, bands=bands, resampling=resampling, cloud_mask=cloud_mask,
                           mask_snow=mask_snow, storage_options=storage_options)
        composite_bands, facts, clear_count = result.bands, result.metadata(), result.clear_count
    else:
        composite_bands = {band: np.full(grid.shape, np.nan, dtype="float32") for band in bands}
        clear_count = np.zeros(grid.shape, dtype="uint16")
        facts = {"nodata_fraction": 1.0, "cloud_fraction": None, "scenes": [], "scene_cloud_fractions": {},
                 "no_scenes": f"no {collection} scene from {start} to {end} over the region"
                 + (f" ({found} of Landsat 4, 5 or 7 left out)" if found else "")}
    path = write_cog(product.folder / SOURCE_FILES["satellite"], composite_bands, grid)
    product.rasters["composite"] = path
    # how many scenes saw each cell clear: where the median stands on little
    product.rasters["clear_count"] = write_cog(product.folder / "clear_count.tif", {"clear_count": clear_count}, grid,
                                               dtype="uint16", nodata=None)
    first = next(iter(composite_bands.values()))
    product.facts |= raster_facts(path, first) | facts | {"window": [str(start), str(end)]}
    write_stats(product, raster_statistics(composite_bands))
    rgb_like = composite_bands.get("red", first)
    product.preview_path = preview_png(product.folder / "preview.png", rgb_like, "gray", 0.0, 0.3)


def prepare_climate(product: Product, source: Any, bbox: tuple[float, float, float, float], location: str | None,
                    storage_options: dict[str, Any], where: str, window: Window | None = None) -> None:
    """The declared climate variables cut to the region's box, saved as ``climate.nc``.

    Values in kelvin become °C when the source says ``to_celsius``. With a window (a partition),
    ``{partition_...}`` placeholders of an API's URL and parameters are filled from it.
    """
    from memories_dagster.connectors.climate import open_climate_file, open_meteo_dataset
    from memories_dagster.engine.earth.climate import kelvin_to_celsius

    variables = [v for v in dict.fromkeys([source.variable, source.daily_max, source.daily_min]) if v]
    if source.dataset == "open-meteo":
        body = fetch_json(source, where, window)
        data = open_meteo_dataset(body, source.api.records_path, source.time_key, variables, where)
    else:
        data = open_climate_file(location, variables, storage_options, where, bbox, source.dataset, source.filter_by_keys)
    if window is not None and window.start is not None:  # a file or answer may hold more than the partition
        data = data.sel(time=(data["time"] >= np.datetime64(window.start.replace(tzinfo=None)))
                        & (data["time"] < np.datetime64(window.end.replace(tzinfo=None))))
    for name in variables:
        if source.to_celsius and str(data[name].attrs.get("units", "")).strip().lower() in ("k", "kelvin", "kelvins"):
            data[name] = kelvin_to_celsius(data[name])
    main = data[source.variable]
    path = product.folder / SOURCE_FILES["climate"]
    data.attrs["variable"] = source.variable
    data.attrs["daily_max"] = source.daily_max or ""
    data.attrs["daily_min"] = source.daily_min or ""
    data.to_netcdf(path, engine="netcdf4")
    product.rasters["climate"] = str(path)
    valid = np.isfinite(main.values)
    times = main["time"].values
    product.facts |= {
        "coverage": float(valid.mean()) if valid.size else 0.0, "variables": variables,
        "time_steps": int(main.sizes["time"]), "cells": int(valid.size // max(main.sizes["time"], 1)),
        "start": str(times[0])[:10] if times.size else None, "end": str(times[-1])[:10] if times.size else None,
        "units": str(main.attrs.get("units", "")),
    }


def fetch_json(source: Any, where: str, window: Window | None = None) -> Any:
    """One call of an Open-Meteo-style API through the REST client (rate limit, retries, cache)."""
    from memories_dagster.connectors.http import client_for
    from memories_dagster.secrets import resolve
    from memories_dagster.specs.integration import DataSource

    declared = DataSource(source_name=where, source_type="api", connection_string=source.url,
                          api=source.api, authentication=source.authentication)
    client = client_for(declared, expand(resolve(source.url, f"{where}.url"), window), resolve)
    client.params = {k: expand(v, window) if isinstance(v, str) else v for k, v in client.params.items()}
    try:
        body, _ = client.fetch(client.url, dict(client.params) | client.sticky)
    finally:
        client.close()
    return body


def analyze_climate(product: Product, climate_paths: list[str], base_period: tuple[int, int] | None,
                    hot_above: float | None, cold_below: float | None) -> None:
    """Monthly climatology, anomalies, trends (OLS, Sen) and hot/cold day counts.

    ``climate_paths`` are the source's files: one, or one per partition, joined along time (a
    time step present twice is kept once). The statistics table holds the area-mean series month
    by month; per-cell trend rasters are written when the source is a grid; the trend numbers
    and day counts go to the facts.
    """
    import xarray as xr

    from memories_dagster.engine.earth import climate

    parts = []
    for path in climate_paths:
        with xr.open_dataset(path, engine="netcdf4") as stored:
            parts.append(stored.load())
    data = xr.concat(parts, dim="time", combine_attrs="override") if len(parts) > 1 else parts[0]
    data = data.sortby("time")
    data = data.isel(time=~data.get_index("time").duplicated(keep="last"))
    main = data[data.attrs["variable"]]
    # cells of a lat/lon grid shrink towards the poles: the region's mean weighs them by area
    weights = np.cos(np.radians(data["y"])) if "y" in main.dims else None
    table = climate.climate_statistics(main, base_period=base_period, weights=weights)
    write_stats(product, table)
    summary = climate.trend_summary(table)
    product.facts |= {"trend": summary, "base_period": table.attrs["base_period"], "units": table.attrs["units"],
                      "coverage": float(table["value"].notna().mean()) if len(table) else 0.0}
    if "x" in main.dims and "y" in main.dims and main.sizes["x"] * main.sizes["y"] > 1:
        monthly = climate.monthly_means(main)
        anomaly = climate.anomalies(monthly, climate.climatology(monthly, base_period))
        grid_trends = climate.trends(anomaly)
        grid = _lonlat_grid(main)
        for name in ("ols_slope", "sen_slope", "mk_pvalue"):
            product.rasters[name] = write_cog(product.folder / f"{name}.tif", {name: grid_trends[name].values}, grid)
    counts = {}
    for threshold, variable, column, label, daily in (
        (hot_above, data.attrs.get("daily_max") or data.attrs["variable"], "hot_count", "hot_days", "max"),
        (cold_below, data.attrs.get("daily_min") or data.attrs["variable"], "cold_count", "cold_days", "min"),
    ):
        if threshold is None:
            continue
        series = climate.area_mean(data[variable], weights)
        step = np.diff(series["time"].values).astype("timedelta64[h]").astype(float)
        if step.size and np.median(step) > 24:
            raise EarthDataError(f"hot/cold day counts need daily values; '{variable}' has a time step of {np.median(step) / 24:.0f} days")
        # hourly or 6-hourly data: a day is hot by its maximum, cold by its minimum
        days = getattr(series.resample(time="1D"), daily)(skipna=True)
        kwargs = {"hot_above": threshold} if column == "hot_count" else {"cold_below": threshold}
        yearly = climate.threshold_counts(days, freq="YS", **kwargs)
        counts[label] = {str(t)[:4]: int(v) for t, v in zip(yearly["time"].values, yearly[column].values)}
    if counts:
        product.facts["day_counts"] = counts
    product.preview_path = climate.anomaly_chart_png(table, product.folder / "anomalies.png", title=data.attrs["variable"])


def _lonlat_grid(da: Any) -> Grid:
    """The EPSG:4326 grid of a regular lat/lon climate array (rows north to south)."""
    xs, ys = da["x"].values, da["y"].values
    xres = float(abs(xs[1] - xs[0])) if xs.size > 1 else None
    yres = float(abs(ys[1] - ys[0])) if ys.size > 1 else None
    xres, yres = xres or yres, yres or xres
    return Grid("EPSG:4326", xres, float(xs.min()) - xres / 2, float(ys.max()) + yres / 2, int(xs.size), int(ys.size),
                y_resolution=yres if yres != xres else None)

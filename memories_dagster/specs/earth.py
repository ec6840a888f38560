"""Pydantic models of an earth region: ``assets/earth/<region>.yaml``.

A region is a lon/lat box analysed on one grid (CRS + resolution). Its sources are warped onto
that grid as they are read; its analyzers turn them into rasters and statistics tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from memories_dagster.engine.earth.spectral import BUILT_UP_NDBI_MIN, BUILT_UP_NDVI_MAX, VEGETATION_NDVI_MIN
from memories_dagster.specs.credentials import Address, Headers
from memories_dagster.specs.integration import ApiSettings, Authentication, RetrySpec, Strict

RESAMPLING = Literal["nearest", "bilinear", "cubic", "average", "mode", "min", "max", "med"]


class RegionPartitions(Strict):
    """Time partitions of the satellite source and the analyzers built on it."""

    type: Literal["daily", "monthly"]
    start: dt.date
    end: dt.date | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> RegionPartitions:
        if self.end and self.end <= self.start:
            raise ValueError("partitions `end` must come after `start`")
        return self


class StacSearch(Strict):
    """Where scenes are found: a STAC API (``api``) or a static catalog (``catalog``)."""

    api: Address | None = Field(None, description="STAC API root URL, searched with pystac-client")
    catalog: Address | None = Field(None, description="path or URL of a static catalog.json")
    collection: str = Field(min_length=1)
    max_cloud_cover: float = Field(100.0, ge=0, le=100, description="eo:cloud_cover limit, percent")
    max_items: int = Field(50, ge=1)
    headers: Headers = Field(default_factory=dict, description="e.g. an API key; ${ENV} allowed")

    @model_validator(mode="after")
    def _one_place(self) -> StacSearch:
        if bool(self.api) == bool(self.catalog):
            raise ValueError("give exactly one of `api` (a STAC API URL) or `catalog` (a static catalog.json)")
        if self.catalog and self.headers:
            raise ValueError("`headers` go with `api` requests; a static `catalog` is read without them")
        return self


class TerrainSource(Strict):
    """A DEM: SRTM, ASTER or Copernicus GeoTIFF/COG by path, URL or object-store URL."""

    dataset: Literal["srtm", "aster", "copernicus", "dem"] = "dem"
    path: Address | None = Field(None, min_length=1, description="local path, http(s) URL or s3:// gs:// abfs:// URL of the GeoTIFF/COG")
    stac: StacSearch | None = Field(None, description="DEM tiles found by STAC over the region, mosaicked")
    connection: str | None = Field(None, description="object stores: a connection of the resource profile")
    band: int = Field(1, ge=1)
    resampling: RESAMPLING = "bilinear"
    nodata: float | None = Field(None, description="the DEM's nodata value (overrides the file's)")

    @model_validator(mode="after")
    def _one_place(self) -> TerrainSource:
        if bool(self.path) == bool(self.stac):
            raise ValueError("give exactly one of `path` (a GeoTIFF/COG) or `stac` (DEM tiles found by STAC)")
        return self


class SatelliteSource(Strict):
    """Sentinel-2 L2A or Landsat-8/9 Collection 2 Level-2 scenes, composited per time window."""

    dataset: Literal["sentinel-2-l2a", "landsat-c2-l2"]
    stac: StacSearch
    start: dt.date | None = Field(None, description="window when the region has no partitions")
    end: dt.date | None = None
    bands: list[Literal["blue", "green", "red", "nir", "swir16", "swir22"]] = Field(
        default_factory=lambda: ["blue", "red", "nir", "swir16"]
    )
    resampling: RESAMPLING = "bilinear"
    cloud_mask: bool = Field(True, description="mask clouds and shadows with the scenes' SCL / QA_PIXEL band")
    mask_snow: bool = Field(False, description="mask snow and ice too (SCL 11, QA_PIXEL bit 5)")
    connection: str | None = Field(None, description="scenes on s3:// gs:// abfs://: a connection of the resource profile")


class ClimateSource(Strict):
    """ERA5 / GFS grids as NetCDF or GRIB through xarray, or an Open-Meteo-style JSON API."""

    dataset: Literal["era5", "gfs", "open-meteo", "netcdf", "grib"]
    path: Address | None = Field(None, description="netcdf/grib: local path or URL of the file")
    connection: str | None = None
    url: Address | None = Field(None, description="open-meteo: the API endpoint")
    api: ApiSettings = Field(default_factory=ApiSettings, description="open-meteo: params, headers, rate limit, cache")
    authentication: Authentication | None = None
    variable: str = Field(min_length=1, description="the variable analysed, e.g. t2m or temperature_2m_mean")
    daily_max: str | None = Field(None, description="variable of daily maxima for hot-day counts")
    daily_min: str | None = Field(None, description="variable of daily minima for cold-day counts")
    time_key: str = Field("time", description="open-meteo: the array of timestamps in the records object")
    filter_by_keys: dict[str, Any] = Field(default_factory=dict, description="grib: cfgrib's filter, e.g. {typeOfLevel: surface}")
    to_celsius: bool = Field(True, description="convert values in kelvin (units attribute K) to °C")

    @model_validator(mode="after")
    def _where_from(self) -> ClimateSource:
        if self.dataset == "open-meteo":
            if not self.url:
                raise ValueError("an open-meteo climate source needs `url`")
            if not self.api.records_path:
                raise ValueError("an open-meteo climate source needs `api.records_path` (e.g. daily or hourly)")
        elif not self.path:
            raise ValueError(f"a {self.dataset} climate source needs `path` (a NetCDF or GRIB file)")
        return self


class RegionSources(Strict):
    """At most one source of each kind; the kind names the asset ``<region>/earth/<kind>``."""

    terrain: TerrainSource | None = None
    satellite: SatelliteSource | None = None
    climate: ClimateSource | None = None

    def climate_by_partition(self) -> bool:
        """Whether the climate source is read one partition at a time: its path, URL or API
        parameters hold ``{partition_...}`` placeholders (e.g. one ERA5 file per month)."""
        from memories_dagster.engine.window import has_template

        climate = self.climate
        if climate is None:
            return False
        texts = [climate.path or "", climate.url or "", *(v for v in climate.api.params.values() if isinstance(v, str))]
        return any(has_template(text) for text in texts)


class TerrainAnalyzer(Strict):
    """Slope, aspect and hillshade (Horn), elevation statistics."""

    azimuth: float = Field(315.0, ge=0, le=360, description="hillshade: light from, degrees clockwise from north")
    altitude: float = Field(45.0, ge=0, le=90, description="hillshade: light above the horizon, degrees")
    z_factor: float = Field(1.0, gt=0, description="vertical exaggeration")


class VegetationAnalyzer(Strict):
    """NDVI, EVI, SAVI and the vegetated fraction."""

    vegetated_ndvi: float = Field(VEGETATION_NDVI_MIN, ge=-1, le=1, description="a cell is vegetated when NDVI is above this")
    savi_l: float = Field(0.5, ge=0, le=1, description="SAVI soil brightness factor L")


class UrbanAnalyzer(Strict):
    """NDBI and the built-up fraction."""

    ndbi_threshold: float = Field(BUILT_UP_NDBI_MIN, ge=-1, le=1, description="built-up needs NDBI above this")
    ndvi_max: float = Field(BUILT_UP_NDVI_MAX, ge=-1, le=1, description="... and NDVI below this")


class ClimateAnalyzer(Strict):
    """Monthly climatology, anomalies, trends and hot/cold day counts."""

    base_period: tuple[int, int] | None = Field(None, description="[first year, last year] of the climatology")
    hot_above: float | None = Field(None, description="count days with the daily maximum above this (°C)")
    cold_below: float | None = Field(None, description="count days with the daily minimum below this (°C)")

    @field_validator("base_period")
    @classmethod
    def _ordered(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value and value[1] < value[0]:
            raise ValueError("base_period is [first year, last year]")
        return value


class RegionAnalyzers(Strict):
    """The analyzers to run; each becomes the asset ``<region>/analysis/<name>``."""

    terrain: TerrainAnalyzer | None = None
    vegetation: VegetationAnalyzer | None = None
    urban: UrbanAnalyzer | None = None
    climate: ClimateAnalyzer | None = None


class RegionChecks(Strict):
    """Limits of the data-quality asset checks."""

    min_coverage: float = Field(0.95, ge=0, le=1, description="share of the region's cells that must hold data")
    max_nodata_fraction: float = Field(0.2, ge=0, le=1)
    max_cloud_fraction: float = Field(0.5, ge=0, le=1)


MAX_GRID_CELLS = 1_000_000_000
# the source each analyzer reads
ANALYZER_NEEDS = {"terrain": "terrain", "vegetation": "satellite", "urban": "satellite", "climate": "climate"}
BAND_NEEDS = {"vegetation": {"blue", "red", "nir"}, "urban": {"red", "nir", "swir16"}}


class EarthRegion(Strict):
    """``assets/earth/<region>.yaml``."""

    name: str | None = Field(None, description="region name; default: the file stem")
    description: str | None = None
    bbox: tuple[float, float, float, float] = Field(description="[min lon, min lat, max lon, max lat]")
    crs: str = Field(min_length=1, description="target CRS, e.g. EPSG:32614")
    resolution: float = Field(gt=0, description="cell size in units of the CRS")
    partitions: RegionPartitions | None = None
    sources: RegionSources
    analyzers: RegionAnalyzers = Field(default_factory=RegionAnalyzers)
    checks: RegionChecks = Field(default_factory=RegionChecks)
    retry: RetrySpec | None = Field(None, description="retries of steps whose data source did not answer")

    @field_validator("bbox")
    @classmethod
    def _valid_box(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        west, south, east, north = box
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise ValueError("bbox is [min lon, min lat, max lon, max lat] with min < max, lon in [-180, 180], lat in [-90, 90]")
        return box

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str) -> str:
        import rasterio
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            with rasterio.Env(CPL_LOG="/dev/null"):  # the message below says it; GDAL need not print it too
                CRS.from_user_input(value)
        except CRSError:
            raise ValueError(f"unknown CRS '{value}'; use an authority code such as EPSG:32614 or EPSG:4326") from None
        return value

    @field_validator("resolution")
    @classmethod
    def _sensible_grid(cls, resolution: float, info: ValidationInfo) -> float:
        bbox, crs = info.data.get("bbox"), info.data.get("crs")
        if bbox is None or crs is None:  # reported under their own names
            return resolution
        from memories_dagster.engine.earth.grid import Grid

        grid = Grid.for_region(bbox, crs, resolution)
        if grid.width * grid.height > MAX_GRID_CELLS:
            raise ValueError(f"{resolution:g} {crs} units makes a {grid.width:,} x {grid.height:,} grid; "
                             f"at most {MAX_GRID_CELLS:,} cells: is the resolution in the CRS's units?")
        return resolution

    @field_validator("sources")
    @classmethod
    def _satellite_has_a_window(cls, sources: RegionSources, info: ValidationInfo) -> RegionSources:
        satellite = sources.satellite
        if satellite and not info.data.get("partitions") and not (satellite.start and satellite.end):
            raise ValueError("the satellite source needs `start` and `end` when the region has no `partitions`")
        if satellite and info.data.get("partitions") and (satellite.start or satellite.end):
            raise ValueError("the region's `partitions` set the satellite windows: remove sources.satellite `start`/`end`")
        if sources.climate_by_partition() and not info.data.get("partitions"):
            raise ValueError("the climate source uses {partition_...} placeholders, which need the region's `partitions`")
        return sources

    @field_validator("analyzers")
    @classmethod
    def _analyzers_have_sources(cls, analyzers: RegionAnalyzers, info: ValidationInfo) -> RegionAnalyzers:
        sources = info.data.get("sources")
        if sources is None:  # already reported under `sources`
            return analyzers
        for analyzer, source in ANALYZER_NEEDS.items():
            if getattr(analyzers, analyzer) is not None and getattr(sources, source) is None:
                raise ValueError(f"analyzer '{analyzer}' needs a `{source}` source in `sources`")
        satellite = sources.satellite
        for analyzer, bands in BAND_NEEDS.items():
            if satellite and getattr(analyzers, analyzer) is not None and not bands <= set(satellite.bands):
                missing = ", ".join(sorted(bands - set(satellite.bands)))
                raise ValueError(f"analyzer '{analyzer}' needs the satellite bands {missing} in sources.satellite.bands")
        return analyzers

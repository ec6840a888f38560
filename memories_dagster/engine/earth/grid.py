"""The target grid of a region (CRS, resolution, bounds) and moving rasters on and off it.

Every earth source is warped onto its region's grid as it is read, so analyzers work on aligned
arrays and their rasters overlay pixel for pixel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as transform_points
from rasterio.warp import transform_bounds

from memories_dagster.engine.tables import atomic_file

# Tiles and overviews make the rasters cloud-optimized: a viewer reads only the blocks it shows.
# ZSTD on every core writes 3x faster than DEFLATE at the same size (BENCHMARKS.md).
COG_OPTIONS = {"compress": "zstd", "num_threads": "all_cpus", "blocksize": 256, "overviews": "auto", "bigtiff": "if_safer"}
# Rasters behind HTTP are read by GDAL's curl, which by itself waits for ever on a server that
# stalls or trickles: each request must end within HTTP_TIMEOUT seconds, and transient failures
# (429 and 5xx included) are tried again HTTP_RETRIES times. COGs need no sidecar files: without
# EMPTY_DIR GDAL lists the remote folder on every open.
HTTP_TIMEOUT, HTTP_RETRIES = 60, 3


@contextmanager
def open_raster(location: str, opener: Callable | None = None) -> Iterator[rasterio.DatasetReader]:
    """``rasterio.open`` for reading, with GDAL's network reads bounded."""
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_TIMEOUT=str(HTTP_TIMEOUT),
                      GDAL_HTTP_CONNECTTIMEOUT=str(min(HTTP_TIMEOUT, 10)), GDAL_HTTP_MAX_RETRY=str(HTTP_RETRIES),
                      GDAL_HTTP_RETRY_DELAY="1"), rasterio.open(location, opener=opener) as src:
        yield src


@dataclass(frozen=True)
class Grid:
    """A north-up grid: ``width`` x ``height`` cells of ``resolution`` CRS units (north-south
    ``y_resolution`` when the cells are not square, as on some climate grids)."""

    crs: str
    resolution: float
    left: float
    top: float
    width: int
    height: int
    y_resolution: float | None = None

    @classmethod
    def for_region(cls, bbox: tuple[float, float, float, float], crs: str, resolution: float) -> "Grid":
        """The smallest grid of the CRS, snapped to multiples of the resolution, covering a lon/lat box."""
        left, bottom, right, top = transform_bounds("EPSG:4326", crs, *bbox, densify_pts=21)
        left = math.floor(left / resolution) * resolution
        bottom = math.floor(bottom / resolution) * resolution
        right = math.ceil(right / resolution) * resolution
        top = math.ceil(top / resolution) * resolution
        return cls(crs, resolution, left, top, round((right - left) / resolution), round((top - bottom) / resolution))

    @classmethod
    def of_dataset(cls, dataset: Any) -> "Grid":
        """The grid of an open rasterio dataset (square, north-up cells)."""
        t = dataset.transform
        y_resolution = abs(t.e) if abs(t.e) != abs(t.a) else None
        return cls(dataset.crs.to_string(), abs(t.a), t.c, t.f, dataset.width, dataset.height, y_resolution)

    def padded(self, cells: int) -> "Grid":
        """The same grid grown by ``cells`` on every side."""
        yres = self.y_resolution or self.resolution
        return Grid(self.crs, self.resolution, self.left - cells * self.resolution, self.top + cells * yres,
                    self.width + 2 * cells, self.height + 2 * cells, self.y_resolution)

    def rows(self, start: int, stop: int) -> "Grid":
        """The band of rows ``start:stop`` as a grid of its own."""
        yres = self.y_resolution or self.resolution
        return Grid(self.crs, self.resolution, self.left, self.top - start * yres, self.width, stop - start, self.y_resolution)

    def window_in(self, outer: "Grid") -> tuple[slice, slice]:
        """Rows and columns of ``outer`` (a grid with the same cells, around this one) that this grid covers."""
        yres = self.y_resolution or self.resolution
        if (CRS.from_user_input(self.crs) != CRS.from_user_input(outer.crs) or not math.isclose(self.resolution, outer.resolution)
                or not math.isclose(yres, outer.y_resolution or outer.resolution)):
            raise ValueError(f"the raster's grid ({outer.crs}, {outer.resolution:g}) is not the region's ({self.crs}, {self.resolution:g})")
        row, col = (outer.top - self.top) / yres, (self.left - outer.left) / self.resolution
        if not (math.isclose(row, round(row), abs_tol=1e-6) and math.isclose(col, round(col), abs_tol=1e-6)):
            raise ValueError("the raster's cells are not aligned with the region's")
        row, col = round(row), round(col)
        if row < 0 or col < 0 or row + self.height > outer.height or col + self.width > outer.width:
            raise ValueError("the raster does not cover the region's grid")
        return slice(row, row + self.height), slice(col, col + self.width)

    @property
    def transform(self) -> Affine:
        """Pixel (col, row) -> CRS (x, y) of the cell's upper-left corner."""
        return Affine(self.resolution, 0.0, self.left, 0.0, -(self.y_resolution or self.resolution), self.top)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        return (self.left, self.top - self.height * (self.y_resolution or self.resolution),
                self.left + self.width * self.resolution, self.top)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """The grid's footprint as a lon/lat box: what to search data for (it reaches past the
        declared box, since cells are snapped outwards)."""
        west, south, east, north = transform_bounds(self.crs, "EPSG:4326", *self.bounds, densify_pts=21)
        if west > east:  # snapping pushed a box at the antimeridian across it: keep the larger side
            west, east = (west, 180.0) if 180.0 - west >= east + 180.0 else (-180.0, east)
        return max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0)

    def cell_size_metres(self) -> tuple[np.ndarray, np.ndarray]:
        """East-west and north-south size of the cells of each row, in metres.

        Projected grids give the resolution scaled by the CRS's unit; geographic grids give the
        length of a degree at each row's latitude on the WGS84 ellipsoid, so slopes stay right
        away from the equator (``gdaldem -s 111120`` assumes one fixed scale instead).
        """
        crs = CRS.from_user_input(self.crs)
        yres = self.y_resolution or self.resolution
        if not crs.is_geographic:
            factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
            return np.full(self.height, self.resolution * factor), np.full(self.height, yres * factor)
        a, e2 = 6378137.0, 0.00669437999014
        lat = np.radians(self.top - (np.arange(self.height) + 0.5) * yres)
        sin2 = np.sin(lat) ** 2
        per_degree_lon = math.pi / 180 * a * np.cos(lat) / np.sqrt(1 - e2 * sin2)
        per_degree_lat = math.pi / 180 * a * (1 - e2) / (1 - e2 * sin2) ** 1.5
        return per_degree_lon * self.resolution, per_degree_lat * yres

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, e.g. for metadata."""
        return asdict(self)


def raster_opener(location: str, storage_options: dict[str, Any]) -> Any:
    """How GDAL reaches a raster: itself for local paths and http(s) (ranged reads through
    /vsicurl/), an fsspec filesystem for s3://, gs:// and abfs:// with the connection's options."""
    if "://" not in location or location.split("://", 1)[0] in ("http", "https", "file"):
        return None
    import fsspec

    fs, _ = fsspec.core.url_to_fs(location, **storage_options)
    return fs  # the filesystem itself: rasterio rejects fs.open for s3fs ("non key-like path")


def read_onto_grid(
    location: str,
    grid: Grid,
    bands: list[int] | None = None,
    resampling: str = "bilinear",
    opener: Callable | None = None,
    src_nodata: float | None = None,
) -> np.ndarray:
    """Bands of a raster warped onto ``grid`` as float32 ``(bands, rows, cols)``, NaN where no data.

    GDAL's warper reads only the source blocks the grid overlaps: on a COG behind HTTP or an
    object store those are ranged reads of a few tiles, not the whole file.
    """
    with open_raster(location, opener) as src:
        nodata = src_nodata if src_nodata is not None else src.nodata
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling[resampling],
            src_nodata=nodata,
            nodata=np.nan,
            dtype="float32",
        ) as vrt:
            return vrt.read(bands or list(range(1, src.count + 1)))


def read_raster(location: str, opener: Callable | None = None) -> tuple[np.ndarray, Grid]:
    """The first band of a raster (float32, NaN for nodata) and its grid."""
    with open_raster(location, opener) as src:
        data = src.read(1, masked=True).astype("float32").filled(np.nan)
        return data, Grid.of_dataset(src)


def write_cog(
    path: str | Path,
    bands: Mapping[str, np.ndarray],
    grid: Grid,
    dtype: str = "float32",
    nodata: float | None = None,
) -> str:
    """Write named bands as one Cloud-Optimized GeoTIFF, atomically (temp file, then rename).

    Float rasters carry NaN as nodata unless another value is given.
    """
    target = Path(path)
    if nodata is None and np.dtype(dtype).kind == "f":
        nodata = float("nan")
    profile = {"driver": "COG", "width": grid.width, "height": grid.height, "count": len(bands), "dtype": dtype,
               "crs": grid.crs, "transform": grid.transform, "nodata": nodata, **COG_OPTIONS}
    with atomic_file(target, suffix=".tif") as staged, rasterio.open(staged, "w", **profile) as dst:
        for index, (name, array) in enumerate(bands.items(), start=1):
            dst.write(np.asarray(array).astype(dtype, copy=False), index)
            dst.set_band_description(index, name)
    return str(target)


class RasterSampler:
    """Values of one raster band at lon/lat points (the cell holding each point); NaN off the
    raster or on nodata. The band is read once; each call is vectorised over its points."""

    def __init__(self, location: str, band: int = 1, opener: Callable | None = None) -> None:
        with open_raster(location, opener) as src:
            self.data = src.read(band, masked=True).astype("float32").filled(np.nan)
            self.crs, self.inverse = src.crs, ~src.transform

    def at(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        """One value per point."""
        lons = (np.asarray(lons, dtype="float64") + 180.0) % 360.0 - 180.0  # 0-360 longitudes too
        lats = np.asarray(lats, dtype="float64")
        valid = np.isfinite(lons) & np.isfinite(lats)
        xs, ys = np.full(lons.shape, np.nan), np.full(lats.shape, np.nan)
        if valid.any():
            px, py = transform_points("EPSG:4326", self.crs, lons[valid], lats[valid])
            xs[valid], ys[valid] = px, py
        inv = self.inverse
        cols = np.floor(inv.a * xs + inv.b * ys + inv.c)
        rows = np.floor(inv.d * xs + inv.e * ys + inv.f)
        inside = valid & (cols >= 0) & (cols < self.data.shape[1]) & (rows >= 0) & (rows < self.data.shape[0])
        out = np.full(lons.shape, np.nan)
        out[inside] = self.data[rows[inside].astype(int), cols[inside].astype(int)]
        return out

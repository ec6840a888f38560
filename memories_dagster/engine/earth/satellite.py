"""A cloud-free surface-reflectance composite of a region for one time window.

Each scene's bands are warped onto the region's grid as they are read (windowed, ranged reads of
the COG tiles the grid overlaps), scaled from digital numbers to reflectance for their sensor,
masked where the scene's own mask band says cloud, shadow, cirrus or no data, and the per-pixel
median over the scenes is taken.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.errors

from memories_dagster.engine.earth.grid import Grid, raster_opener, read_onto_grid
from memories_dagster.engine.earth.products import json_number
from memories_dagster.engine.tables import scratch_folder
from memories_dagster.engine.earth.spectral import (
    PixelMask,
    landsat_c2_l2_reflectance,
    qa_pixel_clear_mask,
    scl_clear_mask,
    sentinel2_l2a_reflectance,
)

if TYPE_CHECKING:
    from memories_dagster.connectors.stac import Scene

SENTINEL2_L2A = "sentinel-2-l2a"
LANDSAT_C2_L2 = "landsat-c2-l2"
MASK_BAND = {SENTINEL2_L2A: "scl", LANDSAT_C2_L2: "qa_pixel"}
DEFAULT_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")


class SatelliteError(RuntimeError):
    """Scenes that cannot be composited; the message names the scene and the band."""


BLOCK_BYTES = 256 * 2**20  # memory for the median of one block of rows, copies included
NANMEDIAN_COPIES = 5  # np.nanmedian's working copies of its input, measured


@dataclass
class Composite:
    """The median reflectance of a region over a set of scenes, on the region's grid.

    ``bands``: band name -> float32 (rows, cols) reflectance, NaN where no scene had a clear view.
    ``cloud_fraction``: cloud/shadow/cirrus pixels over pixels with data, summed over the scenes.
    ``nodata_fraction``: share of the grid's pixels with no clear observation at all.
    ``clear_count``: per pixel, how many scenes saw it clear.
    ``scene_cloud_fractions``: scene id -> its cloud fraction over the region (NaN if it has no data there).
    """

    bands: dict[str, np.ndarray]
    cloud_fraction: float
    nodata_fraction: float
    scene_ids: list[str]
    sensor: str
    clear_count: np.ndarray
    scene_cloud_fractions: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready facts about the composite."""
        return {
            "sensor": self.sensor,
            "scenes": list(self.scene_ids),
            "bands": list(self.bands),
            "cloud_fraction": json_number(self.cloud_fraction, 6),
            "nodata_fraction": json_number(self.nodata_fraction, 6),
            "scene_cloud_fractions": {k: json_number(v, 6) for k, v in self.scene_cloud_fractions.items()},
        }


def composite(
    scenes: Sequence[Scene],
    grid: Grid,
    sensor: str,
    bands: Sequence[str] = DEFAULT_BANDS,
    storage_options: dict[str, Any] | None = None,
    resampling: str = "bilinear",
    mask_snow: bool = False,
    cloud_mask: bool = True,
    block_bytes: int = BLOCK_BYTES,
    scratch_dir: str | Path | None = None,
) -> Composite:
    """The per-pixel median reflectance of ``scenes`` on ``grid``.

    ``sensor`` is ``"sentinel-2-l2a"`` (scaled by processing baseline or the item's declared
    offset, masked by SCL) or ``"landsat-c2-l2"`` (C2 L2 scaling, masked by QA_PIXEL). DN bands
    are read with 0 as nodata and ``resampling``; the mask band always with ``nearest``. A pixel
    of a scene counts only when its mask says clear and every requested band has a value, so all
    bands of the composite share the same gaps. ``cloud_mask=False`` skips the mask band (for
    scenes that have none): only nodata is masked and the cloud fraction is unknown (NaN).

    Each band of each scene is read once, over the whole grid (one warp: no seams, each COG tile
    fetched once), into a scene stack on disk (``scratch_dir``, default the system's temporary
    folder); the median is then taken in blocks of rows whose stacks fit ``block_bytes``. Memory
    holds one band of one scene, one block, and the result; ``storage_options`` open s3://, gs://
    and abfs:// hrefs.
    """
    if sensor not in MASK_BAND:
        raise SatelliteError(f"Unknown sensor {sensor!r}; expected one of {', '.join(MASK_BAND)}.")
    if not scenes:
        raise SatelliteError(f"No {sensor} scenes to composite.")
    bands = list(bands)
    clear_count = np.zeros(grid.shape, dtype="uint16")
    cloudy = {scene.id: 0 for scene in scenes}
    observed = {scene.id: 0 for scene in scenes}
    # a step killed here leaves the stack (bands x scenes x grid) behind: the next composite removes it
    with scratch_folder(Path(scratch_dir or tempfile.gettempdir()), "memories-composite-") as scratch:
        stacks = {band: np.lib.format.open_memmap(Path(scratch) / f"{band}.npy", mode="w+", dtype="float32",
                                                  shape=(len(scenes), *grid.shape)) for band in bands}
        for index, scene in enumerate(scenes):
            mask = _mask(scene, sensor, grid, storage_options, mask_snow) if cloud_mask else _everything(grid)
            usable = mask.clear.copy()
            for band in bands:
                reflectance = _scale(sensor, scene, band, _read(scene, band, grid, resampling, storage_options, src_nodata=0))
                usable &= np.isfinite(reflectance)
                stacks[band][index] = reflectance
            for band in bands:  # a pixel is used in every band or in none
                stacks[band][index][~usable] = np.nan
            clear_count += usable
            cloudy[scene.id] += int(mask.cloud.sum())
            observed[scene.id] += int(mask.valid.sum())
        # np.nanmedian copies its input a few times over: the block budget allows for that
        rows_per_block = max(1, block_bytes // (len(scenes) * grid.width * 4 * NANMEDIAN_COPIES))
        medians = {band: np.full(grid.shape, np.nan, dtype="float32") for band in bands}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            for band in bands:
                for first in range(0, grid.height, rows_per_block):
                    rows = slice(first, first + rows_per_block)
                    medians[band][rows] = np.nanmedian(np.asarray(stacks[band][:, rows]), axis=0)
        del stacks  # the memory maps close before their folder goes
    cloud_pixels, data_pixels = sum(cloudy.values()), sum(observed.values())
    return Composite(
        bands=medians,
        cloud_fraction=cloud_pixels / data_pixels if data_pixels and cloud_mask else float("nan"),
        nodata_fraction=float((clear_count == 0).mean()),
        scene_ids=[scene.id for scene in scenes],
        sensor=sensor,
        clear_count=clear_count,
        scene_cloud_fractions={k: cloudy[k] / observed[k] if observed[k] and cloud_mask else float("nan") for k in cloudy},
    )


def _mask(scene: Scene, sensor: str, grid: Grid, storage_options: dict[str, Any] | None, mask_snow: bool) -> PixelMask:
    raw = _read(scene, MASK_BAND[sensor], grid, "nearest", storage_options, src_nodata=None)
    return scl_clear_mask(raw, mask_snow=mask_snow) if sensor == SENTINEL2_L2A else qa_pixel_clear_mask(raw, mask_snow=mask_snow)


def _everything(grid: Grid) -> PixelMask:
    """Declared unmasked: every pixel counts as clear and none as cloud."""
    everywhere = np.ones(grid.shape, dtype=bool)
    return PixelMask(clear=everywhere, cloud=~everywhere, valid=everywhere)


def _read(scene: Scene, band: str, grid: Grid, resampling: str, storage_options: dict[str, Any] | None,
          src_nodata: float | None) -> np.ndarray:
    href = scene.assets.get(band)
    if not href:
        have = ", ".join(sorted(scene.assets)) or "none"
        raise SatelliteError(f"Scene {scene.id} has no {band} asset (it has: {have}).")
    try:
        opener = raster_opener(href, storage_options or {})
        return read_onto_grid(href, grid, bands=[1], resampling=resampling, opener=opener, src_nodata=src_nodata)[0]
    except (rasterio.errors.RasterioError, OSError) as error:
        reason = " ".join(str(error).split()).replace(href, href.split("?")[0])
        # signed URLs carry their token in the query string: never show it
        raise SatelliteError(f"Band {band} of scene {scene.id} could not be read from {href.split('?')[0]}: {reason}") from None


def _scale(sensor: str, scene: Scene, band: str, dn: np.ndarray) -> np.ndarray:
    """Reflectance of a band, floored at 0: the offsets make dark water and shadow slightly
    negative, which would push normalized indices outside [-1, 1]."""
    if sensor == SENTINEL2_L2A:
        offsets = getattr(scene, "band_offsets", None) or {}
        reflectance = sentinel2_l2a_reflectance(dn, scene.processing_baseline, boa_add_offset=offsets.get(band))
    else:
        reflectance = landsat_c2_l2_reflectance(dn)
    return np.maximum(reflectance, np.float32(0))  # maximum keeps NaN (no data) as NaN

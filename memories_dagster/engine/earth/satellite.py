"""A cloud-free surface-reflectance composite of a region for one time window.

Each scene's bands are warped onto the region's grid as they are read (windowed, ranged reads of
the COG tiles the grid overlaps), scaled from digital numbers to reflectance for their sensor,
masked where the scene's own mask band says cloud, shadow, cirrus or no data, and the per-pixel
median over the scenes is taken.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.errors

from memories_dagster.engine.earth.grid import Grid, read_onto_grid
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
            "cloud_fraction": _rounded(self.cloud_fraction),
            "nodata_fraction": _rounded(self.nodata_fraction),
            "scene_cloud_fractions": {k: _rounded(v) for k, v in self.scene_cloud_fractions.items()},
        }


def composite(
    scenes: Sequence[Scene],
    grid: Grid,
    sensor: str,
    bands: Sequence[str] = DEFAULT_BANDS,
    opener: Callable | None = None,
    resampling: str = "bilinear",
    mask_snow: bool = False,
    cloud_mask: bool = True,
) -> Composite:
    """The per-pixel median reflectance of ``scenes`` on ``grid``.

    ``sensor`` is ``"sentinel-2-l2a"`` (scaled by processing baseline or the item's declared
    offset, masked by SCL) or ``"landsat-c2-l2"`` (C2 L2 scaling, masked by QA_PIXEL). DN bands
    are read with 0 as nodata and ``resampling``; the mask band always with ``nearest``. A pixel
    of a scene counts only when its mask says clear and every requested band has a value, so all
    bands of the composite share the same gaps.
    """
    if sensor not in MASK_BAND:
        raise SatelliteError(f"Unknown sensor {sensor!r}; expected one of {', '.join(MASK_BAND)}.")
    if not scenes:
        raise SatelliteError(f"No {sensor} scenes to composite.")
    bands = list(bands)
    mask_band = MASK_BAND[sensor]
    rows, cols = grid.shape
    stacks = {band: np.full((len(scenes), rows, cols), np.nan, dtype="float32") for band in bands}
    clear_count = np.zeros((rows, cols), dtype="int32")
    cloud_pixels = data_pixels = 0
    per_scene: dict[str, float] = {}
    for index, scene in enumerate(scenes):
        if cloud_mask:
            raw_mask = _read(scene, mask_band, grid, "nearest", opener, src_nodata=None)
            mask: PixelMask = (
                scl_clear_mask(raw_mask, mask_snow=mask_snow)
                if sensor == SENTINEL2_L2A
                else qa_pixel_clear_mask(raw_mask, mask_snow=mask_snow)
            )
        else:  # declared unmasked: every pixel with data counts, no cloud is known
            everywhere = np.ones(grid.shape, dtype=bool)
            mask = PixelMask(clear=everywhere, cloud=~everywhere, valid=everywhere)
        usable = mask.clear.copy()
        reflectances = {}
        for band in bands:
            dn = _read(scene, band, grid, resampling, opener, src_nodata=0)
            reflectances[band] = _scale(sensor, scene, band, dn)
            usable &= np.isfinite(reflectances[band])
        for band in bands:
            stacks[band][index][usable] = reflectances[band][usable]
        clear_count += usable
        cloud_pixels += int(mask.cloud.sum())
        data_pixels += int(mask.valid.sum())
        per_scene[scene.id] = mask.cloud_fraction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        medians = {band: np.nanmedian(stacks[band], axis=0).astype("float32") for band in bands}
    return Composite(
        bands=medians,
        cloud_fraction=cloud_pixels / data_pixels if data_pixels and cloud_mask else float("nan"),
        nodata_fraction=float((clear_count == 0).mean()),
        scene_ids=[scene.id for scene in scenes],
        sensor=sensor,
        clear_count=clear_count,
        scene_cloud_fractions=per_scene,
    )


def _read(scene: Scene, band: str, grid: Grid, resampling: str, opener: Callable | None, src_nodata: float | None) -> np.ndarray:
    href = scene.assets.get(band)
    if not href:
        have = ", ".join(sorted(scene.assets)) or "none"
        raise SatelliteError(f"Scene {scene.id} has no {band} asset (it has: {have}).")
    try:
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


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)

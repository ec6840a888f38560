"""Terrain analysis of a DEM on its grid: slope, aspect and hillshade by Horn's method.

The conventions are gdaldem's, so results can be checked against it: a 3x3 window weighted
1-2-1, cell sizes in metres, aspect clockwise from north towards the downslope direction, and
the edge cells (and cells next to nodata) left without a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TerrainLayers:
    """Float32 rasters on the DEM's grid; NaN where undefined."""

    slope: np.ndarray
    aspect: np.ndarray
    hillshade: np.ndarray


def horn_gradients(dem: np.ndarray, ew_metres: np.ndarray, ns_metres: np.ndarray, z_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """dz/d(east) and dz/d(south) per cell by Horn's 3x3 weighted differences.

    ``ew_metres`` / ``ns_metres`` hold the cell size of each row (they differ per row on a
    geographic grid). Edge cells come out NaN, as do cells with a NaN neighbour.
    """
    z = np.asarray(dem, dtype="float64") * z_factor
    gx = np.full(z.shape, np.nan)
    gy = np.full(z.shape, np.nan)
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    ew = np.asarray(ew_metres, dtype="float64")[1:-1, None]
    ns = np.asarray(ns_metres, dtype="float64")[1:-1, None]
    gx[1:-1, 1:-1] = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * ew)
    gy[1:-1, 1:-1] = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * ns)
    return gx, gy


def terrain_layers(
    dem: np.ndarray,
    ew_metres: np.ndarray,
    ns_metres: np.ndarray,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
) -> TerrainLayers:
    """Slope (degrees, 0-90), aspect (degrees clockwise from north, 0-360; NaN on flat cells)
    and hillshade (grey levels 1-255, 1 in full shadow) of a DEM.
    """
    gx, gy = horn_gradients(dem, ew_metres, ns_metres, z_factor)
    steepness = np.hypot(gx, gy)
    slope = np.degrees(np.arctan(steepness))
    # downslope points along (-dz/deast, +dz/dsouth) in (east, north) axes
    aspect = np.degrees(np.arctan2(-gx, gy)) % 360.0
    aspect[steepness == 0] = np.nan
    az, alt = np.radians(azimuth), np.radians(altitude)
    # cosine between the surface normal (-gx, gy, 1) and the direction of the light
    light = (np.sin(alt) - gx * np.sin(az) * np.cos(alt) + gy * np.cos(az) * np.cos(alt)) / np.sqrt(1 + steepness**2)
    hillshade = 1.0 + 254.0 * np.clip(light, 0.0, None)
    return TerrainLayers(slope.astype("float32"), aspect.astype("float32"), hillshade.astype("float32"))

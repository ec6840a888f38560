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
    """dz/d(east) and dz/d(south) per cell by Horn's 3x3 weighted differences, in float32.

    ``ew_metres`` / ``ns_metres`` hold the cell size of each row (they differ per row on a
    geographic grid). Edge cells come out NaN, as do cells with a NaN neighbour. Sums are built
    in place: on large DEMs memory traffic, not arithmetic, sets the pace.
    """
    z = np.asarray(dem, dtype="float32")
    rows, cols = z.shape
    gx = np.full(z.shape, np.nan, dtype="float32")
    gy = np.full(z.shape, np.nan, dtype="float32")
    if rows < 3 or cols < 3:
        return gx, gy
    # column sums weighted 1-2-1 down each column, then east minus west
    vertical = z[:-2] + z[2:]
    vertical += z[1:-1]
    vertical += z[1:-1]
    inner_x = gx[1:-1, 1:-1]
    np.subtract(vertical[:, 2:], vertical[:, :-2], out=inner_x)
    inner_x /= (8 * np.asarray(ew_metres, dtype="float32")[1:-1, None] / np.float32(z_factor))
    # row sums weighted 1-2-1 along each row, then south minus north
    horizontal = z[:, :-2] + z[:, 2:]
    horizontal += z[:, 1:-1]
    horizontal += z[:, 1:-1]
    inner_y = gy[1:-1, 1:-1]
    np.subtract(horizontal[2:], horizontal[:-2], out=inner_y)
    inner_y /= (8 * np.asarray(ns_metres, dtype="float32")[1:-1, None] / np.float32(z_factor))
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
    slope = np.arctan(steepness)
    slope *= np.float32(180 / np.pi)
    # downslope points along (-dz/deast, +dz/dsouth) in (east, north) axes
    aspect = np.arctan2(-gx, gy)
    aspect *= np.float32(180 / np.pi)
    aspect %= 360
    aspect[steepness == 0] = np.nan
    az, alt = np.radians(azimuth), np.radians(altitude)
    # cosine between the surface normal (-gx, gy, 1) and the direction of the light
    light = gy * np.float32(np.cos(az) * np.cos(alt))
    light -= gx * np.float32(np.sin(az) * np.cos(alt))
    light += np.float32(np.sin(alt))
    steepness *= steepness
    steepness += 1
    np.sqrt(steepness, out=steepness)
    light /= steepness
    np.clip(light, 0, None, out=light)
    light *= 254
    light += 1
    return TerrainLayers(slope, aspect, light)

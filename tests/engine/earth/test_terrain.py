"""Slope, aspect and hillshade of a real DEM (matplotlib's Jacksboro fault sample) against gdaldem.

The DEM is warped from lon/lat onto UTM at 90 m as a region would be, written as a GeoTIFF, and
both our Horn implementation and ``gdaldem`` (Debian package gdal-bin) compute on that file.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from memories_dagster.engine.earth.grid import Grid, read_onto_grid, read_raster, write_cog
from memories_dagster.engine.earth.terrain import terrain_layers

SAMPLES = Path(__file__).resolve().parents[3] / "sample_data" / "earth" / "make_samples.py"
JACKSBORO_BOX = (-84.40, 36.46, -84.09, 36.72)


def make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gdaldem() -> str:
    found = shutil.which("gdaldem")
    if not found:
        pytest.fail("gdaldem is not installed: apt-get install gdal-bin (.ci/run installs it)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def dem_file(tmp_path_factory) -> Path:
    """matplotlib's DEM (EPSG:4326, 3 arc-seconds) as a GeoTIFF, as the demo ships it."""
    path = tmp_path_factory.mktemp("dem") / "jacksboro_dem.tif"
    make_samples().jacksboro_dem(path)
    return path


@pytest.fixture(scope="module")
def utm_dem(dem_file) -> tuple[Path, np.ndarray, Grid]:
    grid = Grid.for_region(JACKSBORO_BOX, "EPSG:32616", 90.0)
    dem = read_onto_grid(str(dem_file), grid)[0]
    path = Path(write_cog(dem_file.with_name("utm.tif"), {"elevation": dem}, grid))
    return path, dem, grid


def run_gdaldem(gdaldem: str, mode: str, source: Path, *options: str) -> np.ndarray:
    target = source.with_name(f"gdal_{mode}_{'_'.join(options) or 'default'}.tif")
    subprocess.run([gdaldem, mode, str(source), str(target), "-q", *options], check=True)
    return read_raster(str(target))[0]


def differences(ours: np.ndarray, reference: np.ndarray, circular: bool = False) -> np.ndarray:
    assert np.array_equal(np.isfinite(ours), np.isfinite(reference)), "cells with a value differ"
    both = np.isfinite(ours)
    diff = np.abs(ours[both].astype("float64") - reference[both])
    return np.minimum(diff, 360 - diff) if circular else diff


def test_slope_aspect_and_hillshade_match_gdaldem(gdaldem, utm_dem):
    path, dem, grid = utm_dem
    ew, ns = grid.cell_size_metres()
    ours = terrain_layers(dem, ew, ns)

    slope = differences(ours.slope, run_gdaldem(gdaldem, "slope", path))
    aspect = differences(ours.aspect, run_gdaldem(gdaldem, "aspect", path), circular=True)
    shade = differences(np.rint(ours.hillshade), run_gdaldem(gdaldem, "hillshade", path))
    print(f"\nJacksboro DEM, {dem.shape[1]}x{dem.shape[0]} cells at 90 m, {slope.size} compared: "
          f"slope max |diff| {slope.max():.2e} deg (mean {slope.mean():.1e}), "
          f"aspect max {aspect.max():.2e} deg, hillshade max {shade.max():.0f} grey levels "
          f"({(shade > 0).mean():.2%} of cells differ)")
    assert slope.size > 0.95 * dem.size  # all but the edge cells
    assert slope.max() < 0.01
    assert shade.max() <= 1
    assert aspect.max() < 0.05
    assert 0 < np.nanmax(ours.slope) < 90 and np.nanmin(ours.slope) >= 0


def test_light_direction_and_vertical_exaggeration_match_gdaldem(gdaldem, utm_dem):
    path, dem, grid = utm_dem
    ew, ns = grid.cell_size_metres()
    ours = terrain_layers(dem, ew, ns, azimuth=270, altitude=30, z_factor=2.0)
    shade = differences(np.rint(ours.hillshade), run_gdaldem(gdaldem, "hillshade", path, "-az", "270", "-alt", "30", "-z", "2"))
    # gdaldem's slope has no z factor: a scale of 1/2 (metres of ground per unit of height) is the same thing
    slope = differences(ours.slope, run_gdaldem(gdaldem, "slope", path, "-s", "0.5"))
    assert shade.max() <= 1 and slope.max() < 0.01
    default = terrain_layers(dem, ew, ns)
    assert np.nanmean(np.abs(default.hillshade - ours.hillshade)) > 10  # the parameters matter


def test_flat_ground_has_no_aspect_and_full_light_from_above():
    flat = np.full((5, 5), 100.0)
    layers = terrain_layers(flat, np.full(5, 30.0), np.full(5, 30.0), altitude=90)
    inner = (slice(1, -1), slice(1, -1))
    assert np.all(layers.slope[inner] == 0) and np.all(np.isnan(layers.aspect[inner]))
    assert np.all(layers.hillshade[inner] == 255)
    assert np.all(np.isnan(layers.slope[0])) and np.all(np.isnan(layers.slope[:, -1]))  # edges, as gdaldem


def test_a_plane_facing_east_has_the_slope_and_aspect_of_its_gradient():
    """z falls by 1 m per 10 m eastwards: slope atan(0.1), downhill towards the east (90°)."""
    cols = np.arange(6, dtype="float64")
    plane = np.tile(100 - cols * 1.0, (6, 1))
    layers = terrain_layers(plane, np.full(6, 10.0), np.full(6, 10.0))
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(layers.slope[inner], np.degrees(np.arctan(0.1)), rtol=1e-6)
    np.testing.assert_allclose(layers.aspect[inner], 90.0, atol=1e-9)


def test_cells_of_a_lon_lat_grid_are_measured_in_metres_at_their_latitude():
    grid = Grid.for_region(JACKSBORO_BOX, "EPSG:4326", 1 / 1200)
    ew, ns = grid.cell_size_metres()
    middle = grid.height // 2
    latitude = grid.top - (middle + 0.5) * grid.resolution
    assert ns[middle] == pytest.approx(92.5, rel=0.01)  # a 3 arc-second cell north-south
    assert ew[middle] / ns[middle] == pytest.approx(np.cos(np.radians(latitude)), rel=0.005)
    assert ew[0] < ew[-1]  # cells narrow towards the pole (the first row is the northernmost)


def test_a_box_at_the_antimeridian_searches_on_its_own_side():
    """UTM cells snapped outwards cross 180°: the search box must not wrap round the world."""
    grid = Grid.for_region((179.5, -17.0, 179.999, -16.5), "EPSG:32760", 30.0)
    west, south, east, north = grid.lonlat_bounds()
    assert west == pytest.approx(179.4934, abs=1e-3) and east == 180.0 and south < north
    grid = Grid.for_region((179.5, -17.0, 179.999, -16.5), "EPSG:4326", 0.7)
    assert grid.lonlat_bounds()[2] == 180.0  # not 180.6

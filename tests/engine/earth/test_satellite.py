"""Region composites from real Sentinel-2 bands (xarray-spatial's sample) written as COGs, found
through a STAC API and read over HTTP range requests, all served in the test."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from memories_dagster.connectors.stac import Scene, search_scenes
from memories_dagster.engine.earth.grid import Grid, write_cog
from memories_dagster.engine.earth.satellite import (
    SatelliteError,
    composite,
)
from tests.connectors.test_stac import (
    BBOX,
    TILE_SHAPE,
    StacApi,
    clear_scl,
    landsat_item,
    sentinel2_item,
    xrspatial_bands,
)

TILE_GRID = Grid("EPSG:32719", 10.0, 600000.0, 4700020.0, TILE_SHAPE[1], TILE_SHAPE[0])
JANUARY = ("2023-01-01", "2023-01-31")
CLEAR_QA = 21824  # Landsat clear land


def original_reflectance() -> dict[str, np.ndarray]:
    return {k: v / 10000.0 for k, v in xrspatial_bands().items()}


def s2_scenes(api: StacApi, collection: str = "sentinel-2-l2a") -> list[Scene]:
    return search_scenes(api.url, collection, BBOX, *JANUARY, max_cloud_cover=50)


def utm_box_lonlat(left: float, bottom: float, right: float, top: float) -> tuple[float, float, float, float]:
    return transform_bounds("EPSG:32719", "EPSG:4326", left, bottom, right, top)


def test_scaling_of_both_baselines_and_landsat(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = {k: xrspatial_bands()[k] for k in ("red", "nir")}
    sentinel2_item(api, tmp_path, "S2_baseline_0301", "2021-06-01T10:00:00Z", dn, clear_scl(), "03.01", 1.0)
    # from baseline 04.00 on the DNs carry +1000: the same reflectance after the -1000 offset
    sentinel2_item(api, tmp_path, "S2_baseline_0400", "2023-01-05T10:00:00Z", {k: v + 1000 for k, v in dn.items()},
                   clear_scl(), "04.00", 1.0, collection="sentinel-2-l2a-new")
    landsat_dn = {k: np.round((v / 10000.0 + 0.2) / 0.0000275) for k, v in dn.items()}
    landsat_item(api, tmp_path, "LC09", "2023-01-07T10:00:00Z", landsat_dn, np.full(TILE_SHAPE, CLEAR_QA, "uint16"), 1.0)
    expected = {k: (v / 10000.0) for k, v in dn.items()}

    old = composite(search_scenes(api.url, "sentinel-2-l2a", BBOX, "2021-01-01", "2021-12-31"), TILE_GRID,
                    "sentinel-2-l2a", ["red", "nir"], resampling="nearest")
    new = composite(search_scenes(api.url, "sentinel-2-l2a-new", BBOX, *JANUARY), TILE_GRID, "sentinel-2-l2a",
                    ["red", "nir"], resampling="nearest")
    landsat = composite(search_scenes(api.url, "landsat-c2-l2", BBOX, *JANUARY), TILE_GRID, "landsat-c2-l2",
                        ["red", "nir"], resampling="nearest")

    for band in ("red", "nir"):
        np.testing.assert_allclose(old.bands[band], expected[band], rtol=1e-6)
        np.testing.assert_allclose(new.bands[band], expected[band], rtol=1e-6)
        np.testing.assert_allclose(landsat.bands[band], landsat_dn[band] * 0.0000275 - 0.2, rtol=0, atol=1e-6)
        assert np.abs(landsat.bands[band] - expected[band]).max() <= 0.0000275 / 2 + 1e-6  # the DN quantization
    assert old.scene_ids == ["S2_baseline_0301"] and new.scene_ids == ["S2_baseline_0400"] and landsat.scene_ids == ["LC09"]
    assert (old.cloud_fraction, old.nodata_fraction, landsat.cloud_fraction, landsat.nodata_fraction) == (0, 0, 0, 0)
    assert old.bands["red"].dtype == np.float32


def test_sentinel2_clouds_shadows_and_nodata_are_masked_and_counted(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = xrspatial_bands()
    scl = clear_scl()
    scl[20:30, 40:60] = 9  # cloud high probability: 200 pixels
    scl[100:104, 200:205] = 8  # cloud medium probability: 20
    scl[150:152, 10:13] = 10  # thin cirrus: 6
    scl[50:55, 100:120] = 3  # cloud shadow: 100
    scl[60, 0:10] = 1  # saturated: 10, not cloud, not clear
    scl[190:200, :] = 0  # no data: 3000, DN 0 in every band as in real products
    for values in dn.values():
        values[190:200, :] = 0
    dn["red"][80:83, 80:83] = 0  # 9 pixels missing in one band only
    sentinel2_item(api, tmp_path, "S2_clouds", "2023-01-05T10:00:00Z", dn, scl, "03.01", 12.0)

    result = composite(s2_scenes(api), TILE_GRID, "sentinel-2-l2a", resampling="nearest")

    cloud_or_shadow = 200 + 20 + 6 + 100
    with_data = 200 * 300 - 3000
    assert result.cloud_fraction == cloud_or_shadow / with_data
    assert result.scene_cloud_fractions == {"S2_clouds": cloud_or_shadow / with_data}
    assert result.nodata_fraction == (cloud_or_shadow + 10 + 3000 + 9) / (200 * 300)
    masked = np.isin(scl, [0, 1, 3, 8, 9, 10])
    masked[80:83, 80:83] = True
    reflectance = original_reflectance()
    for band, values in result.bands.items():
        assert np.array_equal(np.isnan(values), masked), band  # every band shares the gaps
        np.testing.assert_allclose(values[~masked], reflectance[band][~masked], rtol=1e-6)
    assert np.array_equal(result.clear_count, (~masked).astype(int))


def test_landsat_qa_pixel_masking(httpserver, tmp_path):
    api = StacApi(httpserver)
    reflectance = original_reflectance()
    dn = {k: np.round((reflectance[k] + 0.2) / 0.0000275) for k in ("red", "nir", "swir16")}
    qa = np.full(TILE_SHAPE, CLEAR_QA, dtype="uint16")
    qa[10:20, 10:20] = CLEAR_QA | 1 << 3 | 1 << 1  # cloud (and dilated): 100
    qa[30:35, 0:10] = CLEAR_QA | 1 << 4  # cloud shadow: 50
    qa[40, 0:7] = CLEAR_QA | 1 << 2  # cirrus: 7
    qa[0:5, 290:300] = 1  # fill: 50
    for values in dn.values():
        values[0:5, 290:300] = 0
    landsat_item(api, tmp_path, "LC08_qa", "2023-01-09T10:00:00Z", dn, qa, 3.0)

    result = composite(search_scenes(api.url, "landsat-c2-l2", BBOX, *JANUARY, max_cloud_cover=10), TILE_GRID,
                       "landsat-c2-l2", ["red", "nir", "swir16"], resampling="nearest")

    assert result.cloud_fraction == (100 + 50 + 7) / (60000 - 50)
    masked = np.zeros(TILE_SHAPE, bool)
    masked[10:20, 10:20] = masked[30:35, 0:10] = masked[40, 0:7] = masked[0:5, 290:300] = True
    assert result.nodata_fraction == masked.sum() / 60000
    for band, values in result.bands.items():
        assert np.array_equal(np.isnan(values), masked)
        np.testing.assert_allclose(values[~masked], dn[band][~masked] * 0.0000275 - 0.2, rtol=0, atol=1e-6)


def test_region_at_20m_is_the_2x2_average_read_with_http_ranges(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = xrspatial_bands()
    sentinel2_item(api, tmp_path, "S2_region", "2023-01-05T10:00:00Z", {k: dn[k] + 1000 for k in ("red", "nir")},
                   clear_scl(), "04.00", 1.0)
    region = utm_box_lonlat(600700, 4699000, 601300, 4699400)  # a small part of the 3 x 2 km tile
    grid = Grid.for_region(region, "EPSG:32719", 20)

    result = composite(s2_scenes(api), grid, "sentinel-2-l2a", ["red", "nir"], resampling="average")

    assert grid.left % 20 == 0 and (4700020 - grid.top) % 20 == 0  # 20 m cells on 2 x 2 blocks of 10 m pixels
    row0, col0 = round((4700020 - grid.top) / 10), round((grid.left - 600000) / 10)
    assert row0 >= 0 and col0 >= 0 and row0 + 2 * grid.height <= 200 and col0 + 2 * grid.width <= 300
    for band in ("red", "nir"):
        block = dn[band][row0:row0 + 2 * grid.height, col0:col0 + 2 * grid.width] / 10000.0
        expected = block.reshape(grid.height, 2, grid.width, 2).mean(axis=(1, 3))
        assert result.bands[band].shape == grid.shape
        np.testing.assert_allclose(result.bands[band], expected, rtol=1e-6)
    assert result.nodata_fraction == 0

    # the COGs were read with HTTP range requests, and only part of each file came over the wire
    gets = [(route, ranged) for method, route, ranged, _ in api.data_requests if method == "GET"]
    assert gets and all(ranged and ranged.startswith("bytes=") for _, ranged in gets)
    assert {method for method, *_ in api.data_requests} <= {"GET", "HEAD"}
    for name in ("red.tif", "nir.tif"):  # (the constant SCL compresses to 1 kB, read at once)
        size = (tmp_path / "S2_region" / name).stat().st_size
        assert 0 < api.bytes_served(name) < 0.75 * size, name  # 2 of the 6 tiles, plus the header
    # and the default GDAL directory listing of the COG folder was not asked for
    assert not any(route.endswith("/") for _, route, _, _ in api.data_requests)


def test_region_in_another_crs(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = xrspatial_bands()
    sentinel2_item(api, tmp_path, "S2_crs", "2023-01-05T10:00:00Z", {k: dn[k] for k in ("red", "nir")}, clear_scl(),
                   "03.01", 1.0)
    scenes = s2_scenes(api)
    # a lon/lat box well inside the tile's footprint, on a geographic grid of ~3.7 x 5.5 m cells
    region = utm_box_lonlat(600500, 4698500, 602500, 4699500)
    grid = Grid.for_region(region, "EPSG:4326", 0.00005)

    geographic = composite(scenes, grid, "sentinel-2-l2a", ["red", "nir"])

    west, south, east, north = region
    rows = round(np.ceil(north / 0.00005) - np.floor(south / 0.00005))
    cols = round(np.ceil(east / 0.00005) - np.floor(west / 0.00005))
    assert geographic.bands["red"].shape == (rows, cols) == grid.shape
    reflectance = original_reflectance()
    for band, values in geographic.bands.items():
        assert not np.isnan(values).any(), band
        source = reflectance[band][50:150, 50:250]
        assert source.min() - 1e-6 <= values.min() and values.max() <= source.max() + 1e-6
        assert abs(float(values.mean()) - float(source.mean())) < 0.01
    assert geographic.nodata_fraction == 0

    # UTM 19 north is the same projection shifted by the 10 000 km false northing: pixel for pixel
    north_grid = Grid.for_region(region, "EPSG:32619", 10)
    shifted = composite(scenes, north_grid, "sentinel-2-l2a", ["red"], resampling="nearest")
    row0 = round((4700020 - 10_000_000 - north_grid.top) / 10)
    col0 = round((north_grid.left - 600000) / 10)
    np.testing.assert_allclose(
        shifted.bands["red"], reflectance["red"][row0:row0 + north_grid.height, col0:col0 + north_grid.width], rtol=1e-6)


def test_median_of_three_scenes(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = {k: v for k, v in xrspatial_bands().items() if k in ("blue", "red", "nir")}
    scl_a, scl_b, scl_c = clear_scl(), clear_scl(), clear_scl()
    scl_a[0:50, 0:100] = 9
    scl_b[25:75, 50:150] = 3
    scl_c[0:10, :] = 8
    scl_c[30:40, 60:90] = 9  # cloudy in all three scenes there
    # three baselines and two ways of declaring the offset, the reflectances differ by +-10 %
    sentinel2_item(api, tmp_path, "a", "2023-01-03T10:00:00Z", dn, scl_a, "03.01", 20.0)
    sentinel2_item(api, tmp_path, "b", "2023-01-13T10:00:00Z", {k: np.round(v * 1.1) + 1000 for k, v in dn.items()},
                   scl_b, "04.00", 10.0)
    sentinel2_item(api, tmp_path, "c", "2023-01-23T10:00:00Z", {k: np.round(v * 0.9) + 1000 for k, v in dn.items()},
                   scl_c, "05.09", 15.0, style="earth-search")
    sentinel2_item(api, tmp_path, "too_cloudy", "2023-01-28T10:00:00Z", dn, clear_scl(), "05.09", 95.0)

    scenes = s2_scenes(api)
    result = composite(scenes, TILE_GRID, "sentinel-2-l2a", ["blue", "red", "nir"])  # bilinear on an aligned grid

    assert result.scene_ids == ["a", "b", "c"]
    clear = [scl == 4 for scl in (scl_a, scl_b, scl_c)]
    assert result.cloud_fraction == sum(int((~c).sum()) for c in clear) / (3 * 60000)
    count = sum(c.astype(int) for c in clear)
    assert np.array_equal(result.clear_count, count)
    assert result.nodata_fraction == (count == 0).sum() / 60000 == 300 / 60000
    for band, values in dn.items():
        a, b, c = values / 10000, np.round(values * 1.1) / 10000, np.round(values * 0.9) / 10000
        expected = np.full(values.shape, np.nan)
        every = count == 3
        expected[every] = np.median(np.stack([a[every], b[every], c[every]]), axis=0)
        for (x, cx), (y, cy) in [((a, clear[0]), (b, clear[1])), ((a, clear[0]), (c, clear[2])), ((b, clear[1]), (c, clear[2]))]:
            two = (count == 2) & cx & cy
            expected[two] = (x[two] + y[two]) / 2
        for x, cx in zip((a, b, c), clear):
            one = (count == 1) & cx
            expected[one] = x[one]
        np.testing.assert_allclose(result.bands[band], expected, rtol=1e-6, equal_nan=True)
        # spot checks: a pixel seen by all three is the middle one, the original reflectance
        assert result.bands[band][100, 200] == pytest.approx(values[100, 200] / 10000, rel=1e-6)


def test_write_composite_and_errors(httpserver, tmp_path):
    api = StacApi(httpserver)
    dn = {k: v for k, v in xrspatial_bands().items() if k in ("red", "nir")}
    sentinel2_item(api, tmp_path, "S2_write", "2023-01-05T10:00:00Z", dn, clear_scl(), "03.01", 1.0)
    scene = s2_scenes(api)[0]
    result = composite([scene], TILE_GRID, "sentinel-2-l2a", ["red", "nir"])

    path = write_cog(tmp_path / "out" / "composite.tif", result.bands, TILE_GRID)
    with rasterio.open(path) as src:
        assert src.driver == "GTiff" and src.count == 2 and src.descriptions == ("red", "nir")
        assert src.crs.to_epsg() == 32719 and src.transform == TILE_GRID.transform
        np.testing.assert_array_equal(src.read(2), result.bands["nir"])
    assert result.metadata()["scenes"] == ["S2_write"] and result.metadata()["cloud_fraction"] == 0

    with pytest.raises(SatelliteError, match="Scene S2_write has no swir16 asset"):
        composite([scene], TILE_GRID, "sentinel-2-l2a", ["red", "swir16"])
    missing = Scene(**{**scene.__dict__, "assets": {**scene.assets, "red": api.url + "data/x/gone.tif?sig=s3cret"}})
    with pytest.raises(SatelliteError, match=r"Band red of scene S2_write could not be read from http://.*/gone\.tif") as caught:
        composite([missing], TILE_GRID, "sentinel-2-l2a", ["red"])
    assert "s3cret" not in str(caught.value)
    with pytest.raises(SatelliteError, match="Unknown sensor"):
        composite([scene], TILE_GRID, "modis")


def test_negative_reflectance_of_dark_pixels_is_floored_so_indices_stay_in_range(httpserver, tmp_path):
    """Baseline 04.00 DNs under 1000 (dark water, shadow) scale to negative reflectance."""
    from memories_dagster.engine.earth.spectral import ndvi

    api = StacApi(httpserver)
    dark = {"red": np.full(TILE_SHAPE, 900), "nir": np.full(TILE_SHAPE, 1050)}
    sentinel2_item(api, tmp_path, "S2_dark", "2023-01-05T10:00:00Z", dark, clear_scl(), "04.00", 1.0)
    result = composite(s2_scenes(api), TILE_GRID, "sentinel-2-l2a", ["red", "nir"], resampling="nearest")
    assert float(result.bands["red"].min()) == 0.0 and result.bands["nir"][0, 0] == pytest.approx(0.005)
    assert np.nanmax(np.abs(ndvi(result.bands["nir"], result.bands["red"]))) <= 1.0  # -3 without the floor


def test_a_composite_done_in_small_row_blocks_equals_one_done_whole(httpserver, tmp_path):
    """Bilinear onto another CRS: blocks may change neither the values nor what is downloaded."""
    api = StacApi(httpserver)
    dn = {k: xrspatial_bands()[k] for k in ("red", "nir")}
    scl = clear_scl()
    scl[20:30, 40:60] = 9
    sentinel2_item(api, tmp_path, "S2_a", "2023-01-05T10:00:00Z", dn, scl, "03.01", 1.0)
    sentinel2_item(api, tmp_path, "S2_b", "2023-01-09T10:00:00Z", {k: v + 7 for k, v in dn.items()}, clear_scl(), "03.01", 1.0)
    scenes = s2_scenes(api)
    lonlat = Grid.for_region(utm_box_lonlat(600200, 4698200, 602800, 4699800), "EPSG:4326", 0.00015)

    def fetched() -> int:
        return sum(size for method, _, _, size in api.data_requests if method == "GET")

    before = fetched()
    whole = composite(scenes, lonlat, "sentinel-2-l2a", ["red", "nir"], resampling="bilinear", scratch_dir=tmp_path)
    once = fetched() - before
    # 2 scenes x 5 copies x 4 bytes per column: blocks of a few rows
    blocks = composite(scenes, lonlat, "sentinel-2-l2a", ["red", "nir"], resampling="bilinear",
                       block_bytes=3 * 2 * lonlat.width * 4 * 5, scratch_dir=tmp_path)
    assert fetched() - before - once <= once  # the second run downloads no more than the first
    for band in ("red", "nir"):
        np.testing.assert_array_equal(blocks.bands[band], whole.bands[band])
    assert (blocks.cloud_fraction, blocks.nodata_fraction) == (whole.cloud_fraction, whole.nodata_fraction)
    assert blocks.scene_cloud_fractions == whole.scene_cloud_fractions
    assert whole.scene_cloud_fractions["S2_b"] == 0.0 and whole.scene_cloud_fractions["S2_a"] > 0
    assert list(tmp_path.glob("composite-*")) == []  # the scene stacks on disk are gone


def test_only_landsat_8_and_9_scenes_make_a_landsat_composite(httpserver, tmp_path):
    from memories_dagster.engine.earth.analyzers import prepare_satellite
    from memories_dagster.engine.earth.products import staged_product

    api = StacApi(httpserver)
    dn = {k: np.round((v / 10000.0 + 0.2) / 0.0000275) for k, v in xrspatial_bands().items() if k in ("red", "nir")}
    landsat_item(api, tmp_path, "LC09", "2023-01-07T10:00:00Z", dn, np.full(TILE_SHAPE, CLEAR_QA, "uint16"), 1.0)
    landsat_item(api, tmp_path, "LE07", "2023-01-08T10:00:00Z", {k: v * 0 + 9000 for k, v in dn.items()},
                 np.full(TILE_SHAPE, CLEAR_QA, "uint16"), 1.0)
    api.items[-1]["properties"]["platform"] = "landsat-7"
    with staged_product(tmp_path / "out") as product:
        prepare_satellite(product, TILE_GRID, dataset="landsat-c2-l2", bbox=BBOX, start="2023-01-01", end="2023-01-31",
                          api=api.url, catalog=None, collection="landsat-c2-l2", max_cloud_cover=50, max_items=10,
                          headers={}, bands=["red", "nir"], resampling="nearest")
    assert product.facts["scenes"] == ["LC09"]

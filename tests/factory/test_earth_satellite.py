"""A satellite region end to end through Dagster: monthly partitions, a STAC API served in the test
(pytest-httpserver, range-capable COG serving), the vegetation and urban analyzers on the composite.

The scenes are xarray-spatial's real Sentinel-2 bands written as COGs; the region's grid is a 10 m
UTM grid snapped onto the tile's pixels, so the composite holds the served pixels one for one.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.warp import transform_bounds

from memories_dagster.definitions import build_definitions
from memories_dagster.engine.earth.grid import Grid
from tests.conftest import materialization_of
from tests.connectors.test_stac import StacApi, clear_scl, sentinel2_item, xrspatial_bands

REGION = "patagonia"
# a UTM box well inside the served tile (600000..603000 E, 4698020..4700020 N), as lon/lat
BBOX = [round(v, 5) for v in transform_bounds("EPSG:32719", "EPSG:4326", 600600, 4698600, 602400, 4699400)]
GRID = Grid.for_region(tuple(BBOX), "EPSG:32719", 10.0)
ROW0, COL0 = round((4700020 - GRID.top) / 10), round((GRID.left - 600000) / 10)
REGION_WINDOW = (slice(ROW0, ROW0 + GRID.height), slice(COL0, COL0 + GRID.width))
BANDS = ("blue", "red", "nir", "swir16")
OFFSET = 1000  # processing baseline >= 04.00: DNs carry +1000, taken off again when scaled


class EarthProject:
    """A throwaway project: assets/earth/<region>.yaml files and the code location built from them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "assets" / "earth").mkdir(parents=True)

    def add(self, name: str, document: dict) -> Path:
        path = self.root / "assets" / "earth" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def materialize(self, keys: list[str], partition_key: str | None = None, instance=None):
        defs = build_definitions()
        assets = [defs.resolve_assets_def(dg.AssetKey.from_user_string(k)) for k in keys]
        # resolved assets carry the code location's resources already
        return dg.materialize(assets, partition_key=partition_key,
                              instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


def project_in(tmp_path: Path, monkeypatch) -> EarthProject:
    """An EarthProject in tmp_path, the code location pointed at its assets/ and default profile."""
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    return EarthProject(tmp_path)


@pytest.fixture
def earth_project(tmp_path, monkeypatch) -> EarthProject:
    return project_in(tmp_path, monkeypatch)


def failure_text(result) -> str:
    """Everything the UI shows of the run's step failures."""
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        parts.append(data.error.to_string() if data.error else "")
        if data.user_failure_data:
            parts.append(data.user_failure_data.description or "")
    return "\n".join(parts)


def served_dn() -> dict[str, np.ndarray]:
    """The DNs the STAC API serves (processing baseline 05.09: reflectance * 10000 + 1000)."""
    return {band: xrspatial_bands()[band] + OFFSET for band in BANDS}


def region_reflectance() -> dict[str, np.ndarray]:
    """Hand-scaled reflectance of the served DNs on the region's grid."""
    return {band: (dn[REGION_WINDOW] - OFFSET) / 10000.0 for band, dn in served_dn().items()}


def cloudy_scl() -> tuple[np.ndarray, float]:
    """An SCL with a cloud bank (class 9) over the northern 60 % of the region, and that share."""
    scl = clear_scl()
    cloud_rows = int(GRID.height * 0.6)
    scl[ROW0:ROW0 + cloud_rows, :] = 9
    return scl, cloud_rows / GRID.height


@pytest.fixture
def stac(httpserver, tmp_path) -> StacApi:
    api = StacApi(httpserver)
    folder = tmp_path / "cogs"
    sentinel2_item(api, folder, "S2B_20230110", "2023-01-10T14:30:00Z", served_dn(), clear_scl(), "05.09", 3.0)
    # the first day of February: in February's window only, never in January's. Its metadata says
    # 40 % cloud (under the search limit of 50), its SCL shows more over the region
    sentinel2_item(api, folder, "S2A_20230201", "2023-02-01T14:30:00Z", served_dn(), cloudy_scl()[0], "05.09", 40.0)
    return api


def region_document(api_url: str, **satellite) -> dict:
    return {
        "description": "Sentinel-2 indices over a Patagonian tile",
        "bbox": BBOX,
        "crs": "EPSG:32719",
        "resolution": 10,
        "partitions": {"type": "monthly", "start": "2023-01-01", "end": "2023-06-01"},
        "sources": {"satellite": {
            "dataset": "sentinel-2-l2a",
            "stac": {"api": api_url, "collection": "sentinel-2-l2a", "max_cloud_cover": 50},
            "bands": list(BANDS),
            "resampling": "nearest",
            **satellite,
        }},
        "analyzers": {"vegetation": {"vegetated_ndvi": 0.3}, "urban": {"ndbi_threshold": 0.0, "ndvi_max": 0.2}},
        "checks": {"min_coverage": 0.9, "max_nodata_fraction": 0.1, "max_cloud_fraction": 0.3},
    }


KEYS = [f"{REGION}/earth/satellite", f"{REGION}/analysis/vegetation", f"{REGION}/analysis/urban"]


def checks_of(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def raster(path: str) -> tuple[np.ndarray, rasterio.Affine, str]:
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs.to_string()


def test_a_partition_is_composited_and_analysed(earth_project, stac):
    earth_project.add(REGION, region_document(stac.url))

    specs = {s.key.to_user_string(): s for s in build_definitions().resolve_all_asset_specs()}
    assert set(KEYS) <= set(specs)
    assert {specs[k].group_name for k in KEYS} == {REGION}
    defs = build_definitions()
    for key in KEYS:  # the source and both analyzers follow the region's months
        partitions = defs.resolve_assets_def(dg.AssetKey.from_user_string(key)).partitions_def
        assert isinstance(partitions, dg.MonthlyPartitionsDefinition)
        assert partitions.get_partition_keys()[:2] == ["2023-01-01", "2023-02-01"] and len(partitions.get_partition_keys()) == 5

    result = earth_project.materialize(KEYS, partition_key="2023-01-01")
    assert result.success, failure_text(result)

    # the composite: only January's scene (the 1 February one belongs to February), on the region grid
    source = materialization_of(result, REGION, "earth", "satellite")
    assert source.partition == "2023-01-01"
    facts = source.metadata["facts"].value
    assert facts["scenes"] == ["S2B_20230110"]
    assert facts["window"] == ["2023-01-01", "2023-01-31"]
    assert facts["cloud_fraction"] == 0 and facts["nodata_fraction"] == 0 and facts["coverage"] == 1.0
    expected = region_reflectance()
    with rasterio.open(source.metadata["composite"].value) as src:
        assert src.crs.to_string() == "EPSG:32719" and src.res == (10.0, 10.0)
        assert (src.height, src.width) == GRID.shape and (src.transform.c, src.transform.f) == (GRID.left, GRID.top)
        assert list(src.descriptions) == list(BANDS)
        for index, band in enumerate(BANDS, start=1):
            np.testing.assert_allclose(src.read(index), expected[band], rtol=1e-6)

    # vegetation: NDVI hand-computed from the served DNs, pixel for pixel
    vegetation = materialization_of(result, REGION, "analysis", "vegetation")
    meta = vegetation.metadata
    assert {"ndvi", "evi", "savi", "vegetated", "stats_path", "preview", "preview_path", "facts"} <= set(meta)
    dn = {band: values[REGION_WINDOW] for band, values in served_dn().items()}
    red, nir = dn["red"] - OFFSET, dn["nir"] - OFFSET
    hand_ndvi = (nir - red) / (nir + red)
    ndvi, transform, crs = raster(meta["ndvi"].value)
    assert crs == "EPSG:32719" and ndvi.shape == GRID.shape and transform == GRID.transform
    with rasterio.open(meta["ndvi"].value) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    np.testing.assert_allclose(ndvi, hand_ndvi, rtol=1e-5, atol=1e-6)
    hand_savi = 1.5 * (nir - red) / 10000 / ((nir + red) / 10000 + 0.5)
    np.testing.assert_allclose(raster(meta["savi"].value)[0], hand_savi, rtol=1e-5, atol=1e-6)
    n, r, b = nir / 10000, red / 10000, (dn["blue"] - OFFSET) / 10000
    hand_evi = 2.5 * (n - r) / (n + 6 * r - 7.5 * b + 1)
    np.testing.assert_allclose(raster(meta["evi"].value)[0], hand_evi, rtol=1e-4, atol=1e-5)
    vegetated = raster(meta["vegetated"].value)[0]
    np.testing.assert_array_equal(vegetated, (hand_ndvi > 0.3).astype("float32"))
    assert meta["facts"].value["vegetated_fraction"] == pytest.approx((hand_ndvi > 0.3).mean())
    stats = pd.read_parquet(meta["stats_path"].value).set_index("layer")
    assert list(stats.index) == ["ndvi", "evi", "savi", "vegetated"]
    assert stats.loc["ndvi", "mean"] == pytest.approx(hand_ndvi.mean(), rel=1e-5)
    assert stats.loc["ndvi", "valid_cells"] == hand_ndvi.size
    assert meta["preview"].value.startswith("![preview](data:image/png;base64,")
    assert Path(meta["preview_path"].value).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the statistics table went through the tiered memory store
    store_keys = {k for k in meta if k.startswith("store/")}
    assert {"store/key", "store/tier"} <= store_keys
    assert meta["dagster/row_count"].value == 4

    # urban: NDBI from SWIR and NIR, built-up where NDBI > 0 and NDVI < 0.2
    urban = materialization_of(result, REGION, "analysis", "urban").metadata
    assert {"ndbi", "built_up", "stats_path"} <= set(urban)
    swir = dn["swir16"] - OFFSET
    hand_ndbi = (swir - nir) / (swir + nir)
    np.testing.assert_allclose(raster(urban["ndbi"].value)[0], hand_ndbi, rtol=1e-5, atol=1e-6)
    built = (hand_ndbi > 0.0) & (hand_ndvi < 0.2)
    np.testing.assert_array_equal(raster(urban["built_up"].value)[0], built.astype("float32"))
    assert urban["facts"].value["built_up_fraction"] == pytest.approx(built.mean())
    assert list(pd.read_parquet(urban["stats_path"].value)["layer"]) == ["ndbi", "built_up"]
    assert any(k.startswith("store/") for k in urban)

    # every declared check ran and passed
    checks = checks_of(result)
    assert set(checks) == {
        (f"{REGION}/earth/satellite", c) for c in ("coverage", "grid", "nodata_fraction", "cloud_fraction")
    } | {(f"{REGION}/analysis/{a}", c) for a in ("vegetation", "urban") for c in ("coverage", "grid", "value_range")}
    assert all(e.passed for e in checks.values()), {k: e.metadata for k, e in checks.items() if not e.passed}


def test_cloudy_partition_fails_the_cloud_check_and_an_empty_one_fails_the_coverage_check(earth_project, stac):
    earth_project.add(REGION, region_document(stac.url))
    _, cloud_share = cloudy_scl()

    cloudy = earth_project.materialize(KEYS[:1], partition_key="2023-02-01")

    assert cloudy.success, failure_text(cloudy)  # a check fails, the materialization stands
    facts = materialization_of(cloudy, REGION, "earth", "satellite").metadata["facts"].value
    assert facts["scenes"] == ["S2A_20230201"]
    check = checks_of(cloudy)[(f"{REGION}/earth/satellite", "cloud_fraction")]
    assert check.passed is False
    assert check.metadata["cloud_fraction"].value == pytest.approx(cloud_share, abs=1e-6)
    assert check.metadata["max_cloud_fraction"].value == 0.3
    # the clouded cells hold no data, so coverage and nodata fail with it
    assert checks_of(cloudy)[(f"{REGION}/earth/satellite", "nodata_fraction")].passed is False

    # a month without a scene is an empty observation, not a failed run (daily partitions are
    # mostly such days): the composite holds no data and the checks say so
    empty = earth_project.materialize(KEYS, partition_key="2023-03-01")

    assert empty.success, failure_text(empty)
    facts = materialization_of(empty, REGION, "earth", "satellite").metadata["facts"].value
    assert facts["scenes"] == [] and facts["coverage"] == 0.0
    assert facts["no_scenes"] == "no sentinel-2-l2a scene from 2023-03-01 to 2023-03-31 over the region"
    failed = {key for key, check in checks_of(empty).items() if not check.passed}
    assert {(f"{REGION}/earth/satellite", "coverage"), (f"{REGION}/analysis/vegetation", "coverage")} <= failed
    ndvi = materialization_of(empty, REGION, "analysis", "vegetation").metadata["facts"].value
    assert ndvi["vegetated_fraction"] is None


def test_a_failed_rerun_leaves_the_last_good_outputs(earth_project, stac, httpserver):
    earth_project.add(REGION, region_document(stac.url))
    instance = dg.DagsterInstance.ephemeral()
    good = earth_project.materialize(KEYS, partition_key="2023-01-01", instance=instance)
    assert good.success, failure_text(good)
    composite_path = materialization_of(good, REGION, "earth", "satellite").metadata["composite"].value
    ndvi_path = materialization_of(good, REGION, "analysis", "vegetation").metadata["ndvi"].value
    with rasterio.open(composite_path) as src:
        before = src.read()
    ndvi_before = raster(ndvi_path)[0]

    # the STAC API now answers 500 to everything
    httpserver.clear_all_handlers()
    httpserver.expect_request(re.compile(".*")).respond_with_data("upstream exploded", status=500)

    failed = earth_project.materialize(KEYS, partition_key="2023-01-01", instance=instance)

    assert not failed.success
    message = failure_text(failed)
    assert f"region {REGION} ({REGION}.yaml), sources.satellite" in message
    assert f"The STAC API at {stac.url} could not be opened (HTTP 500: upstream exploded)" in message
    with rasterio.open(composite_path) as src:
        np.testing.assert_array_equal(src.read(), before)
    np.testing.assert_array_equal(raster(ndvi_path)[0], ndvi_before)
    # no half-written staging folder is left beside the published one
    step = Path(composite_path).parent.parent
    assert sorted(p.name for p in step.iterdir()) == ["2023-01-01"]


def test_without_cloud_mask_there_is_no_cloud_check(earth_project, httpserver):
    earth_project.add(REGION, region_document(httpserver.url_for("/stac/"), cloud_mask=False))

    source = build_definitions().resolve_assets_def(dg.AssetKey([REGION, "earth", "satellite"]))

    assert {spec.name for spec in source.check_specs} == {"coverage", "grid", "nodata_fraction"}


def test_scenes_on_an_object_store_are_read_through_the_region_connection(earth_project, stac, s3_store, monkeypatch):
    """Scene hrefs on s3:// (e.g. a requester-pays bucket) are opened with the profile connection."""
    import uuid

    root, connection, fs = s3_store
    prefix = f"{root}/scenes-{uuid.uuid4().hex[:8]}"
    item = next(i for i in stac.items if i["id"] == "S2B_20230110")
    for asset in item["assets"].values():  # the same COGs, now on S3
        local = next(path for route, path in stac.files.items() if asset["href"].endswith(route))
        fs.put_file(str(local), f"{prefix}/{local.name}")
        asset["href"] = f"{prefix}/{local.name}"
    (earth_project.root / "resources").mkdir()
    (earth_project.root / "resources" / "cloud.yaml").write_text(yaml.safe_dump({"connections": {"lake": connection}}))
    monkeypatch.setenv("MEMORIES_PROFILE", "cloud")
    earth_project.add(REGION, region_document(stac.url, connection="lake"))

    result = earth_project.materialize(KEYS[:1], partition_key="2023-01-01")

    assert result.success, failure_text(result)
    facts = materialization_of(result, REGION, "earth", "satellite").metadata["facts"].value
    assert facts["scenes"] == ["S2B_20230110"] and facts["coverage"] == 1.0
    assert not [r for r in stac.data_requests if "S2B_20230110" in r[1]]  # nothing came over HTTP


def test_the_latest_partition_with_data_is_what_integrations_read_by_default(earth_project, stac):
    from memories_dagster.engine.earth.products import published_file

    earth_project.add(REGION, region_document(stac.url))
    instance = dg.DagsterInstance.ephemeral()
    for key in ("2023-01-01", "2023-03-01"):  # January has a scene, March none
        assert earth_project.materialize(KEYS, partition_key=key, instance=instance).success
    storage = str(earth_project.root / ".memories" / "storage")
    assert "/2023-01-01/" in published_file(storage, f"{REGION}/vegetation/ndvi")
    assert "/2023-03-01/" in published_file(storage, f"{REGION}/vegetation/ndvi", "2023-03-01")  # asked for: given

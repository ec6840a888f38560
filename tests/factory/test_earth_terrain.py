"""A terrain region through Dagster, and earth data meeting business data in an integration spec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.warp import transform

from memories_dagster.definitions import build_definitions
from tests.conftest import materialization_of
from tests.engine.earth.test_terrain import make_samples

REGION = {
    "bbox": [-84.40, 36.46, -84.09, 36.72],
    "crs": "EPSG:32616",
    "resolution": 90,
    "sources": {"terrain": {"dataset": "srtm", "path": "data/dem.tif"}},
    "analyzers": {"terrain": {}},
}
SITES = pd.DataFrame({
    "site": ["ridge", "valley", "fault", "far_away", "unknown"],
    "lon": [-84.30, -84.15, -84.22, -80.0, None],
    "lat": [36.55, 36.65, 36.60, 36.6, 36.6],
})


class EarthProject:
    """A throwaway project: assets/earth, assets/integrations and a data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "assets" / "earth").mkdir(parents=True)
        (root / "assets" / "integrations").mkdir(parents=True)
        (root / "data").mkdir()

    def region(self, name: str, document: dict) -> None:
        (self.root / "assets" / "earth" / f"{name}.yaml").write_text(yaml.safe_dump(document))

    def pipeline(self, name: str, document: dict) -> None:
        (self.root / "assets" / "integrations" / f"{name}.yaml").write_text(yaml.safe_dump(document))

    def materialize(self, selection: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        defs = build_definitions()
        job = dg.define_asset_job("run", selection=selection)
        resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("run")
        return resolved.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error)


@pytest.fixture
def project(tmp_path, monkeypatch) -> EarthProject:
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    built = EarthProject(tmp_path)
    make_samples().jacksboro_dem(tmp_path / "data" / "dem.tif")
    built.region("ridges", REGION)
    return built


def path_of(materialization, name: str) -> str:
    return materialization.metadata[name].value


def checks_of(result) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_a_terrain_region_materializes_with_the_contracted_keys_metadata_and_checks(project):
    result = project.materialize("group:ridges")
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.get_all_asset_keys() if k.path[0] == "ridges"}
    assert {k.to_user_string() for k in keys} == {"ridges/earth/terrain", "ridges/analysis/terrain"}
    assert {graph.get(k).group_name for k in keys} == {"ridges"}

    source = materialization_of(result, "ridges", "earth", "terrain")
    terrain = materialization_of(result, "ridges", "analysis", "terrain")
    for name in ("slope", "aspect", "hillshade", "stats_path", "preview_path"):
        assert Path(path_of(terrain, name)).is_file(), name
    assert terrain.metadata["preview"].value.startswith("![preview](data:image/png;base64,iVBOR")
    assert terrain.metadata["store/tier"].value in ("warm", "hot") and "store/cold_bytes" in terrain.metadata
    assert checks_of(result) == {"coverage": True, "grid": True, "nodata_fraction": True, "value_range": True}

    with rasterio.open(path_of(terrain, "slope")) as slope:
        assert slope.crs.to_epsg() == 32616 and slope.res == (90.0, 90.0)
        assert slope.profile["tiled"] and slope.overviews(1)  # cloud-optimized: tiles and overviews

    # the hillshade written by the asset equals gdaldem's on the elevation the source asset wrote
    reference = Path(path_of(terrain, "hillshade")).with_name("gdal.tif")
    subprocess.run(["gdaldem", "hillshade", path_of(source, "elevation"), str(reference), "-q"], check=True)
    with rasterio.open(path_of(terrain, "hillshade")) as ours, rasterio.open(reference) as gdal:
        # the elevation reaches one cell past the region, so every region cell has its shade
        shade = ours.read(1)
        assert (shade > 0).all()
        assert np.abs(shade.astype(int) - gdal.read(1)[1:-1, 1:-1].astype(int)).max() <= 1

    stats = pd.read_parquet(path_of(terrain, "stats_path")).set_index("layer")
    with rasterio.open(path_of(source, "elevation")) as dem:
        elevation = dem.read(1, masked=True).astype("float64")[1:-1, 1:-1]
    assert stats.loc["elevation", "mean"] == pytest.approx(float(elevation.mean()), rel=1e-9)
    assert 0 <= stats.loc["slope", "min"] and stats.loc["slope", "max"] <= 90


def test_sites_get_slope_and_hillshade_sampled_at_their_points(project):
    pd.DataFrame(SITES).to_csv(project.root / "data" / "sites.csv", index=False)
    project.pipeline("sites", {
        "integration_config": {
            "data_sources": [{
                "source_name": "sites", "source_type": "csv", "connection_string": "data/sites.csv",
                "sample_rasters": {"longitude": "lon", "latitude": "lat",
                                   "layers": {"slope_deg": "ridges/terrain/slope", "shade": "ridges/terrain/hillshade"}},
            }],
        },
        "output_config": {"output_format": "csv", "output_destination": "out/sites.csv"},
    })
    defs = build_definitions()
    source_deps = defs.resolve_asset_graph().get(dg.AssetKey(["sites", "sources", "sites"])).parent_keys
    assert dg.AssetKey(["ridges", "analysis", "terrain"]) in source_deps  # lineage from the analyzer

    result = project.materialize("group:ridges")
    slope_path = path_of(materialization_of(result, "ridges", "analysis", "terrain"), "slope")
    project.materialize("group:sites")
    out = pd.read_csv(project.root / "out" / "sites.csv").set_index("site")

    # GDAL's own point sampling is the reference
    inside = SITES.dropna().iloc[:3]
    with rasterio.open(slope_path) as src:
        xs, ys = transform("EPSG:4326", src.crs, inside["lon"].tolist(), inside["lat"].tolist())
        expected = [v[0] for v in src.sample(zip(xs, ys))]
    np.testing.assert_allclose(out.loc[inside["site"], "slope_deg"], expected, rtol=1e-6)
    assert out.loc[inside["site"], "shade"].between(1, 255).all()
    assert out.loc[["far_away", "unknown"], ["slope_deg", "shade"]].isna().all().all()


def test_an_analyzer_statistics_table_is_a_source_of_an_integration(project):
    project.pipeline("terrain_stats", {
        "integration_config": {"data_sources": [
            {"source_name": "stats", "source_type": "earth", "connection_string": "ridges/terrain"}]},
        "output_config": {"output_format": "csv", "output_destination": "out/terrain_stats.csv"},
    })
    failed = project.materialize("group:terrain_stats", raise_on_error=False)
    assert not failed.success
    message = next(e.event_specific_data.error.message for e in failed.all_events if e.is_step_failure)
    assert "ridges/analysis/terrain has no data" in message and "materialize it first" in message

    project.materialize("group:ridges")
    result = project.materialize("group:terrain_stats")
    out = pd.read_csv(project.root / "out" / "terrain_stats.csv")
    assert set(out["layer"]) == {"elevation", "slope", "aspect", "hillshade"}
    read = materialization_of(result, "terrain_stats", "sources", "stats").metadata
    assert read["store/key"].value == "ridges/analysis/terrain/data" and read["location"].value == "memory store: ridges/analysis/terrain/data"
    assert read["store/warm_hits"].value == 1  # read through the tiered store, found on the warm tier


def test_a_failed_run_names_the_region_and_keeps_the_last_good_rasters(project):
    result = project.materialize("group:ridges")
    slope = path_of(materialization_of(result, "ridges", "analysis", "terrain"), "slope")
    elevation = path_of(materialization_of(result, "ridges", "earth", "terrain"), "elevation")
    before = Path(elevation).read_bytes()

    (project.root / "data" / "dem.tif").write_bytes(b"not a GeoTIFF at all")
    failed = project.materialize("group:ridges", raise_on_error=False)
    assert not failed.success
    message = next(e.event_specific_data.error.message for e in failed.all_events if e.is_step_failure)
    assert "region ridges (ridges.yaml), sources.terrain" in message and "data/dem.tif" in message
    assert Path(elevation).read_bytes() == before
    with rasterio.open(slope) as src:
        assert np.isfinite(src.read(1)).any()
    leftovers = [p for p in Path(elevation).parent.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staged folder of the failed run is gone


def test_the_demo_regions_materialize_from_the_command_line(tmp_path):
    """The README's demo command, on a copy of the shipped assets and sample data."""
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "assets", tmp_path / "assets")
    shutil.copytree(root / "sample_data", tmp_path / "sample_data")
    (tmp_path / "home").mkdir()
    dagster = Path(shutil.which("dagster") or Path(__import__("sys").executable).with_name("dagster"))
    env = {**__import__("os").environ, "MEMORIES_ASSETS_DIR": str(tmp_path / "assets"), "DAGSTER_HOME": str(tmp_path / "home")}
    command = [str(dagster), "asset", "materialize", "-m", "memories_dagster.definitions",
               "--select", "group:jacksboro_fault or group:santa_cruz_s2 or group:nino12_climate"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    earth = tmp_path / ".memories" / "storage" / "earth"
    for region, analyzer, raster in (("jacksboro_fault", "terrain", "slope.tif"), ("santa_cruz_s2", "vegetation", "ndvi.tif"),
                                     ("santa_cruz_s2", "urban", "ndbi.tif"), ("nino12_climate", "climate", "stats.parquet")):
        assert (earth / region / "analysis" / analyzer / "static" / raster).is_file()


def write_tiles(dem: Path, folder: Path) -> list[Path]:
    """The DEM cut into a west and an east half, each a COG of its own (as DEM tiles come)."""
    from rasterio.windows import Window

    tiles = []
    with rasterio.open(dem) as src:
        half = src.width // 2
        for name, window in (("west", Window(0, 0, half, src.height)), ("east", Window(half, 0, src.width - half, src.height))):
            profile = src.profile | {"driver": "COG", "width": window.width, "height": window.height,
                                     "transform": src.window_transform(window), "blocksize": 128}
            profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
            with rasterio.open(folder / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(1, window=window), 1)
            tiles.append(folder / f"{name}.tif")
    return tiles


def elevation_of(result, region: str) -> np.ndarray:
    with rasterio.open(path_of(materialization_of(result, region, "earth", "terrain"), "elevation")) as src:
        return src.read(1)


def test_a_dem_behind_http_is_read_in_ranges_and_tiles_found_by_stac_are_mosaicked(project, httpserver):
    from tests.connectors.test_stac import StacApi, stac_item

    api = StacApi(httpserver)
    quarter = {**REGION, "bbox": [-84.40, 36.46, -84.25, 36.58],
               "sources": {"terrain": {"path": "data/dem.tif", "resampling": "nearest"}}}
    project.region("ridges", quarter)
    local = elevation_of(project.materialize("group:ridges"), "ridges")

    url = api.add_file(project.root / "data" / "dem.tif")
    project.region("ridges", {**quarter, "sources": {"terrain": {"path": url, "resampling": "nearest"}}})
    over_http = elevation_of(project.materialize("group:ridges"), "ridges")
    np.testing.assert_array_equal(over_http, local)
    reads = [(rng, size) for method, route, rng, size in api.data_requests if method == "GET" and route.endswith("dem.tif")]
    assert reads and all(rng and rng.startswith("bytes=") for rng, _ in reads)  # only ranged reads
    assert sum(size for _, size in reads) < 0.6 * (project.root / "data" / "dem.tif").stat().st_size

    for tile in write_tiles(project.root / "data" / "dem.tif", project.root / "data"):
        with rasterio.open(tile) as src:
            from rasterio.warp import transform_bounds

            bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        api.items.append(stac_item(f"cop-{tile.stem}", "cop-dem-glo-90", "2021-04-22T00:00:00Z", None,
                                   {"data": {"href": api.add_file(tile), "type": "image/tiff; application=geotiff",
                                             "roles": ["data"]}}, bbox=bbox))
    stac = {"stac": {"api": api.url, "collection": "cop-dem-glo-90"}, "resampling": "nearest", "dataset": "copernicus"}
    project.region("ridges", {**quarter, "sources": {"terrain": stac}})
    result = project.materialize("group:ridges")
    np.testing.assert_array_equal(elevation_of(result, "ridges"), local)
    assert materialization_of(result, "ridges", "earth", "terrain").metadata["facts"].value["tiles"] == 2


def test_a_dem_on_s3_is_read_through_the_profile_connection(project, s3_store, monkeypatch):
    import uuid

    root, connection, fs = s3_store
    key = f"{root}/dem-{uuid.uuid4().hex[:8]}.tif"
    fs.put_file(str(project.root / "data" / "dem.tif"), key)
    (project.root / "resources").mkdir()
    (project.root / "resources" / "cloud.yaml").write_text(yaml.safe_dump({"connections": {"lake": connection}}))
    local = elevation_of(project.materialize("group:ridges"), "ridges")
    monkeypatch.setenv("MEMORIES_PROFILE", "cloud")
    project.region("ridges", {**REGION, "sources": {"terrain": {"path": key, "connection": "lake"}}})
    np.testing.assert_array_equal(elevation_of(project.materialize("group:ridges"), "ridges"), local)

    project.region("ridges", {**REGION, "sources": {"terrain": {"path": key, "connection": "nowhere"}}})
    broken = build_definitions()
    assert "names connection 'nowhere'" in broken.resolve_asset_graph().get(dg.AssetKey(["ridges", "earth", "terrain"])).description


def test_when_the_memory_store_fails_the_last_good_rasters_stay(project, monkeypatch):
    from tests.conftest import free_port

    first = project.materialize("group:ridges")
    hillshade = Path(path_of(materialization_of(first, "ridges", "analysis", "terrain"), "hillshade"))
    before = hillshade.read_bytes()
    (project.root / "resources").mkdir()
    (project.root / "resources" / "down.yaml").write_text(yaml.safe_dump(
        {"store": {"hot": {"url": f"redis://:pw-down-123@127.0.0.1:{free_port()}/0", "size": "1MB"}}}))
    monkeypatch.setenv("MEMORIES_PROFILE", "down")
    project.region("ridges", {**REGION, "analyzers": {"terrain": {"azimuth": 90}}})  # other grey levels
    failed = project.materialize("group:ridges", raise_on_error=False)
    assert not failed.success
    errors = "".join(e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure)
    assert "cannot reach Redis" in errors and "pw-down-123" not in errors
    assert hillshade.read_bytes() == before
    assert [p.name for p in hillshade.parent.parent.iterdir()] == ["static"]  # nothing staged left behind


def test_sampling_takes_lon_0_to_360_and_a_partition_only_where_there_are_partitions(project):
    from memories_dagster.engine.earth.grid import RasterSampler
    from memories_dagster.engine.earth.products import published_file

    result = project.materialize("group:ridges")
    slope = path_of(materialization_of(result, "ridges", "analysis", "terrain"), "slope")
    sampler = RasterSampler(slope)
    np.testing.assert_array_equal(sampler.at(np.array([-84.3, 275.7]), np.array([36.55, 36.55])),
                                  sampler.at(np.array([-84.3, -84.3]), np.array([36.55, 36.55])))
    # a partition asked of an analyzer without partitions reads its one (static) product
    storage = str(project.root / ".memories" / "storage")
    assert published_file(storage, "ridges/terrain/slope", "2024-05-01") == slope


def test_a_dem_left_on_another_grid_is_refused_and_outputs_are_readable_by_others(project):
    import os
    import stat

    project.region("ridges", {**REGION, "resolution": 60})
    project.materialize("group:ridges")  # elevation.tif at 60 m
    project.region("ridges", REGION)  # the region now says 90 m; only the analyzer runs
    failed = project.materialize("ridges/analysis/terrain", raise_on_error=False)
    assert not failed.success
    errors = "".join(e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure)
    assert "is not the region's (EPSG:32616, 90)" in errors and "materialize the region's terrain source again" in errors

    result = project.materialize("group:ridges")
    slope = Path(path_of(materialization_of(result, "ridges", "analysis", "terrain"), "slope"))
    umask = os.umask(0)
    os.umask(umask)
    for path in (slope, slope.parent):  # as any other file the project writes: the umask decides
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP or umask & stat.S_IRGRP, oct(mode)

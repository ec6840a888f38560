"""Climate regions end to end through Dagster: an ERA5-like NetCDF, a GRIB2 file written with
eccodes, an Open-Meteo-style JSON API on pytest-httpserver, and broken inputs.

The gridded values are statsmodels' El Nino sea-surface temperatures (1950-2010, monthly, °C)
put in kelvin, shifted and tilted per cell, so the expected numbers come from pandas and scipy
on a real series rather than from the code under test.
"""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import rasterio
import statsmodels.api as sm
import xarray as xr
from scipy import stats

from memories_dagster.definitions import build_definitions
from tests.conftest import materialization_of
from tests.factory.test_earth_satellite import EarthProject, failure_text, project_in

LATS = np.array([-5.0, -5.25, -5.5])  # north to south, as ERA5 stores them
LONS = np.array([270.0, 270.25, 270.5, 270.75])  # 0-360, as ERA5 stores them: -90 .. -89.25
# the region's box holds the cells at -5.0 and -5.25 N, -89.75 and -89.5 E: 2 x 2 of the 3 x 4
BBOX = [-89.9, -5.4, -89.4, -4.9]
SHIFT = np.array([[0.0, 0.5, 1.0, 1.5], [-0.5, 0.25, 0.75, 2.0], [-1.0, -0.75, 0.3, 0.9]])  # °C
TILT = np.array([[0.0, 0.01, 0.02, 0.0], [0.0, 0.03, -0.02, 0.0], [0.05, 0.0, 0.0, 0.01]])  # °C per year
BASE = (1961, 1990)


@pytest.fixture
def earth_project(tmp_path, monkeypatch) -> EarthProject:
    return project_in(tmp_path, monkeypatch)


def elnino_monthly() -> pd.Series:
    """statsmodels' El Nino SST (°C), one value per month from January 1950 to December 2010."""
    frame = sm.datasets.elnino.load_pandas().data
    values = frame.drop(columns="YEAR").to_numpy().ravel()
    times = pd.date_range(f"{int(frame.YEAR.iloc[0])}-01-01", periods=values.size, freq="MS")
    return pd.Series(values, index=times)


def era5_like(path, years: int | None = None) -> xr.Dataset:
    """A NetCDF shaped like a CDS ERA5 download: t2m in K on (valid_time, latitude, longitude)."""
    series = elnino_monthly()
    if years:
        series = series.iloc[: 12 * years]
    elapsed = np.arange(series.size) / 12.0
    kelvin = (series.to_numpy()[:, None, None] + 273.15 + SHIFT[None] + TILT[None] * elapsed[:, None, None])
    data = xr.Dataset(
        {"t2m": (("valid_time", "latitude", "longitude"), kelvin, {"units": "K", "long_name": "2 metre temperature"})},
        coords={"valid_time": series.index.values, "latitude": LATS, "longitude": LONS},
    )
    data.to_netcdf(path, engine="netcdf4")
    return data


def decimal_years(times: pd.DatetimeIndex) -> np.ndarray:
    length = np.where(times.is_leap_year, 366.0, 365.0)
    return times.year + (times.dayofyear - 1) / length


def anomalies(series: pd.Series, base: tuple[int, int]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Climatological mean and std (ddof=1) per calendar month over ``base``, and the anomalies."""
    in_base = series[(series.index.year >= base[0]) & (series.index.year <= base[1])]
    mean = in_base.groupby(in_base.index.month).mean()
    std = in_base.groupby(in_base.index.month).std()
    return mean, std, series - mean.reindex(series.index.month).to_numpy()


def climate_region(path: str, **extra) -> dict:
    return {
        "bbox": BBOX, "crs": "EPSG:4326", "resolution": 0.25,
        "sources": {"climate": {"dataset": "era5", "path": path, "variable": "t2m"}},
        "analyzers": {"climate": {"base_period": list(BASE)}},
        "checks": {"min_coverage": 0.9},
        **extra,
    }


CLIMATE_KEYS = ["{}/earth/climate", "{}/analysis/climate"]


def keys(region: str) -> list[str]:
    return [k.format(region) for k in CLIMATE_KEYS]


def test_era5_netcdf_is_cut_converted_and_analysed(earth_project: EarthProject):
    (earth_project.root / "data").mkdir()
    written = era5_like(earth_project.root / "data" / "era5_t2m.nc")
    earth_project.add("nino", climate_region("data/era5_t2m.nc"))  # relative to the project folder

    result = earth_project.materialize(keys("nino"))
    assert result.success, failure_text(result)

    # the source: the 2 x 2 cells inside the box, in °C, rows north to south
    source = materialization_of(result, "nino", "earth", "climate").metadata
    facts = source["facts"].value
    assert facts["cells"] == 4 and facts["time_steps"] == 732
    assert (facts["start"], facts["end"]) == ("1950-01-01", "2010-12-01")
    inside = written["t2m"].isel(latitude=[0, 1], longitude=[1, 2]) - 273.15
    with xr.open_dataset(source["climate"].value) as cut:
        assert cut["t2m"].dims == ("time", "y", "x")
        np.testing.assert_allclose(cut["y"], [-5.0, -5.25])
        np.testing.assert_allclose(cut["x"], [-89.75, -89.5])
        assert cut["t2m"].attrs["units"] == "degC"
        np.testing.assert_allclose(cut["t2m"].values, inside.values, atol=1e-9)

    # the statistics table: the area-mean monthly series, its climatology and anomalies
    analysis = materialization_of(result, "nino", "analysis", "climate").metadata
    table = pd.read_parquet(analysis["stats_path"].value)
    area = np.cos(np.radians(inside["latitude"]))  # cells weighed by their area
    expected = pd.Series(inside.weighted(area).mean(("latitude", "longitude")).values,
                         index=pd.DatetimeIndex(written["valid_time"].values))
    assert len(table) == 732
    np.testing.assert_allclose(table["value"], expected.to_numpy(), atol=1e-9)
    clim_mean, clim_std, anomaly = anomalies(expected, BASE)
    np.testing.assert_allclose(table["climatology_mean"], clim_mean.reindex(table["month"]).to_numpy(), atol=1e-9)
    np.testing.assert_allclose(table["climatology_std"], clim_std.reindex(table["month"]).to_numpy(), atol=1e-9)
    np.testing.assert_allclose(table["anomaly"], anomaly.to_numpy(), atol=1e-9)
    assert table["in_base_period"].sum() == 30 * 12

    # the trend of the anomalies, against scipy
    trend = analysis["facts"].value["trend"]
    x = decimal_years(expected.index)
    sen = stats.theilslopes(anomaly.to_numpy(), x)
    ols = stats.linregress(x, anomaly.to_numpy())
    assert trend["sen_slope_per_year"] == pytest.approx(sen.slope, rel=1e-9)
    assert trend["ols_slope_per_year"] == pytest.approx(ols.slope, rel=1e-9)
    assert trend["ols_pvalue"] == pytest.approx(ols.pvalue, rel=1e-6)
    assert analysis["facts"].value["base_period"] == list(BASE)
    assert analysis["facts"].value["units"] == "degC"

    # per-cell trend rasters: COGs on the cells' lon/lat grid, north-west cell first
    for name in ("ols_slope", "sen_slope", "mk_pvalue"):
        with rasterio.open(analysis[name].value) as src:
            assert src.crs.to_string() == "EPSG:4326" and (src.height, src.width) == (2, 2)
            assert (src.transform.c, src.transform.f, src.res) == (-89.875, -4.875, (0.25, 0.25))
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            values = src.read(1)
        if name == "sen_slope":
            for row, lat in enumerate([0, 1]):
                for col, lon in enumerate([1, 2]):
                    cell = pd.Series(written["t2m"].values[:, lat, lon] - 273.15, index=expected.index)
                    slope = stats.theilslopes(anomalies(cell, BASE)[2].to_numpy(), x).slope
                    assert values[row, col] == pytest.approx(slope, rel=1e-5)  # float32 raster
            # the tilt put in per cell comes back out
            np.testing.assert_allclose(values - values[0, 0], TILT[:2, 1:3] - TILT[0, 1], atol=2e-3)
        if name == "mk_pvalue":
            assert ((values >= 0) & (values <= 1)).all()

    assert any(k.startswith("store/") for k in analysis)
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {("nino/earth/climate", "coverage"): True, ("nino/analysis/climate", "coverage"): True}


def write_grib(path, months: int = 12) -> np.ndarray:
    """A GRIB2 file of 2 m temperature (K) on a 3 x 4 grid at 0.25°, one message per month of 2020,
    values IEEE-packed so they read back exactly."""
    import eccodes

    rng = np.random.default_rng(7)
    written = np.empty((months, 3, 4), dtype="float32")
    with open(path, "wb") as handle:
        for index in range(months):
            message = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            for key, value in [("Ni", 4), ("Nj", 3), ("latitudeOfFirstGridPointInDegrees", 50.0),
                               ("longitudeOfFirstGridPointInDegrees", 10.0), ("latitudeOfLastGridPointInDegrees", 49.5),
                               ("longitudeOfLastGridPointInDegrees", 10.75), ("iDirectionIncrementInDegrees", 0.25),
                               ("jDirectionIncrementInDegrees", 0.25), ("dataDate", 20200101 + index * 100),
                               ("dataTime", 0), ("shortName", "2t"), ("packingType", "grid_ieee")]:
                eccodes.codes_set(message, key, value)
            # a seasonal cycle and a north-south gradient, with some noise
            field = 278 + 8 * np.sin(2 * np.pi * (index - 3) / 12) - np.arange(3)[:, None] * 0.7 + rng.normal(0, 0.3, (3, 4))
            written[index] = field.astype("float32")
            eccodes.codes_set_values(message, written[index].ravel().astype(float))  # row by row, north first
            eccodes.codes_write(message, handle)
            eccodes.codes_release(message)
    return written


def test_grib2_file_is_read_through_cfgrib(earth_project: EarthProject):
    written = write_grib(earth_project.root / "t2m.grib2")
    earth_project.add("alps", {
        "bbox": [9.9, 49.4, 10.8, 50.1], "crs": "EPSG:4326", "resolution": 0.25,
        "sources": {"climate": {"dataset": "era5", "path": "t2m.grib2", "variable": "t2m"}},
        "analyzers": {"climate": {}},
    })

    result = earth_project.materialize(keys("alps"))
    assert result.success, failure_text(result)

    source = materialization_of(result, "alps", "earth", "climate").metadata
    assert source["facts"].value["cells"] == 12 and source["facts"].value["time_steps"] == 12
    with xr.open_dataset(source["climate"].value) as cut:
        np.testing.assert_allclose(cut["y"], [50.0, 49.75, 49.5])
        np.testing.assert_allclose(cut["x"], [10.0, 10.25, 10.5, 10.75])
        np.testing.assert_array_equal(cut["time"].values, pd.date_range("2020-01-01", periods=12, freq="MS").values)
        np.testing.assert_allclose(cut["t2m"].values, written.astype("float64") - 273.15, atol=1e-4)
    table = pd.read_parquet(materialization_of(result, "alps", "analysis", "climate").metadata["stats_path"].value)
    area = np.cos(np.radians([50.0, 49.75, 49.5]))[None, :, None] * np.ones((1, 3, 4))  # cells weighed by their area
    weighted = (written.astype("float64") * area).sum(axis=(1, 2)) / area.sum(axis=(1, 2))
    np.testing.assert_allclose(table["value"], weighted - 273.15, atol=1e-4)
    with rasterio.open(materialization_of(result, "alps", "analysis", "climate").metadata["sen_slope"].value) as src:
        assert (src.height, src.width) == (3, 4) and (src.transform.c, src.transform.f) == (9.875, 50.125)


# ---------------------------------------------------------------------------------------------- Open-Meteo

DAYS = pd.date_range("2021-01-01", "2023-12-31", freq="D")


def open_meteo_days() -> dict[str, np.ndarray]:
    """Three years of daily temperatures (°C): a seasonal cosine (coldest mid-January, amplitude
    11 °C around 9 °C) warming 0.8 °C a year, with a deterministic day-to-day wobble, rounded to
    0.1 °C as Open-Meteo reports them."""
    day = np.arange(DAYS.size)
    mean = 9 - 11 * np.cos(2 * np.pi * (DAYS.dayofyear.to_numpy() - 15) / 365.25) + 0.8 * (DAYS.year.to_numpy() - 2021)
    return {
        "temperature_2m_mean": np.round(mean, 1),
        "temperature_2m_max": np.round(mean + 6 + 1.5 * np.cos(1.3 * day), 1),
        "temperature_2m_min": np.round(mean - 6 - 1.5 * np.sin(0.9 * day), 1),
    }


def open_meteo_body() -> dict:
    values = open_meteo_days()
    return {
        "latitude": 52.52, "longitude": 13.42, "timezone": "GMT", "elevation": 38.0,
        "daily_units": {"time": "iso8601", **{name: "°C" for name in values}},
        "daily": {"time": [d.strftime("%Y-%m-%d") for d in DAYS], **{k: v.tolist() for k, v in values.items()}},
    }


def open_meteo_region(url: str) -> dict:
    return {
        "bbox": [13.3, 52.4, 13.5, 52.6], "crs": "EPSG:4326", "resolution": 0.25,
        "sources": {"climate": {
            "dataset": "open-meteo", "url": url,
            "api": {"params": {"latitude": 52.52, "longitude": 13.41, "start_date": "2021-01-01", "end_date": "2023-12-31",
                               "daily": "temperature_2m_max,temperature_2m_min,temperature_2m_mean", "timezone": "GMT",
                               "apikey": "${OPEN_METEO_TEST_KEY}"},
                    "records_path": "daily", "attempts": 1},
            "variable": "temperature_2m_mean", "daily_max": "temperature_2m_max", "daily_min": "temperature_2m_min",
        }},
        "analyzers": {"climate": {"hot_above": 24, "cold_below": -1}},
    }


def test_open_meteo_daily_series_gives_hot_and_cold_day_counts(earth_project: EarthProject, httpserver, monkeypatch):
    monkeypatch.setenv("OPEN_METEO_TEST_KEY", "om-secret-4711")
    httpserver.expect_request("/v1/archive").respond_with_json(open_meteo_body())
    earth_project.add("berlin", open_meteo_region(httpserver.url_for("/v1/archive")))

    result = earth_project.materialize(keys("berlin"))
    assert result.success, failure_text(result)

    # the request carried every declared parameter, the key resolved from the environment
    (request, _), = httpserver.log
    assert dict(request.args) == {"latitude": "52.52", "longitude": "13.41", "start_date": "2021-01-01",
                                  "end_date": "2023-12-31", "daily": "temperature_2m_max,temperature_2m_min,temperature_2m_mean",
                                  "timezone": "GMT", "apikey": "om-secret-4711"}

    values = open_meteo_days()
    years = DAYS.year.to_numpy()
    hot = {str(y): int((values["temperature_2m_max"][years == y] > 24).sum()) for y in (2021, 2022, 2023)}
    cold = {str(y): int((values["temperature_2m_min"][years == y] < -1).sum()) for y in (2021, 2022, 2023)}
    assert min(hot.values()) > 0 and min(cold.values()) > 0 and hot["2023"] > hot["2021"]  # a meaningful count
    analysis = materialization_of(result, "berlin", "analysis", "climate").metadata
    facts = analysis["facts"].value
    assert facts["day_counts"] == {"hot_days": hot, "cold_days": cold}
    assert facts["units"] == "°C"

    source = materialization_of(result, "berlin", "earth", "climate").metadata["facts"].value
    assert source["time_steps"] == DAYS.size and source["cells"] == 1
    table = pd.read_parquet(analysis["stats_path"].value)
    monthly = pd.Series(values["temperature_2m_mean"], index=DAYS).resample("MS").mean()
    np.testing.assert_allclose(table["value"], monthly.to_numpy(), atol=1e-9)
    assert table["n_obs"].tolist() == pd.Series(1, index=DAYS).resample("MS").sum().tolist()
    assert facts["trend"]["n"] == 36 and facts["trend"]["start"] == "2021-01-01"
    assert not {"ols_slope", "sen_slope", "mk_pvalue"} & set(analysis)  # a point: no rasters
    assert "om-secret-4711" not in json.dumps({k: str(v.value) for k, v in analysis.items()})


def test_open_meteo_404_names_region_and_url_but_not_the_key(earth_project: EarthProject, httpserver, monkeypatch):
    monkeypatch.setenv("OPEN_METEO_TEST_KEY", "om-secret-4711")
    httpserver.expect_request("/v1/forecast-gone").respond_with_data("Not Found", status=404)
    url = httpserver.url_for("/v1/forecast-gone")
    earth_project.add("berlin", open_meteo_region(url))

    result = earth_project.materialize(keys("berlin"))

    assert not result.success
    message = failure_text(result)
    assert "region berlin (berlin.yaml), sources.climate" in message
    assert "HTTP 404" in message and url in message
    assert "om-secret-4711" not in message
    assert len(httpserver.log) == 1  # a 404 is not retried


# ---------------------------------------------------------------------------------------------- broken inputs


def failure_description(result) -> str:
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.user_failure_data.description


def test_broken_inputs_fail_clearly_and_keep_the_last_good_outputs(earth_project: EarthProject):
    data = earth_project.root / "data"
    data.mkdir()
    era5_like(data / "t2m.nc", years=4)
    earth_project.add("coast", climate_region("data/t2m.nc", analyzers={"climate": {}}))
    instance = dg.DagsterInstance.ephemeral()
    good = earth_project.materialize(keys("coast"), instance=instance)
    assert good.success, failure_text(good)
    cut_path = materialization_of(good, "coast", "earth", "climate").metadata["climate"].value
    stats_path = materialization_of(good, "coast", "analysis", "climate").metadata["stats_path"].value
    with xr.open_dataset(cut_path) as cut:
        before = cut["t2m"].values.copy()
    table_before = pd.read_parquet(stats_path)
    where = "region coast (coast.yaml), sources.climate"
    target = str(data / "t2m.nc")

    (data / "t2m.nc").rename(data / "t2m.moved")
    missing = earth_project.materialize(keys("coast"), instance=instance)
    (data / "t2m.moved").rename(data / "t2m.nc")

    earth_project.add("coast", climate_region("data/t2m.nc", analyzers={"climate": {}},
                                              sources={"climate": {"dataset": "era5", "path": "data/t2m.nc", "variable": "tp"}}))
    no_variable = earth_project.materialize(keys("coast"), instance=instance)

    (data / "t2m.nc").write_bytes(np.random.default_rng(3).bytes(8192))
    earth_project.add("coast", climate_region("data/t2m.nc", analyzers={"climate": {}}))
    corrupt = earth_project.materialize(keys("coast"), instance=instance)

    (data / "t2m.grib2").write_bytes(np.random.default_rng(4).bytes(8192))
    earth_project.add("coast", climate_region("data/t2m.grib2", analyzers={"climate": {}}))
    corrupt_grib = earth_project.materialize(keys("coast"), instance=instance)

    messages = {}
    for name, result in [("missing", missing), ("no_variable", no_variable), ("corrupt", corrupt), ("corrupt_grib", corrupt_grib)]:
        assert not result.success, name
        message = messages[name] = failure_description(result)
        assert message.startswith(where + ": "), message
        assert "\n" not in message and "Traceback" not in message, message  # one paragraph
    assert messages["missing"] == f"{where}: cannot read '{target}' as NetCDF: [Errno 2] No such file or directory: '{target}'"
    assert messages["no_variable"] == f"{where}: '{target}' has no variable tp (it has: t2m)"
    assert messages["corrupt"] == f"{where}: cannot read '{target}' as NetCDF: it is not a NetCDF file (neither NetCDF-4/HDF5 nor NetCDF-3 classic)"
    grib = str(data / "t2m.grib2")
    assert messages["corrupt_grib"].startswith(f"{where}: cannot read '{grib}' as GRIB: ") and grib in messages["corrupt_grib"]

    # what the last good run published is still there and unchanged
    with xr.open_dataset(cut_path) as cut:
        np.testing.assert_array_equal(cut["t2m"].values, before)
    pd.testing.assert_frame_equal(pd.read_parquet(stats_path), table_before)


def test_day_counts_on_monthly_data_fail_the_analyzer_not_the_source(earth_project: EarthProject):
    era5_like(earth_project.root / "t2m.nc", years=3)
    earth_project.add("coast", climate_region("t2m.nc", analyzers={"climate": {"hot_above": 25}}))

    result = earth_project.materialize(keys("coast"))

    assert not result.success
    materialization_of(result, "coast", "earth", "climate")  # the source itself is fine
    message = failure_description(result)
    assert message.startswith("region coast (coast.yaml), analyzers.climate: hot/cold day counts need daily values; "
                              "'t2m' has a time step of ")


def test_monthly_files_are_partitions_and_the_analyzer_reads_them_all(earth_project):
    """One ERA5 file per month, as CDS downloads come: the source is partitioned by the region's
    months, and the climate analyzer (not partitioned) works on every partition published."""
    whole = era5_like(earth_project.root / "all.nc", years=1)
    for month in range(1, 7):
        part = whole.isel(valid_time=[month - 1])
        part.to_netcdf(earth_project.root / f"era5_1950-{month:02d}.nc", engine="netcdf4")
    region = climate_region(str(earth_project.root / "era5_{partition_start:%Y-%m}.nc"))
    region["partitions"] = {"type": "monthly", "start": "1950-01-01", "end": "1950-07-01"}
    region["analyzers"]["climate"]["base_period"] = [1950, 1950]
    earth_project.add("nino", region)
    defs = build_definitions()
    source = defs.resolve_assets_def(dg.AssetKey(["nino", "earth", "climate"]))
    analyzer = defs.resolve_assets_def(dg.AssetKey(["nino", "analysis", "climate"]))
    assert source.partitions_def is not None and analyzer.partitions_def is None

    instance = dg.DagsterInstance.ephemeral()
    for key in ("1950-01-01", "1950-02-01", "1950-03-01"):
        assert earth_project.materialize(["nino/earth/climate"], partition_key=key, instance=instance).success
    result = earth_project.materialize(["nino/analysis/climate"], instance=instance)
    assert result.success, failure_text(result)
    table = pd.read_parquet(materialization_of(result, "nino", "analysis", "climate").metadata["stats_path"].value)
    cut = whole["t2m"].isel(valid_time=slice(0, 3), latitude=[0, 1], longitude=[1, 2])
    expected = cut.weighted(np.cos(np.radians(cut["latitude"]))).mean(["latitude", "longitude"]) - 273.15
    np.testing.assert_allclose(table["value"], expected.values, rtol=1e-9)
    assert list(pd.DatetimeIndex(table["time"]).month) == [1, 2, 3]

    (earth_project.root / "era5_1950-05.nc").unlink()  # a month without its file names the file
    failed = earth_project.materialize(["nino/earth/climate"], partition_key="1950-05-01", instance=instance)
    assert not failed.success and "era5_1950-05.nc" in failure_text(failed)


def test_placeholders_in_a_climate_source_need_partitions(earth_project):
    from memories_dagster.specs.loading import SpecError, load_region

    path = earth_project.add("nino", climate_region("era5_{partition_start:%Y-%m}.nc"))
    with pytest.raises(SpecError, match="sources: the climate source uses {partition_...} placeholders"):
        load_region(path)


def test_a_region_outside_the_data_or_a_curvilinear_grid_is_refused(earth_project):
    era5_like(earth_project.root / "t2m.nc", years=1)
    earth_project.add("far", climate_region("t2m.nc") | {"bbox": [100.0, 45.0, 101.0, 46.0]})
    result = earth_project.materialize(["far/earth/climate"])
    assert not result.success
    assert "the data cover lon -90 to -89.25, lat -5.5 to -5; the region's bbox [100, 45, 101, 46] lies outside" in failure_text(result)

    grid = xr.Dataset({"t2m": (("time", "south_north", "west_east"), np.full((2, 2, 2), 280.0), {"units": "K"})},
                      coords={"time": pd.date_range("2020-01-01", periods=2, freq="MS"),
                              "lat": (("south_north", "west_east"), [[-5.0, -5.0], [-5.25, -5.25]]),
                              "lon": (("south_north", "west_east"), [[-89.75, -89.5], [-89.75, -89.5]])})
    grid.to_netcdf(earth_project.root / "wrf.nc", engine="netcdf4")
    earth_project.add("far", climate_region("wrf.nc"))
    result = earth_project.materialize(["far/earth/climate"])
    assert not result.success and "needs a regular latitude/longitude grid" in failure_text(result)


def test_hourly_values_count_hot_days_not_hours_and_gfs_steps_become_time(earth_project):
    """A GFS-style GRIB (no suffix, forecast steps of one run every 6 hours over 3 days) read as
    dataset gfs: its valid times become the time axis, and a hot day counts once."""
    import eccodes

    steps = range(0, 72, 6)
    with open(earth_project.root / "gfs.t00z.pgrb2.0p25", "wb") as handle:
        for step in steps:
            message = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            for key, value in [("Ni", 2), ("Nj", 2), ("latitudeOfFirstGridPointInDegrees", -5.0),
                               ("longitudeOfFirstGridPointInDegrees", 270.25), ("latitudeOfLastGridPointInDegrees", -5.25),
                               ("longitudeOfLastGridPointInDegrees", 270.5), ("iDirectionIncrementInDegrees", 0.25),
                               ("jDirectionIncrementInDegrees", 0.25), ("dataDate", 20240101), ("dataTime", 0),
                               ("stepUnits", 1), ("forecastTime", step), ("shortName", "2t"), ("packingType", "grid_ieee")]:
                eccodes.codes_set(message, key, value)
            # the first day is hot from 06 to 18 UTC (4 values above 30 °C), the others are not
            hot = step in (6, 12, 18)
            eccodes.codes_set_values(message, np.full(4, 273.15 + (33.0 if hot else 20.0)))
            eccodes.codes_write(message, handle)
            eccodes.codes_release(message)
    earth_project.add("gfs", {
        "bbox": [-89.8, -5.3, -89.4, -4.9], "crs": "EPSG:4326", "resolution": 0.25,
        "sources": {"climate": {"dataset": "gfs", "path": "gfs.t00z.pgrb2.0p25", "variable": "t2m"}},
        "analyzers": {"climate": {"hot_above": 30, "cold_below": 25}},
    })
    result = earth_project.materialize(["gfs/earth/climate", "gfs/analysis/climate"])
    assert result.success, failure_text(result)
    with xr.open_dataset(materialization_of(result, "gfs", "earth", "climate").metadata["climate"].value) as cut:
        np.testing.assert_array_equal(cut["time"].values, pd.date_range("2024-01-01", periods=12, freq="6h").values)
    counts = materialization_of(result, "gfs", "analysis", "climate").metadata["facts"].value["day_counts"]
    assert counts == {"hot_days": {"2024": 1}, "cold_days": {"2024": 3}}  # 3 hot hours make 1 hot day; every day has a cold hour


def test_point_files_one_step_gfs_and_the_edge_of_the_data(earth_project, tmp_path):
    """A cell saved with .sel (scalar lat/lon) is a point; a GFS file of one forecast hour has a
    time axis of one; a box more than half a cell beyond the data is outside it."""
    whole = era5_like(tmp_path / "grid.nc", years=1)
    whole.isel(latitude=0, longitude=1).to_netcdf(earth_project.root / "point.nc", engine="netcdf4")
    earth_project.add("point", climate_region("point.nc"))
    result = earth_project.materialize(["point/earth/climate"])
    assert result.success, failure_text(result)
    assert materialization_of(result, "point", "earth", "climate").metadata["facts"].value["cells"] == 1

    import eccodes

    with open(earth_project.root / "gfs.t00z.pgrb2.0p25.f006", "wb") as handle:
        message = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
        for key, value in [("Ni", 2), ("Nj", 2), ("latitudeOfFirstGridPointInDegrees", -5.0),
                           ("longitudeOfFirstGridPointInDegrees", 270.25), ("latitudeOfLastGridPointInDegrees", -5.25),
                           ("longitudeOfLastGridPointInDegrees", 270.5), ("iDirectionIncrementInDegrees", 0.25),
                           ("jDirectionIncrementInDegrees", 0.25), ("dataDate", 20240101), ("dataTime", 0),
                           ("stepUnits", 1), ("forecastTime", 6), ("shortName", "2t"), ("packingType", "grid_ieee")]:
            eccodes.codes_set(message, key, value)
        eccodes.codes_set_values(message, np.full(4, 290.0))
        eccodes.codes_write(message, handle)
        eccodes.codes_release(message)
    earth_project.add("point", {**climate_region("gfs.t00z.pgrb2.0p25.f006"),
                                "sources": {"climate": {"dataset": "gfs", "path": "gfs.t00z.pgrb2.0p25.f006", "variable": "t2m"}}})
    result = earth_project.materialize(["point/earth/climate"])
    assert result.success, failure_text(result)
    assert materialization_of(result, "point", "earth", "climate").metadata["facts"].value["start"] == "2024-01-01"

    era5_like(earth_project.root / "t2m.nc", years=1)  # cells centred -90 .. -89.25 E, -5.5 .. -5 N
    earth_project.add("point", climate_region("t2m.nc") | {"bbox": [-89.2, -5.2, -88.9, -5.1]})  # 0.05-0.35° east of the last centre
    result = earth_project.materialize(["point/earth/climate"])
    assert not result.success and "lies outside" in failure_text(result)


def test_a_static_climate_file_left_from_before_partitions_is_not_joined_in(earth_project):
    whole = era5_like(earth_project.root / "all.nc", years=1)
    region = climate_region("all.nc")
    region["analyzers"]["climate"]["base_period"] = [1950, 1950]
    earth_project.add("nino", region)
    instance = dg.DagsterInstance.ephemeral()
    assert earth_project.materialize(["nino/earth/climate"], instance=instance).success  # a static product
    for month in (1, 2):
        whole.isel(valid_time=[month - 1]).to_netcdf(earth_project.root / f"era5_1950-{month:02d}.nc", engine="netcdf4")
    region = climate_region("era5_{partition_start:%Y-%m}.nc")
    region.update(partitions={"type": "monthly", "start": "1950-01-01", "end": "1950-03-01"})
    region["analyzers"]["climate"]["base_period"] = [1950, 1950]
    earth_project.add("nino", region)
    for key in ("1950-01-01", "1950-02-01"):
        assert earth_project.materialize(["nino/earth/climate"], partition_key=key, instance=instance).success
    result = earth_project.materialize(["nino/analysis/climate"], instance=instance)
    table = pd.read_parquet(materialization_of(result, "nino", "analysis", "climate").metadata["stats_path"].value)
    assert len(table) == 2  # the two partitions, not the twelve months of the old static file

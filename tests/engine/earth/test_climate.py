"""Climate statistics on real series: statsmodels' Mauna Loa CO2 (weekly, with gaps) and El Nino
sea-surface temperatures (monthly), checked against numpy, pandas and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import xarray as xr
from scipy import stats

from memories_dagster.engine.earth import climate


def co2_monthly() -> xr.DataArray:
    """Mauna Loa CO2 (ppm) 1958-2001, weekly with missing weeks, as monthly means."""
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    series = xr.DataArray(weekly.to_numpy(), dims="time", coords={"time": weekly.index.values}, attrs={"units": "ppm"})
    return climate.monthly_means(series)


def elnino_monthly() -> xr.DataArray:
    frame = sm.datasets.elnino.load_pandas().data
    values = frame.drop(columns="YEAR").to_numpy().ravel()
    times = pd.date_range(f"{int(frame.YEAR.iloc[0])}-01-01", periods=values.size, freq="MS")
    return xr.DataArray(values, dims="time", coords={"time": times}, attrs={"units": "degC"})


def test_trends_of_co2_match_numpy_and_scipy():
    monthly = co2_monthly()
    assert int(monthly.isnull().sum()) > 0  # months without any week: the gaps are real
    valid = monthly.dropna("time")
    years = climate.decimal_years(valid["time"].values)
    result = climate.trends(monthly)

    slope, intercept = np.polyfit(years, valid.values, 1)
    assert float(result["ols_slope"]) == pytest.approx(slope, rel=1e-9)
    assert float(result["ols_intercept"]) == pytest.approx(intercept, rel=1e-9)
    assert 1.3 < float(result["ols_slope"]) < 1.6  # ppm per year over 1958-2001
    theil = stats.theilslopes(valid.values, years)
    assert float(result["sen_slope"]) == pytest.approx(theil.slope, abs=1e-9)
    assert float(result["sen_intercept"]) == pytest.approx(theil.intercept, abs=1e-6)
    assert float(result["mk_pvalue"]) < 1e-3 and int(result["n_valid"]) == valid.size
    assert stats.linregress(years, valid.values).pvalue == pytest.approx(float(result["ols_pvalue"]), abs=1e-12)


def test_climatology_and_anomalies_of_el_nino_match_pandas():
    monthly = elnino_monthly()
    clim = climate.climatology(monthly, (1961, 1990))
    series = monthly.to_series()
    base = series[(series.index.year >= 1961) & (series.index.year <= 1990)]
    np.testing.assert_allclose(clim["mean"].values, base.groupby(base.index.month).mean().values, rtol=1e-12)
    np.testing.assert_allclose(clim["std"].values, base.groupby(base.index.month).std(ddof=1).values, rtol=1e-12)
    anomalies = climate.anomalies(monthly, clim).to_series()
    in_base = anomalies[(anomalies.index.year >= 1961) & (anomalies.index.year <= 1990)]
    np.testing.assert_allclose(in_base.groupby(in_base.index.month).sum().values, 0, atol=1e-9)
    january_1998 = (series["1998-01-01"] - base[base.index.month == 1].mean()) / base[base.index.month == 1].std()
    standardized = climate.standardized_anomalies(monthly, clim).to_series()
    assert standardized["1998-01-01"] == pytest.approx(january_1998, rel=1e-12)


def test_grid_trends_equal_trends_pixel_by_pixel_whatever_the_block_size():
    """A 3 x 4 grid of El Nino series, shifted and tilted per cell, with a gappy and an empty cell."""
    monthly = elnino_monthly().isel(time=slice(0, 240))
    rng = np.random.default_rng(3)
    tilt = rng.normal(0, 0.05, (3, 4))
    years = np.arange(monthly.sizes["time"]) / 12
    values = monthly.values[:, None, None] + rng.normal(0, 1, (3, 4)) + tilt * years[:, None, None]
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, 0, 1][::3] = np.nan
    values[:, 2, 3] = np.nan
    grid = xr.DataArray(values, dims=("time", "y", "x"), coords={"time": monthly["time"]})
    whole = climate.trends(grid)
    tiny_blocks = climate.trends(grid, block_pixels=1)
    for name in ("ols_slope", "sen_slope", "mk_pvalue", "n_valid"):
        np.testing.assert_allclose(whole[name].values, tiny_blocks[name].values, rtol=1e-12)
        for row in range(3):
            for col in range(4):
                alone = climate.trends(grid.isel(y=row, x=col))[name].values
                np.testing.assert_allclose(whole[name].values[row, col], alone, rtol=1e-12)
    assert np.isnan(whole["sen_slope"].values[2, 3]) and int(whole["n_valid"].values[2, 3]) == 0


def test_hot_and_cold_counts_and_the_anomaly_chart(tmp_path):
    days = pd.date_range("2021-01-01", "2022-12-31", freq="D")
    temperature = np.asarray(10 + 15 * np.sin(2 * np.pi * (days.dayofyear - 110) / 365.25))
    temperature[40] = np.nan
    series = xr.DataArray(temperature, dims="time", coords={"time": days.values})
    counts = climate.threshold_counts(series, hot_above=24.0, cold_below=-4.0)
    frame = pd.Series(temperature, index=days)
    hot = (frame > 24.0).groupby(frame.index.year).sum()
    cold = (frame < -4.0).groupby(frame.index.year).sum()
    assert counts["hot_count"].values.tolist() == hot.tolist() and counts["cold_count"].values.tolist() == cold.tolist()
    assert counts["valid_count"].values.tolist() == [364, 365]

    table = climate.climate_statistics(elnino_monthly(), (1961, 1990))
    path = climate.anomaly_chart_png(table, tmp_path / "chart.png", title="El Nino", width_px=640, height_px=240)
    from matplotlib.image import imread

    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert imread(path).shape[:2] == (240, 640)

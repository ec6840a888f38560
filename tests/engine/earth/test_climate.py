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


# --- Climatology over the whole record, and a base period, from the wide El Nino table itself.
MONTH_COLUMNS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def test_el_nino_climatology_equals_the_column_means_of_the_wide_table():
    """Climatology is mean and sample std (ddof=1, pandas' default) of each month column of the table."""
    frame = sm.datasets.elnino.load_pandas().data
    monthly = elnino_monthly()
    xr.testing.assert_identical(climate.monthly_means(monthly), monthly)  # already monthly: unchanged

    whole = climate.climatology(monthly)
    np.testing.assert_allclose(whole["mean"].values, frame[MONTH_COLUMNS].mean().values, rtol=1e-12)
    np.testing.assert_allclose(whole["std"].values, frame[MONTH_COLUMNS].std(ddof=1).values, rtol=1e-12)
    assert whole["count"].values.tolist() == [61] * 12 and whole.attrs["base_period"] == [1950, 2010]

    normals = frame[(frame.YEAR >= 1961) & (frame.YEAR <= 1990)][MONTH_COLUMNS]
    base = climate.climatology(monthly, (1961, 1990))
    np.testing.assert_allclose(base["mean"].values, normals.mean().values, rtol=1e-12)
    np.testing.assert_allclose(base["std"].values, normals.std(ddof=1).values, rtol=1e-12)
    assert base["count"].values.tolist() == [30] * 12

    # Over the base period, standardized anomalies of each month have mean 0 and sample std 1.
    standardized = climate.standardized_anomalies(monthly, base).to_series()
    in_base = standardized[(standardized.index.year >= 1961) & (standardized.index.year <= 1990)]
    by_month = in_base.groupby(in_base.index.month)
    np.testing.assert_allclose(by_month.mean().values, 0, atol=1e-12)
    np.testing.assert_allclose(by_month.std(ddof=1).values, 1, rtol=1e-12)
    # July 1972 (a strong El Nino), by hand from the table.
    july = normals["JUL"]
    hand = (frame.loc[frame.YEAR == 1972, "JUL"].item() - july.mean()) / july.std(ddof=1)
    assert standardized["1972-07-01"] == pytest.approx(hand, rel=1e-12)

    with pytest.raises(ValueError, match="holds no data"):
        climate.climatology(monthly, (1900, 1920))


def test_co2_trend_matches_statsmodels_ols_and_a_hand_mann_kendall():
    monthly = co2_monthly()
    valid = monthly.dropna("time")
    y = valid.values
    years = np.array([t.year + (t.dayofyear - 1) / (366 if t.is_leap_year else 365) for t in valid.indexes["time"]])
    np.testing.assert_allclose(climate.decimal_years(valid["time"].values), years, rtol=0, atol=1e-12)
    result = climate.trends(monthly)

    fit = sm.OLS(y, sm.add_constant(years)).fit()
    assert float(result["ols_intercept"]) == pytest.approx(fit.params[0], rel=1e-9)
    assert float(result["ols_slope"]) == pytest.approx(fit.params[1], rel=1e-9)
    assert float(result["ols_r2"]) == pytest.approx(fit.rsquared, rel=1e-12)
    assert float(result["ols_stderr"]) == pytest.approx(fit.bse[1], rel=1e-9)
    assert float(result["ols_pvalue"]) == pytest.approx(fit.pvalues[1], abs=1e-12)

    # Mann-Kendall by hand: S over all pairs, the variance with the tie correction, Z with continuity correction.
    n = y.size
    s = np.sign(np.subtract.outer(y, y))[np.tril_indices(n, -1)].sum()  # y[j] - y[i] for j > i
    _, ties = np.unique(y, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - (ties * (ties - 1) * (2 * ties + 5)).sum()) / 18
    z = (s - np.sign(s)) / np.sqrt(var)
    assert float(result["mk_s"]) == s and float(result["mk_var"]) == pytest.approx(var, rel=1e-12)
    assert float(result["mk_z"]) == pytest.approx(z, rel=1e-12)
    assert float(result["mk_pvalue"]) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert float(result["mk_pvalue"]) < 1e-3
    # S again from scipy's tau-b (time has no ties): tau_b = S / sqrt(n0 (n0 - n_tied_pairs_in_y)).
    n0 = n * (n - 1) / 2
    tau = stats.kendalltau(years, y).statistic
    assert tau * np.sqrt(n0 * (n0 - (ties * (ties - 1) / 2).sum())) == pytest.approx(s, rel=1e-9)


def test_weekly_co2_with_missing_weeks_skips_the_gaps():
    """2284 weekly values, 59 of them missing: every pair with a gap is skipped, no gap-filling."""
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    assert int(weekly.isna().sum()) == 59
    series = xr.DataArray(weekly.to_numpy(), dims="time", coords={"time": weekly.index.values})
    result = climate.trends(series)
    kept = weekly.dropna()
    years = climate.decimal_years(kept.index.values)
    theil = stats.theilslopes(kept.to_numpy(), years)
    assert float(result["sen_slope"]) == pytest.approx(theil.slope, abs=1e-9)
    assert float(result["sen_intercept"]) == pytest.approx(theil.intercept, abs=1e-6)
    assert float(result["ols_slope"]) == pytest.approx(np.polyfit(years, kept.to_numpy(), 1)[0], rel=1e-9)
    assert int(result["n_valid"]) == kept.size == 2225


def el_nino_grid() -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """3 x 4 cells of El Nino SST scaled by a and shifted by b per cell; cell (0, 1) misses every third
    month and every cell of row 1 misses 1982-1983; cell (2, 3) is all NaN."""
    monthly = elnino_monthly()
    scale = np.linspace(0.5, 2.0, 12).reshape(3, 4)
    shift = np.arange(12, dtype=float).reshape(3, 4) - 6
    values = monthly.values[:, None, None] * scale + shift
    values[::3, 0, 1] = np.nan
    gap = (monthly["time"].dt.year >= 1982) & (monthly["time"].dt.year <= 1983)
    values[gap.values, 1, :] = np.nan
    values[:, 2, 3] = np.nan
    grid = xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": monthly["time"], "y": [30.5, 30.0, 29.5], "x": [10.0, 10.5, 11.0, 11.5]},
        attrs={"units": "degC"},
    )
    return grid, scale, shift


def test_grid_climatology_anomalies_and_trends_equal_the_point_functions_cell_by_cell():
    grid, scale, shift = el_nino_grid()
    clim = climate.climatology(grid, (1961, 1990))
    anomalies = climate.anomalies(grid, clim)
    standardized = climate.standardized_anomalies(grid, clim)
    trends = climate.trends(grid)
    assert trends["sen_slope"].dims == ("y", "x") and trends["sen_slope"].attrs["units"] == "degC/year"
    for row in range(3):
        for col in range(4):
            cell = grid.isel(y=row, x=col)
            if row == 2 and col == 3:
                with pytest.raises(ValueError, match="holds no data"):
                    climate.climatology(cell, (1961, 1990))
                assert np.isnan(clim["mean"].values[:, row, col]).all()
                assert np.isnan(anomalies.values[:, row, col]).all()
                assert all(np.isnan(trends[name].values[row, col]) for name in trends if name != "n_valid")
                continue
            # xarray's grouped reductions sum a grid and a series in different orders: equal to the last bits.
            alone = climate.climatology(cell, (1961, 1990))
            for name in ("mean", "std", "count"):
                np.testing.assert_allclose(clim[name].values[:, row, col], alone[name].values, rtol=1e-13)
            np.testing.assert_allclose(
                anomalies.values[:, row, col], climate.anomalies(cell, alone).values, rtol=1e-12, atol=1e-13
            )
            np.testing.assert_allclose(
                standardized.values[:, row, col],
                climate.standardized_anomalies(cell, alone).values,
                rtol=1e-12,
                atol=1e-13,
            )
            # Trends are computed by one routine whatever the block: bit for bit the same.
            point = climate.trends(cell)
            for name in trends:
                np.testing.assert_array_equal(trends[name].values[row, col], point[name].values)
    # A linear change of units moves the statistics by hand-known amounts on the complete cells.
    base = climate.climatology(elnino_monthly(), (1961, 1990))
    plain = climate.trends(elnino_monthly())
    for row, col in [(0, 0), (0, 2), (2, 0), (2, 2)]:
        a, b = scale[row, col], shift[row, col]
        np.testing.assert_allclose(clim["mean"].values[:, row, col], a * base["mean"].values + b, rtol=1e-12)
        np.testing.assert_allclose(clim["std"].values[:, row, col], a * base["std"].values, rtol=1e-12)
        assert trends["ols_slope"].values[row, col] == pytest.approx(a * float(plain["ols_slope"]), rel=1e-9)
        assert trends["sen_slope"].values[row, col] == pytest.approx(a * float(plain["sen_slope"]), rel=1e-9)
        assert trends["mk_s"].values[row, col] == float(plain["mk_s"])
    assert trends["n_valid"].values.tolist() == [[732, 488, 732, 732], [708] * 4, [732, 732, 732, 0]]


def test_block_size_does_not_change_the_trends():
    grid, _, _ = el_nino_grid()
    whole = climate.trends(grid)
    for kwargs in ({"block_pixels": 1}, {"block_pixels": 5}, {"max_block_bytes": 3_000_000}, {"max_block_bytes": 1}):
        xr.testing.assert_identical(climate.trends(grid, **kwargs), whole)


def daily_co2() -> pd.Series:
    """Mauna Loa weekly CO2 1990-1993, linearly interpolated in time to days; 10 days of March 1991 blanked."""
    weekly = sm.datasets.co2.load_pandas().data["co2"]["1989-12-01":"1994-01-31"]
    daily = weekly.resample("D").asfreq().interpolate(method="time")["1990-01-01":"1993-12-31"]
    daily["1991-03-05":"1991-03-14"] = np.nan
    return daily


def test_threshold_counts_are_strict_and_skip_missing_days():
    daily = daily_co2()
    hot_above = float(daily["1992-06-15"])  # exactly equal values must not count
    cold_below = float(daily["1990-09-20"])
    assert (daily == hot_above).sum() >= 1 and (daily == cold_below).sum() >= 1
    grid = xr.DataArray(
        np.stack([daily.to_numpy(), daily.to_numpy() - 2.0], axis=-1)[:, None, :],
        dims=("time", "y", "x"),
        coords={"time": daily.index.values},
    )
    yearly = climate.threshold_counts(grid, hot_above=hot_above, cold_below=cold_below)
    monthly = climate.threshold_counts(grid, hot_above=hot_above, cold_below=cold_below, freq="MS")
    for pixel, offset in enumerate([0.0, 2.0]):
        values = daily.to_numpy() - offset
        for period, counts, key in (("year", yearly, daily.index.year), ("month", monthly, daily.index.to_period("M"))):
            hot, cold, valid = {}, {}, {}
            for k, v in zip(key, values):  # a plain loop: the hand count
                hot[k] = hot.get(k, 0) + (1 if v > hot_above else 0)
                cold[k] = cold.get(k, 0) + (1 if v < cold_below else 0)
                valid[k] = valid.get(k, 0) + (0 if np.isnan(v) else 1)
            assert counts.attrs["period"] == period
            assert counts["hot_count"].values[:, 0, pixel].tolist() == list(hot.values())
            assert counts["cold_count"].values[:, 0, pixel].tolist() == list(cold.values())
            assert counts["valid_count"].values[:, 0, pixel].tolist() == list(valid.values())
    assert yearly["valid_count"].values[:, 0, 0].tolist() == [365, 355, 366, 365]
    only_hot = climate.threshold_counts(grid, hot_above=hot_above)
    assert set(only_hot.data_vars) == {"hot_count", "valid_count"}
    with pytest.raises(ValueError, match="freq"):
        climate.threshold_counts(grid, hot_above=1.0, freq="D")
    with pytest.raises(ValueError, match="hot_above, cold_below"):
        climate.threshold_counts(grid)


def test_kelvin_to_celsius_follows_the_units_attribute():
    kelvin = xr.DataArray([273.15, 300.0], dims="time", attrs={"units": "K", "long_name": "2 metre temperature"})
    celsius = climate.kelvin_to_celsius(kelvin)
    np.testing.assert_allclose(celsius.values, [0.0, 26.85], atol=1e-12)
    assert celsius.attrs == {"units": "degC", "long_name": "2 metre temperature"}
    assert climate.kelvin_to_celsius(celsius) is celsius
    with pytest.raises(ValueError, match="units"):
        climate.kelvin_to_celsius(xr.DataArray([1.0], dims="time", attrs={"units": "mm"}))


def test_statistics_table_of_a_grid_is_one_parquet_table_and_its_trend_summary_is_json(tmp_path):
    import json

    grid, _, _ = el_nino_grid()
    table = climate.climate_statistics(grid, (1961, 1990))
    assert list(table.columns) == climate.STATISTICS_COLUMNS and len(table) == 732
    # The area mean is taken per month over the cells valid in that month.
    hand = np.nanmean(grid.values.reshape(732, -1), axis=1)
    np.testing.assert_allclose(table["value"].to_numpy(), hand, rtol=1e-12)
    assert table["n_obs"].eq(1).all() and table["in_base_period"].sum() == 360
    series = table.set_index("time")["value"]
    normals = series["1961":"1990"]
    january = normals[normals.index.month == 1]
    np.testing.assert_allclose(table.loc[table.month == 1, "climatology_mean"], january.mean(), rtol=1e-12)
    np.testing.assert_allclose(table.loc[table.month == 1, "climatology_std"], january.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(table["anomaly"], table["value"] - table["climatology_mean"], rtol=1e-12)

    path = tmp_path / "statistics.parquet"
    table.to_parquet(path, index=False)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)

    # Weights: a cell of weight 0 does not move the area mean.
    weights = xr.ones_like(grid.isel(time=0, drop=True)).where(lambda w: w.x != 10.0, 0.0)
    weighted = climate.climate_statistics(grid, weights=weights)
    np.testing.assert_allclose(weighted["value"], np.nanmean(grid.values[:, :, 1:].reshape(732, -1), axis=1), rtol=1e-12)

    summary = climate.trend_summary(table)
    assert set(summary) == {
        "column", "n", "start", "end", "ols_slope_per_year", "ols_intercept", "ols_r2", "ols_stderr",
        "ols_pvalue", "sen_slope_per_year", "sen_intercept", "mk_s", "mk_z", "mk_pvalue",
    }
    years = climate.decimal_years(table["time"].to_numpy())
    assert summary["ols_slope_per_year"] == pytest.approx(np.polyfit(years, table["anomaly"], 1)[0], rel=1e-9)
    assert summary["sen_slope_per_year"] == pytest.approx(stats.theilslopes(table["anomaly"], years).slope, abs=1e-9)
    assert (summary["n"], summary["start"], summary["end"]) == (732, "1950-01-01", "2010-12-01")
    json.dumps(summary, allow_nan=False)
    empty = table.assign(anomaly=np.nan)
    assert climate.trend_summary(empty)["sen_slope_per_year"] is None


def test_anomaly_chart_default_size_without_pyplot(tmp_path):
    import sys

    from PIL import Image

    pyplot_before = "matplotlib.pyplot" in sys.modules
    table = climate.climate_statistics(co2_monthly().rename("co2")).tail(120)  # the 1990s: fewer bars to draw
    path = climate.anomaly_chart_png(table, tmp_path / "sub" / "co2.png", title="Mauna Loa CO2")
    assert path == str(tmp_path / "sub" / "co2.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 300)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["co2.png"]  # no temporary left behind
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules

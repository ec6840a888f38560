"""Climate analyzer computations: monthly climatology, anomalies, trends and threshold counts.

Inputs are ``xarray.DataArray`` objects with a datetime64 ``time`` dimension and optionally two
spatial dimensions (``y``, ``x``, as read from ERA5/GFS grids), or ``time`` only for a point
series (an Open-Meteo style API). Every function is NaN-aware: a missing value is skipped, never
treated as zero. Nothing here writes rasters; the caller turns the returned arrays into COGs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from memories_dagster.engine.earth.products import json_number
from memories_dagster.engine.tables import atomic_file

TIME = "time"
KELVIN_OFFSET = 273.15
DEFAULT_BLOCK_BYTES = 256 * 2**20
_KELVIN_UNITS = {"k", "kelvin", "kelvins", "degk", "deg_k"}
_CELSIUS_UNITS = {"c", "degc", "deg_c", "celsius", "degrees_celsius", "°c", "degree_celsius"}
_FREQUENCIES = {"YS": "year", "MS": "month"}


# --------------------------------------------------------------------------- helpers


def _prepared(da: xr.DataArray) -> xr.DataArray:
    # Every public function starts here so that a wrong input fails with one readable message.
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if TIME not in da.dims:
        raise ValueError(f"the array has no '{TIME}' dimension (dims: {tuple(da.dims)})")
    if not np.issubdtype(da[TIME].dtype, np.datetime64):
        raise ValueError(f"'{TIME}' must hold datetime64 values, found {da[TIME].dtype}")
    if not da.indexes[TIME].is_monotonic_increasing:
        da = da.sortby(TIME)
    return da


def _spatial_dims(da: xr.DataArray) -> tuple[str, ...]:
    return tuple(d for d in da.dims if d != TIME)


def _static_coords(da: xr.DataArray) -> dict[str, Any]:
    # Coordinates that survive reducing over time (x, y, spatial_ref, ...).
    return {name: c for name, c in da.coords.items() if TIME not in c.dims}


def decimal_years(times: Any) -> np.ndarray:
    """Decimal years of datetime64 values (2000-07-02T00:00 -> ~2000.5), the x axis of every trend."""
    index = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"))
    start = pd.to_datetime({"year": index.year, "month": 1, "day": 1})
    end = pd.to_datetime({"year": index.year + 1, "month": 1, "day": 1})
    start = pd.DatetimeIndex(start)
    end = pd.DatetimeIndex(end)
    # Leap years are longer: dividing by the true year length keeps Jan 1 at an integer.
    fraction = (index - start) / (end - start)
    return index.year.to_numpy(dtype=float) + np.asarray(fraction, dtype=float)


class _Quiet:
    # All-NaN pixels and single-year months are legitimate; numpy's warnings about them are noise.
    def __enter__(self):
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        self._err = np.errstate(divide="ignore", invalid="ignore")
        self._err.__enter__()
        return self

    def __exit__(self, *exc):
        self._err.__exit__(*exc)
        return self._ctx.__exit__(*exc)


# --------------------------------------------------------------------------- units


def kelvin_to_celsius(da: xr.DataArray) -> xr.DataArray:
    """Kelvin values in degrees Celsius (the spec's ``to_celsius``); Celsius input is returned as is."""
    units = str(da.attrs.get("units", "")).strip()
    key = units.lower().replace(" ", "_")
    if key in _CELSIUS_UNITS:
        return da
    if key not in _KELVIN_UNITS:
        # Guessing from magnitudes would silently corrupt a variable that is not a temperature.
        raise ValueError(
            f"to_celsius needs the variable's 'units' attribute to be Kelvin (K) or Celsius, found {units!r}"
        )
    out = da - KELVIN_OFFSET
    out.attrs = {**da.attrs, "units": "degC"}
    out.name = da.name
    return out


# --------------------------------------------------------------------------- monthly statistics


def monthly_means(da: xr.DataArray) -> xr.DataArray:
    """Calendar-month means labelled by month start; a month without a valid value is NaN."""
    da = _prepared(da)
    with _Quiet():
        out = da.resample({TIME: "MS"}).mean(skipna=True)
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


def _base_slice(monthly: xr.DataArray, base_period: tuple[int, int] | None) -> xr.DataArray:
    if base_period is None:
        return monthly
    start, end = (int(v) for v in base_period)
    if start > end:
        raise ValueError(f"base_period start {start} is after its end {end}")
    years = monthly[TIME].dt.year
    selected = monthly.isel({TIME: ((years >= start) & (years <= end)).values})
    if selected.sizes[TIME] == 0 or not bool(selected.notnull().any()):
        first, last = (int(years.min()), int(years.max())) if monthly.sizes[TIME] else (None, None)
        raise ValueError(f"base_period {start}-{end} holds no data (the record spans {first}-{last})")
    return selected


def climatology(monthly: xr.DataArray, base_period: tuple[int, int] | None = None) -> xr.Dataset:
    """Per calendar month (1..12) and pixel: mean, sample standard deviation (ddof=1) and count over the base period.

    ``base_period`` is an inclusive pair of years, e.g. (1961, 1990); None uses the whole record.
    The sample std (ddof=1) is the WMO convention for normals and matches pandas' default.
    """
    monthly = _prepared(monthly)
    base = _base_slice(monthly, base_period)
    grouped = base.groupby(f"{TIME}.month")
    with _Quiet():
        mean = grouped.mean(skipna=True)
        std = grouped.std(ddof=1, skipna=True)
        count = grouped.count()
    months = np.arange(1, 13)
    mean = mean.reindex(month=months)
    std = std.reindex(month=months)
    # A month seen once has no spread; ddof=1 would give inf/NaN depending on the backend.
    std = std.where(count.reindex(month=months, fill_value=0) >= 2)
    count = count.reindex(month=months, fill_value=0).astype("int64")
    attrs = {"ddof": 1}
    if base_period is not None:
        attrs["base_period"] = [int(base_period[0]), int(base_period[1])]
    else:
        years = monthly[TIME].dt.year
        attrs["base_period"] = [int(years.min()), int(years.max())]
    ds = xr.Dataset({"mean": mean, "std": std, "count": count}, attrs=attrs)
    units = monthly.attrs.get("units")
    if units:
        ds["mean"].attrs["units"] = units
        ds["std"].attrs["units"] = units
    return ds


def _per_time(clim_var: xr.DataArray, monthly: xr.DataArray) -> xr.DataArray:
    # Spread the 12 climatological values over the time axis of the monthly series.
    out = clim_var.sel(month=monthly[TIME].dt.month)
    return out.drop_vars("month", errors="ignore")


def anomalies(monthly: xr.DataArray, clim: xr.Dataset) -> xr.DataArray:
    """Monthly values minus the climatological mean of their calendar month."""
    monthly = _prepared(monthly)
    out = monthly - _per_time(clim["mean"], monthly)
    out.attrs = {k: v for k, v in monthly.attrs.items() if k == "units"}
    out.name = "anomaly"
    return out


def standardized_anomalies(monthly: xr.DataArray, clim: xr.Dataset) -> xr.DataArray:
    """Anomalies divided by the calendar month's standard deviation; NaN where that std is 0 or NaN."""
    monthly = _prepared(monthly)
    std = _per_time(clim["std"], monthly)
    std = std.where(std > 0)
    with _Quiet():
        out = (monthly - _per_time(clim["mean"], monthly)) / std
    out.attrs = {"units": "1"}
    out.name = "standardized_anomaly"
    return out


# --------------------------------------------------------------------------- trends


def _sorted_median(sorted_rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # Rows sorted with NaN last: the median of the first `counts` entries, without a Python loop.
    out = np.full(sorted_rows.shape[0], np.nan)
    has = counts > 0
    if not has.any() or sorted_rows.shape[1] == 0:
        return out
    lo = np.where(has, (counts - 1) // 2, 0)
    hi = np.where(has, counts // 2, 0)
    a = np.take_along_axis(sorted_rows, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(sorted_rows, hi[:, None], axis=1)[:, 0]
    out[has] = ((a + b) / 2)[has]
    return out


def _tie_term(sorted_rows: np.ndarray) -> np.ndarray:
    # sum t(t-1)(2t+5) over groups of equal values per row; NaN != NaN so each NaN is a group of 1.
    b, n = sorted_rows.shape
    if n == 0:
        return np.zeros(b)
    new = np.ones((b, n), dtype=bool)
    new[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    group = np.cumsum(new, axis=1) - 1 + (np.arange(b) * n)[:, None]
    t = np.bincount(group.ravel(), minlength=b * n).reshape(b, n).astype(float)
    return (t * (t - 1) * (2 * t + 5)).sum(axis=1)


def _row_sums(a: np.ndarray) -> np.ndarray:
    # Sequential sums (accumulate) instead of numpy's pairwise ones, whose grouping depends on the
    # array's shape: this keeps a pixel's trend bit-identical whatever block it is computed in.
    if a.shape[1] == 0:
        return np.zeros(a.shape[0])
    return np.add.accumulate(a, axis=1)[:, -1]


def _trend_block(y: np.ndarray, x: np.ndarray, buf: np.ndarray) -> dict[str, np.ndarray]:
    """Trend statistics of a block of pixels: y is (pixels, time), x (time,), buf (pixels, pairs) scratch."""
    b, n = y.shape
    valid = np.isfinite(y)
    y = np.where(valid, y, np.nan)
    nv = valid.sum(axis=1).astype(float)
    out: dict[str, np.ndarray] = {"n_valid": nv.astype("int64")}

    # OLS on centred values so decimal years near 2000 do not cost precision.
    xs = np.where(valid, x[None, :], 0.0)
    ys = np.where(valid, y, 0.0)
    xm = _row_sums(xs) / nv
    ym = _row_sums(ys) / nv
    dx = np.where(valid, x[None, :] - xm[:, None], 0.0)
    dy = np.where(valid, y - ym[:, None], 0.0)
    sxx = _row_sums(dx * dx)
    sxy = _row_sums(dx * dy)
    syy = _row_sums(dy * dy)
    slope = sxy / sxx
    resid = np.where(valid, dy - slope[:, None] * dx, 0.0)
    ssr = _row_sums(resid * resid)
    dof = nv - 2
    enough = nv >= 3
    stderr = np.sqrt(ssr / dof / sxx)
    tstat = slope / stderr
    pvalue = 2 * stats.t.sf(np.abs(tstat), np.where(enough, dof, 1))
    ols_ok = (nv >= 2) & (sxx > 0)
    out["ols_slope"] = np.where(ols_ok, slope, np.nan)
    out["ols_intercept"] = np.where(ols_ok, ym - slope * xm, np.nan)
    out["ols_r2"] = np.where(ols_ok & (syy > 0), 1 - ssr / syy, np.nan)
    out["ols_stderr"] = np.where(ols_ok & enough, stderr, np.nan)
    out["ols_pvalue"] = np.where(ols_ok & enough & np.isfinite(tstat), pvalue, np.nan)

    # Sen: every pair (i < j) once, laid out lag by lag so no index arrays are needed.
    offset = 0
    for lag in range(1, n):
        width = n - lag
        np.divide(y[:, lag:] - y[:, :-lag], x[lag:] - x[:-lag], out=buf[:, offset : offset + width])
        offset += width
    pairs = buf[:, :offset]
    # dx > 0 for every pair, so the sign of a pairwise slope is the sign of y_j - y_i: that is Mann-Kendall's S.
    s = (pairs > 0).sum(axis=1).astype(float) - (pairs < 0).sum(axis=1)
    pairs.sort(axis=1)
    n_pairs = nv * (nv - 1) / 2
    sen = _sorted_median(pairs, n_pairs.astype("int64"))
    sorted_y = np.sort(y, axis=1)
    sorted_x = np.sort(np.where(valid, x[None, :], np.nan), axis=1)
    y_med = _sorted_median(sorted_y, nv.astype("int64"))
    x_med = _sorted_median(sorted_x, nv.astype("int64"))
    sen_ok = nv >= 2
    out["sen_slope"] = np.where(sen_ok, sen, np.nan)
    out["sen_intercept"] = np.where(sen_ok, y_med - sen * x_med, np.nan)

    var = (nv * (nv - 1) * (2 * nv + 5) - _tie_term(sorted_y)) / 18
    # Continuity correction: S moves in steps of 2, the normal approximation is taken at the half step.
    z = np.where(s > 0, (s - 1) / np.sqrt(var), np.where(s < 0, (s + 1) / np.sqrt(var), 0.0))
    mk_ok = (nv >= 3) & (var > 0)
    out["mk_s"] = np.where(mk_ok, s, np.nan)
    out["mk_var"] = np.where(mk_ok, var, np.nan)
    out["mk_z"] = np.where(mk_ok, z, np.nan)
    out["mk_pvalue"] = np.where(mk_ok, 2 * stats.norm.sf(np.abs(z)), np.nan)
    return out


_TREND_ATTRS = {
    "ols_slope": ("per year", "OLS slope against decimal years"),
    "ols_intercept": ("", "OLS intercept at decimal year 0"),
    "ols_r2": ("1", "coefficient of determination of the OLS fit"),
    "ols_stderr": ("per year", "standard error of the OLS slope"),
    "ols_pvalue": ("1", "two-sided t-test p-value of the OLS slope (n-2 degrees of freedom)"),
    "sen_slope": ("per year", "Sen's slope: median of pairwise slopes"),
    "sen_intercept": ("", "median(y) - sen_slope * median(decimal year), as scipy.stats.theilslopes"),
    "mk_s": ("1", "Mann-Kendall S statistic"),
    "mk_var": ("1", "variance of S with the tie correction"),
    "mk_z": ("1", "Mann-Kendall Z with continuity correction"),
    "mk_pvalue": ("1", "two-sided Mann-Kendall p-value (tie-corrected, no autocorrelation correction)"),
    "n_valid": ("1", "number of valid time steps"),
}


def trends(
    da: xr.DataArray,
    block_pixels: int | None = None,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> xr.Dataset:
    """Per-pixel OLS and Sen's slope trends (per year) with the Mann-Kendall test, vectorised over pixels.

    Returns a Dataset of rasters shaped like the input without ``time`` (0-D for a point series):
    ols_slope, ols_intercept, ols_r2, ols_stderr, ols_pvalue, sen_slope, sen_intercept, mk_s,
    mk_var, mk_z, mk_pvalue, n_valid. Pairs involving a NaN are skipped. Sen's slope needs all
    n(n-1)/2 pairwise slopes of a pixel at once, so pixels are processed in blocks whose pair buffer
    stays under ``max_block_bytes`` (``block_pixels`` overrides the block size).
    Feed anomalies rather than raw monthly values when the seasonal cycle should not weigh on the
    p-values.
    """
    da = _prepared(da)
    if np.unique(da[TIME].values).size != da.sizes[TIME]:
        raise ValueError("trends need distinct time stamps; aggregate duplicates first (e.g. monthly_means)")
    spatial = _spatial_dims(da)
    shape = tuple(da.sizes[d] for d in spatial)
    n = da.sizes[TIME]
    values = da.transpose(*spatial, TIME).values.reshape(-1, n).astype(float, copy=False)
    pixels = values.shape[0]
    x = decimal_years(da[TIME].values)
    n_pairs = n * (n - 1) // 2
    if block_pixels is None:
        per_pixel = max(n_pairs, 1) * 8 + n * 8 * 8
        block_pixels = max(1, int(max_block_bytes // per_pixel))
    block_pixels = max(1, min(int(block_pixels), max(pixels, 1)))

    results: dict[str, np.ndarray] = {}
    buf = np.empty((block_pixels, n_pairs))
    with _Quiet():
        for start in range(0, pixels, block_pixels):
            block = values[start : start + block_pixels]
            part = _trend_block(block, x, buf[: block.shape[0]])
            for name, arr in part.items():
                results.setdefault(name, np.empty(pixels, dtype=arr.dtype))[start : start + block.shape[0]] = arr

    units = str(da.attrs.get("units", "")).strip()
    coords = _static_coords(da)
    data_vars = {}
    for name, (unit, description) in _TREND_ATTRS.items():
        arr = results.get(name, np.empty(0)).reshape(shape)
        attrs = {"long_name": description}
        if unit == "per year":
            attrs["units"] = f"{units}/year" if units else "1/year"
        elif unit:
            attrs["units"] = unit
        elif units:
            attrs["units"] = units
        data_vars[name] = xr.DataArray(arr, dims=spatial, coords=coords, attrs=attrs)
    first, last = (str(da[TIME].values[0])[:10], str(da[TIME].values[-1])[:10]) if n else (None, None)
    return xr.Dataset(data_vars, attrs={"time_start": first, "time_end": last, "n_time": n})


# --------------------------------------------------------------------------- thresholds


def threshold_counts(
    daily: xr.DataArray,
    hot_above: float | None = None,
    cold_below: float | None = None,
    freq: str = "YS",
) -> xr.Dataset:
    """Per year (``freq='YS'``) or month (``'MS'``) and pixel: how many time steps are hot or cold.

    A step is hot when its value is strictly above ``hot_above`` and cold when strictly below
    ``cold_below``; NaN is neither. Feed daily maxima for hot days and daily minima for cold days
    (call twice if they are separate arrays). ``valid_count`` tells how many steps were not NaN, so
    an incomplete year is visible rather than looking cool.
    """
    if freq not in _FREQUENCIES:
        raise ValueError(f"freq must be one of {sorted(_FREQUENCIES)}, got {freq!r}")
    if hot_above is None and cold_below is None:
        raise ValueError("threshold_counts needs hot_above, cold_below or both")
    daily = _prepared(daily)
    data_vars = {}
    # Comparisons with NaN are False, so a missing day never counts.
    if hot_above is not None:
        hot = (daily > hot_above).resample({TIME: freq}).sum().astype("int64")
        hot.attrs = {"units": "1", "threshold": float(hot_above), "rule": "value > threshold"}
        data_vars["hot_count"] = hot
    if cold_below is not None:
        cold = (daily < cold_below).resample({TIME: freq}).sum().astype("int64")
        cold.attrs = {"units": "1", "threshold": float(cold_below), "rule": "value < threshold"}
        data_vars["cold_count"] = cold
    valid = daily.notnull().resample({TIME: freq}).sum().astype("int64")
    valid.attrs = {"units": "1"}
    data_vars["valid_count"] = valid
    return xr.Dataset(data_vars, attrs={"period": _FREQUENCIES[freq]})


# --------------------------------------------------------------------------- area statistics

STATISTICS_COLUMNS = [
    "time",
    "month",
    "value",
    "n_obs",
    "climatology_mean",
    "climatology_std",
    "anomaly",
    "standardized_anomaly",
    "in_base_period",
]


def area_mean(da: xr.DataArray, weights: xr.DataArray | None = None) -> xr.DataArray:
    """Spatial mean over the valid pixels of each time step (optionally weighted, e.g. by cos(latitude))."""
    da = _prepared(da)
    spatial = _spatial_dims(da)
    if not spatial:
        return da
    with _Quiet():
        if weights is not None:
            out = da.weighted(weights.fillna(0)).mean(spatial, skipna=True)
            # weighted() returns 0 weight sums as NaN already; keep all-NaN steps NaN.
            out = out.where(da.notnull().any(spatial))
        else:
            out = da.mean(spatial, skipna=True)
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


def climate_statistics(
    da: xr.DataArray,
    base_period: tuple[int, int] | None = None,
    weights: xr.DataArray | None = None,
) -> pd.DataFrame:
    """The analyzer's statistics table: one row per month of the area-mean series.

    Columns: time (month start), month (1..12), value (monthly mean of the area mean), n_obs
    (time steps behind it), climatology_mean, climatology_std (ddof=1, over the base period),
    anomaly, standardized_anomaly, in_base_period. The area mean is taken per time step before
    monthly averaging, so a pixel missing on one day does not remove the whole month.
    Pass the table to ``trend_summary`` for the trend numbers.
    """
    series = area_mean(da, weights)
    resampled = series.resample({TIME: "MS"})
    with _Quiet():
        n_obs = resampled.count()
    monthly = monthly_means(series)
    clim = climatology(monthly, base_period)
    anom = anomalies(monthly, clim)
    std_anom = standardized_anomalies(monthly, clim)
    times = pd.DatetimeIndex(monthly[TIME].values)
    years = times.year
    start, end = clim.attrs["base_period"]
    table = pd.DataFrame(
        {
            "time": times,
            "month": times.month.astype("int64"),
            "value": monthly.values.astype(float),
            "n_obs": n_obs.reindex({TIME: monthly[TIME]}).fillna(0).values.astype("int64"),
            "climatology_mean": _per_time(clim["mean"], monthly).values.astype(float),
            "climatology_std": _per_time(clim["std"], monthly).values.astype(float),
            "anomaly": anom.values.astype(float),
            "standardized_anomaly": std_anom.values.astype(float),
            "in_base_period": np.asarray((years >= start) & (years <= end), dtype=bool),
        },
        columns=STATISTICS_COLUMNS,
    )
    table.attrs = {"base_period": [int(start), int(end)], "units": str(da.attrs.get("units", ""))}
    return table


def trend_summary(stats_table: pd.DataFrame, column: str = "anomaly") -> dict[str, Any]:
    """Trend numbers of one column of the statistics table, as JSON-safe values (NaN -> None).

    Keys: column, n, start, end, ols_slope_per_year, ols_intercept, ols_r2, ols_stderr,
    ols_pvalue, sen_slope_per_year, sen_intercept, mk_s, mk_z, mk_pvalue.
    The default column is the anomaly: the seasonal cycle would otherwise inflate the residuals
    and bias the slope when the record starts and ends in different seasons.
    """
    series = xr.DataArray(
        stats_table[column].to_numpy(dtype=float),
        dims=[TIME],
        coords={TIME: pd.DatetimeIndex(stats_table["time"]).values},
    )
    ds = trends(series)
    valid = stats_table.loc[stats_table[column].notna(), "time"]
    summary: dict[str, Any] = {
        "column": column,
        "n": int(ds["n_valid"]),
        "start": None if valid.empty else pd.Timestamp(valid.min()).strftime("%Y-%m-%d"),
        "end": None if valid.empty else pd.Timestamp(valid.max()).strftime("%Y-%m-%d"),
        "ols_slope_per_year": json_number(ds["ols_slope"]),
        "ols_intercept": json_number(ds["ols_intercept"]),
        "ols_r2": json_number(ds["ols_r2"]),
        "ols_stderr": json_number(ds["ols_stderr"]),
        "ols_pvalue": json_number(ds["ols_pvalue"]),
        "sen_slope_per_year": json_number(ds["sen_slope"]),
        "sen_intercept": json_number(ds["sen_intercept"]),
        "mk_s": json_number(ds["mk_s"]),
        "mk_z": json_number(ds["mk_z"]),
        "mk_pvalue": json_number(ds["mk_pvalue"]),
    }
    return summary


# --------------------------------------------------------------------------- preview


def anomaly_chart_png(
    stats_table: pd.DataFrame,
    path: str | os.PathLike,
    title: str = "",
    width_px: int = 800,
    height_px: int = 300,
    dpi: int = 100,
) -> str:
    """Bar chart of monthly anomalies (red above, blue below the climatology) with the OLS trend line.

    Drawn on a bare Figure + Agg canvas so no pyplot state or global backend is touched, and
    written to a temporary file renamed into place so readers never see half a PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = stats_table.loc[stats_table["anomaly"].notna()]
    times = pd.DatetimeIndex(table["time"])
    anomaly = table["anomaly"].to_numpy(dtype=float)

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = np.where(anomaly >= 0, "#d62728", "#1f77b4")
    ax.bar(times.to_pydatetime(), anomaly, width=25, color=colors, linewidth=0)
    ax.axhline(0, color="0.3", linewidth=0.6)
    summary = trend_summary(stats_table) if len(table) >= 2 else {}
    slope, intercept = summary.get("ols_slope_per_year"), summary.get("ols_intercept")
    if slope is not None and intercept is not None:
        xs = decimal_years(times.values[[0, -1]])
        ax.plot(
            times[[0, -1]].to_pydatetime(),
            intercept + slope * xs,
            color="black",
            linewidth=1.2,
            label=f"OLS trend {slope * 10:+.3g} per decade",
        )
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    units = stats_table.attrs.get("units") if hasattr(stats_table, "attrs") else ""
    ax.set_ylabel(f"anomaly ({units})" if units else "anomaly", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)

    target = Path(path)
    with atomic_file(target) as staged:
        fig.savefig(staged, format="png", dpi=dpi)
    return str(target)

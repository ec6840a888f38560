"""Climate data: ERA5 / GFS grids as NetCDF or GRIB through xarray, and Open-Meteo-style JSON
APIs, cut to a region's box as one ``DataArray`` per variable (dims ``time`` [, ``y``, ``x``])."""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from typing import Any

import numpy as np

from memories_dagster.connectors.files import ConnectorError, is_remote

LAT_NAMES = ("latitude", "lat")
LON_NAMES = ("longitude", "lon")
TIME_NAMES = ("time", "valid_time", "t")
GRIB_SUFFIXES = (".grib", ".grb", ".grib2", ".grb2")


class ClimateDataError(ConnectorError):
    """A climate file or API cannot be read, or lacks what the region declares."""


def open_climate_file(
    location: str, variables: list[str], storage_options: dict[str, Any], where: str,
    bbox: tuple[float, float, float, float], dataset: str = "netcdf", filter_by_keys: dict[str, Any] | None = None,
) -> Any:
    """The declared variables of a NetCDF or GRIB file, cut to the box, in memory.

    GRIB is read through cfgrib for ``dataset`` gfs or grib and for ``.grib``/``.grb2`` names
    (NOAA's GFS files have no suffix); everything else as NetCDF. The file is opened lazily and
    cut before loading, so a global file costs only the cells of the box.
    """
    import xarray as xr

    grib = dataset in ("gfs", "grib") or location.lower().endswith(GRIB_SUFFIXES)
    with ExitStack() as stack:
        path = location
        if is_remote(location):
            import fsspec

            # GRIB and NetCDF-4 readers want a real file: copy the object down once
            handle, path = tempfile.mkstemp(suffix=os.path.splitext(location)[1])
            os.close(handle)
            stack.callback(os.unlink, path)
            fs, remote = fsspec.core.url_to_fs(location, **storage_options)
            fs.get_file(remote, path)
        options: dict[str, Any] = {"engine": "cfgrib", "backend_kwargs": {"indexpath": "", "filter_by_keys": filter_by_keys or {}}} \
            if grib else {}
        try:
            data = stack.enter_context(xr.open_dataset(path, **options))
        except (OSError, ValueError, EOFError) as exc:  # cfgrib: EOFError when no GRIB message is found
            raise ClimateDataError(f"{where}: cannot read '{location}' as {'GRIB' if grib else 'NetCDF'}: {_reason(exc)}") from None
        missing = [v for v in variables if v not in data.data_vars]
        if missing:
            raise ClimateDataError(
                f"{where}: '{location}' has no variable {', '.join(missing)} (it has: {', '.join(map(str, data.data_vars))})"
            )
        return cut_to_box(_forecast_steps_as_time(data[variables], where), bbox, f"{where} ('{location}')").load()


def _forecast_steps_as_time(data: Any, where: str) -> Any:
    """GRIB forecasts (GFS) index by ``step`` with the valid time as a coordinate: make the valid
    time the time axis."""
    if "step" not in data.dims:
        if "valid_time" in data.coords and data["valid_time"].ndim == 0 and not any(n in data.dims for n in TIME_NAMES):
            # one forecast hour per file (how NOAA ships GFS): a time axis of length one
            return data.drop_vars(["time", "step"], errors="ignore").expand_dims("valid_time")
        return data
    if "time" in data.dims:
        raise ClimateDataError(f"{where}: the file holds several forecast runs and steps; keep one run with "
                               "filter_by_keys (e.g. {dataDate: 20240101, dataTime: 0})")
    return data.swap_dims({"step": "valid_time"}).drop_vars(["time", "step"], errors="ignore")


def _reason(exc: BaseException) -> str:
    """The reader's complaint on one line; xarray's "no backend matched" advice to install IO
    packages misleads when the file is simply not NetCDF."""
    text = " ".join(str(exc).split())
    if "did not find a match in any of xarray's currently installed IO backends" in text:
        return "it is not a NetCDF file (neither NetCDF-4/HDF5 nor NetCDF-3 classic)"
    return text


def open_meteo_dataset(body: Any, records_path: str, time_key: str, variables: list[str], where: str) -> Any:
    """An Open-Meteo-style response (``{"daily": {"time": [...], "<var>": [...]}}``) as a Dataset."""
    import pandas as pd
    import xarray as xr

    from memories_dagster.connectors.http import dig

    block = dig(body, records_path)
    if not isinstance(block, dict) or time_key not in block:
        raise ClimateDataError(f"{where}: the response has no '{records_path}.{time_key}' array of timestamps")
    missing = [v for v in variables if v not in block]
    if missing:
        have = ", ".join(k for k in block if k != time_key)
        raise ClimateDataError(f"{where}: the response has no '{records_path}.{', '.join(missing)}' (it has: {have})")
    time = pd.to_datetime(block[time_key])
    units = dig(body, f"{records_path}_units") or {}
    return xr.Dataset({
        v: xr.DataArray(np.asarray(block[v], dtype="float64"), dims="time", coords={"time": time},
                        attrs={"units": units.get(v, "")} if isinstance(units, dict) else {})
        for v in variables
    })


def cut_to_box(data: Any, bbox: tuple[float, float, float, float], where: str) -> Any:
    """Cells whose centres fall in the lon/lat box, as dims (time, y, x) north to south.

    A grid coarser than the box keeps the one cell nearest its centre, provided the box lies
    within the grid; 0-360 longitudes are handled. A series without spatial dims is a point.
    """
    time = next((n for n in TIME_NAMES if n in data.dims), None)
    if time is None:
        raise ClimateDataError(f"{where}: no time dimension (looked for {', '.join(TIME_NAMES)}; it has {', '.join(map(str, data.dims))})")
    if time != "time":
        data = data.rename({time: "time"})
    lat = next((n for n in LAT_NAMES if n in data.dims), None)
    lon = next((n for n in LON_NAMES if n in data.dims), None)
    others = [d for d in data.dims if d not in ("time", lat, lon)]
    if lat is None or lon is None or others:
        scalar_coords = all(data.coords[n].ndim == 0 for n in LAT_NAMES + LON_NAMES if n in data.coords)
        if not others and lat is None and lon is None and scalar_coords:
            return data  # a point series (an API's answer, or a grid cell selected with .sel)
        raise ClimateDataError(
            f"{where}: needs a regular latitude/longitude grid (dims {', '.join(LAT_NAMES)} and "
            f"{', '.join(LON_NAMES)} besides time); it has dims {', '.join(map(str, data.dims))}"
        )
    data = data.rename({lat: "y", lon: "x"}).transpose("time", "y", "x")
    west, south, east, north = bbox
    if float(data["x"].max()) > 180:
        data = data.assign_coords(x=((data["x"] + 180) % 360) - 180).sortby("x")
    data = data.sortby("y", ascending=False)
    inside = data.sel(x=(data["x"] >= west) & (data["x"] <= east), y=(data["y"] >= south) & (data["y"] <= north))
    if inside.sizes["x"] and inside.sizes["y"]:
        return inside
    xs, ys = data["x"].values, data["y"].values
    step_x = float(np.abs(np.diff(xs)).max()) if xs.size > 1 else 0.0
    step_y = float(np.abs(np.diff(ys)).max()) if ys.size > 1 else 0.0
    lon_c, lat_c = (west + east) / 2, (south + north) / 2
    # the box must lie within the cells' extent (half a cell beyond the outer centres)
    if not (xs.min() - step_x / 2 <= lon_c <= xs.max() + step_x / 2 and ys.min() - step_y / 2 <= lat_c <= ys.max() + step_y / 2):
        raise ClimateDataError(
            f"{where}: the data cover lon {xs.min():g} to {xs.max():g}, lat {ys.min():g} to {ys.max():g}; "
            f"the region's bbox [{west:g}, {south:g}, {east:g}, {north:g}] lies outside"
        )
    return data.sel(x=[lon_c], y=[lat_c], method="nearest")

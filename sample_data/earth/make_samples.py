"""Rebuild the demo region's sample rasters from real data shipped inside PyPI packages.

    pip install matplotlib xarray-spatial==0.5.3 statsmodels
    python sample_data/earth/make_samples.py

- ``jacksboro_dem.tif``: the 3 arc-second DEM of the Jacksboro fault (Tennessee) that matplotlib
  ships as ``sample_data/jacksboro_fault_dem.npz``, as an int16 COG in EPSG:4326.
- ``s2_catalog/``: a static STAC catalog with one Sentinel-2 item whose blue, red, nir and swir16
  assets are the 10 m bands xarray-spatial 0.5.x ships (``datasets/sentinel-2/*.nc``, EPSG:32719).
  Those files carry no acquisition date and no scene classification: the item's datetime is the
  date written below, and without an SCL asset the composite has no cloud mask.
- ``elnino_sst.nc``: statsmodels' monthly El Nino sea-surface temperatures 1950-2010 as an
  ERA5-like NetCDF with one grid cell at the centre of the Nino 1+2 box.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

HERE = Path(__file__).resolve().parent
SCENE_DATE = "2023-01-15T14:30:00Z"
COG = {"driver": "COG", "compress": "deflate", "blocksize": 256}


def jacksboro_dem(target: Path) -> None:
    """matplotlib's DEM sample as a GeoTIFF: 0.000833 degree cells, north-west corner given."""
    import matplotlib

    dem = np.load(os.path.join(matplotlib.get_data_path(), "sample_data", "jacksboro_fault_dem.npz"))
    elevation = dem["elevation"]
    # the file's ``ymin`` holds the northern edge (rows run north to south)
    transform = from_origin(float(dem["xmin"]), float(dem["ymin"]), float(dem["dx"]), float(dem["dy"]))
    with rasterio.open(target, "w", width=elevation.shape[1], height=elevation.shape[0], count=1, dtype="int16",
                       crs="EPSG:4326", transform=transform, nodata=-32768, **COG) as dst:
        dst.write(elevation, 1)


def sentinel2_catalog(folder: Path) -> None:
    """xarray-spatial's Sentinel-2 bands as COGs behind a one-item static STAC catalog."""
    import xarray as xr

    dist = importlib.metadata.distribution("xarray-spatial")
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for common, file in {"blue": "blue", "red": "red", "nir": "nir", "swir16": "swir1"}.items():
        data = xr.open_dataset(dist.locate_file(f"xrspatial/datasets/sentinel-2/{file}_band.nc"), engine="scipy")
        band = data["__xarray_dataarray_variable__"].values.astype("uint16")
        x, y = data["x"].values, data["y"].values
        transform = from_origin(float(x[0]) - 5, float(y[0]) + 5, 10, 10)
        with rasterio.open(folder / f"{common}.tif", "w", width=band.shape[1], height=band.shape[0], count=1,
                           dtype="uint16", crs="EPSG:32719", transform=transform, nodata=0, **COG) as dst:
            dst.write(band, 1)
        assets[common] = {"href": f"./{common}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                          "roles": ["data"], "eo:bands": [{"name": common, "common_name": common}]}
    with rasterio.open(folder / "red.tif") as src:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "S2_xrspatial_sample",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]},
        "bbox": [west, south, east, north],
        "properties": {"datetime": SCENE_DATE, "platform": "sentinel-2", "eo:cloud_cover": 0.0,
                       "s2:processing_baseline": "03.01"},
        "links": [{"rel": "root", "href": "./catalog.json"}, {"rel": "parent", "href": "./catalog.json"}],
        "assets": assets, "collection": "sentinel-2-l2a",
    }
    (folder / "S2_xrspatial_sample.json").write_text(json.dumps(item, indent=1))
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "memories-demo", "description": "demo scenes",
               "links": [{"rel": "root", "href": "./catalog.json"}, {"rel": "item", "href": "./S2_xrspatial_sample.json"}]}
    (folder / "catalog.json").write_text(json.dumps(catalog, indent=1))


def elnino_netcdf(target: Path) -> None:
    """statsmodels' El Nino table (a row per year, a column per month) as a monthly grid series."""
    import pandas as pd
    import statsmodels.api as sm
    import xarray as xr

    table = sm.datasets.elnino.load_pandas().data
    months = table.columns[1:]
    values = table[months].to_numpy(dtype="float64").ravel()
    time = pd.date_range(f"{int(table['YEAR'].iloc[0])}-01-01", periods=values.size, freq="MS")
    da = xr.DataArray(values.reshape(-1, 1, 1), dims=("time", "latitude", "longitude"),
                      coords={"time": time, "latitude": [-5.0], "longitude": [-85.0]},
                      name="sst", attrs={"units": "degC", "long_name": "sea surface temperature, Nino 1+2"})
    da.to_dataset().to_netcdf(target, engine="netcdf4")


if __name__ == "__main__":
    jacksboro_dem(HERE / "jacksboro_dem.tif")
    sentinel2_catalog(HERE / "s2_catalog")
    elnino_netcdf(HERE / "elnino_sst.nc")
    print("written:", *(p.relative_to(HERE) for p in sorted(HERE.rglob("*")) if p.is_file()), sep="\n  ")

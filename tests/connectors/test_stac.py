"""STAC scene search against a real HTTP STAC API (pytest-httpserver) and a static catalog on disk.

The helpers here build honest Sentinel-2 L2A and Landsat C2 L2 scenes as COGs from the real
Sentinel-2 bands shipped with xarray-spatial and serve them, with HTTP range support, next to a
small STAC API; tests/engine/earth/test_satellite.py reuses them.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.warp import transform_bounds
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from memories_dagster.connectors.stac import StacError, catalog_scenes, search_scenes

TILE_CRS = "EPSG:32719"
TILE_TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4700020.0)
TILE_SHAPE = (200, 300)
XRS_FILES = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir16": "swir1", "swir22": "swir2"}
S2_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
LANDSAT_KEYS = {"blue": "blue", "green": "green", "red": "red", "nir": "nir08", "swir16": "swir16", "swir22": "swir22"}
CORE = "https://api.stacspec.org/v1.0.0/core"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
QUERY = "https://api.stacspec.org/v1.0.0/item-search#query"
FILTER = "https://api.stacspec.org/v1.0.0/item-search#filter"
COG_COLLECTION = "image/tiff; application=geotiff; profile=cloud-optimized"


@functools.lru_cache(maxsize=1)
def _xrspatial_bands() -> dict[str, np.ndarray]:
    folder = importlib.metadata.distribution("xarray-spatial").locate_file("xrspatial/datasets/sentinel-2")
    bands = {}
    for name, stem in XRS_FILES.items():
        with xr.open_dataset(Path(str(folder)) / f"{stem}_band.nc", engine="scipy") as ds:
            bands[name] = ds["__xarray_dataarray_variable__"].values.astype("float64")
    return bands


def xrspatial_bands() -> dict[str, np.ndarray]:
    """The six Sentinel-2 bands of xarray-spatial's sample (DN, 200 x 300, 10 m, EPSG:32719)."""
    return {k: v.copy() for k, v in _xrspatial_bands().items()}


def tile_bbox_lonlat() -> tuple[float, float, float, float]:
    left, top = TILE_TRANSFORM.c, TILE_TRANSFORM.f
    right, bottom = left + TILE_SHAPE[1] * 10, top - TILE_SHAPE[0] * 10
    return transform_bounds(TILE_CRS, "EPSG:4326", left, bottom, right, top)


def write_band_cog(path: Path, array: np.ndarray, dtype: str, nodata: float | None) -> Path:
    """One band as a tiled COG (128 px blocks, the smallest the driver takes: a window reads a few tiles)."""
    profile = {"driver": "COG", "width": array.shape[1], "height": array.shape[0], "count": 1, "dtype": dtype,
               "crs": TILE_CRS, "transform": TILE_TRANSFORM, "nodata": nodata, "blocksize": 128, "compress": "deflate",
               "overviews": "none"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(dtype), 1)
    return path


class StacApi:
    """A STAC API (landing page, /search by GET and POST) and its COGs served with Range support."""

    def __init__(self, httpserver, conforms: tuple[str, ...] = (CORE, ITEM_SEARCH, QUERY), honour_query: bool = True):
        self.server = httpserver
        self.prefix = f"/api-{uuid.uuid4().hex[:8]}"  # GDAL caches by URL: every test its own
        self.items: list[dict[str, Any]] = []
        self.files: dict[str, Path] = {}
        self.conforms = list(conforms)
        self.honour_query = honour_query
        self.search_bodies: list[dict[str, Any]] = []
        self.data_requests: list[tuple[str, str, str | None, int]] = []  # method, path, Range, bytes sent
        httpserver.expect_request(self.prefix + "/").respond_with_handler(self._landing)
        httpserver.expect_request(self.prefix + "/search").respond_with_handler(self._search)
        httpserver.expect_request(re.compile(re.escape(self.prefix) + "/data/.*")).respond_with_handler(self._data)

    @property
    def url(self) -> str:
        return self.server.url_for(self.prefix + "/")

    def add_file(self, path: Path) -> str:
        """Serve a local file; its URL."""
        route = f"{self.prefix}/data/{path.parent.name}/{path.name}"
        self.files[route] = path
        return self.server.url_for(route)

    def bytes_served(self, name: str) -> int:
        return sum(size for method, route, _, size in self.data_requests if method == "GET" and route.endswith("/" + name))

    def _landing(self, request: Request) -> Response:
        base = self.url.rstrip("/")
        body = {
            "type": "Catalog", "id": "test-api", "stac_version": "1.0.0", "description": "test STAC API",
            "conformsTo": self.conforms,
            "links": [
                {"rel": "self", "href": base + "/", "type": "application/json"},
                {"rel": "root", "href": base + "/", "type": "application/json"},
                {"rel": "search", "href": base + "/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": base + "/search", "type": "application/geo+json", "method": "POST"},
            ],
        }
        return Response(json.dumps(body), content_type="application/json")

    def _search(self, request: Request) -> Response:
        if request.method == "POST":
            params = request.get_json()
        else:
            params = {k: v for k, v in request.args.items()}
            if "collections" in params:
                params["collections"] = params["collections"].split(",")
            if "bbox" in params:
                params["bbox"] = [float(v) for v in params["bbox"].split(",")]
            if "query" in params:
                params["query"] = json.loads(params["query"])
        self.search_bodies.append(params)
        features = [item for item in self.items if self._matches(item, params)]
        limit = int(params.get("limit") or 100)
        body = {"type": "FeatureCollection", "features": features[:limit], "links": []}
        return Response(json.dumps(body), content_type="application/geo+json")

    def _matches(self, item: dict[str, Any], params: dict[str, Any]) -> bool:
        if params.get("collections") and item["collection"] not in params["collections"]:
            return False
        if params.get("bbox"):
            a, b = params["bbox"], item["bbox"]
            if not (a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]):
                return False
        if params.get("datetime"):
            start, _, end = params["datetime"].partition("/")
            when = _time(item["properties"]["datetime"])
            if start not in ("", "..") and when < _time(start) or end not in ("", "..") and when > _time(end):
                return False
        if self.honour_query:
            for name, ops in (params.get("query") or {}).items():
                value = item["properties"].get(name)
                if "lt" in ops and not value < ops["lt"]:
                    return False
        return True

    def _data(self, request: Request) -> Response:
        path = self.files.get(request.path)
        if path is None:
            return Response("not found", status=404)
        response = send_file(path, request.environ, conditional=True)
        self.data_requests.append((request.method, request.path, request.headers.get("Range"), int(response.content_length or 0)))
        return response


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def stac_item(scene_id: str, collection: str, when: str, cloud: float | None, assets: dict[str, Any],
          properties: dict[str, Any] | None = None, bbox: tuple[float, ...] | None = None) -> dict[str, Any]:
    bbox = list(bbox or tile_bbox_lonlat())
    west, south, east, north = bbox
    props = {"datetime": when, **(properties or {})}
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": scene_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]},
        "properties": props, "assets": assets, "links": [],
    }


def sentinel2_item(api: StacApi, folder: Path, scene_id: str, when: str, dn: dict[str, np.ndarray], scl: np.ndarray,
                   baseline: str, cloud: float, style: str = "pc", collection: str = "sentinel-2-l2a",
                   bbox: tuple[float, ...] | None = None) -> dict[str, Any]:
    """A Sentinel-2 L2A item whose bands are uint16 DN COGs (0 = nodata) and SCL a uint8 COG.

    ``style="pc"``: Planetary Computer keys (B02.., SCL) with eo:bands common names;
    ``style="earth-search"``: Earth Search keys (blue.., scl), raster:bands scale/offset and the
    JPEG2000 and visual assets that must not be picked.
    """
    folder = folder / scene_id
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, Any] = {}
    offset = -0.1 if tuple(int(p) for p in baseline.split(".")) >= (4, 0) else 0.0
    for band, values in dn.items():
        href = api.add_file(write_band_cog(folder / f"{band}.tif", values, "uint16", 0))
        if style == "pc":
            assets[S2_KEYS[band]] = {"href": href, "type": COG_COLLECTION, "roles": ["data"],
                                     "eo:bands": [{"name": S2_KEYS[band], "common_name": band}]}
        else:
            assets[band] = {"href": href, "type": COG_COLLECTION, "roles": ["data"],
                            "eo:bands": [{"name": S2_KEYS[band], "common_name": band}],
                            "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": offset}]}
            assets[f"{band}-jp2"] = {"href": href.replace(".tif", ".jp2"), "type": "image/jp2", "roles": ["data"],
                                     "eo:bands": [{"name": S2_KEYS[band], "common_name": band}]}
    scl_href = api.add_file(write_band_cog(folder / "scl.tif", scl, "uint8", 0))
    assets["SCL" if style == "pc" else "scl"] = {"href": scl_href, "type": COG_COLLECTION, "roles": ["data"]}
    if style != "pc":
        assets["visual"] = {"href": scl_href.replace("scl", "visual"), "type": COG_COLLECTION, "roles": ["visual"],
                            "eo:bands": [{"common_name": c} for c in ("red", "green", "blue")]}
    item = stac_item(scene_id, collection, when, cloud, assets,
                 {"platform": "sentinel-2b", "s2:processing_baseline": baseline}, bbox)
    api.items.append(item)
    return item


def landsat_item(api: StacApi, folder: Path, scene_id: str, when: str, dn: dict[str, np.ndarray], qa: np.ndarray,
                 cloud: float, collection: str = "landsat-c2-l2") -> dict[str, Any]:
    """A Landsat C2 L2 item with Planetary Computer keys (red, nir08, qa_pixel ...)."""
    folder = folder / scene_id
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, Any] = {}
    for band, values in dn.items():
        href = api.add_file(write_band_cog(folder / f"{band}.tif", values, "uint16", 0))
        assets[LANDSAT_KEYS[band]] = {"href": href, "type": COG_COLLECTION, "roles": ["data"],
                                      "eo:bands": [{"name": LANDSAT_KEYS[band], "common_name": LANDSAT_KEYS[band]}],
                                      "raster:bands": [{"scale": 2.75e-05, "offset": -0.2, "nodata": 0}]}
    qa_href = api.add_file(write_band_cog(folder / "qa_pixel.tif", qa, "uint16", 1))
    assets["qa_pixel"] = {"href": qa_href, "type": COG_COLLECTION, "roles": ["cloud", "cloud-shadow"]}
    item = stac_item(scene_id, collection, when, cloud, assets, {"platform": "landsat-9"})
    api.items.append(item)
    return item


def clear_scl() -> np.ndarray:
    return np.full(TILE_SHAPE, 4, dtype="uint8")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------- tests

BBOX = tile_bbox_lonlat()
INNER = (BBOX[0] + 0.005, BBOX[1] + 0.003, BBOX[2] - 0.005, BBOX[3] - 0.003)


@pytest.fixture
def scenes_api(httpserver, tmp_path) -> StacApi:
    api = StacApi(httpserver)
    dn = {k: v[:8, :8] for k, v in xrspatial_bands().items()}
    small = np.full((8, 8), 4, dtype="uint8")
    # COGs of an 8 x 8 window are enough to check hrefs; the tile geometry stays that of the item
    sentinel2_item(api, tmp_path, "S2B_early_es", "2023-01-05T14:30:00Z", dn, small, "04.00", 10.0, style="earth-search")
    sentinel2_item(api, tmp_path, "S2A_pc", "2023-01-10T14:30:00Z", dn, small, "05.09", 30.0, style="pc")
    sentinel2_item(api, tmp_path, "S2A_cloudy", "2023-01-12T14:30:00Z", dn, small, "05.09", 80.0)
    sentinel2_item(api, tmp_path, "S2A_february", "2023-02-20T14:30:00Z", dn, small, "05.09", 5.0)
    sentinel2_item(api, tmp_path, "S2A_elsewhere", "2023-01-15T14:30:00Z", dn, small, "05.09", 5.0,
                   bbox=(10.0, 45.0, 10.1, 45.1))
    landsat_item(api, tmp_path, "LC09_scene", "2023-01-07T14:20:00Z", dn, np.full((8, 8), 21824, "uint16"), 12.0)
    return api


def test_search_over_http_filters_and_maps_bands(scenes_api):
    scenes = search_scenes(scenes_api.url, "sentinel-2-l2a", INNER, "2023-01-01", "2023-01-31", max_cloud_cover=50)

    assert [s.id for s in scenes] == ["S2B_early_es", "S2A_pc"]  # sorted by time; cloudy, February, elsewhere left out
    early, pc = scenes
    assert early.datetime == dt.datetime(2023, 1, 5, 14, 30, tzinfo=dt.timezone.utc)
    assert (early.cloud_cover, early.collection, early.platform, early.processing_baseline) == (10.0, "sentinel-2-l2a", "sentinel-2b", "04.00")
    bands = {"blue", "green", "red", "nir", "swir16", "swir22", "scl"}
    assert set(early.assets) == bands and set(pc.assets) == bands
    # Earth Search keys: the COG, never the JPEG2000 twin or the 3-band visual
    assert early.assets["red"].endswith("/S2B_early_es/red.tif") and early.assets["red"].startswith("http://")
    assert early.band_offsets["red"] == -1000.0
    # Planetary Computer keys through eo:bands common names
    assert pc.assets["nir"].endswith("/S2A_pc/nir.tif") and pc.assets["scl"].endswith("/S2A_pc/scl.tif")
    assert pc.band_offsets == {} and pc.processing_baseline == "05.09"

    # pystac-client POSTs the search, with the cloud limit as a query (the API declares it)
    body = scenes_api.search_bodies[-1]
    assert body["collections"] == ["sentinel-2-l2a"] and body["query"] == {"eo:cloud_cover": {"lt": 50}}
    assert body["datetime"].startswith("2023-01-01T00:00:00") and body["datetime"].endswith("2023-01-31T23:59:59Z")

    landsat = search_scenes(scenes_api.url, "landsat-c2-l2", INNER, "2023-01-01", "2023-01-31", max_cloud_cover=50)
    assert [s.id for s in landsat] == ["LC09_scene"]
    assert set(landsat[0].assets) == {"blue", "green", "red", "nir", "swir16", "swir22", "qa_pixel"}
    assert landsat[0].assets["nir"].endswith("/nir.tif")  # the nir08 asset
    assert landsat[0].band_offsets == {} and landsat[0].processing_baseline is None


def test_cloud_filter_applied_when_the_server_ignores_it(httpserver, tmp_path):
    api = StacApi(httpserver, conforms=(CORE, ITEM_SEARCH), honour_query=False)
    dn = {"red": xrspatial_bands()["red"][:8, :8]}
    for name, cloud in [("clear", 5.0), ("cloudy", 75.0), ("unknown", None)]:
        sentinel2_item(api, tmp_path, name, "2023-03-01T10:00:00Z", dn, np.full((8, 8), 4, "uint8"), "05.00", cloud or 0)
    api.items[-1]["properties"].pop("eo:cloud_cover")

    scenes = search_scenes(api.url, "sentinel-2-l2a", INNER, dt.date(2023, 3, 1), dt.date(2023, 3, 1), max_cloud_cover=20)

    # the API does not declare query nor filter: nothing is sent, the limit is applied on the results
    assert "query" not in api.search_bodies[-1] and "filter" not in api.search_bodies[-1]
    assert [s.id for s in scenes] == ["clear", "unknown"]  # an unknown cloud cover is left to the mask band
    assert scenes[1].cloud_cover is None


def test_cloud_filter_sent_as_cql2_when_the_api_declares_filter(httpserver, tmp_path):
    api = StacApi(httpserver, conforms=(CORE, ITEM_SEARCH, FILTER), honour_query=False)
    dn = {"red": xrspatial_bands()["red"][:8, :8]}
    sentinel2_item(api, tmp_path, "clear", "2023-03-01T10:00:00Z", dn, np.full((8, 8), 4, "uint8"), "05.00", 5.0)
    sentinel2_item(api, tmp_path, "cloudy", "2023-03-02T10:00:00Z", dn, np.full((8, 8), 4, "uint8"), "05.00", 60.0)

    scenes = search_scenes(api.url, "sentinel-2-l2a", INNER, "2023-03-01", "2023-03-31", max_cloud_cover=20)

    body = api.search_bodies[-1]
    assert body["filter"] == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}
    assert body["filter-lang"] == "cql2-json"
    assert [s.id for s in scenes] == ["clear"]


def test_unreachable_api_names_the_url_and_hides_headers():
    url = f"http://127.0.0.1:{closed_port()}/stac/v1"
    with pytest.raises(StacError) as caught:
        search_scenes(url, "sentinel-2-l2a", (10.0, 45.0, 10.1, 45.1), "2023-01-01", "2023-01-31",
                      headers={"Authorization": "Bearer top-secret-token"}, timeout=5)
    message = str(caught.value)
    assert url in message and "could not be opened" in message
    assert "collection sentinel-2-l2a" in message and "bbox [10, 45, 10.1, 45.1]" in message
    assert "dates 2023-01-01 to 2023-01-31" in message
    assert "top-secret-token" not in message


def test_http_error_names_the_url(httpserver):
    httpserver.expect_request("/broken/").respond_with_data("boom", status=500)
    url = httpserver.url_for("/broken/")
    with pytest.raises(StacError, match=re.escape(url)) as caught:
        search_scenes(url, "landsat-c2-l2", (10.0, 45.0, 10.1, 45.1), "2023-01-01", "2023-01-31")
    assert "landsat-c2-l2" in str(caught.value) and "(HTTP 500: boom)" in str(caught.value)


def test_nothing_matched_names_bbox_dates_and_cloud_limit(scenes_api):
    with pytest.raises(StacError) as caught:
        search_scenes(scenes_api.url, "sentinel-2-l2a", INNER, "2022-06-01", "2022-06-30", max_cloud_cover=20)
    message = str(caught.value)
    assert message.startswith("No scenes matched at the STAC API " + scenes_api.url)
    bbox_text = "bbox [" + ", ".join(f"{v:g}" for v in INNER) + "]"
    assert bbox_text in message and "dates 2022-06-01 to 2022-06-30" in message and "eo:cloud_cover < 20" in message


def test_landing_page_without_item_search_is_explained(httpserver):
    httpserver.expect_request("/static/").respond_with_json(
        {"type": "Catalog", "id": "c", "stac_version": "1.0.0", "description": "d", "conformsTo": [CORE],
         "links": [{"rel": "self", "href": httpserver.url_for("/static/")}]})
    with pytest.raises(StacError, match="not a STAC API with item search .*catalog_scenes"):
        search_scenes(httpserver.url_for("/static/"), "sentinel-2-l2a", INNER, "2023-01-01", "2023-01-31")


def test_static_catalog_on_disk(tmp_path):
    bands = xrspatial_bands()
    root = pystac.Catalog("demo", "an offline demo catalog")
    for scene_id, when, cloud in [("b_scene", "2023-01-20", 15.0), ("a_scene", "2023-01-03", 2.0), ("cloudy", "2023-01-09", 90.0)]:
        folder = tmp_path / "cogs" / scene_id
        folder.mkdir(parents=True)
        west, south, east, north = BBOX
        polygon = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]}
        item = pystac.Item(scene_id, geometry=polygon, bbox=list(BBOX),
                           datetime=dt.datetime.fromisoformat(when).replace(tzinfo=dt.timezone.utc),
                           properties={"eo:cloud_cover": cloud, "s2:processing_baseline": "05.10"}, collection="sentinel-2-l2a")
        for band in ("red", "nir"):
            write_band_cog(folder / f"{band}.tif", bands[band][:8, :8], "uint16", 0)
            item.add_asset(S2_KEYS[band], pystac.Asset(str(folder / f"{band}.tif"), media_type=pystac.MediaType.COG,
                                                       extra_fields={"eo:bands": [{"name": S2_KEYS[band], "common_name": band}]}))
        write_band_cog(folder / "scl.tif", np.full((8, 8), 4), "uint8", 0)
        item.add_asset("SCL", pystac.Asset(str(folder / "scl.tif"), media_type=pystac.MediaType.COG))
        root.add_item(item)
    root.normalize_hrefs(str(tmp_path / "catalog"))
    root.make_all_asset_hrefs_relative()
    root.save(pystac.CatalogType.SELF_CONTAINED)
    catalog_json = tmp_path / "catalog" / "catalog.json"

    scenes = catalog_scenes(str(catalog_json), "sentinel-2-l2a", INNER, "2023-01-01", "2023-01-31", max_cloud_cover=50)

    assert [s.id for s in scenes] == ["a_scene", "b_scene"]
    assert Path(scenes[0].assets["red"]).is_absolute() and Path(scenes[0].assets["red"]).exists()
    assert set(scenes[0].assets) == {"red", "nir", "scl"}
    assert scenes[1].processing_baseline == "05.10"
    with pytest.raises(StacError, match=r"No scenes matched in the STAC catalog .*dates 2024-01-01 to 2024-01-31"):
        catalog_scenes(str(catalog_json), "sentinel-2-l2a", INNER, "2024-01-01", "2024-01-31")
    with pytest.raises(StacError, match="could not be read"):
        catalog_scenes(str(tmp_path / "missing" / "catalog.json"))

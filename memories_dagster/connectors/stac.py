"""Satellite scenes from STAC: an item-search API (pystac-client) or a static catalog (pystac).

A :class:`Scene` is the part of a STAC item the earth engine needs: its id and time, its cloud
cover, what is needed to scale its digital numbers to reflectance, and one absolute href per
common band name (``blue``, ``green``, ``red``, ``nir``, ``swir16``, ``swir22``) plus the mask
asset (``scl`` for Sentinel-2 L2A, ``qa_pixel`` for Landsat Collection 2 Level-2).

Asset keys differ between providers (Earth Search names them ``red``/``nir``/``scl``, the
Planetary Computer ``B04``/``B08``/``SCL`` for Sentinel-2 and ``red``/``nir08``/``qa_pixel`` for
Landsat, USGS ``SR_B4``/``SR_B5``/``QA_PIXEL``); each asset's ``eo:bands`` common name is used
when present, else the known key.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pystac
import requests
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from pystac_client.warnings import DoesNotConformTo, PystacClientWarning

from memories_dagster.connectors.deadlines import deadline_session
from memories_dagster.connectors.files import ConnectorError, UnavailableError
from memories_dagster.secrets import redact

# common band name -> names an asset may carry (lower-cased key or eo:bands common_name), best first.
# "nir08" comes last: on Sentinel-2 it is the narrow B8A band, on Landsat 8/9 the only NIR band.
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "coastal": ("coastal", "b01", "sr_b1"),
    "blue": ("blue", "b02", "sr_b2"),
    "green": ("green", "b03", "sr_b3"),
    "red": ("red", "b04", "sr_b4"),
    "nir": ("nir", "b08", "sr_b5", "nir08"),
    "swir16": ("swir16", "b11", "sr_b6"),
    "swir22": ("swir22", "b12", "sr_b7"),
    "scl": ("scl",),
    "qa_pixel": ("qa_pixel",),
    # DEM collections (Copernicus DEM, NASADEM, ALOS...) carry the heights as one asset
    "elevation": ("elevation", "dem", "data"),
}
_SOCKET_ERROR = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")
_NOT_RASTER_DATA = {"thumbnail", "overview", "metadata", "visual"}


class StacError(ConnectorError):
    """A STAC search that cannot run or finds nothing; names the API, collection, box and dates."""


class StacUnavailableError(StacError, UnavailableError):
    """A STAC API that could not be reached, timed out or answered 429/5xx."""


def _failed(error: BaseException, message: str) -> StacError:
    status = getattr(error, "status_code", None) or 0
    lost = isinstance(error, (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)) \
        or status >= 500 or status == 429
    return (StacUnavailableError if lost else StacError)(message)


@dataclass(frozen=True)
class Scene:
    """One acquisition: what reading and scaling its bands needs."""

    id: str
    datetime: dt.datetime
    cloud_cover: float | None
    collection: str | None
    platform: str | None
    # Sentinel-2 processing baseline ("04.00" and later carry BOA_ADD_OFFSET = -1000)
    processing_baseline: str | None
    # common band name -> absolute href of its raster (a COG)
    assets: dict[str, str]
    # common band name -> additive DN offset declared by the item (raster:bands offset / scale)
    band_offsets: dict[str, float] = field(default_factory=dict)
    bbox: tuple[float, float, float, float] | None = None


def search_scenes(
    api_url: str,
    collection: str,
    bbox: tuple[float, float, float, float],
    start: str | dt.date | None,
    end: str | dt.date | None,
    max_cloud_cover: float | None = None,
    limit: int = 100,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    required: bool = True,
) -> list[Scene]:
    """Scenes of ``collection`` over a lon/lat ``bbox`` between ``start`` and ``end``, oldest first.

    The cloud limit (``eo:cloud_cover`` strictly below ``max_cloud_cover`` percent) is sent as a
    ``query`` or a CQL2 ``filter``, whichever the API declares, and applied again to the results
    in case the server ignored it. ``headers`` go with every request and never into messages;
    ``required``: finding no scene is an error.
    """
    where = _describe(collection, bbox, start, end, max_cloud_cover)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)  # a landing page without conformsTo: see below
            stac_io = StacApiIO(max_retries=None)
            deadline_session(timeout, stac_io.session, max_retries=5)  # each answer in full, however it trickles
            client = Client.open(api_url, headers=dict(headers or {}), timeout=timeout, stac_io=stac_io)
    except (APIError, OSError, ValueError, pystac.STACError) as error:
        raise _failed(error, f"The STAC API at {redact(api_url)} could not be opened ({_reason(error)}) while searching {where}.") from error
    arguments: dict[str, Any] = {
        "collections": [collection],
        "bbox": list(bbox),
        "max_items": limit,
    }
    if start or end:  # a DEM has no time window
        arguments["datetime"] = f"{_iso(start) if start else '..'}/{_iso(end) if end else '..'}"
    if max_cloud_cover is not None:
        if client.conforms_to(ConformanceClasses.QUERY):
            arguments["query"] = {"eo:cloud_cover": {"lt": max_cloud_cover}}
        elif client.conforms_to(ConformanceClasses.FILTER):
            arguments["filter"] = {"op": "<", "args": [{"property": "eo:cloud_cover"}, max_cloud_cover]}
            arguments["filter_lang"] = "cql2-json"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)
            items = list(client.search(**arguments).items())
    except DoesNotConformTo:
        raise StacError(
            f"{redact(api_url)} is not a STAC API with item search (its conformsTo lacks "
            f"https://api.stacspec.org/v1.0.0/item-search) while searching {where}; "
            "read a static catalog with catalog_scenes instead."
        ) from None
    except (APIError, OSError, ValueError, pystac.STACError) as error:
        raise _failed(error, f"The STAC search at {redact(api_url)} failed ({_reason(error)}) for {where}.") from error
    scenes = _select((scene_of(item) for item in items), collection, bbox, start, end, max_cloud_cover)
    if not scenes and required:
        raise StacError(f"No scenes matched at the STAC API {redact(api_url)}: {where}.")
    return scenes


def catalog_scenes(
    catalog: str,
    collection: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    max_cloud_cover: float | None = None,
    limit: int | None = None,
    required: bool = True,
) -> list[Scene]:
    """The same selection as :func:`search_scenes` over a static catalog (a path or URL of catalog.json).

    Every item under the catalog is walked; ``collection`` matches an item's collection id.
    """
    where = _describe(collection, bbox, start, end, max_cloud_cover)
    try:
        root = pystac.Catalog.from_file(catalog)
        items = list(root.get_items(recursive=True))
    except (OSError, ValueError, pystac.STACError) as error:
        raise StacError(f"The STAC catalog {redact(catalog)} could not be read ({_reason(error)}) for {where}.") from None
    scenes = _select((scene_of(item) for item in items), collection, bbox, start, end, max_cloud_cover)
    if not scenes and required:
        raise StacError(f"No scenes matched in the STAC catalog {redact(catalog)}: {where}.")
    return scenes[:limit] if limit else scenes


def scene_of(item: pystac.Item) -> Scene:
    """The :class:`Scene` of a STAC item: band hrefs resolved to absolute, scaling facts kept."""
    props = item.properties
    when = item.datetime or _parse_time(props.get("start_datetime"))
    if when is None:
        raise StacError(f"STAC item {item.id} has no datetime or start_datetime.")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    cloud = props.get("eo:cloud_cover")
    assets, offsets = band_assets(item)
    baseline = props.get("s2:processing_baseline") or props.get("processing:version")
    return Scene(
        id=item.id,
        datetime=when,
        cloud_cover=float(cloud) if cloud is not None else None,
        collection=item.collection_id,
        platform=props.get("platform"),
        processing_baseline=str(baseline) if baseline is not None else None,
        assets=assets,
        band_offsets=offsets,
        bbox=tuple(item.bbox) if item.bbox else None,
    )


def band_assets(item: pystac.Item) -> tuple[dict[str, str], dict[str, float]]:
    """Common band name -> absolute href, and -> additive DN offset where ``raster:bands`` declares one."""
    names: dict[str, set[str]] = {}
    for key, asset in item.assets.items():
        if not _is_single_band_raster(key, asset):
            continue
        labels = {key.lower()}
        common = _common_name(asset)
        if common:
            labels.add(common.lower())
        names[key] = labels
    hrefs: dict[str, str] = {}
    offsets: dict[str, float] = {}
    for band, aliases in BAND_ALIASES.items():
        key = next((k for alias in aliases for k, labels in names.items() if alias in labels), None)
        if key is None:
            continue
        asset = item.assets[key]
        hrefs[band] = asset.get_absolute_href() or asset.href
        offset = _dn_offset(asset)
        if offset is not None:
            offsets[band] = offset
    return hrefs, offsets


def _is_single_band_raster(key: str, asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    if key.lower().endswith("-jp2") or "jp2" in media or key.lower() in _NOT_RASTER_DATA:
        return False
    if media and not ("tiff" in media or "geotiff" in media):
        return False
    if set(asset.roles or []) & {"thumbnail", "overview", "metadata"}:
        return False
    bands = _bands(asset)
    return bands is None or len(bands) == 1


def _bands(asset: pystac.Asset) -> list[dict[str, Any]] | None:
    for name in ("eo:bands", "bands", "raster:bands"):
        value = asset.extra_fields.get(name)
        if isinstance(value, list):
            return value
    return None


def _common_name(asset: pystac.Asset) -> str | None:
    for name in ("eo:bands", "bands"):
        value = asset.extra_fields.get(name)
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            common = value[0].get("common_name") or value[0].get("eo:common_name")
            if common:
                return str(common)
    return None


def _dn_offset(asset: pystac.Asset) -> float | None:
    """``raster:bands`` offset / scale: the DN offset (e.g. -0.1 / 0.0001 = -1000 for Sentinel-2 baseline 04.00)."""
    raster = asset.extra_fields.get("raster:bands")
    if isinstance(raster, list) and len(raster) == 1 and isinstance(raster[0], dict):
        scale, offset = raster[0].get("scale"), raster[0].get("offset")
        if scale and offset is not None and math.isclose(float(scale), 1e-4):
            return round(float(offset) / float(scale), 6)
    return None


def _select(
    scenes: Iterable[Scene],
    collection: str | None,
    bbox: tuple[float, float, float, float] | None,
    start: str | dt.date | None,
    end: str | dt.date | None,
    max_cloud_cover: float | None,
) -> list[Scene]:
    low = _bound(start, end=False)
    high = _bound(end, end=True)
    chosen = []
    for scene in scenes:
        if collection and scene.collection and scene.collection != collection:
            continue
        if max_cloud_cover is not None and scene.cloud_cover is not None and not scene.cloud_cover < max_cloud_cover:
            continue
        if (low and scene.datetime < low) or (high and scene.datetime > high):
            continue
        if bbox and scene.bbox and not _overlaps(bbox, scene.bbox):
            continue
        chosen.append(scene)
    return sorted(chosen, key=lambda s: (s.datetime, s.id))


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if len(b) == 6:  # 3-D bbox
        b = (b[0], b[1], b[3], b[4])
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _iso(value: str | dt.date) -> str:
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _bound(value: str | dt.date | None, end: bool) -> dt.datetime | None:
    """A start or end as an aware datetime; a bare date ends at the end of its day."""
    if value is None or value in ("", ".."):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        text = value.isoformat()
    else:
        text = str(value)
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
        return moment.replace(tzinfo=dt.timezone.utc)
    parsed = _parse_time(text)
    if parsed is None:
        raise StacError(f"{text!r} is not a date or an ISO 8601 date-time.")
    return parsed


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _describe(collection: str | None, bbox: Any, start: Any, end: Any, max_cloud: float | None) -> str:
    parts = [f"collection {collection}" if collection else "all collections"]
    if bbox is not None:
        parts.append("bbox [" + ", ".join(f"{float(v):g}" for v in bbox) + "]")
    parts.append(f"dates {_iso(start) if start else '..'} to {_iso(end) if end else '..'}")
    if max_cloud is not None:
        parts.append(f"eo:cloud_cover < {max_cloud:g}")
    return ", ".join(parts)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    status = getattr(error, "status_code", None)
    if status:  # an APIError carries the body as its text; the status says more
        text = f"HTTP {status}: {text}"
    refused = _SOCKET_ERROR.search(text)
    if refused:  # requests wraps "[Errno 111] Connection refused" in three layers of repr
        return refused.group(1).strip()
    if len(text) > 300:
        text = text[:300] + "..."
    return redact(text)

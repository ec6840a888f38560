"""Surface reflectance from Sentinel-2 L2A and Landsat C2 L2 digital numbers, cloud masks, spectral indices.

Pure numpy. Reflectance and index arrays carry NaN where there is no value: nodata DN, masked
pixels, and index denominators of zero. The index formulas are the Awesome Spectral Indices
catalogue's (as shipped in ``spyndex``):

- NDVI = (N - R) / (N + R)
- EVI  = g * (N - R) / (N + C1 * R - C2 * B + L), with g = 2.5, C1 = 6, C2 = 7.5, L = 1
- SAVI = (1 + L) * (N - R) / (N + R + L), with L = 0.5
- NDBI = (S1 - N) / (S1 + N), S1 the 1.6 um short-wave infrared band
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

# Sentinel-2 L2A: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, the offset
# -1000 since processing baseline 04.00 (25 January 2022), 0 before; DN 0 is nodata.
S2_QUANTIFICATION = 10000.0
S2_OFFSET_SINCE_04_00 = -1000.0
# Landsat Collection 2 Level-2 surface reflectance: DN * 2.75e-5 - 0.2; DN 0 is fill.
LANDSAT_C2_SCALE = 0.0000275
LANDSAT_C2_OFFSET = -0.2

# Sentinel-2 scene classification (SCL) classes
SCL_NO_DATA, SCL_SATURATED, SCL_CLOUD_SHADOW = 0, 1, 3
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS, SCL_SNOW = 8, 9, 10, 11
SCL_MASKED = (SCL_NO_DATA, SCL_SATURATED, SCL_CLOUD_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS)
SCL_CLOUD_OR_SHADOW = (SCL_CLOUD_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS)

# Landsat Collection 2 QA_PIXEL bits
QA_FILL, QA_DILATED_CLOUD, QA_CIRRUS, QA_CLOUD, QA_CLOUD_SHADOW, QA_SNOW = 0, 1, 2, 3, 4, 5

# Declared thresholds of the vegetation and urban layers
VEGETATION_NDVI_MIN = 0.3  # a pixel with NDVI above this is vegetated
BUILT_UP_NDBI_MIN = 0.0  # built-up: NDBI above this ...
BUILT_UP_NDVI_MAX = 0.2  # ... and NDVI below this (bare soil and rock also have NDBI > 0)


class PixelMask(NamedTuple):
    """Boolean per-pixel masks of one scene.

    ``valid``: the pixel has data; ``clear``: valid and usable (not cloud, shadow, cirrus,
    saturated, or snow when asked); ``cloud``: valid and cloud, cloud shadow or cirrus.
    """

    clear: np.ndarray
    cloud: np.ndarray
    valid: np.ndarray

    @property
    def cloud_fraction(self) -> float:
        """Cloud-or-shadow pixels over pixels with data; NaN when none has data."""
        valid = int(self.valid.sum())
        return float(self.cloud.sum()) / valid if valid else float("nan")


def processing_baseline_offset(processing_baseline: str | None) -> float:
    """Sentinel-2 L2A BOA_ADD_OFFSET of a processing baseline: -1000 from "04.00" on, else 0.

    Baselines are compared as version numbers ("04.00" >= "4.0", "10.01" > "04.00"); an unknown
    baseline (None or unparsable) gives 0.
    """
    version = _version(processing_baseline)
    if version is None:
        return 0.0
    return S2_OFFSET_SINCE_04_00 if version >= (4, 0) else 0.0


def _version(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    numbers = re.findall(r"\d+", str(text))
    return tuple(int(n) for n in numbers) if numbers else None


def sentinel2_l2a_reflectance(
    dn: np.ndarray,
    processing_baseline: str | None = None,
    boa_add_offset: float | None = None,
    quantification: float = S2_QUANTIFICATION,
) -> np.ndarray:
    """Surface reflectance of Sentinel-2 L2A DNs: (DN + offset) / 10000, float32; DN 0 (and NaN) -> NaN.

    The offset is ``boa_add_offset`` when given (the band's BOA_ADD_OFFSET from the product
    metadata), else the processing baseline's (:func:`processing_baseline_offset`).
    """
    offset = processing_baseline_offset(processing_baseline) if boa_add_offset is None else float(boa_add_offset)
    values = np.asarray(dn, dtype="float64")
    out = (values + offset) / quantification
    out[~np.isfinite(values) | (values == 0)] = np.nan
    return out.astype("float32")


def landsat_c2_l2_reflectance(dn: np.ndarray) -> np.ndarray:
    """Surface reflectance of Landsat Collection 2 Level-2 DNs: DN * 0.0000275 - 0.2, float32; DN 0 (fill) -> NaN."""
    values = np.asarray(dn, dtype="float64")
    out = values * LANDSAT_C2_SCALE + LANDSAT_C2_OFFSET
    out[~np.isfinite(values) | (values == 0)] = np.nan
    return out.astype("float32")


def scl_clear_mask(
    scl: np.ndarray,
    masked_classes: tuple[int, ...] = SCL_MASKED,
    mask_snow: bool = False,
) -> PixelMask:
    """Masks of a Sentinel-2 scene classification layer.

    Valid: class not 0 (no data) and not NaN (off the scene). Clear: valid and not in
    ``masked_classes`` (default: no data, saturated/defective, cloud shadow, cloud medium and high
    probability, thin cirrus), nor snow (11) when ``mask_snow``. Cloud: classes 3, 8, 9, 10.
    """
    values = np.asarray(scl, dtype="float64")
    finite = np.isfinite(values)
    classes = np.where(finite, values, SCL_NO_DATA).astype("int64")
    valid = finite & (classes != SCL_NO_DATA)
    masked = np.isin(classes, list(masked_classes) + ([SCL_SNOW] if mask_snow else []))
    cloud = valid & np.isin(classes, SCL_CLOUD_OR_SHADOW)
    return PixelMask(clear=valid & ~masked, cloud=cloud, valid=valid)


def qa_pixel_clear_mask(qa: np.ndarray, mask_snow: bool = False) -> PixelMask:
    """Masks of a Landsat Collection 2 QA_PIXEL band.

    Valid: fill bit (0) unset and not NaN. Cloud: dilated cloud (bit 1), cirrus (2), cloud (3) or
    cloud shadow (4). Clear: valid, not cloud, and not snow (bit 5) when ``mask_snow``.
    """
    values = np.asarray(qa, dtype="float64")
    finite = np.isfinite(values)
    bits = np.where(finite, values, 1).astype("int64")

    def bit(n: int) -> np.ndarray:
        return (bits >> n) & 1 == 1

    valid = finite & ~bit(QA_FILL)
    cloud = valid & (bit(QA_DILATED_CLOUD) | bit(QA_CIRRUS) | bit(QA_CLOUD) | bit(QA_CLOUD_SHADOW))
    clear = valid & ~cloud
    if mask_snow:
        clear &= ~bit(QA_SNOW)
    return PixelMask(clear=clear, cloud=cloud, valid=valid)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out = np.asarray(out)
    out[denominator == 0] = np.nan
    return out


def _float(*arrays: np.ndarray) -> list[np.ndarray]:
    kind = np.result_type(*[np.asarray(a).dtype for a in arrays], np.float32)
    return [np.asarray(a, dtype=kind) for a in arrays]


def ndvi(nir: np.ndarray, red: np.ndarray) -> np.ndarray:
    """Normalized Difference Vegetation Index (N - R) / (N + R)."""
    n, r = _float(nir, red)
    return _ratio(n - r, n + r)


def evi(
    nir: np.ndarray,
    red: np.ndarray,
    blue: np.ndarray,
    G: float = 2.5,
    C1: float = 6.0,
    C2: float = 7.5,
    L: float = 1.0,
) -> np.ndarray:
    """Enhanced Vegetation Index g * (N - R) / (N + C1 * R - C2 * B + L), on reflectances (0-1)."""
    n, r, b = _float(nir, red, blue)
    return _ratio(G * (n - r), n + C1 * r - C2 * b + L)


def savi(nir: np.ndarray, red: np.ndarray, L: float = 0.5) -> np.ndarray:
    """Soil-Adjusted Vegetation Index (1 + L) * (N - R) / (N + R + L), on reflectances (0-1)."""
    n, r = _float(nir, red)
    return _ratio((1.0 + L) * (n - r), n + r + L)


def ndbi(swir1: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Normalized Difference Built-up Index (S1 - N) / (S1 + N), S1 the ~1.6 um SWIR band."""
    s, n = _float(swir1, nir)
    return _ratio(s - n, s + n)


def vegetated_fraction(ndvi_values: np.ndarray, threshold: float = VEGETATION_NDVI_MIN) -> float:
    """Share of the pixels with an NDVI whose NDVI is above ``threshold``; NaN when none has one."""
    values = np.asarray(ndvi_values, dtype="float64")
    known = np.isfinite(values)
    count = int(known.sum())
    return float((values[known] > threshold).sum()) / count if count else float("nan")


def built_up_mask(
    ndbi_values: np.ndarray,
    ndvi_values: np.ndarray,
    ndbi_threshold: float = BUILT_UP_NDBI_MIN,
    ndvi_max: float = BUILT_UP_NDVI_MAX,
) -> np.ndarray:
    """Built-up pixels: NDBI above ``ndbi_threshold`` and NDVI below ``ndvi_max`` (False where either is NaN)."""
    b = np.asarray(ndbi_values, dtype="float64")
    v = np.asarray(ndvi_values, dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.isfinite(b) & np.isfinite(v) & (b > ndbi_threshold) & (v < ndvi_max)


def built_up_fraction(
    ndbi_values: np.ndarray,
    ndvi_values: np.ndarray,
    ndbi_threshold: float = BUILT_UP_NDBI_MIN,
    ndvi_max: float = BUILT_UP_NDVI_MAX,
) -> float:
    """Share of the pixels with both indices that are built up; NaN when none has both."""
    known = np.isfinite(np.asarray(ndbi_values, dtype="float64")) & np.isfinite(np.asarray(ndvi_values, dtype="float64"))
    count = int(known.sum())
    if not count:
        return float("nan")
    return float(built_up_mask(ndbi_values, ndvi_values, ndbi_threshold, ndvi_max).sum()) / count

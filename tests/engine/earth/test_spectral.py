"""Reflectance scaling, cloud masks and spectral indices, checked against hand-computed values and
the Awesome Spectral Indices formulas shipped in spyndex (evaluated here from their strings)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from memories_dagster.engine.earth.spectral import (
    BUILT_UP_NDVI_MAX,
    built_up_fraction,
    built_up_mask,
    evi,
    landsat_c2_l2_reflectance,
    ndbi,
    ndvi,
    processing_baseline_offset,
    qa_pixel_clear_mask,
    savi,
    scl_clear_mask,
    sentinel2_l2a_reflectance,
    vegetated_fraction,
)
from tests.connectors.test_stac import xrspatial_bands

SPYNDEX = Path(str(importlib.metadata.distribution("spyndex").locate_file("spyndex/data")))


def spyndex_formula(name: str) -> str:
    return json.loads((SPYNDEX / "spectral-indices-dict.json").read_text())["SpectralIndices"][name]["formula"]


def spyndex_constant(name: str) -> float:
    return json.loads((SPYNDEX / "constants.json").read_text())[name]["default"]


def evaluate(name: str, **values) -> np.ndarray:
    """The catalogue's formula string of an index, evaluated on float64 arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return eval(spyndex_formula(name), {"__builtins__": {}}, values)  # the catalogue's formula is the reference


def spyndex_s2_reflectance() -> dict[str, np.ndarray]:
    """spyndex's Sentinel-2 sample: 4 bands (B02, B03, B04, B08), 300 x 300 DN -> reflectance."""
    data = np.array(json.loads((SPYNDEX / "S2_10m.json").read_text()), dtype="float64")
    assert data.shape == (4, 300, 300) and data.min() > 0
    return dict(zip(("blue", "green", "red", "nir"), data / 10000.0))


# ------------------------------------------------------------------------------------ reflectance


def test_sentinel2_offset_by_processing_baseline():
    assert processing_baseline_offset("04.00") == -1000
    assert processing_baseline_offset("05.09") == -1000
    assert processing_baseline_offset("4.0") == -1000
    assert processing_baseline_offset("10.01") == -1000  # as version numbers, not strings
    assert processing_baseline_offset("03.01") == 0
    assert processing_baseline_offset("02.14") == 0
    assert processing_baseline_offset(None) == 0


def test_sentinel2_l2a_reflectance_hand_computed():
    dn = np.array([[0, 1000, 1500], [2500, 11000, 65535]], dtype="uint16")
    new = sentinel2_l2a_reflectance(dn, "04.00")
    np.testing.assert_allclose(new, [[np.nan, 0.0, 0.05], [0.15, 1.0, 6.4535]], rtol=1e-6)
    old = sentinel2_l2a_reflectance(dn, "03.01")
    np.testing.assert_allclose(old, [[np.nan, 0.1, 0.15], [0.25, 1.1, 6.5535]], rtol=1e-6)
    assert new.dtype == np.float32 and np.isnan(new[0, 0]) and np.isnan(old[0, 0])
    # an explicit BOA_ADD_OFFSET wins over the baseline
    np.testing.assert_allclose(sentinel2_l2a_reflectance(dn, "03.01", boa_add_offset=-1000), new, rtol=1e-6)
    np.testing.assert_allclose(sentinel2_l2a_reflectance(dn, "05.00", boa_add_offset=0), old, rtol=1e-6)
    # float input from a warp keeps NaN as nodata
    assert np.isnan(sentinel2_l2a_reflectance(np.array([np.nan, 2000.0]), "04.00")[0])


def test_landsat_c2_l2_reflectance_hand_computed():
    dn = np.array([0, 7273, 10000, 43636], dtype="uint16")
    out = landsat_c2_l2_reflectance(dn)
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [7273 * 0.0000275 - 0.2, 0.075, 43636 * 0.0000275 - 0.2], rtol=1e-6)
    np.testing.assert_allclose(out[1:], [0.0000075, 0.075, 0.99999], atol=1e-6)


# ------------------------------------------------------------------------------------ masks


def test_scl_masks_every_class():
    scl = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, np.nan])
    mask = scl_clear_mask(scl)
    assert mask.valid.tolist() == [False] + [True] * 11 + [False]
    assert mask.clear.tolist() == [False, False, True, False, True, True, True, True, False, False, False, True, False]
    assert mask.cloud.tolist() == [False, False, False, True, False, False, False, False, True, True, True, False, False]
    assert mask.cloud_fraction == 4 / 11
    assert not scl_clear_mask(scl, mask_snow=True).clear[11]
    assert scl_clear_mask(scl, masked_classes=(0, 9)).clear[3]  # a custom list of masked classes


def test_qa_pixel_bits():
    clear = 21824  # Landsat 8/9 clear land: only confidence bits set
    qa = np.array([1, clear, clear | 1 << 1, clear | 1 << 2, clear | 1 << 3, clear | 1 << 4, clear | 1 << 5, np.nan])
    mask = qa_pixel_clear_mask(qa)
    assert mask.valid.tolist() == [False, True, True, True, True, True, True, False]
    assert mask.cloud.tolist() == [False, False, True, True, True, True, False, False]
    assert mask.clear.tolist() == [False, True, False, False, False, False, True, False]
    assert mask.cloud_fraction == 4 / 6
    assert not qa_pixel_clear_mask(qa, mask_snow=True).clear[6]


# ------------------------------------------------------------------------------------ indices


@pytest.mark.parametrize("source", ["spyndex", "xarray-spatial"])
def test_indices_equal_the_catalogue_formulas(source):
    if source == "spyndex":
        bands = spyndex_s2_reflectance()
        bands["swir16"] = None
    else:
        bands = {k: v / 10000.0 for k, v in xrspatial_bands().items()}
    N, R, B = bands["nir"], bands["red"], bands["blue"]

    np.testing.assert_allclose(ndvi(N, R), evaluate("NDVI", N=N, R=R), rtol=0, atol=1e-6)
    expected_evi = evaluate("EVI", N=N, R=R, B=B, g=spyndex_constant("g"), C1=spyndex_constant("C1"),
                            C2=spyndex_constant("C2"), L=spyndex_constant("L"))
    np.testing.assert_allclose(evi(N, R, B), expected_evi, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(savi(N, R), evaluate("SAVI", N=N, R=R, L=0.5), rtol=0, atol=1e-6)
    # float32 bands (as read from rasters) give the same to 1e-6
    np.testing.assert_allclose(ndvi(N.astype("float32"), R.astype("float32")), evaluate("NDVI", N=N, R=R), atol=1e-6)
    if bands["swir16"] is not None:
        S1 = bands["swir16"]
        np.testing.assert_allclose(ndbi(S1, N), evaluate("NDBI", S1=S1, N=N), rtol=0, atol=1e-6)


def test_indices_by_hand_and_their_edge_cases():
    nir = np.array([0.5, 0.3, 0.0, np.nan, 0.2])
    red = np.array([0.1, 0.3, 0.0, 0.1, -0.2])
    blue = np.array([0.05, 0.1, 0.0, 0.1, 0.1])
    np.testing.assert_allclose(ndvi(nir, red), [0.4 / 0.6, 0.0, np.nan, np.nan, np.nan])  # 0/0 and x/0 -> NaN
    # EVI = 2.5 (N - R) / (N + 6 R - 7.5 B + 1)
    np.testing.assert_allclose(evi(nir, red, blue)[:2], [2.5 * 0.4 / (0.5 + 0.6 - 0.375 + 1), 0.0])
    # SAVI = 1.5 (N - R) / (N + R + 0.5)
    np.testing.assert_allclose(savi(nir, red)[:2], [1.5 * 0.4 / 1.1, 0.0])
    assert np.isnan(savi(np.array([-0.25]), np.array([-0.25]))[0])
    np.testing.assert_allclose(ndbi(np.array([0.3, 0.2]), np.array([0.1, 0.2])), [0.5, 0.0])
    assert ndvi(np.array([5000], "uint16"), np.array([1000], "uint16"))[0] == pytest.approx(4000 / 6000)


def test_vegetated_and_built_up_fractions_hand_counted():
    ndvi_values = np.array([[0.8, 0.31, 0.3, 0.1], [-0.2, np.nan, 0.05, 0.5]])
    ndbi_values = np.array([[-0.3, 0.1, 0.2, 0.15], [0.4, 0.2, np.nan, -0.1]])
    # vegetated (NDVI > 0.3): 0.8, 0.31, 0.5 of the 7 pixels with an NDVI
    assert vegetated_fraction(ndvi_values, 0.3) == 3 / 7
    assert vegetated_fraction(ndvi_values, 0.0) == 6 / 7
    # built up (NDBI > 0 and NDVI < 0.2): (0, 3) and (1, 0); of the 6 pixels with both
    assert built_up_mask(ndbi_values, ndvi_values).tolist() == [[False, False, False, True], [True, False, False, False]]
    assert built_up_fraction(ndbi_values, ndvi_values) == 2 / 6
    assert built_up_fraction(ndbi_values, ndvi_values, ndvi_max=0.35) == 4 / 6
    assert np.isnan(vegetated_fraction(np.full(3, np.nan)))


def test_fractions_on_the_xarray_spatial_scene():
    bands = {k: v / 10000.0 for k, v in xrspatial_bands().items()}
    v = evaluate("NDVI", N=bands["nir"], R=bands["red"])
    b = evaluate("NDBI", S1=bands["swir16"], N=bands["nir"])
    vegetated = sum(1 for x in v.ravel() if x > 0.3)
    built = sum(1 for x, y in zip(b.ravel(), v.ravel()) if x > 0 and y < BUILT_UP_NDVI_MAX)
    assert 0 < vegetated < v.size and 0 < built < v.size
    assert vegetated_fraction(ndvi(bands["nir"], bands["red"]), 0.3) == vegetated / v.size
    assert built_up_fraction(ndbi(bands["swir16"], bands["nir"]), ndvi(bands["nir"], bands["red"])) == built / v.size

"""Earth region declarations that are wrong: what `memories validate` and `load_region` say about
them, and how the code location carries on when one region file is broken."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from memories_dagster.specs.loading import SpecError, discover_regions, load_region

MEMORIES = Path(sys.executable).with_name("memories")
BBOX_RULE = "bbox is [min lon, min lat, max lon, max lat] with min < max, lon in [-180, 180], lat in [-90, 90]"

VALID = {
    "name": "lake_district",
    "bbox": [-3.3, 54.3, -2.8, 54.6],
    "crs": "EPSG:32630",
    "resolution": 20,
    "partitions": {"type": "monthly", "start": "2023-01-01"},
    "sources": {
        "terrain": {"dataset": "copernicus", "path": "dem/lakes.tif"},
        "satellite": {"dataset": "sentinel-2-l2a",
                      "stac": {"api": "https://earth-search.aws.element84.com/v1", "collection": "sentinel-2-l2a"},
                      "bands": ["blue", "red", "nir", "swir16"]},
    },
    "analyzers": {"terrain": {}, "vegetation": {"vegetated_ndvi": 0.4}, "urban": {}},
}


def changed(edit) -> dict:
    document = copy.deepcopy(VALID)
    edit(document)
    return document


# (file stem, the broken document, field path, message): each names what is allowed
CASES = [
    ("bbox_reversed", changed(lambda d: d.update(bbox=[-2.8, 54.3, -3.3, 54.6])), "bbox", BBOX_RULE),
    ("lat_out_of_range", changed(lambda d: d.update(bbox=[-3.3, 54.3, -2.8, 94.6])), "bbox", BBOX_RULE),
    ("unknown_crs", changed(lambda d: d.update(crs="EPSG:999999")), "crs",
     "unknown CRS 'EPSG:999999'; use an authority code such as EPSG:32614 or EPSG:4326"),
    ("negative_resolution", changed(lambda d: d.update(resolution=-20)), "resolution", "Input should be greater than 0"),
    ("vegetation_without_satellite", changed(lambda d: (d["sources"].pop("satellite"), d["analyzers"].pop("urban"))), "analyzers",
     "analyzer 'vegetation' needs a `satellite` source in `sources`"),
    ("satellite_without_window", changed(lambda d: d.pop("partitions")), "sources",
     "the satellite source needs `start` and `end` when the region has no `partitions`"),
    ("vegetation_missing_bands", changed(lambda d: d["sources"]["satellite"].update(bands=["red", "swir16", "nir"])), "analyzers",
     "analyzer 'vegetation' needs the satellite bands blue in sources.satellite.bands"),
    ("typo_in_analyzers", changed(lambda d: d["analyzers"].update(vegitation=d["analyzers"].pop("vegetation"))),
     "analyzers.vegitation", "unknown key 'vegitation'; allowed here: terrain, vegetation, urban, climate"),
]


def write(folder: Path, stem: str, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.mark.parametrize("stem, document, field, message", CASES, ids=[c[0] for c in CASES])
def test_load_region_names_file_field_and_rule(tmp_path, stem, document, field, message):
    path = write(tmp_path / "assets" / "earth", stem, document)

    with pytest.raises(SpecError) as caught:
        load_region(path)

    (problem,) = caught.value.problems
    assert (problem.file, problem.field, problem.message) == (path, field, message)
    assert str(caught.value) == (f"{path}: {field}: {message}" if field else f"{path}: {message}")


def validate(*paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMORIES_ASSETS_DIR": str(cwd / "assets")}
    return subprocess.run([str(MEMORIES), "validate", *map(str, paths)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_memories_validate_reports_every_broken_region_and_exits_1(tmp_path):
    folder = tmp_path / "assets" / "earth"
    # each under its own name: files sharing one are refused together (test_two_regions_with_one_name...)
    broken = {stem: write(folder, stem, {**document, "name": stem}) for stem, document, _, _ in CASES}
    good = write(folder, "lakes", VALID)

    run = validate(folder, cwd=tmp_path)

    assert run.returncode == 1, run.stdout + run.stderr
    assert "PROJ" not in run.stderr  # one clear message, no GDAL noise beside it
    lines = run.stdout.splitlines()
    for stem, _, field, message in CASES:
        expected = f"error: {broken[stem]}: {field}: {message}" if field else f"error: {broken[stem]}: {message}"
        assert expected in lines, "\n".join(lines)
    assert f"ok: {good} (region lake_district, sources: terrain, satellite)" in lines
    assert lines[-1] == f"1 valid, {len(CASES)} invalid"


def test_memories_validate_accepts_a_valid_region(tmp_path):
    good = write(tmp_path / "assets" / "earth", "lakes", changed(lambda d: d.pop("name")))

    run = validate(good, cwd=tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [f"ok: {good} (region lakes, sources: terrain, satellite)", "1 valid, 0 invalid"]


def test_a_broken_region_becomes_an_invalid_spec_asset_and_the_rest_loads(tmp_path, monkeypatch):
    import dagster as dg

    from memories_dagster.definitions import build_definitions

    folder = tmp_path / "assets" / "earth"
    write(folder, "lakes", VALID)
    broken = write(folder, "fells", {**CASES[2][1], "name": "fells"})  # unknown CRS
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)

    defs = build_definitions()

    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    invalid = specs["fells/earth/terrain"]
    assert invalid.group_name == "fells"
    assert f"{broken}: crs: unknown CRS 'EPSG:999999'" in invalid.description
    assert invalid.metadata["file"] == str(broken)
    assert {f"lake_district/earth/{k}" for k in ("terrain", "satellite")} | {
        f"lake_district/analysis/{a}" for a in ("terrain", "vegetation", "urban")} <= set(specs)
    assert not any(key.startswith("invalid_specs") for key in specs)
    assert isinstance(defs.resolve_assets_def(dg.AssetKey(["lake_district", "analysis", "terrain"])), dg.AssetsDefinition)


def test_two_regions_with_one_name_are_both_refused(tmp_path, monkeypatch):
    from memories_dagster.definitions import build_definitions

    folder = tmp_path / "assets" / "earth"
    first = write(folder, "a_lakes", VALID)
    second = write(folder, "b_lakes_copy", changed(lambda d: d.update(bbox=[-3.0, 54.0, -2.5, 54.2])))
    message = ("region name 'lake_district' is declared by 2 files (a_lakes.yaml, b_lakes_copy.yaml); "
               "a name must be declared once: rename or remove all but one")

    loaded, errors = discover_regions(tmp_path / "assets")

    assert loaded == []
    assert [(e.problems[0].file, e.problems[0].field, e.problems[0].message) for e in errors] == [
        (first, "name", message), (second, "name", message)]

    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    defs = build_definitions()
    keys = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert "invalid_specs/earth/b_lakes_copy" in keys and message in keys["lake_district/earth/terrain"].description

    run = validate(folder, cwd=tmp_path)
    assert run.returncode == 1
    assert {f"error: {first}: name: {message}", f"error: {second}: name: {message}"} <= set(run.stdout.splitlines())


@pytest.mark.parametrize("edit, field, message", [
    (lambda d: d.update(resolution=0.0008), "resolution", "0.0008 EPSG:32630 units makes a 40,673,291 x 41,777,503 grid; at most 1,000,000,000 cells"),
    (lambda d: d["sources"]["satellite"].update(start="2023-01-01"), "sources", "the region's `partitions` set the satellite windows"),
    (lambda d: d["sources"]["satellite"]["stac"].update(api=None, catalog="c.json", headers={"x": "y"}), "sources.satellite.stac",
     "`headers` go with `api` requests"),
])
def test_settings_that_could_not_work_are_refused(tmp_path, edit, field, message):
    path = write(tmp_path / "assets" / "earth", "lakes", changed(edit))
    with pytest.raises(SpecError) as caught:
        load_region(path)
    (problem,) = caught.value.problems
    assert problem.field == field and message in problem.message, problem

"""A step killed mid-run leaves its staging folder in `.memories/storage/.staging` (or, for an
earth product, beside it); the next run and `memories validate` remove it, and never the folder
of a step still writing (issue 9 item 2)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from memories_dagster import cli
from memories_dagster.engine import tables
from memories_dagster.engine.earth.products import staged_product
from memories_dagster.resources import MemoriesSettings

# A step as far as staging goes: it takes its staging folder, starts writing, and waits.
STEP = """
import sys, time
from memories_dagster.engine.tables import staging_folder
folder = staging_folder(sys.argv[1])
(folder / "part-0.parquet").write_bytes(b"half a file")
print(folder.name, flush=True)
time.sleep(60)
"""


# An earth step: it stages its product beside the published one, starts writing, and waits.
EARTH_STEP = """
import sys, time
from pathlib import Path
from memories_dagster.engine.earth.products import staged_product
with staged_product(Path(sys.argv[1])) as product:
    (product.folder / "slope.tif").write_bytes(b"half a raster")
    print(product.folder.name, flush=True)
    time.sleep(60)
"""


@pytest.fixture
def steps():
    """Start steps writing into a storage folder (the child processes are ended afterwards)."""
    started = []

    def start(storage, code=STEP):
        child = subprocess.Popen([sys.executable, "-c", code, str(storage)], stdout=subprocess.PIPE, text=True)
        started.append(child)
        return child, child.stdout.readline().strip()

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def kill_9(child):
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_the_next_run_removes_a_killed_steps_staging_and_keeps_a_live_ones(tmp_path, steps):
    storage = tmp_path / "storage"
    killed, killed_name = steps(storage)
    live, live_name = steps(storage)
    kill_9(killed)
    staging = storage / ".staging"
    assert sorted(p.name for p in staging.iterdir()) == sorted([killed_name, live_name])

    mine = MemoriesSettings(storage_dir=str(storage), report_dir=str(tmp_path / "reports")).staging_dir()

    assert sorted(p.name for p in staging.iterdir()) == sorted([live_name, mine.name])
    assert (staging / live_name / "part-0.parquet").read_bytes() == b"half a file"


def test_the_next_earth_step_removes_a_killed_ones_staged_product(tmp_path, steps):
    target = tmp_path / "earth" / "ridges" / "analysis" / "terrain" / "static"
    killed, killed_name = steps(target, EARTH_STEP)
    live, live_name = steps(target, EARTH_STEP)
    kill_9(killed)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([killed_name, live_name])

    with staged_product(target) as product:
        (product.folder / "slope.tif").write_bytes(b"a raster")

    assert sorted(p.name for p in target.parent.iterdir()) == sorted([live_name, "static"])
    assert (target / "slope.tif").read_bytes() == b"a raster"


def test_a_folder_whose_writer_cannot_be_asked_goes_only_once_stale(tmp_path):
    staging = tmp_path / ".staging"
    names = ["tmpabc123", "otherhost--1--xyz"]  # named before writers were named; another machine's
    for name in names:
        (staging / name).mkdir(parents=True)
        (staging / name / "part-0.parquet").write_bytes(b"x")
    assert tables.remove_staging_leftovers(tmp_path) == []  # written just now: perhaps still being written
    old = time.time() - tables.STAGING_STALE_SECONDS - 60
    for name in names:
        for path in (staging / name / "part-0.parquet", staging / name):
            os.utime(path, (old, old))
    assert tables.remove_staging_leftovers(tmp_path) == sorted(names)
    assert list(staging.iterdir()) == []


def test_validate_removes_a_killed_steps_staging(tmp_path, steps, monkeypatch, capsys):
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    specs = tmp_path / "assets" / "integrations"
    specs.mkdir(parents=True)
    (tmp_path / "a.csv").write_text("id\n1\n")
    (specs / "orders.yaml").write_text(yaml.safe_dump({
        "integration_config": {"data_sources": [{"source_name": "a", "source_type": "csv", "connection_string": "a.csv"}]},
        "output_config": {"output_format": "csv", "output_destination": "output/orders.csv"}}))
    storage = tmp_path / ".memories" / "storage"  # the default profile's storage_dir
    killed, name = steps(storage)
    kill_9(killed)

    assert cli.main(["validate", str(specs / "orders.yaml")]) == 0

    assert f"repaired: {storage / '.staging' / name}: removed the staging folder of a step that was killed" in capsys.readouterr().out
    assert list((storage / ".staging").iterdir()) == []


# A composite as far as its scene stack goes: it takes its scratch folder, fills it, and waits.
COMPOSITE_STEP = """
import sys, time
from pathlib import Path
from memories_dagster.engine.tables import scratch_folder
with scratch_folder(Path(sys.argv[1]), "memories-composite-") as scratch:
    (scratch / "red.npy").write_bytes(b"a stack of scenes")
    print(scratch.name, flush=True)
    time.sleep(60)
"""


def test_the_next_composite_removes_the_scene_stack_a_killed_one_left(tmp_path, steps, httpserver):
    from memories_dagster.connectors.stac import search_scenes
    from memories_dagster.engine.earth.grid import Grid
    from memories_dagster.engine.earth.satellite import composite
    from tests.connectors.test_stac import BBOX, TILE_SHAPE, StacApi, clear_scl, sentinel2_item, xrspatial_bands

    scratch = tmp_path / "scratch"
    killed, name = steps(scratch, COMPOSITE_STEP)
    kill_9(killed)
    assert [p.name for p in scratch.iterdir()] == [name]
    api = StacApi(httpserver)
    dn = {k: xrspatial_bands()[k] for k in ("red", "nir")}
    sentinel2_item(api, tmp_path, "S2", "2023-01-05T10:00:00Z", dn, clear_scl(), "03.01", 1.0)
    scenes = search_scenes(api.url, "sentinel-2-l2a", BBOX, "2023-01-01", "2023-01-31")
    grid = Grid("EPSG:32719", 10.0, 600000.0, 4700020.0, TILE_SHAPE[1], TILE_SHAPE[0])

    composite(scenes, grid, "sentinel-2-l2a", bands=["red", "nir"], scratch_dir=scratch)

    assert list(scratch.iterdir()) == []  # the leftover and the composite's own stack are gone

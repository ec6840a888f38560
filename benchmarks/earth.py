"""Earth analyzers: run time on the demo regions, and terrain throughput against gdaldem.

Run by hand: python benchmarks/earth.py [--rounds 5] [--cell 10]

1. Each round materializes the three demo regions (assets/earth) in-process in a fresh copy of
   the project and reads every step's duration from Dagster's STEP_SUCCESS events.
2. The demo DEM is warped onto a finer UTM grid (``--cell`` metres) and the terrain analyzer
   (slope, aspect, hillshade as COGs + statistics + preview) is timed against gdaldem computing
   slope, aspect and hillshade on the same file (three gdaldem processes, GTiff output), in
   the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
REGIONS = ("jacksboro_fault", "santa_cruz_s2", "nino12_climate")


def demo_round() -> dict[str, float]:
    """Seconds per step of one materialization of the demo regions."""
    import dagster as dg

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(PROJECT / "assets", root / "assets")
        shutil.copytree(PROJECT / "sample_data", root / "sample_data")
        os.environ["MEMORIES_ASSETS_DIR"] = str(root / "assets")
        cwd = os.getcwd()
        os.chdir(root)
        try:
            from memories_dagster.definitions import build_definitions

            job = dg.define_asset_job("earth", selection=" or ".join(f"group:{r}" for r in REGIONS))
            resolved = dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def("earth")
            started = time.perf_counter()
            result = resolved.execute_in_process(instance=dg.DagsterInstance.ephemeral())
            total = time.perf_counter() - started
        finally:
            os.chdir(cwd)
        steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events if e.is_step_success}
        return steps | {"(whole run)": total}


def terrain_against_gdaldem(cell: float) -> tuple[float, float, int]:
    """Seconds of our terrain analyzer and of gdaldem on one DEM, and its cell count."""
    import numpy as np

    from memories_dagster.engine.earth.analyzers import analyze_terrain
    from memories_dagster.engine.earth.grid import Grid, read_onto_grid, write_cog
    from memories_dagster.engine.earth.products import staged_product

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        grid = Grid.for_region((-84.40, 36.46, -84.09, 36.72), "EPSG:32616", cell)
        dem = read_onto_grid(str(PROJECT / "sample_data" / "earth" / "jacksboro_dem.tif"), grid)[0]
        source = write_cog(root / "dem.tif", {"elevation": dem}, grid)
        started = time.perf_counter()
        with staged_product(root / "ours") as product:
            analyze_terrain(product, source, grid.padded(-1), 315.0, 45.0, 1.0)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        for mode in ("slope", "aspect", "hillshade"):
            subprocess.run(["gdaldem", mode, source, str(root / f"{mode}.tif"), "-q"], check=True)
        gdal = time.perf_counter() - started
        return ours, gdal, int(np.isfinite(dem).sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cell", type=float, default=10.0, help="cell size in metres of the throughput grid")
    args = parser.parse_args()
    durations: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for step, seconds in demo_round().items():
            durations[step].append(seconds)
    print(f"demo regions, in-process, {args.rounds} rounds (median / min / max seconds):")
    for step, values in sorted(durations.items()):
        print(f"  {step:42s} {statistics.median(values):6.3f} {min(values):6.3f} {max(values):6.3f}")
    ours, gdal, cells = [], [], 0
    for _ in range(args.rounds):
        mine, theirs, cells = terrain_against_gdaldem(args.cell)
        ours.append(mine)
        gdal.append(theirs)
    m_ours, m_gdal = statistics.median(ours), statistics.median(gdal)
    print(f"terrain on {cells:,} cells ({args.cell:g} m): memories {m_ours:.2f} s "
          f"({cells / m_ours / 1e6:.1f} M cells/s), gdaldem x3 {m_gdal:.2f} s, ratio {m_ours / m_gdal:.2f}x")


if __name__ == "__main__":
    main()

"""Wall time of `dagster asset materialize` of the demo, in-process vs multiprocess executor.

Run by hand: python benchmarks/executor.py [--rounds 5]
Each round materializes every demo asset from the shell in a fresh copy of the project, so
Dagster's start-up and per-step process launches are included, as a user would see them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def one_run(executor: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copytree(PROJECT / "assets", root / "assets")
        shutil.copytree(PROJECT / "sample_data", root / "sample_data")
        (root / "resources").mkdir()
        (root / "resources" / "bench.yaml").write_text(f"executor: {executor}\n")
        (root / "home").mkdir()
        env = {**os.environ, "MEMORIES_ASSETS_DIR": str(root / "assets"), "MEMORIES_PROFILE": "bench",
               "DAGSTER_HOME": str(root / "home")}
        dagster = Path(sys.executable).with_name("dagster")
        started = time.perf_counter()
        subprocess.run([str(dagster), "asset", "materialize", "-m", "memories_dagster.definitions", "--select", "*"],
                       cwd=root, env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"in_process": [], "multiprocess": []}
    for _ in range(args.rounds):
        for executor in times:  # alternate so drift hits both alike
            times[executor].append(one_run(executor))
    for executor, values in times.items():
        print(f"{executor:13s} median {statistics.median(values):6.2f} s  min {min(values):6.2f} s  max {max(values):6.2f} s  ({len(values)} runs)")
    ratio = statistics.median(times["multiprocess"]) / statistics.median(times["in_process"])
    print(f"multiprocess / in_process = {ratio:.2f}")


if __name__ == "__main__":
    main()

"""Integration benchmark: memories-dagster vs a hand-written pandas script vs one DuckDB statement.

    python benchmarks/run.py --scale 1 --rounds 3

Generates the workload once per scale (benchmarks/data/scale<N>), then runs, in turn and for
several rounds, the pandas script, the DuckDB statement, `dagster asset materialize` of the
whole pipeline, and of one daily partition of the same pipeline made incremental. Each run is
a separate process started from the shell; wall time and the peak RSS of its whole process tree
are measured, and medians and ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PARTITION = "2024-06-01"


# The contracts of the memories_contracts run: pandera over 5M joined rows (BENCHMARKS.md).
CONTRACTS = {
    "quantity": {"type": "integer", "nullable": False, "min": 1, "max": 9},
    "currency": {"allowed": ["EUR", "USD", "GBP", "JPY"]},
    "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
    "order_id": {"unique": True},
}


def pipeline_spec(data: Path, out: Path, incremental: bool, contracts: bool = False) -> dict:
    spec = {
        "description": "Benchmark: orders + customers + products, priced in USD, by order month.",
        "integration_config": {
            "data_sources": [
                {"source_name": "orders", "source_type": "parquet", "connection_string": str(data / "orders.parquet")},
                {"source_name": "customers", "source_type": "csv", "connection_string": str(data / "customers.csv")},
                {"source_name": "products", "source_type": "json", "connection_string": str(data / "products.jsonl")},
            ],
            "integration_strategy": {
                "join_type": "left",
                "join_keys": [
                    {"source1_key": "customer_id", "source2_key": "customer_id"},
                    {"source1_key": "product_ref", "source2_key": "product_id"},
                ],
            },
            "transformation_rules": [
                {"rule_name": "usd_rate", "transformation_type": "mapping", "source_column": "currency",
                 "target_column": "usd_rate", "transformation_logic": {"EUR": 1.08, "USD": 1.0, "GBP": 1.27, "JPY": 0.0067}},
                {"rule_name": "amount_usd", "transformation_type": "calculation", "target_column": "amount_usd",
                 "transformation_logic": "round(amount * usd_rate, 2)"},
                {"rule_name": "email_lower", "transformation_type": "formatting", "source_column": "email",
                 "transformation_logic": "lower"},
                {"rule_name": "no_negative_amount", "transformation_type": "validation", "transformation_logic": "amount >= 0"},
            ],
            "data_quality_checks": {
                "duplicate_check": True, "null_check": True, "format_check": True, "business_rule_check": True,
                "null_fill": {"credit_limit": 0},
                "columns": {"order_date": "date", "credit_limit": "integer", "email": "string"},
            },
        },
        "output_config": {
            "output_format": "parquet",
            "output_destination": str(out),
            "partitioning": {"partition_by": "order_date", "partition_type": "date", "granularity": "month"},
        },
    }
    if contracts:
        spec["integration_config"]["data_quality_checks"]["columns"].update(CONTRACTS)
    if incremental:
        spec["partitions"] = {"type": "daily", "start": "2024-01-01", "end": "2025-01-01", "column": "order_date"}
    return spec


def measure(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, summed over the process tree) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-4000:]}")
    return elapsed, peak


def report_summary(project: Path, name: str) -> str:
    """The integration report of the run: speed must not come from skipping work."""
    folder = project / ".memories" / "reports" / {"memories": "bench", "memories_contracts": "bench_contracts"}.get(name, "bench_daily")
    report = json.loads(next(folder.glob("*.json")).read_text())
    summary = report["integration_report"]
    quality = summary["data_quality_summary"]
    return (
        f"report: {summary['total_records']} rows in, {summary['successful_integrations']} out, "
        f"{summary['failed_integrations']} quarantined, {quality['duplicates_removed']} duplicates removed, "
        f"{quality['null_values_handled']} nulls handled, balanced={summary['reconciliation']['balanced']}, "
        f"{len(report['data_lineage']['transformation_history'])} lineage steps"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="subset of: pandas duckdb memories memories_partition memories_contracts")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    data = HERE / "data" / f"scale{args.scale:g}"
    if not (data / "orders.parquet").exists():
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--scale", str(args.scale), "--out", str(data)], check=True)
    work = Path(tempfile.mkdtemp(prefix="memories-bench-"))
    project = work / "project"
    specs = project / "assets" / "integrations"
    specs.mkdir(parents=True)
    (specs / "bench.yaml").write_text(yaml.safe_dump(pipeline_spec(data, work / "out_memories", False), sort_keys=False))
    (specs / "bench_contracts.yaml").write_text(yaml.safe_dump(pipeline_spec(data, work / "out_contracts", False, True), sort_keys=False))
    (specs / "bench_daily.yaml").write_text(yaml.safe_dump(pipeline_spec(data, work / "out_daily", True), sort_keys=False))
    (project / "home").mkdir()
    env = {**os.environ, "MEMORIES_ASSETS_DIR": str(project / "assets"), "DAGSTER_HOME": str(project / "home")}
    materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "memories_dagster.definitions"]
    runs = {
        "pandas": ([sys.executable, str(HERE / "baselines" / "pandas_script.py"), str(data), str(work / "out_pandas")], "out_pandas"),
        "duckdb": ([sys.executable, str(HERE / "baselines" / "duckdb_sql.py"), str(data), str(work / "out_duckdb")], "out_duckdb"),
        "memories": ([*materialize, "--select", "group:bench"], "out_memories"),
        "memories_partition": ([*materialize, "--select", "group:bench_daily", "--partition", PARTITION], "out_daily"),
        "memories_contracts": ([*materialize, "--select", "group:bench_contracts"], "out_contracts"),
    }
    chosen = {k: v for k, v in runs.items() if not args.only or k in args.only}
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in chosen}
    try:
        for round_number in range(args.rounds):
            for name, (command, out) in chosen.items():
                shutil.rmtree(work / out, ignore_errors=True)
                results[name].append(measure(command, env, project))
                seconds, peak = results[name][-1]
                print(f"round {round_number + 1} {name:20s} {seconds:7.2f} s {peak / 2**30:6.2f} GiB", flush=True)
                if name.startswith("memories"):
                    print("        " + report_summary(project, name), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {n: (statistics.median(s for s, _ in r), statistics.median(m for _, m in r)) for n, r in results.items()}
    print(f"\nscale {args.scale:g}, {args.rounds} rounds, medians:")
    for name, (seconds, peak) in medians.items():
        print(f"  {name:20s} {seconds:7.2f} s  peak RSS {peak / 2**30:5.2f} GiB")
    if "memories" in medians:
        ours, ours_peak = medians["memories"]
        for base in ("duckdb", "pandas"):
            if base in medians:
                print(f"  memories / {base}: time {ours / medians[base][0]:.2f}x, peak memory {ours_peak / medians[base][1]:.2f}x")
        if "memories_contracts" in medians:
            theirs, theirs_peak = medians["memories_contracts"]
            print(f"  with contracts / without: time {theirs / ours:.2f}x, peak memory {theirs_peak / ours_peak:.2f}x")
        if "memories_partition" in medians:
            print(f"  one daily partition / full run: {medians['memories_partition'][0] / ours:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "rounds": args.rounds, "runs": results}, indent=1))


if __name__ == "__main__":
    main()

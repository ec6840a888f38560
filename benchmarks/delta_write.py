"""Peak RSS and time of a delta output: rows streamed from DuckDB in Arrow batches (what
write_output does) against the same rows handed to delta-rs as one in-memory Arrow table.

    python benchmarks/delta_write.py --rows 5000000
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

STEP = """
import resource, sys, time
import deltalake, duckdb
from memories_dagster.engine.write import write_output
from memories_dagster.specs.integration import OutputConfig
how, source, target = sys.argv[1:]
start = time.perf_counter()
output = OutputConfig(output_format="delta", partitioning={"partition_by": "day", "partition_type": "date"})
if how == "streamed":
    write_output(source, output, target, "t")
else:
    deltalake.write_deltalake(target, duckdb.sql(f"SELECT * FROM '{source}'").to_arrow_table(), partition_by=["day"])
print(f"{time.perf_counter() - start:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    rows = parser.parse_args().rows
    import duckdb

    with tempfile.TemporaryDirectory() as folder:
        source = str(Path(folder) / "integrated.parquet")
        duckdb.sql(f"""COPY (SELECT i::BIGINT AS order_id, 'customer-' || i AS customer, (i % 1000 * 0.01)::DECIMAL(18,2)
                       AS amount, DATE '2024-01-01' + (i % 30)::INTEGER AS day FROM range({rows}) t(i))
                       TO '{source}' (FORMAT parquet)""")
        for how in ("streamed", "in-memory table"):
            out = subprocess.run([sys.executable, "-c", STEP, how.split()[0], source, str(Path(folder) / how.split()[0])],
                                 capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()
            print(f"| {how} | {rows:,} | {float(out[0]):.2f} s | {float(out[1]):.2f} GiB |")


if __name__ == "__main__":
    main()

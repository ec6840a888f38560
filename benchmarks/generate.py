"""Reproducible workload for the integration benchmark.

Scale 1: 1M customers (CSV, ~0.5% exact duplicate rows, ~1% null credit limits), 5M orders
(Parquet, ~2% of them for unknown customers, 365 order dates), 10k products (JSON lines).

    python benchmarks/generate.py --scale 1 --out benchmarks/data/scale1
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

COUNTRIES = np.array(["DE", "FR", "US", "GB", "JP", "BR", "IN", "ES", "IT", "NL"])
CURRENCIES = np.array(["EUR", "USD", "GBP", "JPY"])
CATEGORIES = np.array(["tools", "garden", "kitchen", "toys", "books", "sports", "beauty", "office"])
START = dt.date(2024, 1, 1)


def customers(rng: np.random.Generator, count: int) -> pa.Table:
    ids = np.arange(1, count + 1)
    first = rng.choice(np.array(["Ana", "Ben", "Chen", "Dara", "Eli", "Omar", "Priya", "Sven"]), count)
    emails = pc.binary_join_element_wise(
        pa.array(first), pa.array(ids.astype(str)), pa.array(np.where(rng.random(count) < 0.2, "@Example.COM", "@example.com")), ""
    )
    limits = rng.choice(np.array([500, 1000, 2500, 5000]), count).astype(float)
    limits[rng.random(count) < 0.01] = np.nan
    signup = np.datetime64(START) - rng.integers(1, 1500, count).astype("timedelta64[D]")
    table = pa.table({
        "customer_id": ids,
        "name": pc.binary_join_element_wise(pa.array(first), pa.array(np.full(count, "Customer")), pa.array(ids.astype(str)), " "),
        "email": emails,
        "country": rng.choice(COUNTRIES, count),
        "credit_limit": pa.array(limits, mask=np.isnan(limits)).cast(pa.int64()),
        "signup_date": signup,
    })
    duplicates = rng.choice(count, size=count // 200, replace=False)
    return pa.concat_tables([table, table.take(duplicates)])


def orders(rng: np.random.Generator, count: int, customer_count: int, product_count: int) -> pa.Table:
    unknown = rng.random(count) < 0.02
    customer = rng.integers(1, customer_count + 1, count)
    customer[unknown] = customer_count + rng.integers(1, 1000, unknown.sum())
    amount = np.round(rng.gamma(2.0, 40.0, count), 2)
    amount[rng.random(count) < 0.005] *= -1  # refunds keyed as negative amounts
    return pa.table({
        "order_id": np.arange(1, count + 1),
        "customer_id": customer,
        "product_ref": rng.integers(1, product_count + 1, count),
        "quantity": rng.integers(1, 10, count),
        "amount": amount,
        "currency": rng.choice(CURRENCIES, count),
        "order_date": np.datetime64(START) + rng.integers(0, 365, count).astype("timedelta64[D]"),
    })


def products(rng: np.random.Generator, count: int) -> pa.Table:
    ids = np.arange(1, count + 1)
    return pa.table({
        "product_id": ids,
        "product_name": pc.binary_join_element_wise(pa.array(np.full(count, "Product")), pa.array(ids.astype(str)), " "),
        "category": rng.choice(CATEGORIES, count),
        "list_price": np.round(rng.uniform(1, 500, count), 2),
    })


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    customer_count, order_count, product_count = int(1_000_000 * args.scale), int(5_000_000 * args.scale), 10_000
    pacsv.write_csv(customers(rng, customer_count), args.out / "customers.csv")
    pq.write_table(orders(rng, order_count, customer_count, product_count), args.out / "orders.parquet", row_group_size=1_000_000)
    table = products(rng, product_count)
    with open(args.out / "products.jsonl", "w") as handle:
        for batch in table.to_batches(max_chunksize=10_000):
            handle.write(batch.to_pandas().to_json(orient="records", lines=True))
    print(f"wrote {args.out}: {customer_count} customers (+{customer_count // 200} duplicates), {order_count} orders, {product_count} products")


if __name__ == "__main__":
    main()

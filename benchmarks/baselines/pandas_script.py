"""The pandas script a user would write by hand for the benchmark's integration.

    python benchmarks/baselines/pandas_script.py DATA_DIR OUT_DIR
"""

import sys
from pathlib import Path

import pandas as pd

RATES = {"EUR": 1.08, "USD": 1.0, "GBP": 1.27, "JPY": 0.0067}

data, out = Path(sys.argv[1]), Path(sys.argv[2])
customers = pd.read_csv(data / "customers.csv", parse_dates=["signup_date"]).drop_duplicates()
orders = pd.read_parquet(data / "orders.parquet").drop_duplicates()
products = pd.read_json(data / "products.jsonl", lines=True).drop_duplicates()
df = orders.merge(customers, on="customer_id", how="left")
df = df.merge(products, left_on="product_ref", right_on="product_id", how="left").drop(columns="product_id")
df = df[df["customer_id"].notna() & df["product_ref"].notna()]
df["credit_limit"] = df["credit_limit"].fillna(0).astype("int64")
df["usd_rate"] = df["currency"].map(RATES)
df["amount_usd"] = (df["amount"] * df["usd_rate"]).round(2)
df["email"] = df["email"].str.lower()
df = df[~(df["amount"] < 0)]
df["order_date_month"] = pd.to_datetime(df["order_date"]).dt.strftime("%Y-%m")
df.to_parquet(out, partition_cols=["order_date_month"], index=False)

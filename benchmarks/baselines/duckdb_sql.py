"""The benchmark's integration as one DuckDB SQL statement.

    python benchmarks/baselines/duckdb_sql.py DATA_DIR OUT_DIR
"""

import sys
from pathlib import Path

import duckdb

data, out = Path(sys.argv[1]), Path(sys.argv[2])
duckdb.sql(f"""
COPY (
    SELECT o.*, c.* EXCLUDE (customer_id, credit_limit, email),
           lower(c.email) AS email,
           coalesce(c.credit_limit, 0) AS credit_limit,
           p.* EXCLUDE (product_id),
           r.rate AS usd_rate,
           round(o.amount * r.rate, 2) AS amount_usd,
           strftime(o.order_date, '%Y-%m') AS order_date_month
    FROM (SELECT DISTINCT * FROM read_parquet('{data}/orders.parquet')) o
    LEFT JOIN (SELECT DISTINCT * FROM read_csv('{data}/customers.csv')) c ON o.customer_id = c.customer_id
    LEFT JOIN (SELECT DISTINCT * FROM read_json('{data}/products.jsonl')) p ON o.product_ref = p.product_id
    LEFT JOIN (VALUES ('EUR', 1.08), ('USD', 1.0), ('GBP', 1.27), ('JPY', 0.0067)) r(currency, rate)
           ON o.currency = r.currency
    WHERE o.customer_id IS NOT NULL AND o.product_ref IS NOT NULL AND NOT coalesce(o.amount < 0, false)
) TO '{out}' (FORMAT parquet, PARTITION_BY (order_date_month))
""")

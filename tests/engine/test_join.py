"""Joins: each type, keys with different names, composite keys, N sources, accounting."""

import pandas as pd
import pytest

from memories_dagster.engine.errors import IntegrationError

ORDERS = pd.DataFrame({"order_id": [1, 2, 3, 4], "cust_ref": [10, 20, 30, 10], "amount": [5.0, 6.0, 7.0, 8.0]})
CUSTOMERS = pd.DataFrame({"customer_id": [10, 20, 40], "name": ["Ann", "Bob", "Dee"]})


def join(run_integration, how, **extra):
    return run_integration(
        {"orders": ORDERS, "customers": CUSTOMERS},
        integration_strategy={"join_type": how, "join_keys": [{"source1_key": "cust_ref", "source2_key": "customer_id"}], **extra},
    )


@pytest.mark.parametrize(
    "how, order_ids, names",
    [
        ("inner", [1, 2, 4], ["Ann", "Ann", "Bob"]),
        ("left", [1, 2, 3, 4], ["Ann", "Ann", "Bob", None]),
        ("right", [1, 2, 4, None], ["Ann", "Ann", "Bob", "Dee"]),
        ("outer", [1, 2, 3, 4, None], ["Ann", "Ann", "Bob", "Dee", None]),
    ],
)
def test_join_types_keep_the_rows_sql_would(run_integration, how, order_ids, names):
    run = join(run_integration, how)
    data = run.data
    assert sorted(data["order_id"].dropna().astype(int)) == [i for i in order_ids if i is not None]
    assert len(data) == len(order_ids)
    assert sorted(data["name"].dropna()) == sorted(n for n in names if n)
    # the right key is folded into the left one: no customer_id column, no lost key values
    assert "customer_id" not in data.columns
    if how in ("right", "outer"):
        assert 40 in set(data["cust_ref"])


def test_left_join_accounts_for_unmatched_rows(run_integration):
    run = join(run_integration, "left")
    by_source = run.report["reconciliation"]["by_source"]
    assert by_source["orders"] == {
        "rows_read": 4, "duplicates_removed": 0, "quarantined_at_source": 0, "in_output": 4,
        "quarantined_after_integration": 0, "outside_partition": 0, "superseded": 0, "not_matched": 0, "balanced": True,
    }
    assert by_source["customers"]["in_output"] == 2
    assert by_source["customers"]["not_matched"] == 1  # Dee has no order
    assert run.report["reconciliation"]["balanced"] is True
    # 3 of 4 orders found their customer
    assert run.report["integration_metrics"]["join_success_rate"] == 0.75


def test_cross_join_pairs_every_row(run_integration):
    run = run_integration(
        {"a": pd.DataFrame({"x": [1, 2]}), "b": pd.DataFrame({"y": ["p", "q", "r"]})},
        integration_strategy={"join_type": "cross"},
    )
    assert len(run.data) == 6
    assert set(zip(run.data["x"], run.data["y"])) == {(x, y) for x in (1, 2) for y in "pqr"}


def test_composite_keys_with_different_names(run_integration):
    stock = pd.DataFrame({"store": ["A", "A", "B"], "sku": [1, 2, 1], "qty": [5, 6, 7]})
    prices = pd.DataFrame({"shop": ["A", "B", "B"], "item": [1, 1, 2], "price": [1.5, 2.5, 3.5]})
    run = run_integration(
        {"stock": stock, "prices": prices},
        integration_strategy={
            "join_type": "inner",
            "join_keys": [{"source1_key": "store", "source2_key": "shop"}, {"source1_key": "sku", "source2_key": "item"}],
        },
    )
    rows = sorted(zip(run.data["store"], run.data["sku"], run.data["price"]))
    assert rows == [("A", 1, 1.5), ("B", 1, 2.5)]
    assert run.outcome.lineage["store"] == ["prices.shop", "stock.store"]


def test_three_sources_joined_in_order_with_source2_named(run_integration):
    orders = pd.DataFrame({"oid": [1, 2], "cust": [1, 2], "sku": ["s1", "s9"]})
    customers = pd.DataFrame({"id": [1, 2], "name": ["Ann", "Bob"]})
    products = pd.DataFrame({"id": ["s1"], "title": ["Saw"]})
    run = run_integration(
        {"orders": orders, "customers": customers, "products": products},
        integration_strategy={
            "join_type": "left",
            "join_keys": [
                {"source1_key": "cust", "source2_key": "id", "source2": "customers"},
                {"source1_key": "sku", "source2_key": "id", "source2": "products"},
            ],
        },
    )
    data = run.data.sort_values("oid")
    assert list(data["name"]) == ["Ann", "Bob"]
    assert list(data["title"].fillna("-")) == ["Saw", "-"]


def test_keys_of_different_types_still_match(run_integration):
    run = run_integration(
        {"a": pd.DataFrame({"k": [1, 2]}), "b": pd.DataFrame({"k2": ["1", "2"], "v": ["x", "y"]})},
        integration_strategy={"join_type": "inner", "join_keys": [{"source1_key": "k", "source2_key": "k2"}]},
    )
    assert sorted(run.data["v"]) == ["x", "y"]


def test_a_source_without_a_key_is_an_error_naming_it(run_integration):
    with pytest.raises(IntegrationError, match="source 'b' has no join key"):
        run_integration(
            {"a": pd.DataFrame({"k": [1]}), "b": pd.DataFrame({"other": [1]})},
            integration_strategy={"join_type": "inner", "join_keys": [{"source1_key": "k", "source2_key": "k"}]},
        )

"""Checks that convert types do not round values that already have an exact type."""

from decimal import Decimal

import pandas as pd


def test_format_check_keeps_a_decimal_columns_own_scale(run_integration):
    values = [Decimal("1.1234567891"), Decimal("-99999999.0000000001")]
    run = run_integration({"ledger": pd.DataFrame({"id": [1, 2], "amount": values})},
                          data_quality_checks={"format_check": True, "columns": {"amount": "decimal"}})
    assert list(run.data["amount"]) == values

"""The ``partitions:`` extension as a Dagster PartitionsDefinition, and a run's window."""

from __future__ import annotations

import dagster as dg

from memories_dagster.engine.window import Window
from memories_dagster.specs.integration import PartitionsSpec

_TIME_PARTITIONS = {
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


def dynamic_partitions_name(pipeline: str) -> str:
    """Name of the dynamic partitions set of a pipeline."""
    return f"{pipeline}_partitions"


def partitions_definition(pipeline: str, spec: PartitionsSpec | None) -> dg.PartitionsDefinition | None:
    """Daily, weekly, monthly or dynamic partitions, or None for a pipeline without them."""
    if spec is None:
        return None
    if spec.type == "dynamic":
        return dg.DynamicPartitionsDefinition(name=dynamic_partitions_name(pipeline))
    end = spec.end.isoformat() if spec.end else None
    return _TIME_PARTITIONS[spec.type](start_date=spec.start.isoformat(), end_date=end, timezone=spec.timezone)


def window_of(context: dg.AssetExecutionContext) -> Window:
    """The window of the partition a run materializes."""
    key = context.partition_key
    if isinstance(context.assets_def.partitions_def, dg.TimeWindowPartitionsDefinition):
        span = context.partition_time_window
        return Window(key=key, start=span.start, end=span.end)
    return Window(key=key)

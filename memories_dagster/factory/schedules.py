"""The ``schedule:`` extension: a cron schedule of the pipeline's job."""

from __future__ import annotations

import dagster as dg

from memories_dagster.specs.loading import LoadedSpec


def pipeline_schedule(loaded: LoadedSpec, job: dg.UnresolvedAssetJobDefinition):
    """Run the whole pipeline on the declared cron; a time-partitioned one runs its latest partition."""
    spec = loaded.spec
    name = f"{loaded.name}_schedule"
    timezone = spec.partitions.timezone if spec.partitions else "UTC"
    if spec.partitions and spec.partitions.type != "dynamic":
        return dg.build_schedule_from_partitioned_job(job, name=name, cron_schedule=spec.schedule)
    return dg.ScheduleDefinition(name=name, job=job, cron_schedule=spec.schedule, execution_timezone=timezone)

"""The ``schedule:`` extension: a cron schedule of the pipeline's job."""

import dagster as dg

from memories_dagster.specs.loading import LoadedSpec


def pipeline_schedule(loaded: LoadedSpec, job, partitions_def: dg.PartitionsDefinition | None) -> dg.ScheduleDefinition:
    """Run the pipeline on the declared cron; a time-partitioned one runs its latest complete partition."""
    spec = loaded.spec
    timezone = spec.partitions.timezone if spec.partitions else "UTC"

    @dg.schedule(
        name=f"{loaded.name}_schedule", job=job, cron_schedule=spec.schedule, execution_timezone=timezone,
        description=f"Runs {loaded.name} on '{spec.schedule}' ({timezone}).",
    )
    def on_cron(context: dg.ScheduleEvaluationContext):
        if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            return dg.RunRequest()
        moment = context.scheduled_execution_time.timestamp()
        current = partitions_def.time_window_for_partition_key(partitions_def.get_partition_key_for_timestamp(moment))
        previous = partitions_def.get_partition_key_for_timestamp(current.start.timestamp() - 1)
        if previous not in partitions_def.get_partition_keys(current_time=context.scheduled_execution_time):
            return dg.SkipReason(f"partition {previous} is outside the declared partitions")
        return dg.RunRequest(partition_key=previous)

    return on_cron

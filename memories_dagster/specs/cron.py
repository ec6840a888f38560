"""Cron expressions, checked by the code Dagster's ScheduleDefinition runs on them, so a spec's
``schedule`` is accepted exactly when Dagster will accept it (``@daily`` included, 31 February
refused). A hand-written checker had drifted from Dagster both ways."""

from __future__ import annotations

ALLOWED = (
    "five fields, minute hour day-of-month month day-of-week (e.g. '0 2 * * *', '*/15 * * * MON-FRI'), "
    "or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually; a day that never comes "
    "(30 or 31 February) is refused"
)


def cron_problem(expression: str) -> str | None:
    """Why Dagster would refuse ``expression`` as a schedule's cron, or None when it accepts it."""
    # Imported here: the engine imports the spec models and must load without Dagster.
    # dagster pins the croniter it vendors; ScheduleDefinition calls is_valid_cron_schedule too.
    from dagster._utils.schedules import CroniterShim, is_valid_cron_schedule

    if is_valid_cron_schedule(expression):
        return None
    fields = expression.split()
    if not expression.startswith("@") and len(fields) != 5:
        reason = f" (it has {len(fields)} fields)"
    else:
        try:
            CroniterShim.expand(expression)
            reason = ""
        except Exception as exc:  # croniter's own reason (which field is out of range), when it has one
            reason = f" ({exc})"
    return f"'{expression}' is not a cron schedule Dagster accepts{reason}; use {ALLOWED}"

"""Declarations to Dagster definitions: assets, checks, partitions, sensors, schedules."""

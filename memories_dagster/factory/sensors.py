"""A sensor per pipeline with file sources: runs for new or changed files.

The cursor holds, for every file the sources' paths match, its size and modification time; a
tick that finds a new file or a changed signature requests a run. With a ``{partition_key}``
template in a path, each changed file names its own partition (added first when the pipeline's
partitions are dynamic); other time-partitioned pipelines run their latest partition.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dagster as dg

from memories_dagster.connectors.files import file_signatures
from memories_dagster.engine.window import glob_of, key_pattern
from memories_dagster.factory.connections import access_of
from memories_dagster.secrets import resolve
from memories_dagster.specs.loading import LoadedSpec

FILE_SOURCE_TYPES = ("csv", "json", "excel", "parquet", "mainframe")


def file_sensor(loaded: LoadedSpec, job, partitions_def: dg.PartitionsDefinition | None,
                connections: dict[str, Any] | None = None) -> dg.SensorDefinition | None:
    """The sensor of one pipeline, or None when it has no file source."""
    sources = [s for s in loaded.spec.integration_config.data_sources if s.source_type in FILE_SOURCE_TYPES]
    if not sources:
        return None

    @dg.sensor(
        name=f"{loaded.name}_files_sensor",
        job=job,
        minimum_interval_seconds=30,
        description=f"Runs {loaded.name} when a file of its sources is new or changed.",
    )
    def watch_files(context: dg.SensorEvaluationContext):
        templates = [loaded.resolve_path(resolve(s.connection_string or "", f"source '{s.source_name}'")) for s in sources]
        seen: dict[str, list[float]] = {}
        for source, template in zip(sources, templates):
            access, _ = access_of((connections or {}).get(source.connection or ""), source.connection or "")
            seen.update(file_signatures(glob_of(template), access.storage_options))
        before = json.loads(context.cursor) if context.cursor else {}
        changed = sorted(p for p, sig in seen.items() if before.get(p) != sig)
        cursor = json.dumps(seen, sort_keys=True)
        if not changed:
            return dg.SensorResult(skip_reason="no new or changed files", cursor=cursor)
        requests, new_keys = _requests(changed, templates, seen, partitions_def, context)
        add = [partitions_def.build_add_request(new_keys)] if new_keys else []
        return dg.SensorResult(run_requests=requests, cursor=cursor, dynamic_partitions_requests=add)

    return watch_files


def _requests(changed, templates, seen, partitions_def, context) -> tuple[list[dg.RunRequest], list[str]]:
    def run_key(paths: list[str]) -> str:
        digest = hashlib.sha256(json.dumps([(p, seen[p]) for p in paths]).encode()).hexdigest()
        return digest[:24]

    if partitions_def is None:
        return [dg.RunRequest(run_key=run_key(changed))], []
    keyed: dict[str, list[str]] = {}
    for path in changed:
        for template in templates:
            match = key_pattern(template).match(path)
            if match:
                keyed.setdefault(match.group("key"), []).append(path)
    new_keys: list[str] = []
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        existing = set(context.instance.get_dynamic_partitions(partitions_def.name))
        new_keys = sorted(k for k in keyed if k not in existing)
    elif not keyed:
        latest = partitions_def.get_last_partition_key()
        keyed = {latest: changed} if latest else {}
    else:
        valid = set(partitions_def.get_partition_keys())
        keyed = {k: v for k, v in keyed.items() if k in valid}
    requests = [dg.RunRequest(run_key=f"{key}:{run_key(paths)}", partition_key=key) for key, paths in sorted(keyed.items())]
    return requests, new_keys

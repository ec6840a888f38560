"""Typed Dagster resources: where the code location keeps data, the Parquet IO manager, and the
clouds and databases that a resource profile's ``connections`` declare."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from typing import Any

import dagster as dg

from memories_dagster.engine.tables import TableFile, write_json


class MemoriesSettings(dg.ConfigurableResource):
    """Folders for the Parquet files handed between assets and for integration reports."""

    storage_dir: str
    report_dir: str
    engine_memory_limit: str | None = None

    def staging_dir(self) -> Path:
        """A new private folder on the storage filesystem, for a step's output before commit."""
        root = Path(self.storage_dir) / ".staging"
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=root))

    def report_path(self, pipeline: str, partition_key: str | None) -> Path:
        """Where the report of one pipeline (and partition) is written."""
        name = f"{urllib.parse.quote(partition_key, safe='')}.json" if partition_key else "report.json"
        return Path(self.report_dir) / pipeline / name


class ParquetIOManager(dg.ConfigurableIOManager):
    """Keeps each asset (partition) as one Parquet file plus a JSON sidecar of its facts.

    Assets return a :class:`TableFile` written in a staging folder; the IO manager moves it into
    place in one rename, so a failed step never leaves half a file where the last good one was.
    """

    storage: MemoriesSettings

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        key = context.asset_key.path
        partition = context.asset_partition_key if context.has_asset_partitions else "data"
        return Path(self.storage.storage_dir).joinpath(*key) / f"{urllib.parse.quote(partition, safe='')}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: TableFile) -> None:
        target = self._path(context)
        target.parent.mkdir(parents=True, exist_ok=True)
        facts = {"rows": obj.rows, "columns": obj.columns, "meta": obj.meta}
        if target.is_dir() or (target.exists() and Path(obj.path).is_dir()):
            # a folder of files (a partitioned layout) is swapped whole, never merged
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(obj.path, target)
            shutil.rmtree(old, ignore_errors=True)
        elif target.exists() and os.path.samefile(obj.path, target):
            os.unlink(obj.path)  # a reused snapshot: already in place (rename of a hard link is a no-op)
        else:
            os.replace(obj.path, target)
        write_json(target.with_suffix(".json"), facts)
        with contextlib.suppress(OSError):  # the step's staging folder, once all its outputs left
            Path(obj.path).parent.rmdir()

    def load_input(self, context: dg.InputContext) -> TableFile:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no stored data at {path}: materialize it first"
            )
        facts = json.loads(path.with_suffix(".json").read_text())
        return TableFile(str(path), facts["rows"], facts["columns"], facts["meta"])


IO_MANAGER_KEY = "memories_io"


@functools.lru_cache(maxsize=None)
def shared_resources(storage_dir: str, report_dir: str, engine_memory_limit: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources every pipeline uses, one object per configuration.

    Pipelines built apart (e.g. several components) then merge without conflicting resources.
    """
    storage = MemoriesSettings(storage_dir=storage_dir, report_dir=report_dir, engine_memory_limit=engine_memory_limit)
    return {"memories_settings": storage, IO_MANAGER_KEY: ParquetIOManager(storage=storage)}


def _secret(value: str | None) -> str | dg.EnvVar | None:
    """``${NAME}`` as a Dagster EnvVar: read at run time, hidden in the UI."""
    if value and value.startswith("${") and value.endswith("}") and value.count("${") == 1:
        return dg.EnvVar(value[2:-1])
    return value


class SqlDatabase(dg.ConfigurableResource):
    """A SQL database: SQLAlchemy URL and pool settings, shared by a pipeline's sources and outputs."""

    url: str
    pool_size: int = 5
    max_overflow: int = 10
    pool_pre_ping: bool = True
    pool_recycle_seconds: int = 1800
    connect_timeout_seconds: int = 10

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for sqlalchemy.create_engine."""
        return {"pool_size": self.pool_size, "max_overflow": self.max_overflow, "pool_pre_ping": self.pool_pre_ping,
                "pool_recycle": self.pool_recycle_seconds, "connect_timeout": self.connect_timeout_seconds}



def connection_resource(connection: Any) -> dg.ConfigurableResource:
    """The typed Dagster resource of a profile's connection; ``${NAME}`` values become EnvVars.

    Pipelines read and write SQL databases through the SqlDatabase resource. The cloud resources
    are there for the UI and for a project's own assets (a boto3 client, a GCS client); the
    engine reads the same declaration for them (factory.connections), so that a pipeline run
    builds no client it does not use (a GCS client would demand Google default credentials even
    against an emulator).
    """
    fields = {k: _secret(v) if isinstance(v, str) else v for k, v in connection.model_dump(exclude={"type"}).items()}
    fields = {k: v for k, v in fields.items() if v is not None}
    # Imported here: each cloud library adds about a second to every start of the code location.
    if connection.type == "s3":
        from dagster_aws.s3 import S3Resource

        return S3Resource(**fields)
    if connection.type == "gcs":
        from dagster_gcp import GCSResource

        return GCSResource(**({"project": fields["project"]} if "project" in fields else {}))
    if connection.type == "adls2":
        from dagster_azure.adls2 import ADLS2Resource
        from dagster_azure.adls2.resources import ADLS2Key, ADLS2SASToken

        sas = fields.get("sas_token")
        credential = ADLS2SASToken(token=sas) if sas else ADLS2Key(key=fields.get("account_key", ""))
        return ADLS2Resource(storage_account=fields["storage_account"], credential=credential,
                             endpoint_suffix=fields["endpoint_suffix"])
    return SqlDatabase(**fields)


@functools.lru_cache(maxsize=None)
def _connection_resources(profile_json: str) -> dict[str, dg.ConfigurableResource]:
    from memories_dagster.specs.profile import ResourceProfile

    profile = ResourceProfile.model_validate_json(profile_json)
    return {name: connection_resource(connection) for name, connection in profile.connections.items()}


def profile_resources(project: Path, profile: Any) -> dict[str, dg.ConfigurableResource]:
    """Every resource a resource profile declares, one object per configuration (so that
    definitions built apart, e.g. by several components, merge without conflicts)."""
    return {
        **shared_resources(str(project / profile.storage_dir), str(project / profile.report_dir), profile.engine_memory_limit),
        **_connection_resources(profile.model_dump_json()),
    }

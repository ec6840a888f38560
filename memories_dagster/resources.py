"""Typed Dagster resources: where the code location keeps data, the Parquet IO manager, and the
clouds and databases that a resource profile's ``connections`` declare."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import urllib.parse
from pathlib import Path

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from memories_dagster.engine.tables import TableFile, remove_staging_leftovers, staging_folder, swap_folder, write_json
from memories_dagster.factory.invalid import refused_selection

IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # Dagster's name for the job that `dagster asset materialize` runs


class MemoriesSettings(dg.ConfigurableResource):
    """Folders for the Parquet files handed between assets and for integration reports."""

    storage_dir: str
    report_dir: str
    engine_memory_limit: str | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run of the implicit asset job that selects nothing: `dagster asset materialize
        --select` or `dg launch --assets` whose selection matched no asset (a misspelled group) runs
        every asset of the code location and exits 0. Refuse as well a run that selects assets of an
        invalid declaration next to valid ones, which Dagster would run. Every asset here needs this
        resource, so such a run does nothing."""
        run = context.run
        if run is not None and run.job_name == IMPLICIT_ASSET_JOB and run.asset_selection is None and (
                run.asset_check_selection is None):
            raise dg.Failure(description=(
                "the run selects no asset, so Dagster would materialize every asset of the code location: the "
                "selection (`dagster asset materialize --select`, `dg launch --assets`) matched nothing; check its "
                "spelling against `dagster asset list -m memories_dagster.definitions`, or select every asset with '*'"),
                allow_retries=False)
        broken = refused_selection(set(run.asset_selection or ())) if run is not None else None
        if broken:  # Dagster would still run every valid asset of the selection next to the failing ones
            raise dg.Failure(description=(
                "the run selects assets of invalid declarations, so nothing was run; fix them or leave them out "
                f"of the selection:\n{broken}"), allow_retries=False)

    def staging_dir(self) -> Path:
        """A new private folder on the storage filesystem, for a step's output before commit;
        the folders of steps killed earlier are removed first."""
        remove_staging_leftovers(self.storage_dir)
        return staging_folder(self.storage_dir)

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
            swap_folder(Path(obj.path), target)
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
STORE_IO_MANAGER_KEY = "memories_store_io"


class TieredIOManager(dg.ConfigurableIOManager):
    """Keeps tables (pandas DataFrames, pyarrow Tables) as Parquet in the tiered memory store.

    Key of an asset (partition): ``<asset key path joined by '/'>/<partition key or 'data'>``.
    Each output and input carries the store's per-tier counts as metadata: ``store/hot_hits``,
    ``store/warm_misses``, ``store/cold_bytes``, ... (see ``store_metadata``). Only settings are
    held here (the cold connection as its declaration, ``${ENV}`` unresolved); the store itself
    is built on first use, once per run.
    """

    hot_url: str | None = None
    hot_size: str = "256MB"
    hot_ttl: str | None = None
    hot_prefix: str = "memories:store:"
    warm_path: str | None = None
    warm_size: str = "1GB"
    cold_url: str | None = None
    cold_connection: str | None = None  # JSON: {"name": ..., "declaration": {...}} of a profile connection

    _store: Any = PrivateAttr(default=None)

    def store(self) -> Any:
        """The TieredStore of these settings (secrets resolved now)."""
        if self._store is None:
            from memories_dagster.connectors.tiered_store import TieredStore
            from memories_dagster.secrets import resolve

            storage_options: dict[str, Any] = {}
            if self.cold_connection:
                from pydantic import TypeAdapter

                from memories_dagster.factory.connections import access_of
                from memories_dagster.specs.profile import Connection

                named = json.loads(self.cold_connection)
                connection = TypeAdapter(Connection).validate_python(named["declaration"])
                storage_options = access_of(connection, named["name"])[0].storage_options
            self._store = TieredStore(
                hot_url=resolve(self.hot_url, "store.hot.url") if self.hot_url else None,
                hot_size=self.hot_size, hot_ttl=self.hot_ttl, hot_prefix=self.hot_prefix,
                warm_path=self.warm_path, warm_size=self.warm_size,
                cold_url=self.cold_url, storage_options=storage_options,
            )
        return self._store

    @staticmethod
    def _asset_path(context: dg.OutputContext | dg.InputContext) -> list[str]:
        if context.has_asset_key:
            return list(context.asset_key.path)
        if isinstance(context, dg.InputContext) and context.upstream_output is not None:
            return list(context.upstream_output.get_identifier())
        return list(context.get_identifier())

    def _key(self, context: dg.OutputContext | dg.InputContext, partition: str | None) -> str:
        return "/".join([*self._asset_path(context), partition or "data"])

    @staticmethod
    def _partitions(context: dg.OutputContext | dg.InputContext) -> list[str | None]:
        return list(context.asset_partition_keys) if context.has_asset_partitions else [None]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partitions = self._partitions(context)
        name = "/".join(self._asset_path(context))
        if len(partitions) > 1:  # a run over several partitions returns {partition key: table}
            if not isinstance(obj, dict) or set(obj) != set(partitions):
                raise TypeError(f"{name} covers {len(partitions)} partitions in this run; return a dict of "
                                "partition key -> table for the memory store IO manager")
            tables = {p: obj[p] for p in partitions}
        else:
            tables = {partitions[0]: obj}
        store = self.store()
        tiers, size, rows = set(), 0, 0
        for partition, table in tables.items():
            data, count = _parquet_bytes(table, name)
            tiers.add(store.put(self._key(context, partition), data))
            size, rows = size + len(data), rows + count
        context.add_output_metadata({
            "store/key": self._key(context, partitions[0]) if len(partitions) == 1 else f"{name}/*",
            "store/tier": ", ".join(sorted(tiers)), "store/size_bytes": size, "dagster/row_count": rows,
            **store_metadata(store.stats()),
        })

    def load_input(self, context: dg.InputContext) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        want_arrow = getattr(context.dagster_type, "typing_type", None) is pa.Table
        store = self.store()
        partitions = self._partitions(context)
        loaded = {}
        for partition in partitions:
            data = store.get(self._key(context, partition))
            if data is None:
                where = "/".join(self._asset_path(context)) + (f" (partition {partition})" if partition else "")
                raise FileNotFoundError(f"{where} has no stored table in the memory store: materialize it first")
            table = pq.read_table(io.BytesIO(data))
            loaded[partition] = table if want_arrow else _exact_frame(table)
        if context.has_asset_key:
            context.add_input_metadata({"store/key": self._key(context, partitions[0]), **store_metadata(store.stats())})
        return loaded[partitions[0]] if len(partitions) == 1 else loaded


def _exact_frame(table: Any) -> Any:
    """A Table as a DataFrame with the same values: integer columns as pandas' nullable integers
    (NumPy's would turn an integer column with a null into floats, 2**53 + 1 into 2**53)."""
    import pandas as pd
    import pyarrow as pa

    integers = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}
    return table.to_pandas(types_mapper=integers.get)


def _parquet_bytes(table: Any, name: str) -> tuple[bytes, int]:
    """A DataFrame or Table as Parquet bytes (zstd), and its row count."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table)
    if not isinstance(table, pa.Table):
        raise TypeError(f"{name} returned a {type(table).__name__}; the memory store IO manager keeps "
                        "a pandas DataFrame or a pyarrow Table")
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue(), table.num_rows


def store_metadata(stats: dict[str, dict[str, int | None]]) -> dict[str, int]:
    """``store/<tier>_hits|misses|bytes|entries|cap_bytes`` of a TieredStore's stats."""
    metadata = {}
    for tier, values in stats.items():
        for name, value in values.items():
            if value is not None:
                metadata[f"store/{tier}_{'cap_bytes' if name == 'cap' else name}"] = int(value)
    return metadata


def store_io_manager(project: Path, profile: Any) -> TieredIOManager:
    """The memory store IO manager of a resource profile's ``store``; relative paths are
    taken from the project folder."""
    store = profile.store
    hot, warm, cold = store.hot, store.warm, store.cold
    cold_url = cold_connection = None
    if cold is not None:
        cold_url = cold.url if "://" in cold.url else str(project / cold.url)
        if cold.connection:
            declaration = profile.connections[cold.connection].model_dump(exclude_none=True)
            cold_connection = json.dumps({"name": cold.connection, "declaration": declaration}, sort_keys=True)
    return _store_io_manager(
        _secret(hot.url) if hot else None, str(hot.size) if hot else "256MB", str(hot.ttl) if hot and hot.ttl is not None else None,
        hot.prefix if hot else "memories:store:",
        str(project / warm.path) if warm else None, str(warm.size) if warm else "1GB",
        cold_url, cold_connection,
    )


@functools.lru_cache(maxsize=None)
def _store_io_manager(hot_url: str | None, hot_size: str, hot_ttl: str | None, hot_prefix: str, warm_path: str | None,
                      warm_size: str, cold_url: str | None, cold_connection: str | None) -> TieredIOManager:
    return TieredIOManager(hot_url=hot_url, hot_size=hot_size, hot_ttl=hot_ttl, hot_prefix=hot_prefix,
                           warm_path=warm_path, warm_size=warm_size, cold_url=cold_url, cold_connection=cold_connection)


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
        STORE_IO_MANAGER_KEY: store_io_manager(project, profile),
    }

"""Resource profiles: ``resources/<profile>.yaml`` says where the code location keeps its data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from memories_dagster.connectors.tiered_store import parse_duration, parse_size

from memories_dagster.specs.credentials import Address, Credential, literal_credential
from memories_dagster.specs.integration import Strict
from memories_dagster.specs.loading import SpecError, SpecProblem, parse_model, read_document


class S3Connection(Strict):
    """Amazon S3 or a service speaking its protocol (MinIO, moto): dagster-aws S3Resource."""

    type: Literal["s3"]
    region_name: str | None = None
    endpoint_url: Address | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: Credential | None = None
    aws_session_token: Credential | None = None
    profile_name: str | None = None
    use_unsigned_session: bool = False


GCS_TOKEN_MODES = ("anon", "google_default", "cache", "cloud", "browser")


def is_gcs_token(value: str | None) -> bool:
    """Whether a GCS ``token`` is an OAuth token (a credential), not a mode or a key file's path."""
    return bool(value) and value not in GCS_TOKEN_MODES and not value.endswith(".json") and "/" not in value


class GcsConnection(Strict):
    """Google Cloud Storage: dagster-gcp GCSResource, plus an endpoint for emulators."""

    type: Literal["gcs"]
    project: str | None = None
    endpoint_url: Address | None = None
    token: str | None = Field(None, description="'anon', a service-account JSON path, or default credentials")

    @field_validator("token")
    @classmethod
    def _token_is_a_credential(cls, value: str | None) -> str | None:
        """A token that is neither a mode nor a file is an OAuth token: a credential."""
        return literal_credential(value) if is_gcs_token(value) else value


class AzureConnection(Strict):
    """Azure Blob Storage / ADLS Gen2: dagster-azure ADLS2Resource."""

    type: Literal["adls2"]
    storage_account: str
    account_key: Credential | None = None
    sas_token: Credential | None = None
    connection_string: Address | None = Field(None, description="e.g. for Azurite; overrides the account settings")
    endpoint_suffix: str = "core.windows.net"


class SqlConnection(Strict):
    """A SQL database through SQLAlchemy, with its pool settings."""

    type: Literal["sql"]
    url: Address
    pool_size: int = Field(5, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_pre_ping: bool = True
    pool_recycle_seconds: int = Field(1800, ge=-1)
    connect_timeout_seconds: int = Field(10, ge=1)


Connection = Annotated[S3Connection | GcsConnection | AzureConnection | SqlConnection, Field(discriminator="type")]


def _positive_size(value: str | int) -> str | int:
    if parse_size(value) <= 0:
        raise ValueError(f"size {value!r} must be larger than 0 bytes")
    return value


class HotTier(Strict):
    """The hot tier of the memory store: Redis, with a size cap and a time to live."""

    url: Address = Field(description="redis://[:password@]host:port/db (rediss:// for TLS); ${ENV_VAR} allowed")
    size: str | int = Field("256MB", description="cap, e.g. 256MB, 1GiB")
    ttl: str | int | None = Field(None, description="entries unused this long leave Redis, e.g. 1h, 1d (default: never)")
    prefix: str = Field("memories:store:", description="prefix of the Redis keys the store uses")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "${")):
            raise ValueError(f"'{value.split('://')[0]}://...' is not a Redis URL; use redis://host:port/db, rediss:// or unix://")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | int) -> str | int:
        return _positive_size(value)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value


class WarmTier(Strict):
    """The warm tier: a folder on local disk with a size cap."""

    path: str = Field(".memories/store", description="folder (relative paths: from the project folder)")
    size: str | int = Field("1GB", description="cap, e.g. 32GB")

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | int) -> str | int:
        return _positive_size(value)


class ColdTier(Strict):
    """The cold tier: an object store (or a folder), the durable copy of every value."""

    url: str = Field(".memories/store-cold", description="s3://bucket/prefix, gs://..., abfs://..., file:///... or a path")
    connection: str | None = Field(None, description="an s3, gcs or adls2 connection of this profile: credentials, endpoint")


_COLD_SCHEMES = {"s3": ("s3", "s3a"), "gcs": ("gs", "gcs"), "adls2": ("abfs", "abfss", "az")}


class StoreProfile(Strict):
    """The tiered memory store; a tier set to null is left out (warm and cold exist by default)."""

    hot: HotTier | None = None
    warm: WarmTier | None = Field(default_factory=WarmTier)
    cold: ColdTier | None = Field(default_factory=ColdTier)

    @model_validator(mode="after")
    def _one_tier(self) -> StoreProfile:
        if self.hot is None and self.warm is None and self.cold is None:
            raise ValueError("the memory store needs at least one of hot, warm, cold")
        return self


class ResourceProfile(Strict):
    """Settings shared by every pipeline of a code location."""

    storage_dir: str = Field(".memories/storage", description="Parquet handed between assets")
    report_dir: str = Field(".memories/reports", description="integration reports (JSON)")
    executor: Literal["in_process", "multiprocess"] = Field(
        "in_process", description="how a run executes its steps (see BENCHMARKS.md)"
    )
    max_concurrent: int | None = Field(None, ge=1, description="multiprocess: parallel steps")
    engine_memory_limit: str | None = Field(
        None, pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
        description="memory DuckDB may use per step before spilling to disk, e.g. 4GB (default: a tenth of RAM, at least 1 GB)",
    )
    connections: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Connection] = Field(
        default_factory=dict, description="named clouds and databases that specs refer to with `connection:`"
    )
    store: StoreProfile = Field(
        default_factory=StoreProfile, description="the tiered memory store (hot Redis, warm disk, cold object store)"
    )

    @model_validator(mode="after")
    def _cold_connection(self) -> ResourceProfile:
        cold = self.store.cold
        if cold is None or cold.connection is None:
            return self
        connection = self.connections.get(cold.connection)
        if connection is None:
            listed = ", ".join(sorted(self.connections)) or "none"
            raise ValueError(f"store.cold.connection names '{cold.connection}', which connections does not have (it has: {listed})")
        schemes = _COLD_SCHEMES.get(connection.type)
        if schemes is None:
            raise ValueError(f"store.cold.connection '{cold.connection}' is of type {connection.type}; it needs s3, gcs or adls2")
        scheme = cold.url.split("://", 1)[0] if "://" in cold.url else ""
        if scheme not in schemes:
            raise ValueError(f"store.cold.url '{cold.url}' does not fit connection '{cold.connection}' ({connection.type}); "
                             f"it should start with {' or '.join(s + '://' for s in schemes)}")
        return self


def profile_name() -> str:
    """$MEMORIES_PROFILE, default ``local``."""
    return os.environ.get("MEMORIES_PROFILE", "local")


def load_profile(project_root: Path, name: str | None = None) -> ResourceProfile:
    """Read ``resources/<name>.yaml``; the embedded default when ``local`` has no file."""
    name = name or profile_name()
    file = project_root / "resources" / f"{name}.yaml"
    if not file.is_file():
        if name == "local":
            return ResourceProfile()
        raise SpecError([SpecProblem(file, "", f"resource profile '{name}' not found (MEMORIES_PROFILE)")])
    profile = parse_model(ResourceProfile, read_document(file), file)
    assert isinstance(profile, ResourceProfile)
    return profile

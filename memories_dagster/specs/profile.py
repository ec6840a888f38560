"""Resource profiles: ``resources/<profile>.yaml`` says where the code location keeps its data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from memories_dagster.specs.integration import Strict
from memories_dagster.specs.loading import SpecError, SpecProblem, parse_model, read_document


class S3Connection(Strict):
    """Amazon S3 or a service speaking its protocol (MinIO, moto): dagster-aws S3Resource."""

    type: Literal["s3"]
    region_name: str | None = None
    endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    profile_name: str | None = None
    use_unsigned_session: bool = False


class GcsConnection(Strict):
    """Google Cloud Storage: dagster-gcp GCSResource, plus an endpoint for emulators."""

    type: Literal["gcs"]
    project: str | None = None
    endpoint_url: str | None = None
    token: str | None = Field(None, description="'anon', a service-account JSON path, or default credentials")


class AzureConnection(Strict):
    """Azure Blob Storage / ADLS Gen2: dagster-azure ADLS2Resource."""

    type: Literal["adls2"]
    storage_account: str
    account_key: str | None = None
    sas_token: str | None = None
    connection_string: str | None = Field(None, description="e.g. for Azurite; overrides the account settings")
    endpoint_suffix: str = "core.windows.net"


class SqlConnection(Strict):
    """A SQL database through SQLAlchemy, with its pool settings."""

    type: Literal["sql"]
    url: str
    pool_size: int = Field(5, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_pre_ping: bool = True
    pool_recycle_seconds: int = Field(1800, ge=-1)
    connect_timeout_seconds: int = Field(10, ge=1)


Connection = Annotated[S3Connection | GcsConnection | AzureConnection | SqlConnection, Field(discriminator="type")]


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

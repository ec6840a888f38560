"""Resource profiles: ``resources/<profile>.yaml`` says where the code location keeps its data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from memories_dagster.specs.integration import Strict
from memories_dagster.specs.loading import SpecError, SpecProblem, parse_model, read_document


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

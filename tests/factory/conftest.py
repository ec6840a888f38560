"""A throwaway project folder with its own assets/ and the definitions built from it."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from memories_dagster.definitions import build_definitions

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs = root / "assets" / "integrations"
        self.specs.mkdir(parents=True)
        shutil.copytree(SAMPLES, root / "sample_data")

    def add(self, name: str, document: dict) -> Path:
        path = self.specs / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def definitions(self) -> dg.Definitions:
        return build_definitions()

    def run(self, pipeline: str, partition_key: str | None = None, instance=None, raise_on_error=True):
        job = self.definitions().resolve_job_def(f"{pipeline}_job")
        return job.execute_in_process(
            partition_key=partition_key, instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error
        )


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.setenv("MEMORIES_ASSETS_DIR", str(tmp_path / "assets"))
    monkeypatch.delenv("MEMORIES_PROFILE", raising=False)
    return Project(tmp_path)

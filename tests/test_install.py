"""The README's test install resolves with the pip that a new virtual environment brings.

pip 23's resolver gave up (ResolutionImpossible) while backtracking through s3fs, aiobotocore
and moto releases; the bounds in pyproject.toml leave it one answer. The oracle is pip itself,
run as a newcomer runs it: a fresh venv, no upgrade, a dry run of `pip install -e '.[test]'`.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_test_extra_resolves_with_a_fresh_venvs_own_pip(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    version = subprocess.run([*pip, "--version"], capture_output=True, text=True, check=True).stdout
    report = tmp_path / "report.json"
    result = subprocess.run(
        [*pip, "install", "--dry-run", "--quiet", "--report", str(report), "-e", f"{PROJECT}[test]"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, f"{version}\n{result.stderr[-3000:]}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    assert chosen["dagster"] == "1.13.27" and chosen["moto"].startswith("5.")

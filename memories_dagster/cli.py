"""The ``memories`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memories_dagster.specs.loading import (
    SPEC_SUFFIXES,
    SpecError,
    SpecProblem,
    assets_root,
    load_integration_spec,
    spec_files,
)


def _declaration_files(paths: list[str]) -> list[Path]:
    if not paths:
        return spec_files(assets_root() / "integrations")
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            inner = path / "integrations"
            files += spec_files(inner if inner.is_dir() else path)
        else:
            files.append(path)
    return files


def validate(paths: list[str]) -> int:
    """Check declarations; print every error with file, field path and what is allowed."""
    files = _declaration_files(paths)
    if not files:
        print(f"no declarations found ({', '.join(SPEC_SUFFIXES)} files)", file=sys.stderr)
        return 1
    failed = 0
    for file in files:
        try:
            if file.suffix not in SPEC_SUFFIXES:
                raise SpecError([SpecProblem(file, "", f"not a declaration: use {', '.join(SPEC_SUFFIXES)}")])
            if not file.exists():
                raise SpecError([SpecProblem(file, "", "no such file")])
            loaded = load_integration_spec(file)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error: {problem}")
            continue
        print(f"ok: {file} (pipeline {loaded.name}, {len(loaded.spec.integration_config.data_sources)} sources)")
    print(f"{len(files) - failed} valid, {failed} invalid")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="memories", description="Declarative data integration on Dagster.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check declarations (default: every spec under the assets folder)")
    check.add_argument("paths", nargs="*", help="spec files or folders")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return validate(args.paths)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())

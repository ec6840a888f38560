"""The ``memories`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memories_dagster.secrets import redact
from memories_dagster.specs.loading import (
    SPEC_SUFFIXES,
    SpecError,
    SpecProblem,
    assets_root,
    load_integration_spec,
    load_region,
    read_document,
    spec_files,
    spec_warnings,
)

DECLARATION_FOLDERS = ("integrations", "earth")


def _declaration_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in [Path(text) for text in paths] or [assets_root()]:
        if path.is_dir():
            inner = [path / name for name in DECLARATION_FOLDERS if (path / name).is_dir()]
            for folder in inner or [path]:
                files += spec_files(folder)
        else:
            files.append(path)
    return files


def _is_region(file: Path) -> bool:
    """Earth regions live in earth/ (or, anywhere else, are the files declaring a bbox)."""
    if file.parent.name == "earth":
        return True
    document = read_document(file)
    return isinstance(document, dict) and "bbox" in document


def validate(paths: list[str]) -> int:
    """Check declarations; print every error with file, field path and what is allowed."""
    files = _declaration_files(paths)
    if not files:
        print(f"no declarations found ({', '.join(SPEC_SUFFIXES)} files)", file=sys.stderr)
        return 1
    failed = 0
    seen: dict[tuple[str, str], Path] = {}  # (kind, name) -> first file: names must be unique per kind
    for file in files:
        try:
            if file.suffix not in SPEC_SUFFIXES:
                raise SpecError([SpecProblem(file, "", f"not a declaration: use {', '.join(SPEC_SUFFIXES)}")])
            if not file.exists():
                raise SpecError([SpecProblem(file, "", "no such file")])
            kind = "region" if _is_region(file) else "pipeline"
            loaded = load_region(file) if kind == "region" else load_integration_spec(file)
            first = seen.setdefault((kind, loaded.name), file)
            if first != file:
                raise SpecError([SpecProblem(file, "name", f"{kind} name '{loaded.name}' is already used by {first.name}")])
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error: {redact(str(problem))}")
            continue
        if kind == "region":
            kinds = ", ".join(k for k in ("terrain", "satellite", "climate") if getattr(loaded.spec.sources, k))
            print(f"ok: {file} (region {loaded.name}, sources: {kinds or 'none'})")
        else:
            for warning in spec_warnings(loaded):
                print(f"warning: {warning}")
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

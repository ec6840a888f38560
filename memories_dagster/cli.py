"""The ``memories`` command."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from memories_dagster.secrets import redact
from memories_dagster.specs.loading import (
    SPEC_SUFFIXES,
    SpecError,
    SpecProblem,
    assets_root,
    declared_name,
    load_integration_spec,
    load_region,
    name_clashes,
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
            files.append(_named(path) if _is_bare_name(path) else path)
    return files


def _is_bare_name(path: Path) -> bool:
    """`orders`: a pipeline or region name rather than a file."""
    return not path.exists() and path.suffix not in SPEC_SUFFIXES and path.name == str(path)


def _known_declarations() -> dict[str, list[Path]]:
    """Name -> files of every pipeline and region under the assets folder, valid or not."""
    root = assets_root()
    known: dict[str, list[Path]] = {}
    for folder in DECLARATION_FOLDERS:
        for file in spec_files(root / folder):
            known.setdefault(declared_name(file), []).append(file)
    return known


def _named(path: Path) -> Path:
    """The file of the pipeline or region named ``path`` (validated with the other files of that
    name, if any, which make it an error); unknown names are refused with the known ones."""
    known = _known_declarations()
    if str(path) in known:
        return known[str(path)][0]
    listed = ", ".join(sorted(known)) or f"none in {assets_root()}"
    raise SpecError([SpecProblem(path, "", f"no such file, and no pipeline or region is named '{path}'; known: {listed}")])


def _name_clashes(files: list[Path]) -> dict[Path, SpecError]:
    """The error of each file whose name another file of its folder declares too, as the code
    location finds them (specs.loading.name_clashes)."""
    clashes: dict[Path, SpecError] = {}
    for folder in dict.fromkeys(file.parent for file in files if file.suffix in SPEC_SUFFIXES and file.exists()):
        kind = "region" if folder.name == "earth" else "pipeline"
        clashes |= name_clashes(spec_files(folder), kind)
    return clashes


def _shared_destinations(files: list[Path], load) -> dict[Path, str]:
    """The problem of each pipeline whose file output is the same place as another declared
    pipeline's, or inside it, or around it (the files given and those of the assets folder): one
    write would replace, or a reader of the outer folder would mix in, the other's files."""
    from memories_dagster.engine.write import local_destination  # on use: DuckDB and Arrow

    known = [file for paths in _known_declarations().values() for file in paths]
    places: list[tuple[Path, str, Path]] = []
    for file in dict.fromkeys(f.resolve() for f in [*files, *known] if f.suffix in SPEC_SUFFIXES and f.exists()):
        if _is_region(file):
            continue
        try:
            loaded = load(file)
        except SpecError:
            continue  # its own errors are reported
        location = local_destination(loaded.name, loaded.spec.output_config, loaded.root, loaded.spec.partitions is not None)
        if location is not None and "://" not in location:
            places.append((file, loaded.name, Path(location).resolve()))
    problems: dict[Path, str] = {}
    for file, name, place in places:
        for other, other_name, there in places:
            if other == file:
                continue
            how = ("is the destination" if place == there else "is inside the destination" if place.is_relative_to(there)
                   else "holds the destination" if there.is_relative_to(place) else None)
            if how:
                problems.setdefault(file, f"output_config.output_destination ({place}) {how} of pipeline '{other_name}' "
                                          f"({other}): one output's write would replace or hide the other's files; give "
                                          "each output a folder of its own, side by side (e.g. output/<pipeline>)")
    return problems


def _is_region(file: Path) -> bool:
    """Earth regions live in earth/ (or, anywhere else, are the files declaring a bbox)."""
    if file.parent.name == "earth":
        return True
    document = read_document(file)
    return isinstance(document, dict) and "bbox" in document


def _output_destination(loaded) -> tuple[list[str], list[str]]:
    """(problems, repairs) of a pipeline's output destination: see engine.write.destination_check."""
    from memories_dagster.engine.write import destination_check  # on use: DuckDB and Arrow
    from memories_dagster.specs.profile import load_profile

    try:
        profile = load_profile(loaded.root)
        folders = [profile.storage_dir, profile.report_dir, ".memories"]
    except SpecError:  # a broken profile is its own error (the code location reports it)
        folders = [".memories"]
    storage = [str(loaded.root / folder) for folder in folders]
    spec = loaded.spec
    return destination_check(loaded.name, spec.output_config, loaded.root, spec.partitions is not None, storage, deep=True)


def _staging_leftovers(root: Path) -> list[str]:
    """Remove the staging folders of steps killed mid-run in the project's storage folder; what
    was removed (see engine.tables.remove_staging_leftovers)."""
    from memories_dagster.engine.tables import STAGING_FOLDER, remove_staging_leftovers
    from memories_dagster.specs.profile import load_profile

    try:
        storage = root / load_profile(root).storage_dir
    except SpecError:  # a broken profile is its own error (the code location reports it)
        return []
    return [f"{storage / STAGING_FOLDER / name}: removed the staging folder of a step that was killed"
            for name in remove_staging_leftovers(storage)]


def validate(paths: list[str]) -> int:
    """Check declarations; print every error with file, field path and what is allowed."""
    try:
        files = _declaration_files(paths)
    except SpecError as exc:
        print(f"error: {redact(str(exc))}")
        return 1
    if not files:
        print(f"no declarations found ({', '.join(SPEC_SUFFIXES)} files)", file=sys.stderr)
        return 1
    failed = 0
    clashes = _name_clashes(files)
    load = functools.cache(load_integration_spec)  # each spec read once, here and in the loop below
    shared = _shared_destinations(files, load)
    roots: set[Path] = set()  # projects whose storage was tidied
    for file in files:
        try:
            if file.suffix not in SPEC_SUFFIXES:
                raise SpecError([SpecProblem(file, "", f"not a declaration: use {', '.join(SPEC_SUFFIXES)}")])
            if not file.exists():
                raise SpecError([SpecProblem(file, "", "no such file")])
            if file in clashes:
                raise clashes[file]
            kind = "region" if _is_region(file) else "pipeline"
            loaded = load_region(file) if kind == "region" else load(file)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"error: {redact(str(problem))}")
            continue
        if loaded.root not in roots:
            roots.add(loaded.root)
            for repair in _staging_leftovers(loaded.root):
                print(f"repaired: {repair}")
        if kind == "region":
            kinds = ", ".join(k for k in ("terrain", "satellite", "climate") if getattr(loaded.spec.sources, k))
            print(f"ok: {file} (region {loaded.name}, sources: {kinds or 'none'})")
        else:
            problems, repairs = _output_destination(loaded)
            if file.resolve() in shared:
                problems = [shared[file.resolve()], *problems]
            for repair in repairs:
                print(f"repaired: {file}: {repair}")
            if problems:
                failed += 1
                for problem in problems:
                    print(f"error: {redact(str(SpecProblem(file, '', problem)))}")
                continue
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
    check.add_argument("paths", nargs="*", help="spec files or folders, or names of pipelines and regions")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return validate(args.paths)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())

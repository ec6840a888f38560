"""Finding and loading declarations, with errors that name the file, the field and what is allowed."""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from memories_dagster.specs.documents import DocumentError, parse_json, parse_yaml
from memories_dagster.specs.integration import IntegrationSpec, asset_name, settings_without_effect

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong in one declaration file."""

    file: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


class SpecError(ValueError):
    """A declaration that cannot be used; ``problems`` lists every error found in it."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedSpec:
    """A valid declaration (an IntegrationSpec or an EarthRegion) with the name it goes by and
    where it came from."""

    name: str
    file: Path
    spec: Any
    root: Path

    def resolve_path(self, path: str) -> str:
        """A path of the spec, relative ones taken from the project folder (parent of assets/)."""
        if "://" in path or os.path.isabs(path):
            return path
        return str(self.root / path)


def assets_root() -> Path:
    """The declarations folder: $MEMORIES_ASSETS_DIR, else assets/ beside the package or cwd."""
    configured = os.environ.get("MEMORIES_ASSETS_DIR")
    if configured:
        return Path(configured).resolve()
    beside_package = Path(__file__).resolve().parents[2] / "assets"
    return beside_package if beside_package.is_dir() else (Path.cwd() / "assets").resolve()


def spec_files(folder: Path) -> list[Path]:
    """Declaration files directly in ``folder``, in name order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())


def read_document(file: Path) -> object:
    """Parse a YAML or JSON file strictly (specs.documents); raise SpecError with the line of an error."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem(file, "", f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        message = f"the file is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})"
        raise SpecError([SpecProblem(file, "", message)]) from None
    try:
        return parse_json(text) if file.suffix == ".json" else parse_yaml(text)
    except DocumentError as exc:
        raise SpecError([SpecProblem(file, "", exc.described("JSON" if file.suffix == ".json" else "YAML"))]) from None


def lenient_document(file: Path) -> dict:
    """What can be read of a declaration that may not validate (nothing when it does not parse)."""
    try:
        document = read_document(file)
    except SpecError:
        return {}
    return document if isinstance(document, dict) else {}


def declared_name(file: Path, document: dict | None = None) -> str:
    """The name a declaration goes by, valid or not: its ``name``, else its file stem."""
    name = (lenient_document(file) if document is None else document).get("name")
    return asset_name(name if isinstance(name, str) and name else file.stem)  # as _load names a valid one


def parse_model(model: type[BaseModel], document: object, file: Path) -> BaseModel:
    """Validate ``document`` against ``model``; every error becomes a SpecProblem."""
    if not isinstance(document, dict):
        kind = "empty" if document is None else type(document).__name__
        raise SpecError([SpecProblem(file, "", f"the file must hold a mapping (an object), not {kind}")])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise SpecError([_problem(model, file, error) for error in exc.errors()]) from None


def _load(model: type[BaseModel], file: Path, root: Path | None) -> LoadedSpec:
    """Validate one declaration file; it goes by its ``name`` or its file stem."""
    file = Path(file)
    spec = parse_model(model, read_document(file), file)
    root = root or file.resolve().parent.parent.parent
    return LoadedSpec(name=asset_name(getattr(spec, "name", None) or file.stem), file=file, spec=spec, root=root)


def load_integration_spec(file: Path, root: Path | None = None) -> LoadedSpec:
    """Load and validate one integration spec file (and the pandera schema file it names)."""
    loaded = _load(IntegrationSpec, file, root)
    schema_file = loaded.spec.integration_config.data_quality_checks.schema_file
    if schema_file and "${" not in schema_file:
        from memories_dagster.engine.contracts import contract_from_file  # pandera and polars: only when asked

        try:
            contract_from_file(loaded.resolve_path(schema_file))
        except ValueError as exc:
            raise SpecError([SpecProblem(file, "integration_config.data_quality_checks.schema_file", str(exc))]) from None
    return loaded


def spec_warnings(loaded: LoadedSpec) -> list[SpecProblem]:
    """Settings of a valid integration spec that change nothing, each with its file and field."""
    return [SpecProblem(loaded.file, field, why) for field, why in settings_without_effect(loaded.spec.integration_config)]


def discover_integrations(root: Path) -> tuple[list[LoadedSpec], list[SpecError]]:
    """Every spec in ``<root>/integrations``: the valid ones and the errors of the others."""
    return _discover(spec_files(root / "integrations"), lambda file: load_integration_spec(file, root.parent), "pipeline")


def load_region(file: Path, root: Path | None = None) -> LoadedSpec:
    """Load and validate one earth region file (``assets/earth/<region>.yaml``)."""
    from memories_dagster.specs.earth import EarthRegion

    return _load(EarthRegion, file, root)


def discover_regions(root: Path) -> tuple[list[LoadedSpec], list[SpecError]]:
    """Every region in ``<root>/earth``: the valid ones and the errors of the others."""
    return _discover(spec_files(root / "earth"), lambda file: load_region(file, root.parent), "region")


def name_clashes(files: list[Path], kind: str) -> dict[Path, SpecError]:
    """The error of each of ``files`` whose declared name (valid or not) another one declares too:
    which file would be meant is a guess, so every file of such a name is refused, naming them all."""
    claims: dict[str, list[Path]] = {}
    for file in files:
        claims.setdefault(declared_name(file), []).append(file)
    return {file: SpecError([SpecProblem(file, "name", (
        f"{kind} name '{name}' is declared by {len(claimants)} files ({', '.join(f.name for f in claimants)}); "
        "a name must be declared once: rename or remove all but one"))])
        for name, claimants in claims.items() if len(claimants) > 1 for file in claimants}


def _discover(files: list[Path], load: Callable[[Path], LoadedSpec], kind: str) -> tuple[list[LoadedSpec], list[SpecError]]:
    loaded: list[LoadedSpec] = []
    clashes = name_clashes(files, kind)
    errors: list[SpecError] = list(clashes.values())
    for file in files:
        if file in clashes:
            continue
        try:
            spec = load(file)
        except SpecError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # a crash in one file must not hide the others
            errors.append(SpecError([SpecProblem(file, "", f"cannot be loaded: {exc}")]))
            continue
        loaded.append(spec)
    return loaded, errors


def _problem(model: type[BaseModel], file: Path, error: dict) -> SpecProblem:
    loc = tuple(error["loc"])
    field = format_location(loc)
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        message = f"unknown key '{loc[-1]}'" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        message = "required, but missing"
    elif message.startswith("Value error, "):  # a validator's message may quote the value: keep it short
        message = shown(message[len("Value error, ") :], limit=1000)
    elif kind == "literal_error":
        message = f"'{shown(error.get('input'))}' is not allowed; {message[0].lower()}{message[1:]}"
    return SpecProblem(file, field, message)


def shown(value: object, limit: int = 200) -> str:
    """``value`` as a message may echo it: cut after ``limit`` characters, so a 100 KB value
    written by mistake gives a one-line error."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def format_location(loc: tuple) -> str:
    """('a', 'b', 2, 'c') -> 'a.b[2].c'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-", "literal[")) or part in ("str", "int", "dict[str,any]"):
            continue  # union branch tags pydantic adds to the location
        else:
            text += f".{part}" if text else str(part)
    return text


def allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys a declaration may have at ``loc`` inside ``model``."""
    current: object = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        current = field.annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: object) -> object:
    """Optional[X] / list[X] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation

"""Broken declarations stay visible and selectable: each becomes assets in the group the
declaration would have had, under the asset keys it would have had where the file tells them
(its name or file stem, its source names, its region's sources and analyzers). Materializing them
fails with the declaration's errors, so `--select group:<name>` or `<name>/output` on a broken spec
fails the run instead of matching nothing (Dagster's CLI then runs every other asset)."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from memories_dagster.factory.partitions import partitions_definition
from memories_dagster.secrets import redact
from memories_dagster.specs.integration import PartitionsSpec, asset_name
from memories_dagster.specs.loading import SpecError, declared_name, lenient_document

INVALID_GROUP = "invalid_specs"
REGION_SOURCES = ("terrain", "satellite", "climate")
REGION_ANALYZERS = ("terrain", "vegetation", "urban", "climate")
logger = logging.getLogger("memories_dagster")
# asset key -> the redacted errors of the broken declaration it stands for, as the code location
# loaded in this process last built them: a run selecting any of them is refused before any work
_refused: dict[dg.AssetKey, str] = {}


def refused_selection(keys: set[dg.AssetKey]) -> str | None:
    """The errors of the broken declarations whose assets are among ``keys``, or None."""
    return "\n".join(dict.fromkeys(_refused[key] for key in keys if key in _refused)) or None


def invalid_spec_assets(errors: list[SpecError], taken_names: set[str]) -> list[dg.AssetsDefinition]:
    """One failing multi-asset per broken file. A file whose name is taken (by a valid declaration
    or an earlier broken one) goes to group ``invalid_specs`` under ``invalid_specs/<file>``,
    since its keys would clash; a region whose sources cannot be read keeps its group under that key."""
    used_names, used_keys = set(taken_names), set()
    _refused.clear()  # a new build of the code location: only its broken declarations count
    assets = []
    for error in errors:
        file = error.problems[0].file
        region = file.parent.name == "earth"  # regions live in earth/; their fallback keys get their own branch
        document = lenient_document(file)
        name = declared_name(file, document)
        taken = name in used_names
        keys = [] if taken else (_region_keys if region else _pipeline_keys)(name, document)
        group = INVALID_GROUP if taken else name
        if not keys:  # taken, or a region whose sources cannot be read
            branch = [INVALID_GROUP, "earth"] if region else [INVALID_GROUP]
            keys = [dg.AssetKey([*branch, asset_name(file.stem)])]
            if keys[0] in used_keys:  # orders.yaml and orders.json both broken
                keys = [dg.AssetKey([*branch, asset_name(file.name)])]
        used_names.add(name)
        used_keys.update(keys)
        partitions = None if taken or region else _partitions(name, document)
        assets.append(_failing_assets(file, error, keys, group, partitions))
    return assets


def _failing_assets(file: Path, error: SpecError, keys: list[dg.AssetKey], group: str,
                    partitions: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    shown = redact(str(error))  # an error may quote a URL holding a password
    _refused.update(dict.fromkeys(keys, shown))
    logger.warning("declaration %s is invalid and was not loaded:\n%s", file, shown)
    description = "This declaration is invalid and was not loaded:\n\n" + shown
    specs = [
        dg.AssetSpec(key=key, group_name=group, description=description, kinds={"json" if file.suffix == ".json" else "yaml"},
                     metadata={"file": str(file), "errors": [redact(str(p)) for p in error.problems]})
        for key in keys
    ]

    @dg.multi_asset(specs=specs, name="invalid__" + "__".join(keys[0].path), can_subset=True, partitions_def=partitions)
    def refuse(context):  # noqa: ARG001 - Dagster passes it
        raise dg.Failure(description=f"{file} is invalid, so its assets cannot be materialized:\n{shown}", allow_retries=False)

    return refuse


def _partitions(name: str, document: dict) -> dg.PartitionsDefinition | None:
    """The pipeline's partitions when its `partitions` block is valid, so that `--partition KEY`
    reaches the failing assets (Dagster refuses it on unpartitioned assets, hiding the errors)."""
    try:
        return partitions_definition(name, PartitionsSpec.model_validate(document.get("partitions")))
    except ValueError:  # missing or itself invalid: pydantic's ValidationError is a ValueError
        return None


def _pipeline_keys(name: str, document: dict) -> list[dg.AssetKey]:
    """``<name>/sources/<source>`` for each source whose name can be read, ``<name>/integrated``, ``<name>/output``."""
    config = document.get("integration_config")
    sources = config.get("data_sources") if isinstance(config, dict) else None
    names = [s["source_name"] for s in sources if isinstance(s, dict) and isinstance(s.get("source_name"), str)] \
        if isinstance(sources, list) else []
    keys = dict.fromkeys(dg.AssetKey([name, "sources", asset_name(source)]) for source in names)
    return [*keys, dg.AssetKey([name, "integrated"]), dg.AssetKey([name, "output"])]


def _region_keys(name: str, document: dict) -> list[dg.AssetKey]:
    """``<region>/earth/<kind>`` and ``<region>/analysis/<analyzer>`` for those the file declares."""
    def declared(part: str, allowed: tuple[str, ...]) -> list[str]:
        block = document.get(part)
        return [kind for kind in allowed if isinstance(block, dict) and kind in block]

    return [dg.AssetKey([name, "earth", kind]) for kind in declared("sources", REGION_SOURCES)] + [
        dg.AssetKey([name, "analysis", kind]) for kind in declared("analyzers", REGION_ANALYZERS)]

"""Broken declarations stay visible: each becomes an asset whose description is the error."""

from __future__ import annotations

import logging

import dagster as dg

from memories_dagster.secrets import redact
from memories_dagster.specs.integration import asset_name
from memories_dagster.specs.loading import SpecError

INVALID_GROUP = "invalid_specs"
logger = logging.getLogger("memories_dagster")


def invalid_spec_assets(errors: list[SpecError]) -> list[dg.AssetSpec]:
    """One non-materializable asset per broken file, named after it, carrying its errors."""
    specs = []
    for error in errors:
        file = error.problems[0].file
        # regions live in earth/; their broken files get their own branch so names never clash
        key = [INVALID_GROUP, "earth", asset_name(file.stem)] if file.parent.name == "earth" else [INVALID_GROUP, asset_name(file.stem)]
        shown = redact(str(error))  # an error may quote a URL holding a password
        logger.warning("declaration %s is invalid and was not loaded:\n%s", file, shown)
        specs.append(
            dg.AssetSpec(
                key=key,
                group_name=INVALID_GROUP,
                description="This declaration is invalid and was not loaded:\n\n" + shown,
                metadata={"file": str(file), "errors": [redact(str(p)) for p in error.problems]},
                kinds={"yaml" if file.suffix != ".json" else "json"},
            )
        )
    return specs

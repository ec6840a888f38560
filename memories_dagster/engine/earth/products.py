"""What an earth step leaves behind: a folder of rasters, a statistics table and a preview,
published whole so that a failed run never mixes with the last good one."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.tables import UMASK, remove_writer_leftovers, swap_folder, writer_folder

# the file each kind of source publishes, which its analyzers read
SOURCE_FILES = {"terrain": "elevation.tif", "satellite": "composite.tif", "climate": "climate.nc"}
STATS_FILE = "stats.parquet"
PREVIEW_MAX_PIXELS = 512  # inlined in every materialization's metadata: keep it small


@dataclass
class Product:
    """Files of one materialization and the facts about them.

    While staged, ``folder`` is the private staging folder and ``target`` where it will be
    published; once published both are the target and every path is final.
    """

    folder: Path
    target: Path
    rasters: dict[str, str] = field(default_factory=dict)
    stats_path: str | None = None
    preview_path: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def final(self, path: str) -> str:
        """Where a file of the product is once published."""
        return str(self.target / Path(path).relative_to(self.folder))


def json_number(value: Any, digits: int | None = None) -> float | None:
    """A number fit for JSON metadata: NaN and infinities become None."""
    number = float(value)
    if not np.isfinite(number):
        return None
    return round(number, digits) if digits is not None else number


def product_folder(storage_dir: str, region: str, step: str, partition: str | None) -> Path:
    """``<storage>/earth/<region>/<step>/<partition or static>``: where a step's files live."""
    return Path(storage_dir) / "earth" / region / step / (partition or "static")


def published_folder(storage_dir: str, region: str, step: str, partition: str | None = None) -> Path:
    """The folder a step published: the given partition; else ``static`` when the step has no
    partitions (or had none most recently); else the latest partition holding data, so a day
    without a scene does not hide the last real observation. Partition keys are ISO dates: the
    greatest name is the latest."""
    base = Path(storage_dir) / "earth" / region / step
    static = base / "static"
    partitions = sorted(p for p in base.iterdir() if p.is_dir() and p.name[0] != "." and p != static) if base.is_dir() else []
    if partition:
        folder = base / partition if (base / partition).is_dir() or not static.is_dir() else static
    elif static.is_dir() and (not partitions or static.stat().st_mtime >= max(p.stat().st_mtime for p in partitions)):
        folder = static
    else:
        with_data = [p for p in partitions if _holds_data(p)]
        folder = (with_data or partitions or [static])[-1]
    if not folder.is_dir():
        which = f" partition {partition}" if partition else ""
        raise IntegrationError(f"{region}/{step}{which} has no data at {folder}: materialize it first")
    return folder


def _holds_data(folder: Path) -> bool:
    """Whether a raster product has any valid cell (its statistics table says so)."""
    import pyarrow.parquet as pq

    stats = folder / STATS_FILE
    if not stats.exists():
        return False
    table = pq.read_table(stats)
    return "valid_cells" not in table.column_names or any((v or 0) > 0 for v in table.column("valid_cells").to_pylist())


def published_file(storage_dir: str, reference: str, partition: str | None = None) -> str:
    """The file an analyzer reference names: ``<region>/<analyzer>`` is its statistics table,
    ``<region>/<analyzer>/<raster>`` one of its rasters."""
    region, analyzer, *raster = reference.split("/")
    folder = published_folder(storage_dir, region, f"analysis/{analyzer}", partition)
    path = folder / (f"{raster[0]}.tif" if raster else STATS_FILE)
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in folder.glob("*.tif"))) or "none"
        raise IntegrationError(f"{reference}: analyzer {region}/analysis/{analyzer} wrote no '{path.name}' (its rasters: {have})")
    return str(path)


def stored_statistics(store: Any, storage_dir: str, reference: str, partition: str | None, out_path: Path) -> dict[str, Any]:
    """An analyzer's statistics table (``<region>/<analyzer>``) read from the tiered memory store
    into ``out_path``; which partition, and the key read. The latest published partition when
    none is given."""
    region, analyzer = reference.split("/")
    folder = published_folder(storage_dir, region, f"analysis/{analyzer}", partition)
    chosen = None if folder.name == "static" else folder.name
    key = f"{region}/analysis/{analyzer}/{chosen or 'data'}"
    data = store.get(key)
    if data is None:
        raise IntegrationError(f"{reference}: the memory store holds no table under {key}: materialize {region}/analysis/{analyzer} again")
    out_path.write_bytes(data)
    return {"store/key": key, "analyzer_partition": chosen or "none (not partitioned)"}


@contextlib.contextmanager
def staged_product(target: Path) -> Iterator[Product]:
    """A Product written in a private folder beside ``target`` and swapped into place on success.

    Paths recorded in the product are rewritten to their final place; on an error the staged
    files go and ``target`` keeps the previous materialization.
    """
    prefix = f".{target.name}.staging-"
    remove_writer_leftovers(target.parent, prefix)  # what writers killed mid-step left
    staged = writer_folder(target.parent, prefix)
    staged.chmod(0o777 & ~UMASK)  # mkdtemp makes it owner-only; published, it is for readers too
    product = Product(folder=staged, target=target)
    try:
        yield product
    except BaseException:  # GeneratorExit too: an asset abandoned at its yield publishes nothing
        shutil.rmtree(staged, ignore_errors=True)
        raise
    swap_folder(staged, target)
    product.rasters = {name: product.final(path) for name, path in product.rasters.items()}
    product.stats_path = product.final(product.stats_path) if product.stats_path else None
    product.preview_path = product.final(product.preview_path) if product.preview_path else None
    product.folder = target


def raster_statistics(layers: Mapping[str, np.ndarray]) -> "Any":
    """One row per layer: valid cells, coverage and the distribution of the values."""
    import pandas as pd

    rows = []
    for name, array in layers.items():
        values = np.asarray(array)
        valid = values[np.isfinite(values)]
        row: dict[str, Any] = {"layer": name, "cells": int(values.size), "valid_cells": int(valid.size),
                               "coverage": float(valid.size / values.size) if values.size else 0.0}
        if valid.size:
            # sums in float64 whatever the raster's type; percentiles by selection, not a full sort
            p05, p25, p50, p75, p95 = (float(p) for p in np.percentile(valid, [5, 25, 50, 75, 95]))
            row |= {"min": float(valid.min()), "max": float(valid.max()), "mean": float(valid.mean(dtype="float64")),
                    "std": float(valid.std(dtype="float64")), "p05": p05, "p25": p25, "median": p50, "p75": p75, "p95": p95}
        rows.append(row)
    columns = ["layer", "cells", "valid_cells", "coverage", "min", "max", "mean", "std", "p05", "p25", "median", "p75", "p95"]
    return pd.DataFrame(rows).reindex(columns=columns)


def stats_table(product: Product) -> "Any":
    """The statistics table a step wrote, as a pandas DataFrame (what the memory store keeps)."""
    import pandas as pd

    return pd.read_parquet(product.stats_path)


def write_stats(product: Product, table: "Any", name: str = STATS_FILE) -> None:
    """The statistics table as Parquet in the product folder."""
    path = product.folder / name
    table.to_parquet(path, index=False)
    product.stats_path = str(path)


def preview_png(path: Path, array: np.ndarray, cmap: str, vmin: float, vmax: float) -> str:
    """A colour-mapped PNG of a raster (NaN transparent), at most 512 pixels on a side."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    step = max(1, int(np.ceil(max(array.shape) / PREVIEW_MAX_PIXELS)))
    data = np.ma.masked_invalid(np.asarray(array, dtype="float64")[::step, ::step])
    colours = colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    imsave(path, data, cmap=colours, vmin=vmin, vmax=vmax, format="png")
    return str(path)

"""Earth data meets business data: raster values at each row's longitude/latitude."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from memories_dagster.engine.earth.grid import RasterSampler
from memories_dagster.engine.errors import IntegrationError
from memories_dagster.engine.tables import TableFile

BATCH_ROWS = 262_144


def sample_rasters(table: TableFile, longitude: str, latitude: str, layers: dict[str, str]) -> TableFile:
    """``table`` with one float column per layer (column -> raster path): the raster's value in
    the cell holding the row's point, null off the raster or on nodata.

    The Parquet file is rewritten batch by batch, so memory holds the rasters and one batch.
    """
    missing = [c for c in (longitude, latitude) if c not in table.columns]
    if missing:
        raise IntegrationError(
            f"sample_rasters needs the columns {', '.join(missing)}; the source has: {', '.join(table.columns)}"
        )
    clashes = [c for c in layers if c in table.columns]
    if clashes:
        raise IntegrationError(f"sample_rasters would overwrite the source columns {', '.join(clashes)}: name the layers otherwise")
    samplers = {column: RasterSampler(path) for column, path in layers.items()}
    source = pq.ParquetFile(table.path)
    staged = Path(table.path).with_name(f".{Path(table.path).name}.sampled")
    writer = None
    try:
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            lons = batch.column(longitude).cast(pa.float64()).to_numpy(zero_copy_only=False)
            lats = batch.column(latitude).cast(pa.float64()).to_numpy(zero_copy_only=False)
            for column, sampler in samplers.items():
                values = sampler.at(lons, lats)
                batch = batch.append_column(column, pa.array(values, mask=~(values == values)))
            if writer is None:
                writer = pq.ParquetWriter(staged, batch.schema)
            writer.write_batch(batch)
        if writer is None:  # no rows: the schema still gains the columns
            schema = source.schema_arrow
            for column in samplers:
                schema = schema.append(pa.field(column, pa.float64()))
            writer = pq.ParquetWriter(staged, schema)
    finally:
        if writer is not None:
            writer.close()
    os.replace(staged, table.path)
    columns = dict(table.columns) | {column: "DOUBLE" for column in layers}
    meta = dict(table.meta) | {"sampled_layers": dict(layers)}
    return TableFile(table.path, table.rows, columns, meta)

"""replicates.parquet written a condition at a time: the frames of one run stacked into one
Parquet file without holding them all (sim.report.montecarlo.write_tables)."""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd


def write_parquet(frames: Callable[[], Iterable[pd.DataFrame]], fh, rows: int = 100_000) -> bool:
    """The frames of `frames()` stacked into one Parquet file, which reads back as their
    concatenation (pd.concat: the union of their columns, missing values where a frame has none)
    written at once would. Converted to Arrow and written `rows` at a time (row groups), so only a
    slice is copied at once; a first pass unifies the frames' schemas. False, and nothing
    written, when there is no frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas, heads = [], []
    for frame in frames():
        schemas.append(pa.Schema.from_pandas(_nulls_as_none(frame), preserve_index=False))
        heads.append(frame.iloc[:1])
    if not schemas:
        return False
    # the unified Arrow types (a column with no value anywhere: the stacked frame's type), with the
    # stacked frame's pandas dtypes (its metadata)
    stacked = pa.Schema.from_pandas(pd.concat(heads, ignore_index=True), preserve_index=False)
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    schema = pa.schema([stacked.field(f.name) if pa.types.is_null(f.type) else f for f in unified],
                       metadata=stacked.metadata)
    with pq.ParquetWriter(fh, schema) as writer:
        for frame in frames():
            for start in range(0, len(frame), rows):
                part = _nulls_as_none(frame.iloc[start:start + rows].reindex(columns=schema.names))
                writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
    return True


def _nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns without a value as None objects (Arrow's null type, which unifies with any type): a
    column a frame lacks, or has only missing values in, takes its type from the other frames."""
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if not empty:
        return frame
    return frame.assign(**{c: pd.Series([None] * len(frame), index=frame.index, dtype=object) for c in empty})

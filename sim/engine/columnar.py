"""Compressed columnar encoding of replicate rows (pyarrow): a chunk's rows as bytes (`frame_bytes`
/ `bytes_frame`: Arrow IPC, zstd), and many frames stacked into one Parquet file a frame at a time
(`write_frames`: zstd, each float column stored the way it compresses best).

Why columnar: a run's rows are a long table where a replicate's values (pairs matched, the true
effects) repeat on every analysis row; column by column and compressed, a repeated value costs a
few bits and a file holds about what the numbers are (the floats themselves), a fifth of a pickle
of the same frames. A chunk is Arrow IPC (written and read twice as fast as Parquet, and smaller
at this size), the final file Parquet (what users read). Reading back gives the same frame, value
for value, with the same dtypes (missing floats come back as NaN)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

#: zstd levels: a chunk is written by a worker while the run goes on (fast); the final file once
CHUNK_LEVEL = 3
FINAL_LEVEL = 9
ROW_GROUP = 1 << 20


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def frame_bytes(frame: pd.DataFrame, metadata: Mapping[str, Any] | None = None, level: int = CHUNK_LEVEL) -> bytes:
    """The frame as Arrow IPC bytes (zstd), with ``metadata`` (JSON) stored under b"sim"."""
    import pyarrow as pa
    import pyarrow.feather as feather

    # one record batch: a frame stacked from per-replicate frames has text columns in many pieces,
    # and IPC would write (and compress) each piece as its own batch
    table = pa.Table.from_pandas(frame, preserve_index=False).combine_chunks()
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"sim": json.dumps(metadata, sort_keys=True).encode()})
    fh = io.BytesIO()
    feather.write_feather(table, fh, compression="zstd", compression_level=level)
    return fh.getvalue()


def bytes_frame(data: bytes) -> tuple[pd.DataFrame, dict]:
    """(frame, metadata) from `frame_bytes` output."""
    import pyarrow.feather as feather

    table = feather.read_table(io.BytesIO(data), use_threads=False)  # small: threads cost more than they save
    meta = (table.schema.metadata or {}).get(b"sim")
    return table.to_pandas(use_threads=False), (json.loads(meta) if meta else {})


def nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns without a value as None objects (Arrow's null type, which unifies with any type): a
    column a frame lacks, or has only missing values in, takes its type from the other frames."""
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if not empty:
        return frame
    return frame.assign(**{c: pd.Series([None] * len(frame), index=frame.index, dtype=object) for c in empty})


def _float_encodings(sample: pd.DataFrame, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Per float column, the smallest of dictionary, plain and byte-stream-split encoding on a
    sample (random mantissas: split bytes; repeated or rational values: dictionary or plain)."""
    pa, pq = _pa()
    no_dict, special = [], {}
    for name in names:
        col = pa.table({name: pa.array(sample[name].to_numpy(), from_pandas=True)})
        sizes = {}
        for enc in ("dict", "plain", "bss"):
            fh = io.BytesIO()
            kw: dict[str, Any] = {"use_dictionary": enc == "dict"}
            if enc == "bss":
                kw["column_encoding"] = {name: "BYTE_STREAM_SPLIT"}
            pq.write_table(col, fh, compression="zstd", compression_level=FINAL_LEVEL, **kw)
            sizes[enc] = len(fh.getvalue())
        best = min(sizes, key=sizes.get)
        if best != "dict":
            no_dict.append(name)
        if best == "bss":
            special[name] = "BYTE_STREAM_SPLIT"
    return no_dict, special


def write_frames(frames: Callable[[], Iterable[pd.DataFrame]], fh, rows: int = ROW_GROUP,
                 metadata: Callable[[], Mapping[str, Any]] | None = None, level: int = FINAL_LEVEL) -> bool:
    """The frames of `frames()` stacked into one Parquet file, which reads back as their
    concatenation (pd.concat: the union of their columns, missing values where a frame has none)
    written at once would. Converted to Arrow and written `rows` at a time (row groups, never
    across two frames), so only a slice is copied at once; a first pass unifies the frames'
    schemas. `metadata()` (JSON, asked for after the frames are written) is stored under b"sim".
    False, and nothing written, when there is no frame."""
    pa, pq = _pa()
    schemas, heads, sample = [], [], None
    for frame in frames():
        schemas.append(pa.Schema.from_pandas(nulls_as_none(frame), preserve_index=False))
        heads.append(frame.iloc[:1])
        if sample is None and len(frame):
            sample = frame.iloc[:50_000]
    if not schemas:
        return False
    # the unified Arrow types (a column with no value anywhere: the stacked frame's type), with the
    # stacked frame's pandas dtypes (its metadata)
    stacked = pa.Schema.from_pandas(pd.concat(heads, ignore_index=True), preserve_index=False)
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    schema = pa.schema([stacked.field(f.name) if pa.types.is_null(f.type) else f for f in unified],
                       metadata=stacked.metadata)
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    no_dict, special = _float_encodings(sample, [f for f in floats if f in sample]) if sample is not None else ([], {})
    with pq.ParquetWriter(fh, schema, compression="zstd", compression_level=level,
                          use_dictionary=[n for n in schema.names if n not in no_dict],
                          column_encoding=special or None) as writer:
        for frame in frames():
            for start in range(0, len(frame), rows):
                part = nulls_as_none(frame.iloc[start:start + rows].reindex(columns=schema.names))
                writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
        if metadata is not None:
            writer.add_key_value_metadata({"sim": json.dumps(metadata(), sort_keys=True)})
    return True

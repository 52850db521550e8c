"""Compressed columnar encoding of replicate rows (pyarrow): a chunk's rows as bytes (`frame_bytes`
/ `bytes_frame`: Arrow IPC, zstd), and many frames stacked into one Parquet file a frame at a time
(`write_frames`: zstd, each column stored the way it compresses best), read back by `read_frames`.

Why columnar: a run's rows are a long table where a replicate's values (pairs matched, the true
effects) repeat on every analysis row; column by column and compressed, a repeated value costs a
few bits and a file holds about what the numbers are (the floats themselves), a fifth of a pickle
of the same frames. A chunk is Arrow IPC (written and read twice as fast as Parquet, and smaller
at this size), the final file Parquet (what users read). Reading back gives the same frame, value
for value, with the same dtypes (missing floats come back as NaN).

The Parquet file of replicate rows (frames sorted by condition and rep: every run's) is *packed*,
each row group on its own, three ways that `read_frames` undoes exactly (metadata b"sim.packed"):
- repeats: a number equal to the one in the row above of the same replicate (pairs matched,
  balance, the true effects of an outcome and visit: the same on each of its analysis rows) is
  stored as a null, and read back by carrying the value above forward (a missing value is then
  stored as NaN, not as a null);
- half-widths: a confidence interval centred on its estimate is stored as its half-width w, one
  float for two, where estimate - w and estimate + w give ci_low and ci_high back bit for bit
  (IEEE-754 subtraction and addition, the same on every machine; checked row by row when written,
  and a row where no such w exists keeps its own ci_low and ci_high);
- order: a row group's rows are stored position-major (every replicate's first row, then every
  replicate's second row, ...), so values of one analysis, outcome and visit lie together and
  compress better; a stable sort by (condition, rep) gives the original order back.
The main job's replicates.parquet takes 25.5 MB instead of 31.8 MB (MB = 10^6 bytes; tests/test_disk.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
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


#: the packed layout of replicate rows (module docstring): metadata key, the key columns, and
#: the intervals stored as half-widths: (centre, low, high, name of the half-width column)
PACKED_KEY = "sim.packed"
KEYS = ("condition", "rep")
INTERVALS = (("estimate", "ci_low", "ci_high", "ci_halfwidth"),)
SAMPLE_ROWS = 8192  # rows of each sampled frame the encodings are chosen on
SAMPLE_FRAMES = 8


def _numeric(col: pd.Series) -> bool:
    return isinstance(col.dtype, np.dtype) and col.dtype.kind in "biuf"


def _sorted_by_keys(frame: pd.DataFrame) -> bool:
    """The frame's rows sorted by (condition, rep), both plain integer columns: each replicate's
    rows are together, in the order the job returned them."""
    if not all(k in frame and isinstance(frame[k].dtype, np.dtype) and frame[k].dtype.kind in "iu" for k in KEYS):
        return False
    c, r = (frame[k].to_numpy() for k in KEYS)
    return bool(np.all((c[1:] > c[:-1]) | ((c[1:] == c[:-1]) & (r[1:] >= r[:-1]))))


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise: the same value, bit for bit (so 0.0 is not -0.0), any NaN the same as any NaN."""
    if a.dtype.kind != "f":
        return a == b
    bits = f"u{a.itemsize}"
    return (a.view(bits) == b.view(bits)) | (np.isnan(a) & np.isnan(b))


def _halfwidths(est: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row a w with est - w == lo and est + w == hi exactly (bit for bit), NaN where there is
    none (and where lo and hi are both missing: they are stored as they are, which costs nothing)."""
    w = np.full(len(est), np.nan)
    todo = ~(np.isnan(lo) & np.isnan(hi))
    with np.errstate(invalid="ignore", over="ignore"):
        for cand in ((hi - lo) / 2, hi - est, est - lo):
            ok = todo & ~np.isnan(cand) & _same(est - cand, lo) & _same(est + cand, hi)
            w[ok] = cand[ok]
            todo &= ~ok
    return w


def _pack(part: pd.DataFrame, schema, spec: Mapping[str, Any] | None):
    """One row group's rows (a slice of a frame sorted by condition and rep, with the schema's
    columns) as the Arrow table stored: repeats as nulls, intervals as half-widths, position-major."""
    pa, _ = _pa()
    if spec is None:
        return pa.Table.from_pandas(part, schema=schema, preserve_index=False)
    for est, lo, hi, w in spec["intervals"]:
        if len(part) and all(_numeric(part[c]) and part[c].dtype == np.float64 for c in (est, lo, hi)):
            width = _halfwidths(*(part[c].to_numpy() for c in (est, lo, hi)))
            raw = np.isnan(width)
            part = part.assign(**{lo: np.where(raw, part[lo].to_numpy(), np.nan),
                                  hi: np.where(raw, part[hi].to_numpy(), np.nan), w: width})
    table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
    c, r = (part[k].to_numpy() for k in KEYS)
    first = np.r_[True, (c[1:] != c[:-1]) | (r[1:] != r[:-1])]  # a replicate's first row
    for name in spec["repeats"]:
        col = part[name]
        if _numeric(col):  # else a column without a value here: nulls, which stay nulls when read
            v = col.to_numpy()
            repeat = ~first & np.r_[False, _same(v[1:], v[:-1])]
            i = schema.get_field_index(name)
            table = table.set_column(i, schema.field(i), pa.array(v, mask=repeat, type=schema.field(i).type))
    group = np.cumsum(first) - 1
    position = np.arange(len(part)) - np.flatnonzero(first)[group]
    return table.take(np.lexsort((group, position)))


def _unpack(table, spec: Mapping[str, Any]):
    """The stored Arrow table of one row group in its original order, repeats filled in (its
    intervals are restored by `_intervals`, on the frame)."""
    import pyarrow.compute as pc

    table = table.take(np.lexsort(tuple(table[k].to_numpy() for k in reversed(KEYS))))  # stable
    for name in spec["repeats"]:
        if name in table.column_names:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i), pc.fill_null_forward(table[name]))
    return table


def _intervals(frame: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    for est, lo, hi, w in spec["intervals"]:
        if w in frame:
            width = frame[w].to_numpy()
            raw = np.isnan(width)
            with np.errstate(invalid="ignore"):
                frame[lo] = np.where(raw, frame[lo].to_numpy(), frame[est].to_numpy() - width)
                frame[hi] = np.where(raw, frame[hi].to_numpy(), frame[est].to_numpy() + width)
            frame = frame.drop(columns=w)
    return frame


def packing(metadata: Mapping[bytes, bytes] | None) -> dict | None:
    """The packed layout recorded in a Parquet file's key-value metadata (None: stored as is)."""
    raw = (metadata or {}).get(PACKED_KEY.encode())
    return json.loads(raw) if raw else None


def read_frames(source, row_groups: Sequence[int] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of a file of `write_frames` (a path or a pyarrow ParquetFile) as written: the
    frames stacked, or those of `row_groups` (default all) with `columns` (default all), in
    their order. A file that is not packed reads as pd.read_parquet reads it."""
    _, pq = _pa()
    pf = source if isinstance(source, pq.ParquetFile) else pq.ParquetFile(source)
    spec = packing(pf.metadata.metadata)
    groups = list(range(pf.metadata.num_row_groups)) if row_groups is None else list(row_groups)
    stored = [n for n in pf.schema_arrow.names if spec is None or n not in {w for *_, w in spec["intervals"]}]
    wanted = stored if columns is None else list(columns)
    if spec is None:
        return pf.read_row_groups(groups, columns=wanted).to_pandas()
    need = list(wanted) + list(KEYS)
    for est, lo, hi, w in spec["intervals"]:
        if lo in wanted or hi in wanted:
            need += [est, lo, hi, w]
    need = list(dict.fromkeys(need))
    tables = [_unpack(pf.read_row_group(i, columns=need), spec) for i in groups]
    table = _pa()[0].concat_tables(tables) if tables else pf.schema_arrow.empty_table().select(need)
    return _intervals(table.to_pandas(), spec)[wanted]


def _encodings(sample, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Per column of `names` (an Arrow table's), the smallest of dictionary, plain and, for numbers,
    byte-stream-split encoding on a sample (random mantissas: split bytes; repeated or rational
    values: dictionary or plain). Split integers need pyarrow >= 17 (pyproject.toml)."""
    pa, pq = _pa()
    no_dict, special = [], {}
    for name in names:
        col = sample.select([name])
        sizes = {}
        kind = col.schema.field(0).type
        for enc in ("dict", "plain", "bss") if pa.types.is_floating(kind) or pa.types.is_integer(kind) else \
                ("dict", "plain"):
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
    """The frames of `frames()` stacked into one Parquet file, which `read_frames` reads back as
    their concatenation (pd.concat: the union of their columns, missing values where a frame has
    none) written at once would. Converted to Arrow and written `rows` at a time (row groups,
    never across two frames), so only a slice is copied at once; a first pass unifies the frames'
    schemas, samples them and checks that they are sorted by condition and rep (then the file is
    packed: module docstring). `metadata()` (JSON, asked for after the frames are written) is
    stored under b"sim". False, and nothing written, when there is no frame."""
    pa, pq = _pa()
    schemas, heads, samples, other, sort = [], [], [], set(), True
    for i, frame in enumerate(frames()):
        schemas.append(pa.Schema.from_pandas(nulls_as_none(frame), preserve_index=False))
        heads.append(frame.iloc[:1])
        sort = sort and _sorted_by_keys(frame)
        other |= {c for c in frame.columns if not _numeric(frame[c]) and frame[c].notna().any()}
        if len(frame) and len(samples) < SAMPLE_FRAMES and i & (i - 1) == 0:  # frames 0, 1, 2, 4, 8, ...
            samples.append(frame.iloc[:SAMPLE_ROWS])
    if not schemas:
        return False
    # the unified Arrow types (a column with no value anywhere: the stacked frame's type), with the
    # stacked frame's pandas dtypes (its metadata)
    stacked = pa.Schema.from_pandas(pd.concat(heads, ignore_index=True), preserve_index=False)
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    schema = pa.schema([stacked.field(f.name) if pa.types.is_null(f.type) else f for f in unified],
                       metadata=stacked.metadata)
    spec = None
    if sort and all(k in schema.names for k in KEYS):
        double = {f.name for f in schema if f.type == pa.float64()}
        intervals = [list(t) for t in INTERVALS if set(t[:3]) <= double and t[3] not in schema.names]
        schema = pa.schema(list(schema) + [pa.field(t[3], pa.float64()) for t in intervals], metadata=schema.metadata)
        repeats = [f.name for f in schema if f.name not in KEYS and f.name not in other and
                   (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
        spec = {"intervals": intervals, "repeats": repeats}

    def part(frame: pd.DataFrame):
        return _pack(nulls_as_none(frame.reindex(columns=schema.names)), schema, spec)

    no_dict, special = _encodings(pa.concat_tables([part(f) for f in samples]), schema.names) if samples else ([], {})
    with pq.ParquetWriter(fh, schema, compression="zstd", compression_level=level,
                          use_dictionary=[n for n in schema.names if n not in no_dict],
                          column_encoding=special or None) as writer:
        for frame in frames():
            for start in range(0, len(frame), rows):
                writer.write_table(part(frame.iloc[start:start + rows]))
        extra = {PACKED_KEY: json.dumps(spec)} if spec is not None else {}
        if metadata is not None:
            extra["sim"] = json.dumps(metadata(), sort_keys=True)
        if extra:
            writer.add_key_value_metadata(extra)
    return True

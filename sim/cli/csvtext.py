"""CSV text without pandas, for the small commands' fast path: reading the numeric columns of a
plain CSV, writing it back with new columns appended to each of its own lines, and writing small
tables that pandas reads back as it would read its own ``to_csv``.

Why: importing pandas costs ~0.4 s of CPU and ``DataFrame.to_csv`` another ~0.2 s on 20,000 rows,
more than the PS fit and the matching together. Appending also writes the input rows back exactly as
they were (no reformatted numbers, ids or dates). "Plain" means what this module can split safely:
UTF-8 (a BOM allowed), no double quote anywhere, one line ending throughout (\\n or \\r\\n), and the
header's number of fields on every line (so no blank lines). Anything else returns None and the
caller reads and writes with pandas instead; so does a needed column that does not parse as finite
numbers (pandas then names the problem).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PlainCSV", "read_plain", "write_columns", "format_table", "float_text"]


@dataclass(frozen=True)
class PlainCSV:
    """A plain CSV's header fields, data lines (without line endings) and line ending."""

    header: list
    body: list
    newline: str

    def numbers(self, names) -> dict | None:
        """{name: float array} of the columns ``names``, or None when one is absent, named twice or
        holds anything but finite numbers."""
        if any(self.header.count(c) != 1 for c in names):
            return None
        idx = [self.header.index(c) for c in names]
        try:
            a = np.loadtxt(self.body, delimiter=",", usecols=idx, dtype=float, ndmin=2, comments=None,
                           encoding=None)
        except ValueError:
            return None
        if a.shape != (len(self.body), len(idx)) or not np.isfinite(a).all():
            return None
        return {c: a[:, j] for j, c in enumerate(names)}

    def write_appended(self, path: Path, names, columns) -> None:
        """The file as read, with the fields ``columns`` (lists of str, one per data line) appended
        under the header fields ``names``."""
        nl = self.newline
        head = ",".join(self.header + list(names))
        rows = map(",".join, zip(self.body, *columns))
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(head + nl)
            fh.write(nl.join(rows))
            fh.write(nl)


def read_plain(path: Path) -> PlainCSV | None:
    """The file split into lines and header fields, or None when it is not plain (module docstring)."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    if '"' in text:
        return None
    newline = "\r\n" if "\r\n" in text else "\n"
    if "\r" in text.replace("\r\n", ""):
        return None
    lines = text.split(newline)
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return None
    header, body = lines[0].split(","), lines[1:]
    k = len(header) - 1
    if k < 1 or any(line.count(",") != k for line in body) or "" in body:
        return None
    return PlainCSV(header, body, newline)


def float_text(values) -> list:
    """Floats as pandas writes them: the shortest repr, '' for NaN, 'inf'/'-inf'."""
    return ["" if v != v else repr(v) for v in np.asarray(values, dtype=float).tolist()]


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    return str(v)


def write_columns(path: Path, columns: dict) -> None:
    """A table of equal-length columns ({name: values}) as pandas' to_csv(index=False) would write
    it: the shortest float repr, NaN empty, quotes only where needed."""
    names = list(columns)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(names)
        for row in zip(*(list(columns[c]) for c in names)):
            w.writerow([_cell(v) for v in row])


def format_table(columns: dict, fmt: str = "{:.3f}") -> str:
    """Columns right-aligned under their names, floats with ``fmt`` (as DataFrame.to_string)."""
    names = list(columns)
    cells = [[n] + [fmt.format(v) if isinstance(v, (float, np.floating)) else str(v) for v in columns[n]]
             for n in names]
    widths = [max(map(len, c)) for c in cells]
    return "\n".join(" ".join(c[i].rjust(w) for c, w in zip(cells, widths)) for i in range(len(cells[0])))

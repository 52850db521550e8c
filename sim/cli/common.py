"""What the small command-line tools share: one `error: ...` line and exit code 2 for bad input,
never a usage dump or a traceback; the roles file sim.match writes beside matched.csv for
sim.sensitivity to read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable


class InputError(Exception):
    """Bad user input; reported as a one-line error with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise InputError(message)


def one_line_errors(run: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """run(argv), with every failure turned into one `error:` line on stderr and exit code 2."""
    try:
        return run(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - never show a traceback to the user
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: unexpected {type(exc).__name__}: {msg}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------- the matched file's roles
#: `python -m sim.match` writes DIR/matched.csv and, beside it, DIR/matched.json: which column is
#: the treatment, which the pair id, the covariates and every matching setting. `python -m
#: sim.sensitivity DIR/matched.csv` reads it, so no flag has to repeat what sim.match was told.
SIDECAR_FORMAT = "sim.match/1"


def sidecar_path(csv_path) -> Path:
    """The roles file of a matched CSV: the same name with .json (matched.csv -> matched.json)."""
    return Path(csv_path).with_suffix(".json")


def write_sidecar(csv_path, roles: dict) -> Path:
    path = sidecar_path(csv_path)
    path.write_text(json.dumps({"format": SIDECAR_FORMAT, **roles}, indent=2, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path


def read_sidecar(csv_path) -> dict | None:
    """The roles sim.match wrote beside `csv_path`, or None when there are none. A .json file that
    is not one (unreadable, or without ``"format": "sim.match/1"``) is skipped with one warning
    line; one that is, but names no treatment or pair column, is an input error."""
    path = sidecar_path(csv_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"warning: ignoring {path}: not readable as JSON ({type(exc).__name__})", file=sys.stderr)
        return None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        print(f"warning: ignoring {path}: not a sim.match roles file (no \"format\": \"{SIDECAR_FORMAT}\")",
              file=sys.stderr)
        return None
    for key in ("treatment", "pair"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise InputError(f"{path} names no {key} column (key {key!r}); pass --{key} COL or rerun "
                             "python -m sim.match")
    return data


def write_sensitivity_files(out_dir, table, summary: dict, amplification, draw) -> None:
    """sensitivity.csv, sensitivity.json, amplification.csv and sensitivity.png (`draw(path)`) in
    out_dir, for pairs and matched sets alike; one error line if the directory cannot be written."""
    import json

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "sensitivity.csv", index=False)
        (out_dir / "sensitivity.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False)
                                                  + "\n", encoding="utf-8")
        amplification.to_csv(out_dir / "amplification.csv", index=False)
        draw(out_dir / "sensitivity.png")
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}")

"""What the small command-line tools share: one `error: ...` line and exit code 2 for bad input,
never a usage dump or a traceback."""

from __future__ import annotations

import argparse
import sys
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

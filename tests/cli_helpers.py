"""Helpers shared by the command-line tests."""

import io
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace


def run_in_process(main, *args):
    """A command's main() called in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # --help
            code = exc.code or 0
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())

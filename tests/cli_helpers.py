"""Helpers shared by the command-line tests."""

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
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


# Command lines of `python -m sim`, each run by `sim.__main__.cli` as the command runs it (sys.argv,
# Hydra's global state cleared), all in one process: Python, numpy, pandas and Hydra start once
# instead of once per line (about 2 s each).
_BATCH = """
import contextlib, io, json, sys, traceback
from hydra.core.global_hydra import GlobalHydra
import sim.__main__ as M
out = {}
for name, argv in json.loads(sys.stdin.read()):
    GlobalHydra.instance().clear()
    M._job_started = False
    sys.argv = ["sim", *argv]
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        try:
            M.cli()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    out[name] = [code, so.getvalue(), se.getvalue()]
print(json.dumps(out))
"""


def run_sim_lines(lines: dict[str, list[str]], cwd: Path, env: dict, timeout: float = 600) -> dict[str, SimpleNamespace]:
    """`python -m sim ARGS` for each named command line, in order, in one fresh process started in
    `cwd`: each line's exit code, stdout and stderr."""
    p = subprocess.run([sys.executable, "-c", _BATCH], input=json.dumps(list(lines.items())), cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    return {name: SimpleNamespace(returncode=code, stdout=so, stderr=se) for name, (code, so, se) in got.items()}

"""sim: simulation and sensitivity analysis for propensity-score-matched observational studies.

The public API (sim.api), each returning DataFrames or small result objects:
  compose, paper_method     the composed config of an experiment; the paper's analysis settings
  cohort_model, draw_cohort the calibrated cohort model; one synthetic cohort as a DataFrame
  match_data, MatchedData   the paper's PS model and matching on your own DataFrame
  weight_data               PS weighting (ATT/ATE/ATO) of your own DataFrame: weights, cobalt-style
                            balance, effective sample sizes, the weighted difference with its SE
  run, compatibility        run an experiment (ExperimentResult); which true effects a published
                            result still allows
  simulate                  your own generate/analyse functions on the same engine (SimDesign's
                            runSimulation): seeds per condition and replicate, chunks, resume, MCSEs
  rosenbaum, evalue, tost   sensitivity analyses of your own matched data or published numbers
  read_replicates           a run's replicates.parquet read back as the rows the run computed
  ExperimentResult          what run/simulate return: summary, replicates, failures, tables
  ConfigError               a bad setting, raised before anything runs (naming the key)

They are imported on first use (`sim.run`, `from sim import run`), so `import sim` and
`python -m sim.match` stay quick to start; `dir(sim)` and `help(sim)` list them all."""

__version__ = "0.1.0"


def numba_cache_key(root) -> str:
    """A digest of every file under `root` that uses numba (its path and bytes)."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + text)
    return digest.hexdigest()[:16]


def _numba_cache_dir() -> None:
    """Compiled kernels are cached per version of the code that numba compiles: numba checks only
    the source file of a cached function, so a kernel that calls a compiled function of another
    file could keep that function's old code after an edit. The cache directory
    is named by numba_cache_key of the package; a user's NUMBA_CACHE_DIR is respected."""
    import os
    import sys
    from pathlib import Path

    mine = os.environ.get("SIM_NUMBA_CACHE_DIR")  # set by sim in a parent process: recomputed here
    if os.environ.get("NUMBA_CACHE_DIR") and os.environ["NUMBA_CACHE_DIR"] != mine:
        return
    root = Path(__file__).resolve().parent
    base = root / "__pycache__" / "numba"
    if not os.access(root, os.W_OK):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sim" / "numba"
    here = base / numba_cache_key(root)
    os.environ["NUMBA_CACHE_DIR"] = os.environ["SIM_NUMBA_CACHE_DIR"] = str(here)
    if not here.is_dir() and base.is_dir():  # the first process of a new version: older kernels go
        import shutil

        for old in base.iterdir():
            if old != here:
                shutil.rmtree(old, ignore_errors=True)
    if "numba" in sys.modules:  # imported before sim: its config is already read
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


_numba_cache_dir()

__all__ = ["compose", "paper_method", "cohort_model", "draw_cohort", "match_data", "MatchedData", "run",
           "compatibility", "simulate", "rosenbaum", "evalue", "tost", "weight_data", "read_replicates",
           "ExperimentResult", "ConfigError"]


def __getattr__(name: str):
    if name == "ExperimentResult":
        from sim.jobs.contract import ExperimentResult

        return ExperimentResult
    if name == "ConfigError":
        from sim.jobs.config import ConfigError

        return ConfigError
    if name in __all__:
        from sim import api

        return getattr(api, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's own names and the lazily imported public API (so that tab completion and
    help(sim), which reads dir(), show them)."""
    return sorted(set(globals()) | set(__all__))

"""Curated results (`python -m sim.report.curate RUN_DIR`): every experiment's answer lives in
experiments/<name>/answer.py, and curating a run rebuilds the committed README.md word for word.

The committed READMEs name run directories under outputs/ that are not kept, so each test builds a
minimal fake run from the curated files themselves (summary, key table, report, figures) and a
.hydra/config.yaml with the experiment's description, reps and seed; curate writes into tmp_path."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim.report import curate as C

ROOT = Path(__file__).resolve().parents[1]
CURATED = sorted(p.parent.name for p in (ROOT / "experiments").glob("*/README.md"))


def _section(readme: str, title: str) -> str:
    """The paragraph(s) of a README between '## <title>' and the next '## ' heading."""
    m = re.search(rf"^## {re.escape(title)}\n\n(.*?)\n\n(?=## |\Z)", readme, re.S | re.M)
    assert m, f"no '## {title}' section"
    return m.group(1)


def _committed_command(name: str) -> tuple[list[str], str]:
    """The overrides and the run directory of the regenerate command in the committed README."""
    readme = (ROOT / "experiments" / name / "README.md").read_text()
    m = re.search(r"^python -m sim (.*) hydra\.run\.dir=(\S+) && python -m sim\.report\.curate \2$", readme, re.M)
    assert m, f"experiments/{name}/README.md: no regenerate command"
    return m.group(1).split(), m.group(2)


def _fake_run(name: str, run: Path, *, answer_module=None) -> Path:
    """A minimal finished run of experiment `name` rebuilt from experiments/<name>/."""
    src = ROOT / "experiments" / name
    args, _ = _committed_command(name)
    opts = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("experiment", "reps", "seed"))
    description = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["experiment"]
    (run / ".hydra").mkdir(parents=True)
    cfg = {"experiment": {"name": name, "description": description.get("description", "")},
           "reps": int(opts["reps"]), "seed": int(opts["seed"])}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*args, f"hydra.run.dir={run}"]))
    module = answer_module or C.load_answer(name)
    for f in ["report.md", getattr(module, "KEY_TABLE", C.KEY_TABLE), *(p.name for p in src.glob("*.png")),
              *getattr(module, "EXTRA_FILES", ())]:
        shutil.copy2(src / f, run / f)
    (run / "summary.csv").write_bytes(gzip.decompress((src / C.SUMMARY).read_bytes()))
    return run


@pytest.mark.parametrize("name", CURATED)
def test_answer_py_beside_every_curated_experiment(name):
    m = C.load_answer(name)
    assert callable(m.answer)
    assert (ROOT / "experiments" / name / m.KEY_TABLE).is_file()
    assert (ROOT / "experiments" / name / m.KEY_FIGURE).is_file()


@pytest.mark.parametrize("name", CURATED)
def test_curating_the_run_reproduces_the_committed_readme(name, tmp_path):
    run = _fake_run(name, tmp_path / "run")
    dest = C.curate(run, dest=tmp_path / "dest")
    assert dest == tmp_path / "dest"
    committed = (ROOT / "experiments" / name / "README.md").read_text()
    written = (dest / "README.md").read_text()
    # the move of the answer templates changed no word
    assert _section(written, "Answer") == _section(committed, "Answer")
    # nor anything else, up to the run directory named in the regenerate command
    assert written.replace(str(run), _committed_command(name)[1]) == committed
    run_files = {p.name for p in run.iterdir() if p.is_file()} - {"summary.csv"}
    assert {p.name for p in dest.iterdir()} == run_files | {"README.md", C.SUMMARY}
    # the summary compressed with a fixed header: the run's bytes, and the committed file's
    assert gzip.decompress((dest / C.SUMMARY).read_bytes()) == (run / "summary.csv").read_bytes()
    assert (dest / C.SUMMARY).read_bytes() == (ROOT / "experiments" / name / C.SUMMARY).read_bytes()


def test_command_line_curates_into_dest(tmp_path):
    run = _fake_run("sample_size", tmp_path / "run")
    r = subprocess.run([sys.executable, "-m", "sim.report.curate", str(run), "--dest", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "out")
    assert _section((tmp_path / "out" / "README.md").read_text(), "Answer") == \
        _section((ROOT / "experiments" / "sample_size" / "README.md").read_text(), "Answer")


def test_curate_writes_nothing_under_experiments_when_given_dest(tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "experiments").rglob("*") if p.is_file()}
    C.curate(_fake_run("caliper_sweep", tmp_path / "run"), dest=tmp_path / "dest")
    after = {p: p.stat().st_mtime_ns for p in (ROOT / "experiments").rglob("*") if p.is_file()
             if "__pycache__" not in p.parts}
    assert after == {p: t for p, t in before.items() if "__pycache__" not in p.parts}


def test_helpers_are_public():
    s = pd.DataFrame({"caliper": [0.2, None, 0.2], "outcome": ["a", "b", "c"], "timepoint": ["m1", "m6", "m1"],
                      "value": [0.1234, 0.5, 0.987]})
    assert list(C.pick(s, caliper=None)["outcome"]) == ["b"]
    assert list(C.pick(s, caliper=0.2, timepoint="m1")["outcome"]) == ["a", "c"]
    assert C.value_range(C.pick(s, caliper=0.2)) == "0.12-0.99"
    assert C.by_outcome(C.pick(s, caliper=0.2)) == "a m1 0.12, c m1 0.99"


def _new_experiment_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"experiment": {"name": "no_such_experiment", "description": "?"}, "reps": 2, "seed": 1}))
    (run / "summary.csv").write_bytes(gzip.decompress((ROOT / "experiments" / "caliper_sweep" / C.SUMMARY).read_bytes()))
    shutil.copy2(ROOT / "experiments" / "caliper_sweep" / "key_table.csv", run / "key_table.csv")
    return run


def test_missing_answer_is_one_error_line_naming_the_file(tmp_path):
    run = _new_experiment_run(tmp_path)
    expected = ROOT / "experiments" / "no_such_experiment" / "answer.py"
    with pytest.raises(C.CurateError, match=re.escape(str(expected))):
        C.curate(run, dest=tmp_path / "dest")
    assert not (tmp_path / "dest").exists()  # refused before anything is written
    assert not expected.parent.exists()
    r = subprocess.run([sys.executable, "-m", "sim.report.curate", str(run)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(expected) in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not expected.parent.exists()


def test_answer_py_without_answer_function_and_missing_key_table(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "experiments" / "caliper_sweep").mkdir(parents=True)
    bad = root / "experiments" / "caliper_sweep" / "answer.py"
    bad.write_text("KEY_TABLE = 'key_table.csv'\n")
    with pytest.raises(C.CurateError, match="defines no function answer"):
        C.load_answer("caliper_sweep", root)
    bad.write_text("KEY_TABLE = 'nosuch.csv'\ndef answer(summary, run_dir):\n    return 'x'\n")
    monkeypatch.setattr(C, "ROOT", root)
    run = _fake_run("caliper_sweep", tmp_path / "run", answer_module=C.load_answer("caliper_sweep", ROOT))
    with pytest.raises(C.CurateError, match="nosuch.csv"):
        C.curate(run, dest=tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_regenerate_command_leaves_out_machine_only_flags(tmp_path):
    """n_jobs, progress, chunk_size, backend and dask_scheduler change how a run uses the machine,
    never its results: the curated command does not bake them in; other overrides stay."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["experiment=caliper_sweep", "n_jobs=1", "progress=false", "chunk_size=50", "backend=dask",
         "dask_scheduler=tcp://x:1", "cohort.n=500", f"hydra.run.dir={run}"]))
    cmd = C.regenerate_command(run, {"experiment": {"name": "caliper_sweep"}, "reps": 10, "seed": 3})
    assert cmd.startswith("python -m sim experiment=caliper_sweep reps=10 seed=3 cohort.n=500 hydra.run.dir=")
    for flag in C.MACHINE_ONLY:
        assert flag not in cmd

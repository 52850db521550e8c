"""`python -m sim --help`: sim's own short page (not Hydra's 1,200-line config dump), computed
from the shipped configs; Hydra's other views still reach Hydra; an unknown experiment is one
line naming the value typed."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from sim.__main__ import preflight
from sim.cli import help as H

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def _sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), cwd=ROOT)


@pytest.fixture(scope="module")
def page() -> str:
    r = _sim("--help")
    assert r.returncode == 0, r.stderr
    return r.stdout


def _words(text: str) -> list[str]:
    return [w.strip(".,;:?!()") for w in text.replace(" ...", "").split() if w.strip(".,;:?!()")]


def _in_order(words: list[str], text: list[str]) -> bool:
    it = iter(text)
    return all(w in it for w in words)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_help_is_short_and_lists_every_experiment_with_its_question(page):
    lines = page.splitlines()
    assert len(lines) < 60, len(lines)
    assert max(map(len, lines)) <= H.WIDTH
    assert "experiment:" not in page and "hydra:" not in page  # not the composed config
    flat = _flat(page)
    for name in EXPERIMENTS:
        desc = _flat(yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())
                     ["experiment"]["description"])
        q = H.question({"experiment": {"description": desc}})
        assert f" {name} " in flat and _flat(q) in flat, name
        # computed from the description: its words, in order, from its start (asides may be left out)
        assert desc.startswith(q.split()[0]) and _in_order(_words(q), _words(desc)), (name, q)


def test_help_lists_the_common_keys_the_other_commands_and_where_the_configs_are(page):
    for key in ("reps=", "n_jobs=", "seed=", "hydra.run.dir=", "progress=", "chunk_size="):
        assert f"  {key}" in page, key
    for cmd in ("python -m sim.match", "python -m sim.sensitivity", "python -m sim.weight", "python -m sim.bench",
                "python -m sim.report.curate"):
        assert cmd in page, cmd
    assert str(resources.files("sim.conf")) in page and "conf/" in page
    assert "--cfg job" in page and "--multirun" in page
    defaults = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())
    assert f"[{defaults['seed']}]" in page  # defaults read from conf/config.yaml, not typed


def test_short_flag_gives_the_same_page_and_one_experiment_has_its_own(page):
    assert _sim("-h").stdout == page
    r = _sim("experiment=caliper_sweep", "--help")
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((ROOT / "conf" / "experiment" / "caliper_sweep.yaml").read_text())
    assert _flat(spec["experiment"]["description"]) in _flat(r.stdout)
    for key in spec["experiment"]["grid"]:
        assert key in r.stdout
    assert f"reps={spec['reps']}" in r.stdout


def test_question_shortens_a_long_first_sentence():
    long = "Headline of it: " + "word " * 80 + "end. Second sentence."
    assert H.question({"experiment": {"description": long}}) == "Headline of it"
    aside = "Does it work (" + "detail " * 40 + ") at all? More."
    assert H.question({"experiment": {"description": aside}}) == "Does it work at all?"
    plain = "word " * 100
    q = H.question({"experiment": {"description": plain}})
    assert len(q) <= H.MAX_QUESTION and q.endswith("...")


def test_unknown_experiment_names_the_value_typed_in_one_line():
    r = _sim("experiment=nosuch")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: experiment: no such experiment 'nosuch'; available: ")
    assert all(name in lines[0] for name in EXPERIMENTS)
    r = _sim("experiment=nosuch", "--help")
    assert r.returncode == 2 and "'nosuch'" in r.stderr and not r.stdout


def test_hydra_flags_still_go_to_hydra():
    """Only --help/-h are sim's; --cfg, --info, --hydra-help and --multirun reach Hydra untouched."""
    for argv in (["--cfg", "job", "experiment=caliper_sweep"], ["--info"], ["--hydra-help"],
                 ["--multirun", "experiment=caliper_sweep", "cohort.confounding=0,1"]):
        assert not H.wants_help(argv) and preflight(argv) is None, argv
    assert H.wants_help(["experiment=caliper_sweep", "-h"]) and H.wants_help(["--help"])
    r = _sim("--cfg", "job", "experiment=caliper_sweep")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["experiment"]["name"] == "caliper_sweep" and "method" in cfg

"""`python -m sim.bench --quick` (the smoke test of the benchmark): it runs, prints every section
with its table, and reports the batched path's rows equal to the per-replicate ones. Timings are
never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim.bench import core as bench

ROOT = Path(__file__).resolve().parents[1]
NUM = r"\d+(?:\.\d+)?"


@pytest.fixture(scope="module")
def quick() -> list[str]:
    p = subprocess.run([sys.executable, "-m", "sim.bench", "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.splitlines()


def section(lines: list[str], number: int) -> list[str]:
    """The lines of section `number` ("3. ..." up to the next blank line)."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{number}. "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def rows_of(lines: list[str], first: str) -> list[list[str]]:
    """Whitespace-split table rows whose first cell is `first`."""
    return [line.split() for line in lines if line.split()[:1] == [first]]


def test_every_section_is_printed(quick):
    assert quick[0].startswith("sim.bench --quick: caliper_sweep base condition")
    for number in range(1, 6):
        section(quick, number)
    assert section(quick, 3) == ["3. peak memory: skipped (--quick)"]
    assert section(quick, 4) == ["4. main job: skipped (--quick)"]
    assert any(line.startswith("load average") for line in quick)


def test_paths_table_has_both_sizes_with_rates_and_ratios(quick):
    lines = section(quick, 1)
    for n in bench.SIZES:
        throughput, agreement = rows_of(lines, str(n))
        assert throughput[1] == str(bench.QUICK_CHUNK[n])
        text = " ".join(throughput[2:])
        rate = rf"{NUM} reps/s \(\d+\)"
        assert re.fullmatch(rf"{rate} {rate} {NUM}x {rate} {NUM}x", text), text
        reps = int(agreement[1])
        assert reps >= 1


def test_batched_rows_reported_equal_to_the_per_replicate_rows(quick):
    for n in bench.SIZES:
        _, agreement = rows_of(section(quick, 1), str(n))
        _, reps, same_failures, same_pairs, same_values, *diffs, naive = agreement
        assert same_failures == "yes" and same_values == "yes"
        assert same_pairs == f"{reps}/{reps}"
        assert all(float(d) <= 1e-9 for d in diffs), diffs
        assert re.fullmatch(r"\d+/\d+", naive)


def test_engine_table_has_one_and_two_jobs(quick):
    lines = section(quick, 2)
    assert "PsmJob.simulate = the batched path" in lines[0]
    for n_jobs in ("1", "2"):
        (row,) = rows_of(lines, n_jobs)
        assert re.fullmatch(rf"{NUM} {NUM}x", " ".join(row[1:])), row
    assert rows_of(lines, "1")[0][2] == "1.00x"


def test_matching_section_keeps_its_rows(quick):
    lines = section(quick, 5)
    assert lines[2].split()[:5] == ["greedy", "1:1", "caliper", "matching", str(bench.QUICK_GREEDY_N)]
    assert lines[2].split()[-1] == "identical"
    assert lines[3].split()[:5] == ["optimal", "1:1", "with", "caliper", str(bench.QUICK_OPTIMAL_N)]
    assert lines[3].split()[-2:] == ["same", "total"]
    assert any(line == "numba compilation: skipped (--quick)" for line in lines)


@pytest.mark.parametrize("argv", [["--reps", "0"], ["--seconds", "0"], ["--quick", "--cold"]])
def test_bad_arguments_end_with_one_error_line(argv, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --")

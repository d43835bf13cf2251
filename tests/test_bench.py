"""The benchmark's quick mode end to end, so bench/ can't rot. No timing assertions: only that it ran, produced a
results table with every scenario, that every competitor loaded what the server holds, and that it measured ours
the way a user runs it (PYTHONDONTWRITEBYTECODE=1) and its memory with the process's children."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_bench_quick_mode_runs_every_scenario_and_loads_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # the bench sets it for ours
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-warmup", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    table = (out / "results.md").read_text()
    for scenario in (
        "| big | ours",
        "| big | bare",
        "| big | rest_api",
        "| big | sdk",
        "| slow | ours",
        "| slow | bare",
        "| slow | rest_api",
        "| slow | sdk",
        "| rate | ours",
        "| first-40 | ours",
        "| nochange-40 | ours",
        "| changed-40 | ours",
    ):
        assert scenario in table, f"{scenario!r} missing from:\n{table}"
    assert "Machine:" in table and "Page size 100" in table and "PYTHONDONTWRITEBYTECODE=1" in table
    assert "at 500/min" in table and "(quick: not judged)" in table
    assert all(size in table for size in ("big histories 12 models", "slow server 20", "rate limit 8", "scale 40"))

    results = orjson.loads((out / "results.json").read_bytes())["results"]
    assert results
    for run in results:
        # Correctness: every competitor loaded (or fetched) exactly the events the server holds.
        assert run["events"] == run["server_events"] > 0, run
        assert run["requests"] > 0, run
        assert run["peak_mb"] > 10, run  # a Python process with httpx: never a few KB from a unit mix-up
    by = {(run["scenario"], run["competitor"]): run for run in results}
    assert by[("rate", "ours")]["errors_429"] == 0
    # a run with nothing new never asks for more than the first run did
    assert 0 < by[("nochange-40", "ours")]["requests"] <= by[("first-40", "ours")]["requests"]


@pytest.mark.timeout(300)
def test_together_bench_runs_first_nochange_and_later(tmp_path: Path) -> None:
    """bench/together.py on a small world: every scenario runs, and a run with nothing new reads only the list and
    the jobs under way."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "together.py"), "--jobs", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in done.stdout.splitlines() if "-60 |" in line}
    assert set(rows) == {"first-60", "nochange-60", "hour-later-60"}
    first, nochange = rows["first-60"], rows["nochange-60"]
    assert int(first[3]) > 60 and int(first[5]) > 0  # requests; new events
    jobs_read = int(nochange[4].split()[0])
    assert int(nochange[3]) == 1 + 2 * jobs_read and int(nochange[5]) == 0


def test_bench_sizes_name_only_the_scenarios_that_ran() -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = bench
    spec.loader.exec_module(bench)
    sizes = bench.sizes_ran(bench.FULL, {"slow", "big", "flat-470"})
    assert sizes == (
        "big histories 200 models x 940 spells; memory flatness at 470, 1880, 3760 spells; "
        "slow server 300 models at 30 ms"
    )
    assert "scale 5,000 and 20,000 models" in bench.sizes_ran(bench.FULL, {"first-5000", "nochange-5000"})

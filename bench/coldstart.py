"""The fixed cost of one ``cohere-events`` process: what a cron job pays before and around any new data.

    uv run python bench/coldstart.py                  # 1,000 models, best of 5
    uv run python bench/coldstart.py --models 5000 --repeat 3

Every process runs with ``PYTHONDONTWRITEBYTECODE=1``, in two ways:

- ``installed``: the bytecode ``uv sync`` compiled into site-packages (``compile-bytecode = true``) is used; the
  project's own modules, installed editable, have whatever ``pipelines/__pycache__`` holds (see ``--own-cache``).
- ``source``: no bytecode at all (an empty ``PYTHONPYCACHEPREFIX``): every module compiled from source, as before
  ``compile-bytecode``.

It times ``--help``, ``report`` and a ``run`` with nothing new against the simulated API (after an unmeasured first
run), then splits one no-change run into its phases (imports by package with ``-X importtime``, opening the
pipeline, pending packages, state sync, counting rows, extract, normalize, load, the views) by timing the runner's
own functions from outside, in the same process.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from run import API_KEY, server  # noqa: E402

PHASES = r"""
import sys, time
started = time.perf_counter()
import pipelines.cli, pipelines.runner, pipelines.views, dlt
imported = time.perf_counter() - started
timings = {}

def timed(owner, name, label):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - t
    setattr(owner, name, wrapper)

runner = pipelines.runner
timed(runner, "make_pipeline", "open the pipeline")
timed(runner, "finish_pending", "pending packages")
timed(runner, "warehouse_simulated", "state sync")
timed(runner, "count_rows", "count rows (x2)")
timed(dlt.Pipeline, "extract", "extract (all HTTP)")
timed(dlt.Pipeline, "normalize", "normalize")
timed(dlt.Pipeline, "load", "load")
timed(pipelines.views, "create_views", "views")
sys.argv = ["cohere-events", *sys.argv[1:]]
try:
    pipelines.cli.app()  # not main(): it leaves with os._exit, before the phases are printed
except SystemExit:
    pass
total = time.perf_counter() - started
timings = {"imports (in process)": imported, **timings}
timings["rest (CLI, lock, summary)"] = total - sum(timings.values())
for label, seconds in timings.items():
    print(f"PHASE {label}\t{seconds:.3f}", file=sys.stderr)
"""


def env_for(url: str, workdir: Path, mode: str, empty_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("COHERE_API_KEY", "SOURCES__COHERE_FINETUNING__API_KEY", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        CO_API_URL=url,
        CO_API_KEY=API_KEY,
        DLT_DATA_DIR=str(workdir / ".dlt-data"),
        RUNTIME__LOG_LEVEL="WARNING",
    )
    if mode == "source":
        env["PYTHONPYCACHEPREFIX"] = str(empty_cache)  # never written (PYTHONDONTWRITEBYTECODE): always empty
    return env


def ours() -> list[str]:
    return [str(Path(sys.executable).parent / "cohere-events")]


RUN_ARGS = ["run", "--page-size", "100", "--concurrency", "16", "--requests-per-minute", "0", "--quiet"]


def wall(command: list[str], cwd: Path, env: dict[str, str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def import_breakdown(cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Self time of every module imported by a no-change run, summed by top-level package (seconds)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipelines.cli", *RUN_ARGS],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            totals[match.group(2).split(".")[0]] += int(match.group(1)) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def phases(cwd: Path, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PHASES, *RUN_ARGS], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    found = {}
    for line in done.stderr.splitlines():
        if line.startswith("PHASE "):
            label, seconds = line[6:].split("\t")
            found[label] = float(seconds)
    return found


def walls(url: str, workdir: Path, empty_cache: Path, repeat: int, models: int) -> None:
    """Wall seconds of --help, report and a no-change run, with uv sync's bytecode and from source."""
    print(f"\n{models} models loaded; best of {repeat}, wall seconds:")
    print("| command | installed (uv sync bytecode) | from source (no bytecode) |")
    print("|---|---:|---:|")
    for label, command in (
        ("--help", [*ours(), "--help"]),
        ("report", [*ours(), "report"]),
        ("run, nothing new", [*ours(), *RUN_ARGS]),
    ):
        times = [
            wall(command, workdir, env_for(url, workdir, mode, empty_cache), repeat) for mode in ("installed", "source")
        ]
        print(f"| `{label}` | {times[0]:.2f} | {times[1]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--phases-only", action="store_true", help="only the phases of a no-change run, installed")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cohere-events-coldstart-"))
    empty_cache = scratch / "empty-pycache"
    own_cache = list((ROOT / "pipelines" / "__pycache__").glob("*.pyc"))
    print(f"{len(own_cache)} .pyc files in pipelines/__pycache__ (the project's own modules)")
    with server(args.models) as api:
        workdir = scratch / "warehouse"
        workdir.mkdir()
        env = env_for(api.url, workdir, "installed", empty_cache)
        subprocess.run([*ours(), *RUN_ARGS], cwd=workdir, env=env, check=True)
        modes = ("installed",) if args.phases_only else ("installed", "source")
        if not args.phases_only:
            walls(api.url, workdir, empty_cache, args.repeat, args.models)
        for mode in modes:
            env = env_for(api.url, workdir, mode, empty_cache)
            best = min((phases(workdir, env) for _ in range(args.repeat)), key=lambda found: sum(found.values()))
            print(f"\nno-change run, {mode}: phases (the best run of {args.repeat}), seconds:")
            for label, seconds in best.items():
                print(f"  {label:<28} {seconds:6.3f}")
            print(f"  {'total':<28} {sum(best.values()):6.3f}")
            imports = import_breakdown(workdir, env)
            top = ", ".join(f"{name} {seconds:.3f}" for name, seconds in list(imports.items())[:12])
            print(f"  imports by package ({sum(imports.values()):.2f} s self time): {top}")


if __name__ == "__main__":
    main()

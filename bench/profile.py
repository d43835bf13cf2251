"""Profile one ``cohere-events run`` with pyinstrument, against the benchmark's simulated API.

    uv run python bench/profile.py slow          # 300 models, 30 ms latency (the "slow" scenario)
    uv run python bench/profile.py big           # 200 models x 940 spells: 270k events (the "big" scenario)
    uv run python bench/profile.py slow --top 25 --html out.html

The run is the benchmark's (``--no-metrics``, page size 100, concurrency 16, no rate limit, a fresh warehouse,
``PYTHONDONTWRITEBYTECODE=1``), under ``pyinstrument`` in the same process; it prints the functions with the most
time of their own and a few entry points' totals, and writes the whole tree to ``--html`` if asked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import API_KEY, CONCURRENCY, PAGE_SIZE, server

# the command line's own entry, under the profiler: `cohere-events` ends in os._exit, which would lose the profile
DRIVER = """
import sys
from pyinstrument import Profiler
from pyinstrument.renderers import JSONRenderer
out, sys.argv = sys.argv[1], ["cohere-events", *sys.argv[2:]]
profiler = Profiler(interval=0.01)
profiler.start()
import pipelines.cli
try:
    pipelines.cli.app()
except SystemExit as done:
    code = done.code
profiler.stop()
open(out, "w").write(JSONRenderer().render(profiler.last_session))
profiler.last_session.save(out.replace(".json", ".pyisession"))
sys.exit(code)
"""
SCENARIOS = {"slow": {"models": 300, "latency_ms": 30.0}, "big": {"models": 200, "spells": 940}}
# where a run's time goes: each step by the function (and file) that owns it, callees included
STEPS = {
    "the command line and its imports": ("<module>", "cli.py"),
    "importing dlt, pyarrow, httpx (pipelines.runner)": ("<module>", "runner.py"),
    "opening the warehouse": ("warehouse_kept_open", "runner.py"),
    "warehouse state (trust the warehouse)": ("trust_the_warehouse", "warehouse_state.py"),
    "row counts": ("count_rows", "runner.py"),
    "dlt state sync": ("warehouse_simulated", "runner.py"),
    "extract (the API; the main thread waits for it)": ("extract", "pipeline.py"),
    "normalize": ("normalize", "pipeline.py"),
    "load": ("load_capped", "runner.py"),
    "views": ("create_views", "views.py"),
}


def profile(scenario: str, html: Path | None) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix=f"cohere-events-profile-{scenario}-"))
    session = workdir / "profile.json"
    with server(**SCENARIOS[scenario]) as api:  # type: ignore[arg-type]
        env = dict(os.environ) | {
            "PYTHONDONTWRITEBYTECODE": "1",
            "CO_API_URL": api.url,
            "CO_API_KEY": API_KEY,
            "DLT_DATA_DIR": str(workdir / ".dlt-data"),
            "RUNTIME__LOG_LEVEL": "WARNING",
        }
        options = ["--page-size", str(PAGE_SIZE), "--concurrency", str(CONCURRENCY), "--requests-per-minute", "0"]
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(session), "run", *options, "--no-metrics", "--quiet"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"the profiled run failed: {done.stderr.strip()[-500:]}")
    if html:
        from pyinstrument.renderers import HTMLRenderer
        from pyinstrument.session import Session

        html.write_text(HTMLRenderer().render(Session.load(str(session.with_suffix(".pyisession")))))
    return json.loads(session.read_text())


def walk(
    frame: dict[str, object], own: dict[str, float], totals: dict[tuple[str, str], float], stack: frozenset[object]
) -> None:
    file = Path(str(frame["file_path_short"])).name
    name = f"{frame['function']} ({file}:{frame['line_no']})"
    children = frame.get("children") or []
    assert isinstance(children, list)
    seconds = float(frame["time"])  # type: ignore[arg-type]
    own[name] = own.get(name, 0.0) + seconds - sum(float(child["time"]) for child in children)
    key = (str(frame["function"]), file)
    if key not in stack:  # a recursive call counts once
        totals[key] = totals.get(key, 0.0) + seconds
    for child in children:
        walk(child, own, totals, stack | {key})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--top", type=int, default=15, help="how many functions to list by their own time")
    parser.add_argument("--html", type=Path, help="also write pyinstrument's whole tree as HTML here")
    args = parser.parse_args()
    session = profile(args.scenario, args.html)
    root = session["root_frame"]
    assert isinstance(root, dict)
    own: dict[str, float] = {}
    totals: dict[tuple[str, str], float] = {}
    walk(root, own, totals, frozenset())
    duration = float(session["duration"])  # type: ignore[arg-type]
    print(f"{args.scenario}: {duration:.2f} s profiled (pyinstrument, wall clock)\n")
    print("| step | seconds | share |\n|---|---:|---:|")
    for step, key in STEPS.items():
        seconds = totals.get(key, 0.0)
        print(f"| {step} | {seconds:.2f} | {100 * seconds / duration:.0f} % |")
    print("\n| function (own time) | seconds |\n|---|---:|")
    for name, seconds in sorted(own.items(), key=lambda item: -item[1])[: args.top]:
        print(f"| `{name}` | {seconds:.2f} |")


if __name__ == "__main__":
    main()

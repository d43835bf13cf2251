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
from pipelines.cli import app
try:
    app()
except SystemExit as done:
    code = done.code
profiler.stop()
open(out, "w").write(JSONRenderer().render(profiler.last_session))
profiler.last_session.save(out.replace(".json", ".pyisession"))
sys.exit(code)
"""
SCENARIOS = {"slow": {"models": 300, "latency_ms": 30.0}, "big": {"models": 200, "spells": 940}}
# where a run's time goes, by the function that owns each step (totals, callees included)
STEPS = {
    "imports and start": "<module>",
    "extract": "extract",
    "normalize": "normalize",
    "load": "load_capped",
    "warehouse state": "trust_the_warehouse",
    "row counts": "count_rows",
    "views": "create_views",
    "pending packages": "finish_pending",
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


def walk(frame: dict[str, object], own: dict[str, float], totals: dict[str, float], stack: tuple[str, ...]) -> None:
    name = f"{frame['function']} ({Path(str(frame['file_path_short'])).name}:{frame['line_no']})"
    children = frame.get("children") or []
    assert isinstance(children, list)
    self_time = float(frame["time"]) - sum(float(child["time"]) for child in children)  # type: ignore[arg-type]
    own[name] = own.get(name, 0.0) + self_time
    function = str(frame["function"])
    if function not in stack:  # count a recursive function once
        totals[function] = totals.get(function, 0.0) + float(frame["time"])  # type: ignore[arg-type]
    for child in children:
        walk(child, own, totals, (*stack, function))


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
    totals: dict[str, float] = {}
    walk(root, own, totals, ())
    duration = float(session["duration"])  # type: ignore[arg-type]
    print(f"{args.scenario}: {duration:.2f} s profiled (pyinstrument, wall clock)\n")
    print("| step | seconds | share |\n|---|---:|---:|")
    for step, function in STEPS.items():
        seconds = totals.get(function, 0.0) if function != "<module>" else duration - totals.get("run", duration)
        print(f"| {step} | {seconds:.2f} | {100 * seconds / duration:.0f} % |")
    print("\n| function (own time) | seconds |\n|---|---:|")
    for name, seconds in sorted(own.items(), key=lambda item: -item[1])[: args.top]:
        print(f"| `{name}` | {seconds:.2f} |")


if __name__ == "__main__":
    main()

"""Speed, memory and request counts of ``cohere-events run --provider together`` on the simulated Together AI API.

    uv run python bench/together.py                      # 5,000 and 20,000 jobs (a few minutes on 2 cores)
    uv run python bench/together.py --jobs 200           # quick
    uv run python bench/together.py --update-readme      # rewrite the Together AI table in bench/README.md

For each size, into one fresh DuckDB file: a first run (every job's events and metrics), a run with nothing new
(the cron case: the list, plus the jobs under way), then a run after the simulated clock moved on one hour. Each run
is the real command line in a process of its own, measured as bench/run.py measures ours (wall time of the whole
process, peak resident memory of its process tree, ``PYTHONDONTWRITEBYTECODE=1``); the server runs in another
process, and its request counts come from its own statistics.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BENCH, ROOT, SCALE_PEAK_MB, compile_site_packages, measure, ours_command, update_readme
from pipelines import providers

README_START = "<!-- together:start -->"
README_END = "<!-- together:end -->"


@dataclass
class Row:
    scenario: str
    jobs: int
    seconds: float
    peak_mb: float
    requests: int
    jobs_read: int
    events: int
    line: str


@contextmanager
def jobs_server(jobs: int, provider: str = "together", rate_limit: int = 0) -> Iterator[str]:
    command = [sys.executable, str(BENCH / "server.py"), "--provider", provider, "--models", str(jobs)]
    command += ["--rate-limit", str(rate_limit)]
    env = dict(os.environ) | {"PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert process.stdout is not None
        yield orjson.loads(process.stdout.readline())["url"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def call(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=60) as response:
        return orjson.loads(response.read())


def run_once(url: str, workdir: Path, scenario: str, jobs: int, provider: str = "together", rpm: int = 0) -> Row:
    chosen = providers.get(provider)
    simulator = chosen.module("simulator")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TOGETHER_", "CO_", "OPENAI_"))}
    env |= {
        "PYTHONDONTWRITEBYTECODE": "1",
        chosen.base_url_variable: url + getattr(simulator, "BASE_PATH", ""),
        chosen.key_variables[0]: simulator.DEFAULT_API_KEY,
        "DLT_DATA_DIR": str(workdir / ".dlt-data"),
        "RUNTIME__LOG_LEVEL": "WARNING",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    call(url, "/_simulator/reset-stats")
    command = [*ours_command(), "run", "--provider", provider, "--requests-per-minute", str(rpm), "--quiet"]
    seconds, peak, stdout = measure(command, workdir, env)
    stats = call(url, "/_simulator/stats")
    read = stats["by_kind"].get("list_events", 0)
    line = stdout.strip().splitlines()[-1]
    return Row(scenario, jobs, seconds, peak, stats["requests"], read, int(line.split(", ")[1].split()[0]), line)


def bench(jobs: int, quiet: bool = False, provider: str = "together", rate_limit: int = 0) -> list[Row]:
    """First, no-change and hour-later runs of ``provider`` over ``jobs`` jobs; with ``rate_limit``, the server
    allows that many requests a minute and ours is set to the same."""
    rows = []
    server = jobs_server(jobs, provider, rate_limit)
    with server as url, tempfile.TemporaryDirectory(prefix=f"{provider}-bench-") as scratch:
        workdir = Path(scratch)
        for scenario in ("first", "nochange"):
            rows.append(run_once(url, workdir, f"{scenario}-{jobs}", jobs, provider, rate_limit))
        call(url, "/_simulator/advance?seconds=3600")
        rows.append(run_once(url, workdir, f"hour-later-{jobs}", jobs, provider, rate_limit))
    for row in [] if quiet else rows:
        print(f"  {row.scenario:<16} {row.seconds:6.1f} s {row.peak_mb:6.0f} MB  {row.line}", flush=True)
    return rows


def warm_up(provider: str = "together") -> None:
    """Start ours once (its first command after an environment change compiles site-packages in the background:
    pipelines/bytecode.py), compile the same now and wait, then one unmeasured run on a small world: no measured run
    pays for bytecode or a cold file cache."""
    subprocess.run([*ours_command(), "--help"], capture_output=True, check=True)
    compile_site_packages()
    print("warm-up", file=sys.stderr)
    bench(50, quiet=True, provider=provider)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | wall s | peak MB | requests | jobs whose events were read | new events | peak within "
        f"{SCALE_PEAK_MB} MB? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = f"{row.jobs_read} ({100 * row.jobs_read / row.jobs:.1f} %)"
        holds = "yes" if row.peak_mb <= SCALE_PEAK_MB else "**no**"
        lines.append(
            f"| {row.scenario} | {row.seconds:.1f} | {row.peak_mb:.0f} | {row.requests} | {share} | {row.events} | "
            f"{holds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="5000,20000", help="job counts, comma-separated")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args()
    warm_up()
    rows = [row for jobs in args.jobs.split(",") for row in bench(int(jobs))]
    text = table(rows)
    print(text)
    if args.update_readme:
        update_readme(text, README_START, README_END)


if __name__ == "__main__":
    main()

"""Speed and memory of ``cohere-events run`` against the alternatives, on the simulated Cohere API.

    uv run python bench/run.py                   # full size (about 5 minutes on 2 cores)
    uv run python bench/run.py --quick           # reduced size (CI: tests/test_bench.py)
    uv run python bench/run.py --update-readme   # full size, then rewrite the results in bench/README.md

Every competitor runs in a subprocess of its own against a simulated API served by another process
(bench/server.py), so neither shares a GIL with the other. Wall time is the competitor's whole process, imports
included; peak memory is its maximum resident set size (``os.wait4``'s ``ru_maxrss``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
API_KEY = "simulated-cohere-key"
PAGE_SIZE = 100  # the CLI's default, for every competitor
CONCURRENCY = 16  # the CLI's default, for ours and the bare fetch
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


@dataclass
class Sizes:
    big_models: int
    big_spells: int  # offline/ready spells per model: about 2 * spells + 5 events per model
    flat_spells: tuple[int, ...]  # ours alone at these history lengths, to show memory stays flat
    slow_models: int
    slow_latency_ms: float
    rate_models: int
    rate_rpm: int
    nochange_models: int
    repeat: int


FULL = Sizes(200, 940, (470, 1880, 3760), 300, 30.0, 100, 240, 1000, 2)
QUICK = Sizes(12, 20, (), 20, 30.0, 8, 600, 40, 1)


@dataclass
class Run:
    """One competitor's best run in one scenario."""

    scenario: str
    competitor: str
    seconds: float
    peak_mb: float
    events: int
    server_events: int
    requests: int
    errors_429: int = 0
    note: str = ""
    runs: list[float] = field(default_factory=list)


# --- the simulated API in its own process ----------------------------------------------------------------------


@dataclass
class Server:
    url: str
    models: int
    events: int

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return orjson.loads(response.read())  # type: ignore[no-any-return]

    def reset(self) -> None:
        self.get("/_simulator/reset-stats")

    def stats(self) -> dict[str, Any]:
        return self.get("/_simulator/stats")


@contextmanager
def server(models: int, spells: int = 0, latency_ms: float = 0.0, rate_limit: int = 0) -> Iterator[Server]:
    command = [
        sys.executable,
        str(BENCH / "server.py"),
        "--models",
        str(models),
        "--long-history",
        str(spells),
        "--latency-ms",
        str(latency_ms),
        "--rate-limit",
        str(rate_limit),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ) | PYCACHE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulated API did not start: {' '.join(command)}")
        info = orjson.loads(line)
        yield Server(info["url"], info["models"], info["events"])
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- measuring one process -------------------------------------------------------------------------------------


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; its wall seconds, peak resident memory in MB, and stdout. Fails loudly on a non-zero exit."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout  # ru_maxrss is in KiB on Linux


def ours_command() -> list[str]:
    script = Path(sys.executable).parent / "cohere-events"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


PYCACHE: dict[str, str] = {}  # PYTHONPYCACHEPREFIX for every process the bench starts, set by main()


def base_env(url: str, workdir: Path) -> dict[str, str]:
    env = dict(os.environ) | PYCACHE
    for name in ("COHERE_API_KEY", "SOURCES__COHERE_FINETUNING__API_KEY"):
        env.pop(name, None)
    env.update(
        CO_API_URL=url,
        CO_API_KEY=API_KEY,
        DLT_DATA_DIR=str(workdir / ".dlt-data"),
        PYTHONPATH=str(ROOT),
        RUNTIME__LOG_LEVEL="WARNING",
    )
    return env


def warehouse_events(workdir: Path) -> int:
    import duckdb

    with duckdb.connect(str(workdir / "cohere_events.duckdb"), read_only=True) as db:
        return int(db.execute("select count(*) from cohere_finetuning.events").fetchone()[0])  # type: ignore[index]


def run_ours(api: Server, scratch: Path, rpm: int = 0, workdir: Path | None = None) -> tuple[float, float, int, str]:
    """``cohere-events run`` into a DuckDB file in ``workdir`` (fresh unless given): seconds, MB, events, last line."""
    workdir = workdir or Path(tempfile.mkdtemp(dir=scratch, prefix="ours-"))
    command = [
        *ours_command(),
        "run",
        "--page-size",
        str(PAGE_SIZE),
        "--concurrency",
        str(CONCURRENCY),
        "--requests-per-minute",
        str(rpm),
        "--quiet",
    ]
    seconds, peak, stdout = measure(command, workdir, base_env(api.url, workdir))
    return seconds, peak, warehouse_events(workdir), stdout.strip().splitlines()[-1]


def run_peer(name: str, api: Server, scratch: Path) -> tuple[float, float, int, str]:
    workdir = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{name}-"))
    command = [
        sys.executable,
        str(BENCH / "competitors.py"),
        name,
        "--url",
        api.url,
        "--page-size",
        str(PAGE_SIZE),
        "--concurrency",
        str(CONCURRENCY),
        "--workdir",
        str(workdir),
    ]
    seconds, peak, stdout = measure(command, workdir, base_env(api.url, workdir))
    result = orjson.loads(stdout.strip().splitlines()[-1])
    return seconds, peak, int(result["events"]), ""


def best_of(scenario: str, competitor: str, api: Server, scratch: Path, repeat: int, **kwargs: Any) -> Run:
    runs = []
    for _ in range(repeat):
        api.reset()
        if competitor == "ours":
            seconds, peak, events, note = run_ours(api, scratch, **kwargs)
        else:
            seconds, peak, events, note = run_peer(competitor, api, scratch)
        stats = api.stats()
        runs.append(
            Run(
                scenario,
                competitor,
                round(seconds, 2),
                round(peak, 1),
                events,
                api.events,
                stats["requests"],
                int(stats["errors_sent"].get("429", 0)),
                note,
            )
        )
        print(
            f"  {scenario:<10} {competitor:<9} {seconds:7.2f} s {peak:7.1f} MB  {events} of {api.events} events, "
            f"{stats['requests']} requests",
            file=sys.stderr,
            flush=True,
        )
    best = min(runs, key=lambda run: run.seconds)
    best.runs = [run.seconds for run in runs]
    best.peak_mb = max(run.peak_mb for run in runs)  # memory: the worst of the runs
    return best


# --- the scenarios ---------------------------------------------------------------------------------------------


def big_histories(sizes: Sizes, scratch: Path) -> list[Run]:
    results = []
    print(f"big histories: {sizes.big_models} models, {sizes.big_spells} spells", file=sys.stderr)
    with server(sizes.big_models, sizes.big_spells) as api:
        for competitor in ("ours", "bare", "rest_api", "sdk"):
            results.append(best_of("big", competitor, api, scratch, sizes.repeat))
    for spells in sizes.flat_spells:
        with server(sizes.big_models, spells) as api:
            results.append(best_of(f"flat-{spells}", "ours", api, scratch, 1))
    return results


def slow_server(sizes: Sizes, scratch: Path) -> list[Run]:
    results = []
    print(f"slow server: {sizes.slow_models} models, {sizes.slow_latency_ms} ms", file=sys.stderr)
    with server(sizes.slow_models, latency_ms=sizes.slow_latency_ms) as api:
        for competitor in ("ours", "bare", "rest_api", "sdk"):
            results.append(best_of("slow", competitor, api, scratch, sizes.repeat))
    return results


def rate_limited(sizes: Sizes, scratch: Path) -> list[Run]:
    print(f"rate limit: {sizes.rate_models} models at {sizes.rate_rpm}/min", file=sys.stderr)
    with server(sizes.rate_models, rate_limit=sizes.rate_rpm) as api:
        run = best_of("rate", "ours", api, scratch, 1, rpm=sizes.rate_rpm)
    return [run]


def no_change(sizes: Sizes, scratch: Path) -> list[Run]:
    print(f"no-change run: {sizes.nochange_models} models", file=sys.stderr)
    with server(sizes.nochange_models) as api:
        workdir = Path(tempfile.mkdtemp(dir=scratch, prefix="nochange-"))
        first = best_of("first", "ours", api, scratch, 1, workdir=workdir)
        second = best_of("nochange", "ours", api, scratch, 1, workdir=workdir)
        second.note = f"first run: {first.seconds} s, {first.requests} requests"
        second.events = first.events  # what the warehouse holds after both runs
    return [first, second]


def warm_up(scratch: Path) -> None:
    """One unmeasured run of everyone on a tiny world: fills the bytecode cache and the OS file cache."""
    print("warm-up", file=sys.stderr)
    with server(3, 2) as api:
        run_ours(api, scratch)
        for name in ("bare", "rest_api", "sdk"):
            run_peer(name, api, scratch)


# --- the report ------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ["dlt", "duckdb", "pyarrow", "httpx", "cohere", "pandas"]
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
        "versions": {name: version(name) for name in packages},
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def table(results: list[Run], sizes: Sizes, info: dict[str, Any]) -> str:
    by = {(run.scenario, run.competitor): run for run in results}
    lines = [
        "| scenario | competitor | wall s | peak MB | events loaded / served | requests | ratio | target |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]

    def row(run: Run, ratio_text: str = "", target: str = "") -> None:
        runs = "" if len(run.runs) < 2 else f" (runs: {', '.join(f'{s:.2f}' for s in run.runs)})"
        lines.append(
            f"| {run.scenario} | {run.competitor}{runs} | {run.seconds:.2f} | {run.peak_mb:.0f} | "
            f"{run.events:,} / {run.server_events:,} | {run.requests:,} | {ratio_text} | {target} |"
        )

    ours = by[("big", "ours")]
    row(ours, f"ours / bare = {ratio(ours.seconds, by[('big', 'bare')].seconds)}", "≤ 3x; peak < 300 MB")
    row(by[("big", "bare")], "(the practical limit)")
    row(by[("big", "rest_api")], f"rest_api / ours = {ratio(by[('big', 'rest_api')].seconds, ours.seconds)}", "≥ 8x")
    row(by[("big", "sdk")], f"sdk / ours = {ratio(by[('big', 'sdk')].seconds, ours.seconds)}", "≥ 1.5x")
    flat = sorted((run for run in results if run.scenario.startswith("flat-")), key=lambda run: run.server_events)
    for run in flat:
        row(
            run,
            f"peak vs big: {ratio(run.peak_mb, ours.peak_mb)}; time vs big: {ratio(run.seconds, ours.seconds)}",
            "memory flat",
        )
    slow = by[("slow", "ours")]
    row(slow, f"ours / bare = {ratio(slow.seconds, by[('slow', 'bare')].seconds)}")
    row(by[("slow", "bare")], "(the practical limit)")
    row(by[("slow", "rest_api")], f"rest_api / ours = {ratio(by[('slow', 'rest_api')].seconds, slow.seconds)}", "≥ 3x")
    row(by[("slow", "sdk")], f"sdk / ours = {ratio(by[('slow', 'sdk')].seconds, slow.seconds)}", "≥ 3x")
    rate = by[("rate", "ours")]
    ideal = rate.requests * 60 / sizes.rate_rpm
    row(
        rate,
        f"ours / ideal ({ideal:.1f} s) = {ratio(rate.seconds, ideal)}; 429s: {rate.errors_429}",
        "≤ 1.3x, zero 429s",
    )
    first, second = by[("first", "ours")], by[("nochange", "ours")]
    list_pages = -(-sizes.nochange_models // PAGE_SIZE)
    row(first, "(loads the warehouse)")
    row(
        second,
        f"requests / (models + list pages) = {second.requests} / {sizes.nochange_models + list_pages}",
        "≤ 1 per model + list pages",
    )
    versions = ", ".join(f"{name} {v}" for name, v in info["versions"].items())
    return "\n".join(
        [
            *lines,
            "",
            f"Sizes: big histories {sizes.big_models} models x {sizes.big_spells} spells; "
            f"memory flatness at {', '.join(str(s) for s in sizes.flat_spells)} spells; slow server "
            f"{sizes.slow_models} models at {sizes.slow_latency_ms:.0f} ms; rate limit {sizes.rate_models} models at "
            f"{sizes.rate_rpm}/min; no-change {sizes.nochange_models} models. Page size {PAGE_SIZE} for everyone; "
            f"concurrency {CONCURRENCY} for ours and bare; best of {sizes.repeat} run(s) for time, worst for memory.",
            "",
            f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, {info['os']}; {versions}. "
            f"Load average before: {info['load_before']}, after: {info['load_after']}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, a few seconds per scenario")
    parser.add_argument("--repeat", type=int, help="runs per competitor (best time is kept)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["big", "slow", "rate", "nochange"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="folder for results.json and results.md")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured first run of everyone")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes.repeat = args.repeat
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cohere-events-bench-"))
    # Python caches compiled modules (.pyc) on a user's machine; a PYTHONDONTWRITEBYTECODE=1 environment would make
    # every competitor compile dlt, pandas, ... from source in every run. Give them a cache of their own.
    PYCACHE.update(PYTHONPYCACHEPREFIX=str((args.out / "pycache").resolve()))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # the rest_api peer is dlt too: no competitor phones home
    scenarios = {"big": big_histories, "slow": slow_server, "rate": rate_limited, "nochange": no_change}
    results: list[Run] = []
    try:
        if not args.no_warmup:
            warm_up(scratch)
        for name, scenario in scenarios.items():
            if not args.only or name in args.only:
                results.extend(scenario(sizes, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    (args.out / "results.json").write_bytes(
        orjson.dumps(
            {"machine": info, "sizes": asdict(sizes), "results": [asdict(r) for r in results]},
            option=orjson.OPT_INDENT_2,
        )
    )
    if args.only:
        return
    text = table(results, sizes, info)
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    if args.update_readme:
        readme = BENCH / "README.md"
        content = readme.read_text()
        start, end = content.index(README_START) + len(README_START), content.index(README_END)
        readme.write_text(content[:start] + "\n" + text + "\n" + content[end:])


if __name__ == "__main__":
    main()

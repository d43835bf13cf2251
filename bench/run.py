"""Speed and memory of ``cohere-events run`` against the alternatives, on the simulated Cohere API.

    uv sync && uv run python bench/run.py             # full size (about 15 minutes on 2 cores)
    uv run python bench/run.py --quick                 # reduced size (CI: tests/test_bench.py)
    uv run python bench/run.py --repeat 3 --update-readme   # full size, then rewrite the results in bench/README.md

Every competitor runs in a subprocess of its own against a simulated API served by another process
(bench/server.py), so neither shares a GIL with the other. Wall time is the competitor's whole process, imports
included; peak memory is the largest resident set of its process tree (sampled, children included, and never
below the process's own ``ru_maxrss``). Ours runs as ``uv sync`` installs it, with ``PYTHONDONTWRITEBYTECODE=1``;
the competitors get their bytecode compiled beforehand. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
API_KEY = "simulated-cohere-key"
PAGE_SIZE = 100  # the CLI's default, for every competitor
CONCURRENCY = 16  # the CLI's default, for ours and the bare fetch
COMPETITORS = ("ours", "bare", "rest_api", "sdk")
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
    scale_models: tuple[int, ...]  # first run, then a run with nothing new, at each of these model counts
    repeat: int


FULL = Sizes(200, 940, (470, 1880, 3760), 300, 30.0, 100, 240, (5000, 20000), 2)
QUICK = Sizes(12, 20, (), 20, 30.0, 8, 600, (40,), 1)
SCALE_PEAK_MB = 400  # the peak-memory target at fleet scale (exactness first: a load may retry with more room)
SECONDS_PER_REQUEST_AT_500_RPM = 60 / 500  # Cohere's default limit: what a run's requests cost there at least


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
    server_cpu: float = 0.0  # CPU seconds the simulated server spent on this run: is it the bottleneck?
    runs: list[float] = field(default_factory=list)


# --- the simulated API in its own process ----------------------------------------------------------------------


@dataclass
class Server:
    url: str
    models: int
    events: int
    pid: int

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

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
    env = dict(os.environ) | {"PYTHONDONTWRITEBYTECODE": "1"}  # never writes pipelines/__pycache__ for ours to find
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulated API did not start: {' '.join(command)}")
        info = orjson.loads(line)
        yield Server(info["url"], info["models"], info["events"], process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- measuring one process -------------------------------------------------------------------------------------


class TreeMemory(threading.Thread):
    """Samples the resident memory of a process and all its descendants every 10 ms; keeps the largest sum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                with suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)
            self.done.wait(0.01)


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; its wall seconds, peak resident memory in MB, and stdout. Fails loudly on a non-zero exit."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        sampler = TreeMemory(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    # ru_maxrss (KiB) is exact for the process itself; the sampled sum also counts any children it started
    return seconds, max(usage.ru_maxrss * 1024, sampler.peak) / 2**20, stdout


def ours_command() -> list[str]:
    script = Path(sys.executable).parent / "cohere-events"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


def base_env(url: str, workdir: Path, ours: bool) -> dict[str, str]:
    """The environment of one measured process.

    Ours: ``PYTHONDONTWRITEBYTECODE=1``, so it gets only the bytecode compiled for the environment (once per
    change, by its first command: pipelines/bytecode.py), never a cache an earlier run wrote. The competitors: their
    best case, bytecode compiled beforehand (:func:`compile_site_packages`) and written if anything was missed.
    """
    env = dict(os.environ)
    for name in ("COHERE_API_KEY", "SOURCES__COHERE_FINETUNING__API_KEY", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    if ours:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
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


def run_ours(
    api: Server, scratch: Path, rpm: int = 0, workdir: Path | None = None, metrics: bool = False
) -> tuple[float, float, int, str]:
    """``cohere-events run`` into a DuckDB file in ``workdir`` (fresh unless given): seconds, MB, events, last line.

    The peers read status events only, so ours does too (``--no-metrics``) where it is compared with them; the
    scale scenario, ours alone, runs the whole job, training-step metrics included."""
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
        "--metrics" if metrics else "--no-metrics",
        "--quiet",
    ]
    seconds, peak, stdout = measure(command, workdir, base_env(api.url, workdir, ours=True))
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
    seconds, peak, stdout = measure(command, workdir, base_env(api.url, workdir, ours=False))
    result = orjson.loads(stdout.strip().splitlines()[-1])
    return seconds, peak, int(result["events"]), ""


def one_run(scenario: str, competitor: str, api: Server, scratch: Path, **kwargs: Any) -> Run:
    """One measured run, with the server's request count and 429s for it alone."""
    api.reset()
    server_cpu = api.cpu_seconds()
    if competitor == "ours":
        seconds, peak, events, note = run_ours(api, scratch, **kwargs)
    else:
        seconds, peak, events, note = run_peer(competitor, api, scratch)
    stats = api.stats()
    server_cpu = api.cpu_seconds() - server_cpu
    run = Run(
        scenario,
        competitor,
        round(seconds, 2),
        round(peak, 1),
        events,
        int(stats["events"]),
        stats["requests"],
        int(stats["errors_sent"].get("429", 0)),
        note,
        round(server_cpu, 2),
    )
    print(
        f"  {scenario:<14} {competitor:<9} {seconds:7.2f} s {peak:7.1f} MB  {events} of {stats['events']} events, "
        f"{stats['requests']} requests, server CPU {server_cpu:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return run


def best(runs: list[Run]) -> Run:
    """The fastest run, with every run's time, and the worst peak memory of them all."""
    fastest = min(runs, key=lambda run: run.seconds)
    fastest.runs = [run.seconds for run in runs]
    fastest.peak_mb = max(run.peak_mb for run in runs)
    return fastest


def best_of(scenario: str, competitor: str, api: Server, scratch: Path, repeat: int, **kwargs: Any) -> Run:
    return best([one_run(scenario, competitor, api, scratch, **kwargs) for _ in range(repeat)])


def in_turns(scenario: str, competitors: tuple[str, ...], api: Server, scratch: Path, repeat: int) -> list[Run]:
    """Each competitor's best run, the competitors taking turns (A B C A B C ...): the machine's speed drifts by
    10-40 % within minutes, and a ratio of runs made far apart would measure the drift too."""
    runs: dict[str, list[Run]] = {competitor: [] for competitor in competitors}
    for _ in range(repeat):
        for competitor in competitors:
            runs[competitor].append(one_run(scenario, competitor, api, scratch))
    return [best(each) for each in runs.values()]


# --- the scenarios ---------------------------------------------------------------------------------------------


def big_histories(sizes: Sizes, scratch: Path) -> list[Run]:
    results = []
    print(f"big histories: {sizes.big_models} models, {sizes.big_spells} spells", file=sys.stderr)
    with server(sizes.big_models, sizes.big_spells) as api:
        results += in_turns("big", COMPETITORS, api, scratch, sizes.repeat)
    for spells in sizes.flat_spells:
        with server(sizes.big_models, spells) as api:
            results.append(best_of(f"flat-{spells}", "ours", api, scratch, 1))
    return results


def slow_server(sizes: Sizes, scratch: Path) -> list[Run]:
    results = []
    print(f"slow server: {sizes.slow_models} models, {sizes.slow_latency_ms} ms", file=sys.stderr)
    with server(sizes.slow_models, latency_ms=sizes.slow_latency_ms) as api:
        results += in_turns("slow", COMPETITORS, api, scratch, sizes.repeat)
    return results


def rate_limited(sizes: Sizes, scratch: Path) -> list[Run]:
    print(f"rate limit: {sizes.rate_models} models at {sizes.rate_rpm}/min", file=sys.stderr)
    with server(sizes.rate_models, rate_limit=sizes.rate_rpm) as api:
        run = best_of("rate", "ours", api, scratch, 1, rpm=sizes.rate_rpm)
    return [run]


def at_scale(sizes: Sizes, scratch: Path) -> list[Run]:
    """At each model count: a first run into an empty warehouse, then a run with nothing new (the cron case), then one
    after a fleet-wide change (two hours on, every model with a new status, every 50th with a late event too)."""
    results = []
    for models in sizes.scale_models:
        print(f"scale: {models} models, first run, a run with nothing new, a fleet-wide change", file=sys.stderr)
        with server(models) as api:
            firsts, seconds, changes = [], [], []
            for _ in range(sizes.repeat):
                workdir = Path(tempfile.mkdtemp(dir=scratch, prefix=f"scale-{models}-"))
                firsts.append(one_run(f"first-{models}", "ours", api, scratch, workdir=workdir, metrics=True))
                seconds.append(one_run(f"nochange-{models}", "ours", api, scratch, workdir=workdir, metrics=True))
                api.get("/_simulator/fleet-change?seconds=7200")
                changes.append(one_run(f"changed-{models}", "ours", api, scratch, workdir=workdir, metrics=True))
            results += [best(firsts), best(seconds), best(changes)]
    return results


def warm_up(scratch: Path) -> None:
    """One unmeasured run of everyone on a tiny world: fills the bytecode cache and the OS file cache."""
    print("warm-up", file=sys.stderr)
    with server(3, 2) as api:
        workdir = Path(tempfile.mkdtemp(dir=scratch, prefix="warm-"))
        run_ours(api, scratch, workdir=workdir)
        run_ours(api, scratch, workdir=workdir)  # and once more with nothing new
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


def minutes(requests: int) -> str:
    """The least time ``requests`` take at Cohere's default 500 requests per minute."""
    seconds = requests * SECONDS_PER_REQUEST_AT_500_RPM
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def sizes_ran(sizes: Sizes, scenarios: set[str]) -> str:
    """The sizes of the scenarios that ran, and only those (``--only`` runs a few)."""
    flat = ", ".join(str(spells) for spells in sizes.flat_spells) or "no other"
    parts = {
        "big": f"big histories {sizes.big_models} models x {sizes.big_spells} spells; memory flatness at {flat} spells",
        "slow": f"slow server {sizes.slow_models} models at {sizes.slow_latency_ms:.0f} ms",
        "rate": f"rate limit {sizes.rate_models} models at {sizes.rate_rpm}/min",
        "first-": f"scale {' and '.join(f'{m:,}' for m in sizes.scale_models)} models (natural histories), "
        "first run then a run with nothing new",
    }
    return "; ".join(text for name, text in parts.items() if any(ran.startswith(name) for ran in scenarios))


def table(results: list[Run], sizes: Sizes, info: dict[str, Any], judge: bool = True) -> str:
    """The results as a Markdown table; ``judge``: say whether each target holds (not for the quick sizes)."""

    def holds(ok: bool) -> str:
        return ("yes" if ok else "**no**") if judge else "(quick: not judged)"

    by = {(run.scenario, run.competitor): run for run in results}
    lines = [
        "| scenario | competitor | wall s | peak MB | events loaded / served | requests | ratio | target | holds? |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]

    def row(run: Run, ratio_text: str = "", target: str = "", ok: bool | None = None) -> None:
        runs = "" if len(run.runs) < 2 else f" (runs: {', '.join(f'{s:.2f}' for s in run.runs)})"
        lines.append(
            f"| {run.scenario} | {run.competitor}{runs} | {run.seconds:.2f} | {run.peak_mb:.0f} | "
            f"{run.events:,} / {run.server_events:,} | {run.requests:,} | {ratio_text} | {target} | "
            f"{'' if ok is None else holds(ok)} |"
        )

    if ("big", "ours") in by:
        ours, bare = by[("big", "ours")], by[("big", "bare")]
        rest, sdk = by[("big", "rest_api")], by[("big", "sdk")]
        row(
            ours,
            f"ours / bare = {ratio(ours.seconds, bare.seconds)}",
            "≤ 1.5x bare; peak ≤ 250 MB",
            ours.seconds <= 1.5 * bare.seconds and ours.peak_mb <= 250,
        )
        row(bare, "(the practical limit)")
        row(rest, f"rest_api / ours = {ratio(rest.seconds, ours.seconds)}", "≥ 13x", rest.seconds >= 13 * ours.seconds)
        row(sdk, f"sdk / ours = {ratio(sdk.seconds, ours.seconds)}", "≥ 3x", sdk.seconds >= 3 * ours.seconds)
        flat = sorted((run for run in results if run.scenario.startswith("flat-")), key=lambda run: run.server_events)
        for run in flat:
            row(
                run,
                f"peak vs big: {ratio(run.peak_mb, ours.peak_mb)}; time vs big: {ratio(run.seconds, ours.seconds)}",
                "memory flat",
            )
    if ("slow", "ours") in by:
        slow, bare = by[("slow", "ours")], by[("slow", "bare")]
        rest, sdk = by[("slow", "rest_api")], by[("slow", "sdk")]
        fastest_peer = min(rest.seconds, sdk.seconds)
        row(
            slow,
            f"ours / bare = {ratio(slow.seconds, bare.seconds)}; "
            f"min(peers) / ours = {ratio(fastest_peer, slow.seconds)}",
            "min(peers) ≥ 5x ours",
            fastest_peer >= 5 * slow.seconds,
        )
        row(bare, "(the practical limit)")
        row(rest, f"rest_api / ours = {ratio(rest.seconds, slow.seconds)}")
        row(sdk, f"sdk / ours = {ratio(sdk.seconds, slow.seconds)}")
    if ("rate", "ours") in by:
        rate = by[("rate", "ours")]
        ideal = rate.requests * 60 / sizes.rate_rpm
        row(
            rate,
            f"ours / ideal ({ideal:.1f} s) = {ratio(rate.seconds, ideal)}; 429s: {rate.errors_429}",
            "≤ 1.3x ideal, zero 429s",
            rate.seconds <= 1.3 * ideal and rate.errors_429 == 0,
        )
    for models in sizes.scale_models:
        if (f"first-{models}", "ours") not in by:
            continue
        first, second = by[(f"first-{models}", "ours")], by[(f"nochange-{models}", "ours")]
        list_pages = -(-models // PAGE_SIZE)
        allowed = list_pages + models // 20  # nothing changed: the list pages and 5 % of models re-checked
        row(
            first,
            f"at 500/min: ≥ {minutes(first.requests)}",
            f"peak ≤ {SCALE_PEAK_MB} MB",
            first.peak_mb <= SCALE_PEAK_MB,
        )
        row(
            second,
            f"requests: {second.requests:,} of ≤ {allowed:,} (list pages {list_pages} + 5 % of models); "
            f"at 500/min: ≥ {minutes(second.requests)}",
            f"requests ≤ list pages + changed + 5 %; peak ≤ {SCALE_PEAK_MB} MB",
            second.requests <= allowed and second.peak_mb <= SCALE_PEAK_MB,
        )
        changed = by.get((f"changed-{models}", "ours"))
        if changed:
            row(
                changed,
                f"every model changed: {changed.requests:,} requests",
                f"exact (loaded = served); peak ≤ {SCALE_PEAK_MB} MB",
                changed.events == changed.server_events and changed.peak_mb <= SCALE_PEAK_MB,
            )
    versions = ", ".join(f"{name} {v}" for name, v in info["versions"].items())
    return "\n".join(
        [
            *lines,
            "",
            f"Sizes: {sizes_ran(sizes, {run.scenario for run in results})}. Page size {PAGE_SIZE} for everyone; "
            f"concurrency {CONCURRENCY} for ours and bare; best of {sizes.repeat} run(s) for time, worst for memory, "
            f"the competitors taking turns. At 500/min: the least time the run's requests take at Cohere's default "
            f"limit (requests x {SECONDS_PER_REQUEST_AT_500_RPM} s).",
            "",
            f"Bytecode: ours as `uv sync` installs it, with PYTHONDONTWRITEBYTECODE=1 "
            f"({info['own_pyc']} .pyc files of the project's own modules present); the competitors precompiled.",
            "",
            f"Machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, {info['os']}; {versions}. "
            f"Load average before: {info['load_before']}, after: {info['load_after']}.",
        ]
    )


def compile_site_packages() -> None:
    """The competitors' best case: every module of the environment compiled to bytecode before timing.

    Ours compiles the environment once after each change (pipelines/bytecode.py); this only fills any gap.
    """
    for folder in sysconfig.get_path("purelib"), sysconfig.get_path("platlib"):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", folder],
            check=False,
            capture_output=True,
            env=dict(os.environ) | {"PYTHONDONTWRITEBYTECODE": ""},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, a few seconds per scenario")
    parser.add_argument("--repeat", type=int, help="runs per competitor (best time is kept)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["big", "slow", "rate", "scale"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--scale-models", help="model counts of the scale scenario, comma-separated (default 5000,20000; quick 40)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="folder for results.json and results.md")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured first run of everyone")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes.repeat = args.repeat
    if args.scale_models:
        sizes.scale_models = tuple(int(count) for count in args.scale_models.split(","))
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cohere-events-bench-"))
    info["own_pyc"] = len(list((ROOT / "pipelines" / "__pycache__").glob("*.pyc")))
    if info["own_pyc"]:
        print(
            f"note: pipelines/__pycache__ holds {info['own_pyc']} .pyc files, which an editable `uv sync` does not "
            "write: ours starts a little faster than a fresh install",
            file=sys.stderr,
        )
    compile_site_packages()
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # the rest_api peer is dlt too: no competitor phones home
    scenarios = {"big": big_histories, "slow": slow_server, "rate": rate_limited, "scale": at_scale}
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
    text = table(results, sizes, info, judge=not args.quick)
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    if args.update_readme and not args.only:
        update_readme(text, README_START, README_END)


def update_readme(text: str, start_mark: str, end_mark: str) -> None:
    """Put ``text`` between two marks of bench/README.md, in place of what was there."""
    readme = BENCH / "README.md"
    content = readme.read_text()
    start, end = content.index(start_mark) + len(start_mark), content.index(end_mark)
    readme.write_text(content[:start] + "\n" + text + "\n" + content[end:])


if __name__ == "__main__":
    main()

"""The ``cohere-events`` command line: every command has the same shape and ends on one line saying what happened."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from pipelines import config, providers

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_LOCKED = 0, 1, 2, 3, 4
EXIT_UNJUDGED = 5  # check: the warehouse could not be read (an I/O or warehouse error), so nothing was judged
CHECK_EXIT_CODES = (
    "Exit status: 0 nothing wrong; 1 problems found (a line each); 2 bad usage or no warehouse; 5 could not judge "
    "(the warehouse could not be read: an I/O or database error)."
)
EXIT_CODES = (
    "Exit status: 0 success; 1 the load failed; 2 bad usage or configuration; 3 the API refused the key; "
    "4 another run holds the warehouse lock; 130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM). "
    "The last line says what happened."
)


class PlainUsage(TyperCommand):
    """A command whose usage line names its required argument ``DIRECTORY``, as click does, not ``{DIRECTORY}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]


app = typer.Typer(
    help="Load the status history of fine-tuning jobs (Cohere's models, Together AI's jobs) into a local warehouse "
    "and analyse it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Destination = Annotated[
    str,
    typer.Option(
        "--destination",
        help="A dlt SQL destination: duckdb (a local file, the default), postgres, motherduck, bigquery, snowflake, "
        "...; credentials the dlt way, e.g. DESTINATION__POSTGRES__CREDENTIALS.",
    ),
]
ModelIds = Annotated[
    list[str] | None, typer.Option("--model-id", help="Only this model (Together AI: this job) (repeatable).")
]
ProviderName = Annotated[
    str,
    typer.Option(
        "--provider",
        help="Whose fine-tuning API: "
        + ", ".join(
            f"{each.name} (key {each.key_variables[0]}, URL {each.base_url_variable})"
            for each in providers.all_providers().values()
        )
        + ". Each loads its own dataset in the same warehouse.",
    ),
]
NAMES = ", ".join(providers.all_providers())
CheckedProvider = Annotated[str, typer.Option("--provider", help=f"Whose fine-tunes to check: {NAMES}.")]
SimulatedProvider = Annotated[str, typer.Option("--provider", help=f"Whose API to simulate: {NAMES}.")]
PageSize = Annotated[int, typer.Option("--page-size", help="Items per API page (1-1000).")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")]
RequestsPerMinute = Annotated[
    int,
    typer.Option("--requests-per-minute", help="Client-side rate limit; Cohere's default is 500; 0: none."),
]
Lookback = Annotated[
    float, typer.Option("--lookback", help="Seconds behind each model's cursor to re-read for late events.")
]
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--quiet", help="Progress on stderr while loading (default: only when stderr is a terminal)."
    ),
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for one API response.")]
RecheckHours = Annotated[
    float,
    typer.Option(
        "--recheck-hours",
        help="Re-read every model at least this often even if the model list shows no change (0: every run).",
    ),
]
Full = Annotated[bool, typer.Option("--full", help="Re-read every model's events and metrics now, changed or not.")]
Metrics = Annotated[
    bool,
    typer.Option("--metrics/--no-metrics", help="Load training-step metrics too (off: status history only)."),
]
PrometheusFile = Annotated[
    Path | None,
    typer.Option(
        "--prometheus",
        help="Also write metrics in Prometheus' text format to this file (for node_exporter's textfile collector).",
    ),
]
LogFile = Annotated[
    Path | None,
    typer.Option("--log-file", help="Also append the summary and any error to this file (for cron)."),
]


def finish(message: str, code: int = EXIT_OK, log_file: Path | None = None) -> None:
    """Log the last line if asked, print it (stdout on success, stderr on failure), and exit with ``code``.

    The exit status says what happened to the command, not to its output: a stdout that cannot be written (a full
    disk, a reader that went away) costs one line on stderr, never the status of a load that committed.
    """
    if log_file:
        log_line(message, code, log_file)
    stream = sys.stdout if code == EXIT_OK else sys.stderr
    if message:  # `report --format json` returns "": its stdout is JSON alone
        say(message, stream)
    raise typer.Exit(code)


def say(line: str, stream: Any) -> None:
    """Print one line; if stdout cannot take it, say so in one line on stderr (if stderr can take that)."""
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError) as error:
        if stream is sys.stderr:
            return
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        with suppress(OSError, ValueError):
            print(f"warning: could not write to stdout ({reason.lower()}): {line}", file=sys.stderr, flush=True)


def log_line(message: str, code: int, log_file: Path) -> None:
    """Append the last line to the log file, with the time and exit status."""
    if log_file:
        from datetime import UTC, datetime

        try:
            with open(log_file, "a", encoding="utf-8") as handle:
                handle.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} exit={code} {message}\n")
        except OSError:  # a full disk or read-only folder: the line on stdout or stderr and the exit status tell
            pass


def exit_code_for(error: BaseException) -> int:
    from pipelines.extract import MixedOriginError
    from pipelines.http import AuthError
    from pipelines.runner import LockedError
    from pipelines.signals import Interrupted

    if isinstance(error, KeyboardInterrupt):
        # ours, or dlt's SignalReceivedException once it has drained its normalize or load jobs
        signum = error.signum if isinstance(error, Interrupted) else getattr(error, "signal_code", signal.SIGINT)
        return 128 + int(signum)
    if isinstance(error, config.ConfigError | MixedOriginError):
        return EXIT_USAGE
    if isinstance(error, AuthError):
        return EXIT_AUTH
    if isinstance(error, LockedError) or "Could not set lock" in str(error):
        return EXIT_LOCKED
    return EXIT_FAILED


def guarded(action: Callable[[], str], log_file: Path | None = None, loads: bool = False) -> None:
    """Run a command body; map any failure to a one-line message and the contract's exit status. ``loads``: the
    command writes the warehouse (an interruption then says what the next run does about it)."""
    held = HeldWarnings()
    try:
        message = action()
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as error:  # every failure ends on one clear line, never a stack trace
        from pipelines.runner import root_cause  # here: importing the runner costs `report` dlt, pyarrow, httpx

        held.drop()  # dlt's warnings about the failure (with tracebacks): the line below says it
        cause = root_cause(error)
        code = exit_code_for(cause)
        text = f"error: {one_line(cause)}"
        if code == EXIT_LOCKED and "Could not set lock" in text:
            text = "error: the warehouse file is open in another process (a run or a notebook writing to it)"
        if isinstance(cause, KeyboardInterrupt):
            stopped = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
            after = "nothing half-written was committed; the next run completes the load" if loads else "stopped"
            text = f"{stopped}: {after}"
        finish(text, code, log_file)
    held.release()
    finish(message, EXIT_OK, log_file)


class HeldWarnings(logging.Filter):
    """Holds dlt's and asyncio's log records while a command runs: shown once it succeeds, dropped if it fails.

    A failure in the middle of extraction makes dlt close async generators that are still running, and asyncio logs
    "aclose(): asynchronous generator is already running" for each, even after the command has said its one line.
    """

    LOGGERS = ("dlt", "asyncio")

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] | None = []
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.records is not None:
            self.records.append(record)
        return False

    def drop(self) -> None:
        """Discard what was held and whatever the failure still logs."""
        self.records = None

    def release(self) -> None:
        """Show what was held, once the command succeeded; but not DuckDB running out of a load's memory cap: the
        load was retried with more room, and a note says so in one line (see runner.load_capped)."""
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)
        for record in self.records or []:
            if not self.retried_load(record):
                logging.getLogger(record.name).handle(record)

    @staticmethod
    def retried_load(record: logging.LogRecord) -> bool:
        """dlt's report of a load job that ran out of memory or was left for a retry, which then succeeded."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        return "Out of Memory Error" in text or "was not fully loaded" in text


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    for secret in config.secret_values():
        text = text.replace(secret, "***")
    return text[:500]


def at_least_one(value: int, option: str) -> None:
    """Exit 2 on one line unless ``value`` is 1 or more."""
    if value < 1:
        finish(f"error: {option} must be at least 1, not {value}", EXIT_USAGE)


def load_options(**values: Any) -> config.LoadOptions:
    progress = values.pop("progress")
    return config.LoadOptions(progress=sys.stderr.isatty() if progress is None else progress, **values)


@app.command(epilog=EXIT_CODES)
def run(
    destination: Destination = "duckdb",
    provider: ProviderName = providers.DEFAULT,
    model_id: ModelIds = None,
    page_size: PageSize = 100,
    concurrency: Concurrency = 16,
    requests_per_minute: RequestsPerMinute = 500,
    lookback: Lookback = 3600,
    timeout: Timeout = 30,
    recheck_hours: RecheckHours = 24,
    full: Full = False,
    metrics: Metrics = True,
    progress: Progress = None,
    log_file: LogFile = None,
    prometheus: PrometheusFile = None,
) -> None:
    """One incremental load from the provider's API (Cohere by default) into the warehouse, then recreate every
    view. For cron."""
    quiet_logs()

    def action() -> str:
        from pipelines import headstart
        from pipelines.signals import held

        with held(on_signal=headstart.abandon):  # a signal now ends the run once the imports are done
            options = load_options(
                destination=destination,
                provider=provider,
                model_ids=model_id or (),
                page_size=page_size,
                concurrency=concurrency,
                requests_per_minute=requests_per_minute,
                lookback_seconds=lookback,
                timeout_seconds=timeout,
                recheck_hours=recheck_hours,
                full=full,
                metrics=metrics,
                progress=progress,
            )
            headstart.begin_for_run(options)  # before the imports below: they take most of a second
            from pipelines.runner import run_load

        chosen = config.provider(provider)
        with run_metrics(prometheus, chosen.name) as done:
            summary = run_load(config.api_key(chosen.name), config.base_url(chosen.name), options)
            done.append(summary)
        for warning in summary.warnings():
            say(warning, sys.stderr)
        return summary.line()

    guarded(action, log_file, loads=True)


@contextmanager
def run_metrics(path: Path | None, provider: str) -> Iterator[list[Any]]:
    """Write a run's Prometheus metrics when it ends, failed or not, if asked; the caller appends its summary. A file
    that cannot be written costs a warning line, never the status of the run."""
    done: list[Any] = []
    started = time.time()
    skipped = False
    try:
        yield done
    except Exception as error:
        from pipelines.runner import LockedError, root_cause

        skipped = isinstance(root_cause(error), LockedError)  # another run holds the warehouse: not a failed run
        raise
    finally:
        if path is not None:
            from pipelines.prometheus import write_run_metrics

            try:
                summary = done[0] if done else None
                write_run_metrics(path, provider, summary, time.time() - started, time.time(), skipped)
            except OSError as error:
                say(f"warning: could not write the Prometheus file {path}: {error.strerror or error}", sys.stderr)


@app.command(epilog=EXIT_CODES)
def demo(
    provider: ProviderName = providers.DEFAULT,
    models: Annotated[int, typer.Option("--models", help="Simulated models (Together AI: jobs) in the list.")] = 60,
    page_size: PageSize = 100,
    concurrency: Concurrency = 16,
    progress: Progress = None,
) -> None:
    """Run the whole job against the provider's built-in simulated API (no key, no network), then print the
    report of every provider the warehouse holds."""
    quiet_logs()
    at_least_one(models, "--models")

    def action() -> str:
        from pipelines.runner import run_load
        from pipelines.simulated import FakeApiServer

        chosen = config.provider(provider)
        simulator = chosen.module("simulator")
        options = load_options(
            destination="duckdb",
            provider=chosen.name,
            model_ids=(),
            page_size=page_size,
            concurrency=concurrency,
            requests_per_minute=0,
            lookback_seconds=3600,
            progress=progress,
        )
        with FakeApiServer(simulator.demo_api(models)) as server:
            summary = run_load(simulator.DEFAULT_API_KEY, server.url + getattr(simulator, "BASE_PATH", ""), options)
        for warning in summary.warnings():
            say(warning, sys.stderr)
        print_report("table")
        return f"demo: {summary.line()} into {config.duckdb_path()}"

    guarded(action, loads=True)


@app.command()
def views(destination: Destination = "duckdb") -> None:
    """(Re)create every view over the loaded tables: the default provider's, and every other provider's that loaded
    this warehouse."""
    quiet_logs()

    def action() -> str:
        from pipelines.runner import make_pipeline, writing
        from pipelines.views import create_views, has_dataset

        config.check_destination(destination)
        if destination == "duckdb":
            config.existing_warehouse("views")  # views over no loads would make an empty warehouse
        created: list[str] = []
        with writing(config.pipelines_dir(destination), destination):  # readers never in its way, as for a run
            for provider in providers.all_providers().values():
                pipeline = make_pipeline(destination, provider=provider)
                if provider.name == providers.DEFAULT or has_dataset(pipeline):
                    created += [f"{provider.dataset}.{name}" for name in create_views(pipeline)]
        return f"created {len(created)} views: {', '.join(created)}"

    guarded(action)


@app.command()
def report(
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people), json (for scripts) or html (a self-contained page).")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", help="With --format html: write the page to this file (default stdout).")
    ] = None,
) -> None:
    """Print time in status, failure rates, stale models and training from the warehouse; or write an HTML page."""
    if output_format not in ("table", "json", "html"):
        finish("error: --format must be table, json or html", EXIT_USAGE)
    if output is not None and output_format != "html":
        finish("error: --output goes with --format html", EXIT_USAGE)
    if output_format == "html":

        def page() -> str:
            from pipelines.html_report import write_html_report

            return write_html_report(output)

        guarded(page)
        return
    guarded(lambda: print_report(output_format))


def print_report(output_format: str) -> str:
    from pipelines.report import print_report as show

    return show(output_format)


@app.command(epilog=CHECK_EXIT_CODES)
def check(
    max_age: Annotated[
        float | None, typer.Option("--max-age", help="A problem when the last completed load is older (hours).")
    ] = None,
    stuck_hours: Annotated[
        float | None,
        typer.Option(
            "--stuck-hours",
            help="A problem per model in QUEUED, FINETUNING or DEPLOYING_API longer (hours); for Together AI, per job "
            "pending, queued, running, compressing, uploading or cancel_requested.",
        ),
    ] = None,
    max_failure_rate: Annotated[
        float | None,
        typer.Option(
            "--max-failure-rate", help="A problem when the window's failure rate is above this fraction (e.g. 0.25)."
        ),
    ] = None,
    window_days: Annotated[
        float, typer.Option("--window-days", help="The failure rate is of models first seen in these last days.")
    ] = 7.0,
    min_resolved: Annotated[
        int, typer.Option("--min-resolved", help="Judge the failure rate only with at least this many resolved.")
    ] = 5,
    output_format: Annotated[str, typer.Option("--format", help="table (a line per problem) or json.")] = "table",
    provider: CheckedProvider = providers.DEFAULT,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Say so when nothing is wrong (silent by default).")
    ] = False,
    prometheus: PrometheusFile = None,
) -> None:
    """Alerting: judge the warehouse (no API call, no lock); a line per problem on stdout, silent when all is well.
    One provider per call (--provider, default cohere)."""
    if output_format not in ("table", "json"):
        finish("error: --format must be table or json", EXIT_USAGE)

    def action() -> str:
        from pipelines.check import Thresholds, print_check, run_check

        thresholds = Thresholds(max_age, stuck_hours, max_failure_rate, window_days, min_resolved)
        try:
            findings = run_check(thresholds, provider=provider)
        except config.ConfigError:
            raise
        except Exception as error:  # any other failure to read: not "problems found"
            finish(f"error: could not judge the warehouse: {one_line(error)}", EXIT_UNJUDGED)
        if prometheus is not None:
            from pipelines.prometheus import write_check_metrics

            write_check_metrics(prometheus, findings)
        line = print_check(findings, output_format, verbose)
        if findings.problems:
            raise typer.Exit(EXIT_FAILED)
        return line

    guarded(action)


@app.command()
def status(
    destination: Destination = "duckdb",
    output_format: Annotated[str, typer.Option("--format", help="table (for people) or json (for scripts).")] = "table",
) -> None:
    """For operators: the warehouse, its last load, anything pending and how fresh each part is. Read-only."""
    quiet_logs()
    if output_format not in ("table", "json"):
        finish("error: --format must be table or json", EXIT_USAGE)

    def action() -> str:
        from pipelines.status import print_status

        return print_status(destination, output_format)

    guarded(action)


@app.command(cls=PlainUsage)
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to write Parquet files into.", metavar="DIRECTORY")],
    tables: Annotated[
        str | None,
        typer.Option("--tables", help="Comma-separated tables and views to export (default: all of them)."),
    ] = None,
) -> None:
    """Write every table and view as Parquet under DIRECTORY; a repeat export replaces the previous one."""

    def action() -> str:
        from pipelines.export import export_warehouse

        names = [name.strip() for name in tables.split(",") if name.strip()] if tables else None
        return export_warehouse(directory, names)

    guarded(action)


@app.command("fake-api")
def fake_api(
    provider: SimulatedProvider = providers.DEFAULT,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8000,
    models: Annotated[int, typer.Option("--models", help="Simulated models (Together AI: jobs).")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated world.")] = 7,
    api_key: Annotated[str, typer.Option("--api-key", help="The key the server accepts.")] = "",
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Added to every request.")] = 0.0,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Server limit in requests per minute; 0: none. Not Together AI.")
    ] = 0,
    error_rate: Annotated[
        float, typer.Option("--error-rate", help="Share of requests answered 429/500/503. Cohere only.")
    ] = 0.0,
    long_history: Annotated[
        int,
        typer.Option(
            "--long-history", help="Offline/ready spells per model, for long histories; 0: natural. Cohere only."
        ),
    ] = 0,
    advance_every: Annotated[
        float, typer.Option("--advance-every", help="Move the clock on every N seconds (new events arrive).")
    ] = 0.0,
    retired: Annotated[
        bool, typer.Option("--retired", help="Answer 410 everywhere, as after the retirement. Cohere only.")
    ] = False,
) -> None:
    """Serve a provider's simulated fine-tuning API in the foreground, for notebooks and development."""
    from pipelines.simulated import FakeApiServer, serve_forever

    try:
        chosen = config.provider(provider)
    except config.ConfigError as error:
        finish(f"error: {error}", EXIT_USAGE)
    at_least_one(models, "--models")
    if not 0 <= port <= 65535:
        finish(f"error: --port must be 0 to 65535, not {port}", EXIT_USAGE)
    simulator = chosen.module("simulator")
    key = api_key or simulator.DEFAULT_API_KEY
    faults = {"rate_limit": rate_limit, "error_rate": error_rate, "long_history": long_history, "retired": retired}
    try:
        api = simulator.demo_api(models, seed=seed, api_key=key, latency_ms=latency_ms, **faults)
    except ValueError as error:
        finish(f"error: {error}", EXIT_USAGE)
    count = f"{api.world.size()} {chosen.items}"
    try:
        server = FakeApiServer(api, port=port)
    except OSError as error:
        finish(f"error: cannot serve on 127.0.0.1:{port}: {error.strerror or error}", EXIT_USAGE)
    print(f"simulated {chosen.title} API on {server.url} with {count}; use:", flush=True)
    base_url = server.url + getattr(simulator, "BASE_PATH", "")
    variables = f"{chosen.base_url_variable}={base_url} {chosen.key_variables[0]}={key}"
    print(
        f"  {variables} cohere-events run" + ("" if chosen.name == providers.DEFAULT else f" --provider {chosen.name}")
    )
    sys.stdout.flush()
    try:
        serve_forever(server, advance_every)
    except KeyboardInterrupt:
        finish("stopped the simulated API")


def quiet_logs() -> None:
    """Keep dlt's and httpx's INFO chatter out of cron mail; warnings and errors still show."""
    for name in ("dlt", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main() -> None:
    """The console script: run the command, then leave at once (see :func:`exit_now`)."""
    from pipelines.bytecode import compile_when_changed

    compile_when_changed()
    try:
        app()
    except SystemExit as done:
        exit_now(done.code)
    exit_now(EXIT_OK)


def exit_now(code: int | str | None) -> None:
    """Exit without tearing the interpreter down.

    Freeing the modules and objects of dlt, pyarrow and DuckDB one by one, and their native destructors, cost every
    process 0.15-0.25 s after its last line. A command has closed what it wrote by then (the warehouse, files,
    the lock); what remains is exit handlers and buffered output, which run and are flushed here.
    """
    if isinstance(code, str):  # SystemExit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing left to tell it
            stream.flush()
    os._exit(code or EXIT_OK)


if __name__ == "__main__":
    main()

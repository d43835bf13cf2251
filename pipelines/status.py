"""``cohere-events status``: the warehouse, its last load, anything pending and how fresh each part is.

Read-only and offline: it asks the warehouse (DuckDB opened read-only) and dlt's local working folder, never the
API, and takes no run lock, so it answers while a run is loading. When a writer holds the DuckDB file it says so
and answers from dlt's local state alone.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines import config, locks, providers
from pipelines.providers import Provider

Query = Callable[[str], list[tuple[Any, ...]]]
LOAD_ID = re.compile(r"^[0-9.]+$")


def read_status(destination: str = "duckdb") -> dict[str, Any]:
    """Every figure of ``status`` as JSON-ready values (the keys are documented in the README): the default
    provider's (Cohere's) at the top level, as before there was a second provider, and every provider that loaded
    this warehouse under ``providers``, each with the same keys named for its tables."""
    found = read_provider_status(destination, providers.get(providers.DEFAULT))
    found["providers"] = {}
    for provider in providers.all_providers().values():
        if provider.name == providers.DEFAULT:
            found["providers"][provider.name] = {key: value for key, value in found.items() if key != "providers"}
            continue
        other = read_provider_status(destination, provider)
        if other["local_state"] or other["loads"] is not None:
            found["providers"][provider.name] = other
    return found


def keys(provider: Provider) -> dict[str, str]:
    """The status keys of a provider's figures: Cohere's ``models``, ``events``, ``training_step_metrics``;
    Together AI's ``jobs``, ``job_events``, ``training_metrics``."""
    return {"items": provider.items, "events": provider.events_table, "metrics": provider.metrics_table}


def read_provider_status(destination: str, provider: Provider) -> dict[str, Any]:
    """One provider's figures: its dataset's loads and tables, and its dlt working folder."""
    now = datetime.now(UTC)
    folder = config.pipelines_dir(destination, provider.dataset)
    lock_folder = config.pipelines_dir(destination)  # the warehouse's locks, whichever provider loads
    named = keys(provider)
    found: dict[str, Any] = {
        "provider": provider.name,
        "destination": destination,
        "dataset": provider.dataset,
        "warehouse": None,
        "warehouse_readable": False,
        "warehouse_error": None,
        "checked_at": iso(now),
        "last_load": None,
        "loads": None,
        "pending": False,
        "pending_packages": [],
        "running": False,
        "run": None,
        named["items"]: None,
        f"{named['items']}_with_cursor": None,
        named["events"]: None,
        "newest_event_at": None,
        "newest_event_age_seconds": None,
        named["metrics"]: None,
        "pipelines_dir": str(folder),
        "local_state": (folder / config.PIPELINE_NAME / "state.json").is_file(),
        "dlt_info_command": info_command(folder),
    }
    local = read_local(destination, folder, provider)
    with warehouse_query(destination, found, provider) as query:
        if query is not None:
            found.update(read_warehouse(query, now, provider))
    run = locks.running(lock_folder)
    found["running"], found["run"] = run is not None, run
    found["pending_packages"] = [] if run else local["pending_packages"]  # a live run's package is its own
    found["pending"] = bool(found["pending_packages"])
    found[f"{named['items']}_with_cursor"] = local["with_cursor"]
    if found["last_load"] is None and local["last_load"] is not None:
        found["last_load"] = {**local["last_load"], "age_seconds": age(local["last_load"]["loaded_at"], now)}
    if found["last_load"] is not None:
        trace = local["trace"]
        found["last_load"]["package_rows"] = (
            trace["rows"] if trace.get("load_id") == found["last_load"]["load_id"] else None
        )
    return found


def info_command(folder: Path) -> str:
    """dlt's own view of this pipeline's working folder."""
    return f"dlt pipeline --pipelines-dir {shlex.quote(str(folder))} {config.PIPELINE_NAME} info"


@contextmanager
def warehouse_query(destination: str, found: dict[str, Any], provider: Provider) -> Iterator[Query | None]:
    """A query function on the warehouse, read-only; None (with the reason in ``found``) when a writer holds it.

    ConfigError when there is no warehouse at all.
    """
    if destination == "duckdb":
        path = config.existing_warehouse("status")
        found["warehouse"] = str(path)
        with locks.reading(config.pipelines_dir(destination), wait_seconds=0) as free:
            connection = duckdb_reader(path, found) if free else None
            if not free:
                found["warehouse_error"] = "a run is writing the warehouse just now"
            if connection is None:
                yield None
                return
            try:
                connection.execute("SET TimeZone = 'UTC'")
                found["warehouse_readable"] = True
                yield lambda sql: connection.execute(sql).fetchall()
            finally:
                connection.close()
        return
    found["warehouse"] = f"the {destination} dataset {provider.dataset}"
    with scratch_pipeline(destination, provider.dataset) as pipeline, pipeline.sql_client() as client:
        if not client.has_dataset():
            raise config.ConfigError(
                f"no warehouse: {found['warehouse']} does not exist: run `cohere-events run` first"
            )
        found["warehouse_readable"] = True
        yield lambda sql: [tuple(row) for row in client.execute_sql(sql) or []]


def duckdb_reader(path: Path, found: dict[str, Any]) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection; None (the reason in ``found``) when another process writes the file."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        if "lock" not in str(error).lower():
            raise
        found["warehouse_error"] = "the warehouse file is locked by a writer (a run or a notebook writing it)"
        return None


@contextmanager
def scratch_pipeline(destination: str, dataset: str) -> Iterator[Any]:
    """A pipeline for reading a remote destination, in a throwaway working folder so nothing local changes."""
    import dlt

    with tempfile.TemporaryDirectory(prefix="cohere-events-status-") as scratch:
        yield dlt.pipeline(
            pipeline_name=config.PIPELINE_NAME,
            destination=destination,
            dataset_name=dataset,
            pipelines_dir=scratch,
        )


def read_warehouse(query: Query, now: datetime, provider: Provider) -> dict[str, Any]:
    """Loads, counts and newest times from the dataset; tables that do not exist yet count as absent."""
    schema = provider.dataset
    named = keys(provider)
    step_at = provider.module("lifecycle").VIEW_WORDS["step_at"]
    columns: dict[str, set[str]] = {}
    for table, column in query(
        f"select table_name, column_name from information_schema.columns where table_schema = '{schema}'"
    ):
        columns.setdefault(str(table), set()).add(str(column))
    found: dict[str, Any] = {}
    if "_dlt_loads" in columns:
        (loads,) = query(f"select count(*) from {schema}._dlt_loads where status = 0")[0]
        found["loads"] = int(loads)
        last = query(
            f"select load_id, inserted_at from {schema}._dlt_loads where status = 0 order by inserted_at desc limit 1"
        )
        if last:
            load_id, loaded_at = str(last[0][0]), as_utc(last[0][1])
            found["last_load"] = {
                "load_id": load_id,
                "loaded_at": iso(loaded_at),
                "age_seconds": (now - loaded_at).total_seconds(),
                "source": "warehouse",
                "rows": rows_of_load(query, columns, load_id, provider),
            }
    if provider.items_table in columns:
        found[named["items"]] = int(query(f"select count(*) from {schema}.{provider.items_table}")[0][0])
    if provider.events_table in columns:
        count, newest = query(f"select count(*), max(created_at) from {schema}.{provider.events_table}")[0]
        found[named["events"]] = int(count)
        if newest is not None:
            found["newest_event_at"] = iso(as_utc(newest))
            found["newest_event_age_seconds"] = (now - as_utc(newest)).total_seconds()
    if provider.metrics_table in columns:
        count, newest = query(f"select count(*), max({step_at}) from {schema}.{provider.metrics_table}")[0]
        found[named["metrics"]] = {
            "rows": int(count),
            "newest_created_at": iso(as_utc(newest)) if newest is not None else None,
        }
    return found


def rows_of_load(query: Query, columns: dict[str, set[str]], load_id: str, provider: Provider) -> dict[str, int]:
    """Rows per table that carry ``load_id``, for the tables that have dlt's ``_dlt_load_id`` column.

    ``events`` arrive as Arrow tables, which dlt loads without that column, so they are not counted here.
    """
    if not LOAD_ID.match(load_id):
        return {}
    tables = (provider.items_table, provider.events_table, provider.metrics_table)
    return {
        table: int(query(f"select count(*) from {provider.dataset}.{table} where _dlt_load_id = '{load_id}'")[0][0])
        for table in tables
        if "_dlt_load_id" in columns.get(table, set())
    }


def read_local(destination: str, folder: Path, provider: Provider) -> dict[str, Any]:
    """Cursors, pending packages and the last trace from dlt's working folder; nothing is created when it is absent."""
    found: dict[str, Any] = {"pending_packages": [], "with_cursor": None, "last_load": None, "trace": {}}
    if not (folder / config.PIPELINE_NAME / "state.json").is_file():
        return found
    from pipelines.changes import SeenModels
    from pipelines.runner import make_pipeline

    pipeline = make_pipeline(destination, provider=provider)
    found["pending_packages"] = sorted(
        {*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()}
    )
    sources: Any = pipeline.state.get("sources", {})
    source_state = sources.get(provider.dataset, {})
    legacy = source_state.get("resources", {}).get("events", {}).get("cursors")  # before the upgrade's first run
    seen = SeenModels({"models": dict(source_state.get("models") or {})}, {"cursors": legacy} if legacy else {})
    found["with_cursor"] = seen.cursors()
    trace = pipeline.last_trace
    load_info = trace.last_load_info if trace else None
    normalize_info = trace.last_normalize_info if trace else None
    if load_info and load_info.loads_ids and load_info.finished_at:
        load_id = str(load_info.loads_ids[-1])
        found["last_load"] = {
            "load_id": load_id,
            "loaded_at": iso(as_utc(load_info.finished_at)),
            "source": "local trace",
            "rows": {},
        }
        if normalize_info:
            rows = {t: int(n) for t, n in normalize_info.row_counts.items() if not t.startswith("_dlt")}
            found["trace"] = {"load_id": load_id, "rows": rows}
    return found


def as_utc(value: Any) -> datetime:
    """A timestamp from DuckDB, PostgreSQL or dlt as an aware UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def age(moment: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(moment)).total_seconds()


def when(moment: str | None, seconds: float | None) -> str:
    """``2026-11-27 18:17:02 UTC (5m 03s ago)``, or ``-``."""
    from pipelines.report import duration

    if moment is None:
        return "-"
    text = datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{text} ({duration(seconds)} ago)" if seconds is not None else text


def lines(status: dict[str, Any]) -> list[str]:
    """The status for people, one fact per line: the default provider's, then every other provider's."""
    found = provider_lines(status)
    for name, other in status["providers"].items():
        if name != providers.DEFAULT:
            found += ["", f"{providers.get(name).title} ({name})", *provider_lines(other)]
    return found


def provider_lines(status: dict[str, Any]) -> list[str]:
    """One provider's status, one fact per line."""
    provider = providers.get(status["provider"])
    named = keys(provider)
    found = []
    where = status["warehouse"]
    if status["destination"] == "duckdb":
        where = f"{where} (duckdb, dataset {status['dataset']})"
    found.append(f"warehouse        {where}")
    if status["warehouse_error"]:
        found.append(f"                 {status['warehouse_error']}: the figures below come from dlt's local state")
    last = status["last_load"]
    if last is None:
        found.append("last load        none")
    else:
        found.append(f"last load        {when(last['loaded_at'], last['age_seconds'])}, load id {last['load_id']}")
        loaded = ", ".join(f"{table} {rows}" for table, rows in last["rows"].items())
        if loaded:
            found.append(f"                 rows written by it: {loaded}")
        if last.get("package_rows"):
            package = ", ".join(f"{table} {rows}" for table, rows in last["package_rows"].items())
            found.append(f"                 rows in its package (re-read events included): {package}")
    if status["loads"] is not None:
        found.append(f"loads            {status['loads']}")
    pending = status["pending_packages"]
    found.append(
        f"pending          {len(pending)} load package{'s' if len(pending) != 1 else ''} "
        f"({', '.join(pending)}): the next run loads {'them' if len(pending) > 1 else 'it'} first"
        if pending
        else "pending          nothing"
    )
    cursors = status[f"{named['items']}_with_cursor"]
    found.append(f"{named['items']:<17}{count(status[named['items']])} ({count(cursors)} with a cursor)")
    found.append(
        f"events           {count(status[named['events']])}, newest "
        f"{when(status['newest_event_at'], status['newest_event_age_seconds'])}"
    )
    metrics = status[named["metrics"]]
    if metrics is not None:
        found.append(f"metric values    {metrics['rows']}, newest step {when(metrics['newest_created_at'], None)}")
    local = "" if status["local_state"] else " (no local state yet)"
    found.append(f"dlt state        {status['pipelines_dir']}/{config.PIPELINE_NAME}{local}; dlt's own tools:")
    found.append(status["dlt_info_command"])
    return found


def count(value: int | None) -> str:
    return "-" if value is None else str(value)


def summary(status: dict[str, Any]) -> str:
    """The last line: how old the last load is and whether anything waits, for each provider that loaded."""
    text = "status: " + provider_summary(status)
    for name, other in status["providers"].items():
        if name != providers.DEFAULT:
            text += f"; {name}: {provider_summary(other)}"
    return text


def provider_summary(status: dict[str, Any]) -> str:
    last = status["last_load"]
    text = "no load yet" if last is None else f"last load {when(last['loaded_at'], last['age_seconds'])}"
    pending = len(status["pending_packages"])
    text += f", {pending} load package{'s' if pending != 1 else ''} pending" if pending else ", nothing pending"
    if status["warehouse_error"]:
        text += "; warehouse locked by a writer"
    return text


def print_status(destination: str, output_format: str) -> str:
    """Print the status (lines for people, or JSON alone on stdout); returns the last line ("" for JSON)."""
    status = read_status(destination)
    if output_format == "json":
        print(json.dumps(status, indent=2), flush=True)
        print(summary(status), file=sys.stderr, flush=True)
        return ""
    for line in lines(status):
        print(line, flush=True)
    return summary(status)

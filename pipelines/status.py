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

from pipelines import config, locks

Query = Callable[[str], list[tuple[Any, ...]]]
LOAD_ID = re.compile(r"^[0-9.]+$")
CONTENT_TABLES = ("finetuned_models", "events", "training_step_metrics")


def read_status(destination: str = "duckdb") -> dict[str, Any]:
    """Every figure of ``status`` as JSON-ready values (the keys are documented in the README)."""
    now = datetime.now(UTC)
    folder = config.pipelines_dir(destination)
    found: dict[str, Any] = {
        "destination": destination,
        "dataset": config.DATASET_NAME,
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
        "models": None,
        "models_with_cursor": None,
        "events": None,
        "newest_event_at": None,
        "newest_event_age_seconds": None,
        "training_step_metrics": None,
        "pipelines_dir": str(folder),
        "local_state": (folder / config.PIPELINE_NAME / "state.json").is_file(),
        "dlt_info_command": info_command(folder),
    }
    local = read_local(destination, folder)
    with warehouse_query(destination, found) as query:
        if query is not None:
            found.update(read_warehouse(query, now))
    run = locks.running(folder)
    found["running"], found["run"] = run is not None, run
    found["pending_packages"] = [] if run else local["pending_packages"]  # a live run's package is its own
    found["pending"] = bool(found["pending_packages"])
    found["models_with_cursor"] = local["models_with_cursor"]
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
def warehouse_query(destination: str, found: dict[str, Any]) -> Iterator[Query | None]:
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
    found["warehouse"] = f"the {destination} dataset {config.DATASET_NAME}"
    with scratch_pipeline(destination) as pipeline, pipeline.sql_client() as client:
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
def scratch_pipeline(destination: str) -> Iterator[Any]:
    """A pipeline for reading a remote destination, in a throwaway working folder so nothing local changes."""
    import dlt

    with tempfile.TemporaryDirectory(prefix="cohere-events-status-") as scratch:
        yield dlt.pipeline(
            pipeline_name=config.PIPELINE_NAME,
            destination=destination,
            dataset_name=config.DATASET_NAME,
            pipelines_dir=scratch,
        )


def read_warehouse(query: Query, now: datetime) -> dict[str, Any]:
    """Loads, counts and newest times from the dataset; tables that do not exist yet count as absent."""
    schema = config.DATASET_NAME
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
                "rows": rows_of_load(query, columns, load_id),
            }
    if "finetuned_models" in columns:
        found["models"] = int(query(f"select count(*) from {schema}.finetuned_models")[0][0])
    if "events" in columns:
        count, newest = query(f"select count(*), max(created_at) from {schema}.events")[0]
        found["events"] = int(count)
        if newest is not None:
            found["newest_event_at"] = iso(as_utc(newest))
            found["newest_event_age_seconds"] = (now - as_utc(newest)).total_seconds()
    if "training_step_metrics" in columns:
        count, newest = query(f"select count(*), max(created_at) from {schema}.training_step_metrics")[0]
        found["training_step_metrics"] = {
            "rows": int(count),
            "newest_created_at": iso(as_utc(newest)) if newest is not None else None,
        }
    return found


def rows_of_load(query: Query, columns: dict[str, set[str]], load_id: str) -> dict[str, int]:
    """Rows per table that carry ``load_id``, for the tables that have dlt's ``_dlt_load_id`` column.

    ``events`` arrive as Arrow tables, which dlt loads without that column, so they are not counted here.
    """
    if not LOAD_ID.match(load_id):
        return {}
    return {
        table: int(query(f"select count(*) from {config.DATASET_NAME}.{table} where _dlt_load_id = '{load_id}'")[0][0])
        for table in CONTENT_TABLES
        if "_dlt_load_id" in columns.get(table, set())
    }


def read_local(destination: str, folder: Path) -> dict[str, Any]:
    """Cursors, pending packages and the last trace from dlt's working folder; nothing is created when it is absent."""
    found: dict[str, Any] = {"pending_packages": [], "models_with_cursor": None, "last_load": None, "trace": {}}
    if not (folder / config.PIPELINE_NAME / "state.json").is_file():
        return found
    from pipelines.changes import SeenModels
    from pipelines.providers.cohere.source import SOURCE_NAME
    from pipelines.runner import make_pipeline

    pipeline = make_pipeline(destination)
    found["pending_packages"] = sorted(
        {*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()}
    )
    sources: Any = pipeline.state.get("sources", {})
    source_state = sources.get(SOURCE_NAME, {})
    legacy = source_state.get("resources", {}).get("events", {}).get("cursors")  # before the upgrade's first run
    seen = SeenModels({"models": dict(source_state.get("models") or {})}, {"cursors": legacy} if legacy else {})
    found["models_with_cursor"] = seen.cursors()
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
    """The status for people, one fact per line."""
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
    cursors = status["models_with_cursor"]
    found.append(f"models           {count(status['models'])} ({count(cursors)} with a cursor)")
    found.append(
        f"events           {count(status['events'])}, newest "
        f"{when(status['newest_event_at'], status['newest_event_age_seconds'])}"
    )
    metrics = status["training_step_metrics"]
    if metrics is not None:
        found.append(f"metric values    {metrics['rows']}, newest step {when(metrics['newest_created_at'], None)}")
    local = "" if status["local_state"] else " (no local state yet)"
    found.append(f"dlt state        {status['pipelines_dir']}/{config.PIPELINE_NAME}{local}; dlt's own tools:")
    found.append(status["dlt_info_command"])
    return found


def count(value: int | None) -> str:
    return "-" if value is None else str(value)


def summary(status: dict[str, Any]) -> str:
    """The last line: how old the last load is and whether anything waits."""
    last = status["last_load"]
    text = "status: "
    text += "no load yet" if last is None else f"last load {when(last['loaded_at'], last['age_seconds'])}"
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

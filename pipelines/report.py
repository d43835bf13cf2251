"""``cohere-events report``: time in status, failure rates, stale models and training, read from the DuckDB warehouse.

The training section (final metrics by base model, diverged trainings) is left out, as ``null`` in JSON, for a
warehouse whose views predate training metrics. Non-finite metric values appear in JSON as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, as the Cohere API writes them, so that the output stays valid JSON.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from pipelines import config, locks

RECENT_WEEKS = 8
STATUS_ORDER = [
    "UNSPECIFIED",
    "QUEUED",
    "FINETUNING",
    "DEPLOYING_API",
    "READY",
    "TEMPORARILY_OFFLINE",
    "PAUSED",
    "FAILED",
    "DELETED",
]
QUERIES = {
    "time_in_status": """
        select status, closed_intervals, open_intervals, models, avg_seconds, p50_seconds, p90_seconds, max_seconds
        from {schema}.status_duration_stats
    """,
    "failure_rate": "select * from {schema}.failure_rates",
    "failure_rates_weekly": f"""
        select * from (select * from {{schema}}.failure_rates_weekly order by cohort_week desc limit {RECENT_WEEKS})
        order by cohort_week
    """,
    "stale_models": """
        select stale.finetuned_model_id, lifecycle.name, stale.current_status, stale.current_since,
            stale.stuck_seconds
        from {schema}.stale_models as stale
        left join {schema}.model_lifecycle as lifecycle using (finetuned_model_id)
        order by stale.stuck_seconds desc, stale.finetuned_model_id
    """,
}

TRAINING_QUERIES = {
    # medians over models of each model's value at its last step, finite values only
    "by_base_model": """
        select
            coalesce(base_model_name, '(' || lower(replace(base_type, 'BASE_TYPE_', '')) || ')', 'unknown')
                as base_model,
            base_type,
            count(*) as models,
            median(final_accuracy) filter (where isfinite(final_accuracy)) as median_final_accuracy,
            median(final_cross_entropy) filter (where isfinite(final_cross_entropy)) as median_final_cross_entropy,
            count(*) filter (where diverged) as diverged
        from {schema}.training_outcomes
        group by all
        order by base_type, base_model
    """,
    "diverged": """
        select finetuned_model_id, name, base_model_name, first_non_finite_step, last_step_number,
            final_cross_entropy, first_outcome
        from {schema}.training_outcomes
        where diverged
        order by last_step_at desc, finetuned_model_id
    """,
}


def read_report(path: Path) -> dict[str, Any]:
    """Every figure of the report as plain JSON-ready values, from the views, read-only."""
    found: dict[str, Any] = {"warehouse": str(path)}
    with locks.reading(config.pipelines_dir("duckdb")), duckdb.connect(str(path), read_only=True) as con:
        for key, sql in QUERIES.items():
            try:
                result = con.execute(sql.format(schema=config.DATASET_NAME))
            except duckdb.CatalogException as error:
                raise config.ConfigError(
                    f"{path} has no views yet ({str(error).splitlines()[0]}): run `cohere-events views`"
                ) from None
            found[key] = records(result)
        found["training"] = read_training(con)
        found["data_as_of"] = last_load_time(con)
    found["time_in_status"].sort(key=lambda row: status_rank(row["status"]))
    found["failure_rate"] = found["failure_rate"][0] if found["failure_rate"] else None
    return found


def last_load_time(con: duckdb.DuckDBPyConnection) -> str | None:
    """When the last successful load finished (dlt's ``_dlt_loads``), ISO 8601 UTC; None before any load."""
    try:
        row = con.execute(f"select max(inserted_at) from {config.DATASET_NAME}._dlt_loads where status = 0").fetchone()
    except duckdb.CatalogException:
        return None
    return plain(row[0]) if row and row[0] is not None else None


def header(report: dict[str, Any]) -> str:
    """The first line of the tables: which warehouse and how old its data is."""
    moment = report["data_as_of"]
    as_of = "no load yet" if moment is None else f"data as of {moment[:19].replace('T', ' ')} UTC"
    return f"{report['warehouse']}: {as_of}"


def records(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts of plain values."""
    names = [column[0] for column in result.description or []]
    return [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in result.fetchall()]


def read_training(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The training section, or None for a warehouse whose views predate training metrics."""
    try:
        return {
            key: records(con.execute(sql.format(schema=config.DATASET_NAME))) for key, sql in TRAINING_QUERIES.items()
        }
    except duckdb.CatalogException:
        return None


def plain(value: Any) -> Any:
    """Timestamps as ISO 8601 UTC, dates as ISO dates, non-finite floats as protobuf JSON strings; else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def duration(seconds: float | None) -> str:
    """A duration for people: 45s, 12m 05s, 3h 20m, 2d 04h."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def rate_cells(row: dict[str, Any]) -> list[str]:
    low, high = row["wilson_low"], row["wilson_high"]
    bounds = "-" if low is None else f"{100 * low:.1f}-{100 * high:.1f}%"
    counts = [row[key] for key in ("models", "ready", "failed", "cancelled", "in_flight")]
    return [*map(str, counts), percent(row["failure_rate"]), bounds]


def rate_table(title: str, first: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (first, "models", "ready", "failed", "cancelled", "in flight", "failure rate", "95% interval"):
        table.add_column(column, justify="left" if column == first else "right", no_wrap=True)
    for label, row in rows:
        table.add_row(label, *rate_cells(row))
    return table


def metric(value: float | str | None) -> str:
    """A metric value for people: three decimals, NaN and Infinity as they are, "-" when missing."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:.3f}"


def training_tables(training: dict[str, Any]) -> list[Table]:
    """Final metrics by base model, and the trainings whose loss went NaN or infinite."""
    by_base = Table(title="Training: final metrics by base model (median over models)", title_justify="left")
    for column in ("base model", "models", "accuracy", "cross-entropy", "diverged"):
        by_base.add_column(column, justify="left" if column == "base model" else "right", no_wrap=True)
    for row in training["by_base_model"]:
        by_base.add_row(
            row["base_model"],
            str(row["models"]),
            metric(row["median_final_accuracy"]),
            metric(row["median_final_cross_entropy"]),
            str(row["diverged"]),
        )
    diverged = Table(title="Diverged trainings (loss went NaN or infinite)", title_justify="left")
    for column in ("model", "name", "base model", "first bad step", "last step", "final cross-entropy", "outcome"):
        diverged.add_column(column, justify="right" if "step" in column else "left", no_wrap=True)
    for row in training["diverged"]:
        diverged.add_row(
            row["finetuned_model_id"],
            row["name"] or "-",
            row["base_model_name"] or "-",
            str(row["first_non_finite_step"]),
            str(row["last_step_number"]),
            metric(row["final_cross_entropy"]),
            row["first_outcome"] or "-",
        )
    return [by_base, diverged]


def tables(report: dict[str, Any]) -> list[Table]:
    """The report as rich tables: time in status, failure rates overall and by week, stale models."""
    times = Table(title="Time in status (closed intervals)", title_justify="left")
    for column in ("status", "intervals", "open now", "models", "median", "p90", "max"):
        times.add_column(column, justify="left" if column == "status" else "right", no_wrap=True)
    for row in report["time_in_status"]:
        times.add_row(
            row["status"],
            str(row["closed_intervals"]),
            str(row["open_intervals"]),
            str(row["models"]),
            duration(row["p50_seconds"]),
            duration(row["p90_seconds"]),
            duration(row["max_seconds"]),
        )
    overall = [("all", report["failure_rate"])] if report["failure_rate"] else []
    training = report.get("training")  # None: views from before training metrics; no rows: nothing trained
    weekly = [(row["cohort_week"], row) for row in report["failure_rates_weekly"]]
    stale = Table(title="Stale models (queued, training or deploying for over 48 h)", title_justify="left")
    for column in ("model", "name", "status", "since (UTC)", "stuck for"):
        stale.add_column(column, justify="right" if column == "stuck for" else "left", no_wrap=True)
    for row in report["stale_models"]:
        stale.add_row(
            row["finetuned_model_id"],
            row["name"] or "-",
            row["current_status"],
            row["current_since"][:16].replace("T", " "),
            duration(row["stuck_seconds"]),
        )
    return [
        times,
        rate_table("Failure rate of first attempts", "cohort", overall),
        rate_table(f"By cohort week (UTC Monday), last {RECENT_WEEKS} weeks", "week", weekly),
        stale,
        *(training_tables(training) if training and training["by_base_model"] else []),
    ]


def summary(report: dict[str, Any]) -> str:
    """One line: models, the failure rate with its interval, stale models."""
    rate = report["failure_rate"]
    stale = len(report["stale_models"])
    if rate is None:
        return f"report: no models in {report['warehouse']}"
    text = f"report: {rate['models']} models"
    if rate["failure_rate"] is not None:
        low, high = rate["wilson_low"], rate["wilson_high"]
        text += f", failure rate {percent(rate['failure_rate'])} (95% {100 * low:.1f}-{100 * high:.1f}%)"
    else:
        text += ", no failure rate yet (no model ready or failed)"
    return text + f", {stale} stale model{'s' if stale != 1 else ''}"


def print_report(output_format: str) -> str:
    """Print the report as rich tables or, with ``json``, as JSON alone on stdout; returns the last line.

    For JSON the line goes to stderr and "" is returned, so that stdout holds nothing but the JSON.
    """
    report = read_report(config.existing_warehouse("report"))
    if output_format == "json":
        print(json.dumps(report, indent=2), flush=True)
        print(summary(report), file=sys.stderr, flush=True)
        return ""
    console = Console() if sys.stdout.isatty() else Console(width=120)  # cron mail and pipes: no wrapping
    console.print(header(report), highlight=False, soft_wrap=True)
    console.print()
    for table in tables(report):
        console.print(table)
        console.print()
    return summary(report)

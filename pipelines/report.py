"""``cohere-events report``: time in status, failure rates, stale models and training, read from the DuckDB warehouse.

The training section (final metrics by base model, diverged trainings) is left out, as ``null`` in JSON, for a
warehouse whose views predate training metrics. Non-finite metric values appear in JSON as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, as the Cohere API writes them, so that the output stays valid JSON.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console

from pipelines import config, locks, providers
from pipelines.layout import Column, Grid, Kind, fit
from pipelines.providers import Provider
from pipelines.words import plural

RECENT_WEEKS = 8
DEFAULT_PIPED_WIDTH = 120  # cron mail and files: wide enough for every table side by side
MIN_WIDTH = 40
QUERIES = {
    "time_in_status": """
        select status, closed_intervals, open_intervals, {items}, avg_seconds, p50_seconds, p90_seconds, max_seconds
        from {schema}.status_duration_stats
    """,
    "failure_rate": "select * from {schema}.failure_rates",
    "failure_rates_weekly": f"""
        select * from (select * from {{schema}}.failure_rates_weekly order by cohort_week desc limit {RECENT_WEEKS})
        order by cohort_week
    """,
    "stale": """
        select stale.{id}, lifecycle.{name} as name, stale.current_status, stale.current_since, stale.stuck_seconds
        from {schema}.{stale} as stale
        left join {schema}.{lifecycle} as lifecycle using ({id})
        order by stale.stuck_seconds desc, stale.{id}
    """,
    "timings": """
        select
            quantile_cont(queue_seconds, 0.5) as queue_p50_seconds,
            quantile_cont(queue_seconds, 0.9) as queue_p90_seconds,
            quantile_cont(training_seconds, 0.5) as training_p50_seconds,
            quantile_cont(training_seconds, 0.9) as training_p90_seconds
        from {schema}.{lifecycle}
    """,
}


def read_report(path: Path) -> dict[str, Any]:
    """Every figure of the report as plain JSON-ready values, from the views, read-only.

    The default provider's (Cohere's) sections are at the top level, as before there was a second provider; every
    other provider's are under its name. ``providers`` has each one's headline: the failure rate with its interval
    and p50/p90 queue and training times.
    """
    found: dict[str, Any] = {"warehouse": str(path)}
    with locks.reading(config.pipelines_dir("duckdb")), duckdb.connect(str(path), read_only=True) as con:
        present = [each for each in providers.all_providers().values() if has_dataset(con, each.dataset)]
        if not present:
            raise config.ConfigError(f"{path} has no views yet (no provider's dataset): run `cohere-events views`")
        found["providers"] = {}
        for provider in present:
            section = read_provider(con, provider, path)
            found["providers"][provider.name] = headline(provider, section)
            if provider.name == providers.DEFAULT:
                found.update(section)
            else:
                found[provider.name] = section
        if "data_as_of" not in found:
            found["data_as_of"] = found[present[0].name]["data_as_of"]
    return found


def provider_section(report: dict[str, Any], name: str) -> dict[str, Any]:
    """A provider's part of the report: the default provider's is the top level, another's is under its name."""
    section: dict[str, Any] = report if name == providers.DEFAULT else report[name]
    return section


def has_dataset(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    row = con.execute("select count(*) from information_schema.schemata where schema_name = ?", [dataset]).fetchone()
    return bool(row and row[0])


def read_provider(con: duckdb.DuckDBPyConnection, provider: Provider, path: Path) -> dict[str, Any]:
    """One provider's sections of the report."""
    lifecycle = provider.module("lifecycle")
    words = lifecycle.VIEW_WORDS
    names = {
        "schema": provider.dataset,
        "items": words["items"],
        "id": words["id"],
        "name": lifecycle.NAME_COLUMN,
        "stale": lifecycle.VIEW_NAMES["stale"],
        "lifecycle": words["lifecycle"],
    }
    found: dict[str, Any] = {}
    for key, sql in QUERIES.items():
        try:
            result = con.execute(sql.format(**names))
        except duckdb.CatalogException as error:
            raise config.ConfigError(
                f"{path} has no views yet ({str(error).splitlines()[0]}): run `cohere-events views`"
            ) from None
        found[names["stale"] if key == "stale" else key] = records(result)
    found["training"] = read_training(con, provider.dataset, lifecycle.TRAINING_QUERIES)
    found["data_as_of"] = last_load_time(con, provider.dataset)
    found["time_in_status"].sort(key=lambda row: status_rank(row["status"], lifecycle.STATUS_ORDER))
    found["failure_rate"] = found["failure_rate"][0] if found["failure_rate"] else None
    found["timings"] = found["timings"][0]
    return found


def headline(provider: Provider, section: dict[str, Any]) -> dict[str, Any]:
    """A provider's line of the side-by-side table: its items, failure rate and interval, queue and training times."""
    rate = section["failure_rate"] or {}
    items = provider.module("lifecycle").VIEW_WORDS["items"]
    return {
        "title": provider.title,
        "dataset": provider.dataset,
        "items": rate.get(items, 0),
        "item": provider.item,
        "failure_rate": rate.get("failure_rate"),
        "wilson_low": rate.get("wilson_low"),
        "wilson_high": rate.get("wilson_high"),
        "resolved": rate.get("resolved", 0),
        **section["timings"],
        "data_as_of": section["data_as_of"],
    }


def last_load_time(con: duckdb.DuckDBPyConnection, dataset: str) -> str | None:
    """When the last successful load finished (dlt's ``_dlt_loads``), ISO 8601 UTC; None before any load."""
    try:
        row = con.execute(f"select max(inserted_at) from {dataset}._dlt_loads where status = 0").fetchone()
    except duckdb.CatalogException:
        return None
    return plain(row[0]) if row and row[0] is not None else None


def header(report: dict[str, Any]) -> str:
    """The first line of the tables: which warehouse and how old its data is, each provider's when there are several."""
    lines = report["providers"]
    if len(lines) == 1:
        return f"{report['warehouse']}: {as_of(report)}"
    each = "; ".join(f"{line['title']} {as_of(line)}" for line in lines.values())
    return f"{report['warehouse']}: {each}"


def as_of(section: dict[str, Any]) -> str:
    """``data as of <moment>``, or ``no load yet``."""
    value = section["data_as_of"]
    return "no load yet" if value is None else f"data as of {moment(value)}"


def moment(value: str | None) -> str:
    """An ISO 8601 UTC time for people, to the second: ``2026-12-07 12:35:57 UTC``; ``no load yet`` for None."""
    return "no load yet" if value is None else value[:19].replace("T", " ") + " UTC"


def records(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts of plain values."""
    names = [column[0] for column in result.description or []]
    return [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in result.fetchall()]


def read_training(con: duckdb.DuckDBPyConnection, dataset: str, queries: dict[str, str]) -> dict[str, Any] | None:
    """The training section, or None for a warehouse whose views predate training metrics."""
    try:
        return {key: records(con.execute(sql.format(schema=dataset))) for key, sql in queries.items()}
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


def status_rank(status: str, order: list[str]) -> int:
    return order.index(status) if status in order else len(order)


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


def rate_cells(row: dict[str, Any], counts: tuple[str, ...]) -> list[str]:
    low, high = row["wilson_low"], row["wilson_high"]
    bounds = "-" if low is None else f"{100 * low:.1f}-{100 * high:.1f}%"
    return [*(str(row[key]) for key in counts), percent(row["failure_rate"]), bounds]


def rate_grid(title: str, first: str, rows: list[tuple[str, dict[str, Any]]], words: dict[str, str]) -> Grid:
    counts = (words["items"], words["succeeded"], "failed", "cancelled", "in_flight")
    columns = [
        Column(first),
        *(Column(count.replace("_", " "), "figure", optional=count == "in_flight") for count in counts),
        Column("failure rate", "figure"),
        Column("95% interval", "figure"),
    ]
    return Grid(title, columns, [[label, *rate_cells(row, counts)] for label, row in rows])


def metric(value: float | str | None) -> str:
    """A metric value for people: three decimals, NaN and Infinity as they are, "-" when missing."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:.3f}"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return metric(value)
    return str(value)


def record_grid(title: str, rows: list[dict[str, Any]], optional: set[str]) -> Grid:
    """Rows of a query as a grid, each column named after its field: ids whole, figures right-aligned."""
    columns = []
    for name in rows[0] if rows else []:
        numeric = all(isinstance(row[name], int | float) or row[name] is None for row in rows)
        kind: Kind = "id" if name.endswith("_id") else "figure" if numeric else "text"
        columns.append(Column(name.replace("_", " "), kind, optional=name in optional))
    return Grid(title, columns, [[cell(value) for value in row.values()] for row in rows])


def providers_grid(report: dict[str, Any]) -> Grid:
    """The headline, one row per provider: failure rate and interval, p50/p90 queue and training times."""
    columns = [Column("provider"), Column("items"), Column("failure rate", "figure"), Column("95% interval", "figure")]
    for step in ("queue", "training"):
        columns += [Column(f"{step} p50", "figure"), Column(f"{step} p90", "figure", optional=True)]
    rows = []
    for line in report["providers"].values():
        low, high = line["wilson_low"], line["wilson_high"]
        rows.append(
            [
                line["title"],
                plural(line["items"], line["item"]),
                percent(line["failure_rate"]),
                "-" if low is None else f"{100 * low:.1f}-{100 * high:.1f}%",
                *(duration(line[f"{step}_{p}_seconds"]) for step in ("queue", "training") for p in ("p50", "p90")),
            ]
        )
    return Grid("Providers: first attempts and timings", columns, rows)


def grids(section: dict[str, Any], provider: Provider) -> list[Grid]:
    """One provider's report as grids: time in status, failure rates overall and by week, stale items, training."""
    lifecycle = provider.module("lifecycle")
    words = lifecycle.VIEW_WORDS
    items = words["items"]
    times = Grid(
        "Time in status (closed intervals)",
        [
            Column("status"),
            *(Column(name, "figure") for name in ("closed", "open now", items, "median", "p90")),
            Column("max", "figure", optional=True),
        ],
    )
    for row in section["time_in_status"]:
        times.rows.append(
            [
                row["status"],
                str(row["closed_intervals"]),
                str(row["open_intervals"]),
                str(row[items]),
                *(duration(row[key]) for key in ("p50_seconds", "p90_seconds", "max_seconds")),
            ]
        )
    overall = [("all", section["failure_rate"])] if section["failure_rate"] else []
    training = section.get("training")  # None: views from before training metrics; no rows: nothing trained
    weekly = [(row["cohort_week"], row) for row in section["failure_rates_weekly"]]
    under_way = ", ".join(status.lower() for status in lifecycle.UNDER_WAY)
    stale = Grid(
        f"Stale {items} ({under_way} for over 48 h)",
        [
            Column(provider.item, "id"),
            Column("name"),
            Column("status"),
            Column("since (UTC)"),
            Column("stuck for", "figure"),
        ],
    )
    for row in section[lifecycle.VIEW_NAMES["stale"]]:
        stale.rows.append(
            [
                row[words["id"]],
                row["name"] or "-",
                row["current_status"],
                row["current_since"][:16].replace("T", " "),
                duration(row["stuck_seconds"]),
            ]
        )
    optional = getattr(lifecycle, "TRAINING_OPTIONAL", {})
    trained = [
        record_grid(lifecycle.TRAINING_TITLES[key], rows, optional.get(key, set()))
        for key, rows in (training or {}).items()
        if rows and training and training["by_base_model"]
    ]
    return [
        times,
        rate_grid("Failure rate of first attempts", "cohort", overall, words),
        rate_grid(f"By cohort week (UTC Monday), last {RECENT_WEEKS} weeks", "week", weekly, words),
        stale,
        *trained,
    ]


def summary(report: dict[str, Any]) -> str:
    """One line: per provider, its items, the failure rate with its interval, stale items."""
    parts = []
    for name, line in report["providers"].items():
        provider = providers.get(name)
        section = provider_section(report, name)
        stale = len(section[provider.module("lifecycle").VIEW_NAMES["stale"]])
        item = provider.item
        if section["failure_rate"] is None:
            text = f"no {item}s"
        else:
            text = plural(line["items"], item)
            if line["failure_rate"] is not None:
                low, high = line["wilson_low"], line["wilson_high"]
                text += f", failure rate {percent(line['failure_rate'])} (95% {100 * low:.1f}-{100 * high:.1f}%)"
            else:
                succeeded = provider.module("lifecycle").SUCCEEDED
                text += f", no failure rate yet (no {item} {succeeded} or failed)"
            text += f", {plural(stale, f'stale {item}')}"
        parts.append(text if name == providers.DEFAULT else f"{name}: {text}")
    first = parts[0]
    if first == "no models":
        first = f"no models in {report['warehouse']}"
    return "report: " + "; ".join([first, *parts[1:]])


def print_report(output_format: str) -> str:
    """Print the report as rich tables or, with ``json``, as JSON alone on stdout; returns the last line.

    For JSON the line goes to stderr and "" is returned, so that stdout holds nothing but the JSON.
    """
    report = read_report(config.existing_warehouse("report"))
    if output_format == "json":
        print(json.dumps(report, indent=2), flush=True)
        print(summary(report), file=sys.stderr, flush=True)
        return ""
    console = Console() if sys.stdout.isatty() else Console(width=piped_width())
    width = console.width
    console.print(header(report), highlight=False)
    console.print()
    show(console, fit(providers_grid(report), width))
    for name in report["providers"]:
        provider = providers.get(name)
        section = provider_section(report, name)
        if len(report["providers"]) > 1:
            console.print(f"[bold]{provider.title}[/bold] (dataset {provider.dataset}, {as_of(section)})")
            console.print()
        for grid in grids(section, provider):
            show(console, fit(grid, width))
    return summary(report)


def show(console: Console, parts: list[Any]) -> None:
    for part in parts:
        console.print(part)
    console.print()


def piped_width() -> int:
    """The width for a pipe or a file: ``COLUMNS`` when it is set, as for a terminal; else 120."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= MIN_WIDTH else DEFAULT_PIPED_WIDTH

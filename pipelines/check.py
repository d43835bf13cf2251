"""``cohere-events check``: alerting from cron or monitoring, read from the warehouse alone.

No API call and no run lock: it reads the DuckDB file read-only (waiting while a run writes it, see locks.py), so it
works during a run. Each problem found is one line naming it and its figure; none, and it is silent.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipelines import config, locks, providers
from pipelines.providers import Provider
from pipelines.status import as_utc, iso

Z = 1.96  # Wilson score interval at 95 %, as the views compute it


@dataclass(frozen=True)
class Thresholds:
    """What ``check`` judges; None leaves a check out."""

    max_age_hours: float | None = None
    stuck_hours: float | None = None
    max_failure_rate: float | None = None
    window_days: float = 7.0
    min_resolved: int = 5

    def validate(self) -> None:
        for option, value, least in (
            ("--max-age", self.max_age_hours, 0.0),
            ("--stuck-hours", self.stuck_hours, 0.0),
            ("--window-days", self.window_days, 0.0),
        ):
            if value is not None and (not math.isfinite(value) or value <= least):
                unit = "days" if option == "--window-days" else "hours"
                raise config.ConfigError(f"{option} must be a number of {unit} above 0, not {value}")
        rate = self.max_failure_rate
        if rate is not None and not (math.isfinite(rate) and 0 <= rate <= 1):
            raise config.ConfigError(f"--max-failure-rate is a fraction from 0 to 1 (e.g. 0.25), not {rate}")
        if self.min_resolved < 1:
            raise config.ConfigError(f"--min-resolved must be 1 or more, not {self.min_resolved}")


@dataclass
class Problem:
    kind: str  # stale_load, stuck_model, failure_rate
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Findings:
    """Everything ``check`` read (for --verbose, JSON and Prometheus) and the problems it found."""

    warehouse: str
    checked_at: datetime
    provider: str = providers.DEFAULT
    last_load_at: datetime | None = None
    models_by_status: dict[str, int] = field(default_factory=dict)
    stale_models: int = 0
    window: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def last_load_age_seconds(self) -> float | None:
        return None if self.last_load_at is None else (self.checked_at - self.last_load_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "warehouse": self.warehouse,
            "checked_at": iso(self.checked_at),
            "last_load_at": iso(self.last_load_at) if self.last_load_at else None,
            "last_load_age_seconds": self.last_load_age_seconds,
            "models_by_status": self.models_by_status,
            "stale_models": self.stale_models,
            "failure_rate_window": self.window,
            "problems": [asdict(problem) for problem in self.problems],
        }


def run_check(thresholds: Thresholds, now: datetime | None = None, provider: str | None = None) -> Findings:
    """Read the provider's dataset (default: Cohere's) of the warehouse and judge it against ``thresholds``."""
    thresholds.validate()
    chosen = config.provider(provider)
    path = config.existing_warehouse("check")
    now = now or datetime.now(UTC)
    findings = Findings(str(path), now, chosen.name)
    with locks.reading(config.pipelines_dir("duckdb")), duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        try:
            read_figures(con, chosen, findings, thresholds)
        except duckdb.CatalogException as error:
            raise config.ConfigError(
                f"{path} has no views yet ({str(error).splitlines()[0]}): run `cohere-events views`"
            ) from None
    judge(findings, thresholds)
    return findings


def read_figures(
    con: duckdb.DuckDBPyConnection, provider: Provider, findings: Findings, thresholds: Thresholds
) -> None:
    schema = provider.dataset
    lifecycle_module = provider.module("lifecycle")
    words = lifecycle_module.VIEW_WORDS
    lifecycle, item_id, name_column = words["lifecycle"], words["id"], lifecycle_module.NAME_COLUMN
    stale_view, succeeded = lifecycle_module.VIEW_NAMES["stale"], lifecycle_module.SUCCEEDED
    (last,) = con.execute(f"select max(inserted_at) from {schema}._dlt_loads where status = 0").fetchone() or (None,)
    findings.last_load_at = as_utc(last) if last is not None else None
    by_status = con.execute(f"select current_status, count(*) from {schema}.{lifecycle} group by all order by 1")
    findings.models_by_status = {
        lifecycle_module.NO_STATUS if status is None else status: count for status, count in by_status.fetchall()
    }
    (findings.stale_models,) = con.execute(f"select count(*) from {schema}.{stale_view}").fetchone() or (0,)
    since = findings.checked_at - timedelta(days=thresholds.window_days)
    ready, failed = con.execute(
        f"select count(*) filter (where first_outcome = '{succeeded}'), "
        f"count(*) filter (where first_outcome = 'failed') from {schema}.{lifecycle} where first_seen_at >= ?",
        [since],
    ).fetchone() or (0, 0)
    findings.window = window_rate(int(ready), int(failed), since, thresholds.window_days)
    if thresholds.stuck_hours is not None:
        watched = ", ".join(f"'{status}'" for status in lifecycle_module.UNDER_WAY)
        rows = con.execute(
            f"select {item_id}, {name_column}, current_status, current_since from {schema}.{lifecycle} "
            f"where current_status in ({watched}) order by current_since, {item_id}"
        ).fetchall()
        for model_id, name, status, since_at in rows:
            stuck = (findings.checked_at - as_utc(since_at)).total_seconds()
            if stuck > thresholds.stuck_hours * 3600:
                findings.problems.append(
                    Problem(
                        "stuck_model",
                        f"stuck: {provider.item} {model_id} ({name or 'no name'}) has been {status} for "
                        f"{hours(stuck)} (limit {thresholds.stuck_hours:g} h)",
                        {"model_id": model_id, "name": name, "status": status, "stuck_seconds": stuck},
                    )
                )


def window_rate(ready: int, failed: int, since: datetime, days: float) -> dict[str, Any]:
    """The failure rate of the models first seen since ``since``, with its Wilson 95 % bounds."""
    resolved = ready + failed
    rate = failed / resolved if resolved else None
    low, high = wilson(failed, resolved)
    return {
        "since": iso(since),
        "days": days,
        "ready": ready,
        "failed": failed,
        "resolved": resolved,
        "failure_rate": rate,
        "wilson_low": low,
        "wilson_high": high,
    }


def wilson(failed: int, resolved: int) -> tuple[float | None, float | None]:
    """Wilson score bounds at 95 %, None when nothing is resolved."""
    if not resolved:
        return None, None
    p = failed / resolved
    centre = p + Z * Z / (2 * resolved)
    margin = Z * math.sqrt(p * (1 - p) / resolved + Z * Z / (4 * resolved * resolved))
    denominator = 1 + Z * Z / resolved
    return (centre - margin) / denominator, (centre + margin) / denominator


def judge(findings: Findings, thresholds: Thresholds) -> None:
    """Add the problems of the load's age and the window's failure rate (stuck models are found as they are read)."""
    if thresholds.max_age_hours is not None:
        age = findings.last_load_age_seconds
        if age is None:
            findings.problems.insert(0, Problem("stale_load", "stale: the warehouse has no completed load", {}))
        elif age > thresholds.max_age_hours * 3600:
            when = iso(findings.last_load_at) if findings.last_load_at else "-"
            findings.problems.insert(
                0,
                Problem(
                    "stale_load",
                    f"stale: the last load completed at {when}, {hours(age)} ago "
                    f"(limit {thresholds.max_age_hours:g} h)",
                    {"last_load_at": when, "age_seconds": age},
                ),
            )
    window, limit = findings.window, thresholds.max_failure_rate
    if limit is None or window["resolved"] < thresholds.min_resolved or window["failure_rate"] <= limit:
        return
    findings.problems.append(
        Problem(
            "failure_rate",
            f"failure rate: {percent(window['failure_rate'])} of {window['resolved']} resolved "
            f"{config.provider(findings.provider).items} first seen in "
            f"the last {thresholds.window_days:g} days (95 % CI {percent(window['wilson_low'])}-"
            f"{percent(window['wilson_high'])}), above {percent(limit)}",
            dict(window),
        )
    )


def print_check(findings: Findings, output_format: str, verbose: bool) -> str:
    """Print the problems (one line each on stdout) or JSON; returns the last line ("" when silent)."""
    if output_format == "json":
        print(json.dumps(findings.to_json(), indent=2), flush=True)
        return ""
    for problem in findings.problems:
        print(problem.message, flush=True)
    if findings.problems or not verbose:
        return ""
    window = findings.window
    rate = "-" if window["failure_rate"] is None else percent(window["failure_rate"])
    age = findings.last_load_age_seconds
    return (
        f"ok: last load {'never' if age is None else hours(age) + ' ago'}, {sum(findings.models_by_status.values())} "
        f"{config.provider(findings.provider).items}, {findings.stale_models} stale, failure rate {rate} of "
        f"{window['resolved']} resolved in the last "
        f"{window['days']:g} days"
    )


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"

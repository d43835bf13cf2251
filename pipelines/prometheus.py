"""``--prometheus FILE`` on ``run`` and ``check``: metrics in Prometheus' text format for node_exporter's textfile
collector, through prometheus_client's registry and ``write_to_textfile`` (written beside FILE, then renamed over it).

Every metric has a ``provider`` label. The ``_total`` counters of ``run`` add up over runs (each run adds its own and
keeps what the file held), and ``cohere_events_last_success_timestamp_seconds`` is kept across failed runs, so that a
failing cron job shows as a growing age, not as a missing series.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "cohere_events_"
disable_created_metrics()  # a `_created` sample per counter would say "this process started", not the series
RUN_COUNTERS = {
    "requests_total": ("HTTP requests the run sent to the API, summed over runs", "requests"),
    "retries_total": ("Requests the run retried (429, 5xx, timeouts), summed over runs", "retries"),
}
RUN_GAUGES = {
    "events_loaded": ("Status events the last run added to the warehouse", "new_events"),
    "metric_values_loaded": ("Training-step metric values the last run added to the warehouse", "new_metric_rows"),
    "models_fetched": ("Models whose events the last run read", "fetched"),
    "models_skipped": ("Models the last run skipped as unchanged", "unchanged"),
}


def write_run_metrics(path: Path, provider: str, summary: Any, seconds: float, finished_at: float) -> None:
    """The metrics of one ``run``: ``summary`` is its LoadSummary, or None when it failed."""
    registry = CollectorRegistry()
    previous = read_values(path)
    success = summary is not None
    last_success = finished_at if success else previous.get(("last_success_timestamp_seconds", provider))
    gauge(registry, "last_success_timestamp_seconds", "When a run last succeeded, in seconds since the epoch").labels(
        provider
    ).set(last_success if last_success is not None else math.nan)
    gauge(registry, "last_run_success", "Whether the last run succeeded (1) or failed (0)").labels(provider).set(
        int(success)
    )
    gauge(registry, "run_duration_seconds", "How long the last run took").labels(provider).set(seconds)
    for name, (help_text, attribute) in RUN_COUNTERS.items():
        added = getattr(summary, attribute) if success else 0
        before = previous.get((name, provider), 0.0)
        counter = Counter(f"{PREFIX}{name.removesuffix('_total')}", help_text, ["provider"], registry=registry)
        counter.labels(provider).inc(before + added)  # a fresh registry's counter starts at 0: this is the sum
    for name, (help_text, attribute) in RUN_GAUGES.items():
        gauge(registry, name, help_text).labels(provider).set(getattr(summary, attribute) if success else 0)
    write_to_textfile(str(path), registry)


def write_check_metrics(path: Path, findings: Any) -> None:
    """The metrics of one ``check`` (its Findings)."""
    registry = CollectorRegistry()
    provider = findings.provider
    models = Gauge(f"{PREFIX}models", "Models by current status", ["provider", "current_status"], registry=registry)
    for status, count in findings.models_by_status.items():
        models.labels(provider, status).set(count)
    gauge(registry, "stale_models", "Models stuck in QUEUED, FINETUNING or DEPLOYING_API over 48 hours").labels(
        provider
    ).set(findings.stale_models)
    window = findings.window
    for name, key, help_text in (
        ("failure_rate", "failure_rate", "Failed / resolved models first seen within the check's window"),
        ("failure_rate_wilson_low", "wilson_low", "Lower Wilson 95 % bound of the window's failure rate"),
        ("failure_rate_wilson_high", "wilson_high", "Upper Wilson 95 % bound of the window's failure rate"),
    ):
        value = window.get(key)
        gauge(registry, name, help_text).labels(provider).set(math.nan if value is None else value)
    gauge(registry, "failure_rate_resolved_models", "Resolved models first seen within the check's window").labels(
        provider
    ).set(window.get("resolved", 0))
    age = findings.last_load_age_seconds
    gauge(registry, "last_load_age_seconds", "Seconds since the warehouse's last completed load").labels(provider).set(
        math.nan if age is None else age
    )
    gauge(registry, "check_problems", "Problems the last check found").labels(provider).set(len(findings.problems))
    write_to_textfile(str(path), registry)


def gauge(registry: CollectorRegistry, name: str, help_text: str) -> Gauge:
    """A gauge labelled by provider."""
    return Gauge(f"{PREFIX}{name}", help_text, ["provider"], registry=registry)


def read_values(path: Path) -> dict[tuple[str, str], float]:
    """(metric name without the prefix, provider) -> value, from an earlier file; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    values: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith(PREFIX) and not math.isnan(sample.value):
                    values[(sample.name.removeprefix(PREFIX), sample.labels.get("provider", ""))] = sample.value
    except ValueError:  # not our file, or damaged: start again
        return {}
    return values

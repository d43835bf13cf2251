"""``--prometheus FILE`` on ``run`` and ``check``: metrics in Prometheus' text format for node_exporter's textfile
collector, through prometheus_client's registry and ``write_to_textfile`` (written beside FILE, then renamed over it).

Every metric has a ``provider`` label, and one file may serve every provider and both commands: what a write does
not set itself (another provider's series, or ``check``'s in ``run``'s file) is kept as the file held it. The
``_total`` counters add up over runs and never go back, and ``cohere_events_last_success_timestamp_seconds`` is kept
across failed runs (0 before any success, so that "no success for 2 h" fires), so that a failing cron job shows as a
growing age, not as a missing series. A run refused because another holds the warehouse (exit 4) is a skipped run:
it counts in ``cohere_events_runs_skipped_total`` and leaves every other series as it was.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, write_to_textfile
from prometheus_client.metrics_core import Metric
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


def write_run_metrics(
    path: Path, provider: str, summary: Any, seconds: float, finished_at: float, skipped: bool = False
) -> None:
    """The metrics of one ``run``: ``summary`` is its LoadSummary, or None when it failed; ``skipped`` when it was
    refused because another run held the warehouse (then only the skip is counted)."""
    registry = CollectorRegistry()
    families = read_families(path)
    previous = values_of(families)
    if skipped:
        help_text = "Runs refused because another run held the warehouse"
        skips = Counter(f"{PREFIX}runs_skipped", help_text, ["provider"], registry=registry)
        skips.labels(provider).inc(previous.get(("runs_skipped_total", provider), 0.0) + 1)
        skipped_at = gauge(registry, "last_skipped_timestamp_seconds", "When a run was last refused (epoch s)")
        skipped_at.labels(provider).set(finished_at)
        write_kept(path, registry, families)
        return
    success = summary is not None
    last_success = finished_at if success else previous.get(("last_success_timestamp_seconds", provider), 0.0)
    succeeded_at = gauge(registry, "last_success_timestamp_seconds", "When a run last succeeded (epoch s; 0: never)")
    succeeded_at.labels(provider).set(last_success)
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
    write_kept(path, registry, families)


def write_check_metrics(path: Path, findings: Any) -> None:
    """The metrics of one ``check`` (its Findings)."""
    from pipelines import config

    registry = CollectorRegistry()
    provider = findings.provider
    chosen = config.provider(provider)
    lifecycle, items = chosen.module("lifecycle"), chosen.items.capitalize()
    models = Gauge(f"{PREFIX}models", f"{items} by current status", ["provider", "current_status"], registry=registry)
    for status, count in findings.models_by_status.items():  # check names a missing status in the provider's words
        models.labels(provider, status).set(count)
    under_way = ", ".join(lifecycle.UNDER_WAY[:-1]) + " or " + lifecycle.UNDER_WAY[-1]
    stale = gauge(registry, "stale_models", f"{items} stuck in {under_way} over 48 hours ({provider})")
    stale.labels(provider).set(findings.stale_models)
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
    write_kept(path, registry, read_families(path))


def gauge(registry: CollectorRegistry, name: str, help_text: str) -> Gauge:
    """A gauge labelled by provider."""
    return Gauge(f"{PREFIX}{name}", help_text, ["provider"], registry=registry)


class Kept:
    """The series of an earlier file that this write does not set: re-emitted as they were."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def write_kept(path: Path, registry: CollectorRegistry, families: list[Metric]) -> None:
    """Write ``registry`` to ``path`` with every series of the earlier file it does not set itself."""
    own = {metric.name: metric for metric in registry.collect()}
    written = {(sample.name, tuple(sorted(sample.labels.items()))) for metric in own.values()
               for sample in metric.samples}  # fmt: skip
    for family in families:
        samples = [s for s in family.samples if (s.name, tuple(sorted(s.labels.items()))) not in written]
        if family.name in own:  # the same metric with other labels (another provider): beside this write's
            own[family.name].samples.extend(samples)
        elif samples:
            own[family.name] = with_samples(family, samples)
    merged = CollectorRegistry()
    merged.register(Kept(list(own.values())))
    write_to_textfile(str(path), merged)


def with_samples(family: Metric, samples: list[Any]) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = list(samples)
    return copy


def read_families(path: Path) -> list[Metric]:
    """Our metric families of an earlier file; none when there is none, or it is damaged or someone else's."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    try:
        return [family for family in text_string_to_metric_families(text) if family.name.startswith(PREFIX)]
    except ValueError:
        return []


def values_of(families: list[Metric]) -> dict[tuple[str, str], float]:
    """(metric name without the prefix, provider) -> value, from an earlier file's families."""
    values: dict[tuple[str, str], float] = {}
    for family in families:
        for sample in family.samples:
            if not math.isnan(sample.value):
                values[(sample.name.removeprefix(PREFIX), sample.labels.get("provider", ""))] = sample.value
    return values

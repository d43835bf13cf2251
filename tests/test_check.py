"""``cohere-events check`` and ``--prometheus``, on real warehouses loaded from the simulated API."""

from __future__ import annotations

import json
import math
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipelines.check import wilson
from pipelines.providers.cohere.simulator import World
from tests.support import Fake, cli

WATCHED = {"STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API"}
OUTCOMES = {"STATUS_READY": "ready", "STATUS_FAILED": "failed", "STATUS_DELETED": "cancelled"}


def metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {labels: value} from a Prometheus text file."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def cohere(values: dict[tuple[tuple[str, str], ...], float]) -> float:
    return values[(("provider", "cohere"),)]


def window_outcomes(world: World, since: datetime) -> tuple[int, int]:
    """(ready, failed) first outcomes of the models first seen since ``since``, as the contract defines them."""
    ready = failed = 0
    for model in world.models.values():
        events = world.events_of(model.id)
        if not events or events[0].created_at < since:
            continue
        outcome = next((OUTCOMES[e.status] for e in events if e.status in OUTCOMES), "in_flight")
        ready += outcome == "ready"
        failed += outcome == "failed"
    return ready, failed


def test_check_without_a_warehouse_exits_2(workdir: Path) -> None:
    result = cli("check")
    assert result.exit_code == 2 and "no warehouse" in result.stderr


def test_check_is_silent_when_nothing_is_wrong_unless_asked(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    quiet = cli("check", "--max-age", "24")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    told = cli("check", "--max-age", "24", "--verbose")
    assert told.exit_code == 0 and told.stdout.startswith("ok: last load")


def test_stuck_models_are_named_one_line_each(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    # the world's clock stands weeks before the real one: every model still in a watched status is long stuck
    stuck = {body["id"] for body in fake.world.model_list() if body.get("status") in WATCHED}
    assert stuck, "the simulated world should hold models in flight"
    result = cli("check", "--stuck-hours", "24")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(stuck)
    assert {line.split()[2] for line in lines} == stuck
    assert all(line.startswith("stuck: model ") and "(limit 24 h)" in line for line in lines)


def test_a_stale_load_is_a_problem(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    time.sleep(1.0)
    result = cli("check", "--max-age", "0.0001")
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("stale: the last load completed at ") and "(limit 0.0001 h)" in line


def test_the_failure_rate_over_the_window_matches_the_definition(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    days = (datetime.now(UTC) - fake.world.now).days + 40
    result = cli(
        "check", "--max-failure-rate", "0", "--window-days", str(days), "--min-resolved", "1", "--format", "json"
    )
    found = json.loads(result.stdout)
    window = found["failure_rate_window"]
    ready, failed = window_outcomes(fake.world, datetime.fromisoformat(window["since"]))
    assert (window["ready"], window["failed"]) == (ready, failed) and failed > 0
    assert math.isclose(window["failure_rate"], failed / (ready + failed))
    low, high = wilson(failed, ready + failed)
    assert math.isclose(window["wilson_low"], low) and math.isclose(window["wilson_high"], high)
    assert result.exit_code == 1
    (problem,) = found["problems"]
    assert problem["kind"] == "failure_rate" and "above 0.0 %" in problem["message"]
    fewer = cli(
        "check", "--max-failure-rate", "0", "--window-days", str(days), "--min-resolved", str(ready + failed + 1)
    )
    assert fewer.exit_code == 0, "too few resolved models to judge"


def test_bad_check_options_exit_2(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    for args in (("--max-failure-rate", "1.5"), ("--stuck-hours", "-1"), ("--window-days", "inf"), ("--format", "x")):
        result = cli("check", *args)
        assert result.exit_code == 2, (args, result.stderr)


def test_check_writes_prometheus_metrics(fake: Fake, workdir: Path) -> None:
    assert cli("run").exit_code == 0
    path = workdir / "check.prom"
    result = cli("check", "--stuck-hours", "24", "--prometheus", str(path))
    assert result.exit_code == 1
    found = metrics(path)
    by_status = {dict(labels)["current_status"]: value for labels, value in found["cohere_events_models"].items()}
    assert sum(by_status.values()) == len(fake.world.model_list())
    assert cohere(found["cohere_events_stale_models"]) >= 0
    assert 0 <= cohere(found["cohere_events_last_load_age_seconds"]) < 600
    assert "cohere_events_failure_rate" in found and "cohere_events_failure_rate_wilson_high" in found
    text = path.read_text()
    assert all(f"# HELP {name} " in text for name in found if name.startswith("cohere_events_"))
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044, "readable by node_exporter"


def test_run_writes_prometheus_metrics_and_keeps_the_last_success_across_failures(fake: Fake, workdir: Path) -> None:
    path = workdir / "run.prom"
    before = time.time()
    result = cli("run", "--prometheus", str(path))
    assert result.exit_code == 0, result.stderr
    first = metrics(path)
    success = cohere(first["cohere_events_last_success_timestamp_seconds"])
    assert before <= success <= time.time()
    assert cohere(first["cohere_events_last_run_success"]) == 1
    assert cohere(first["cohere_events_requests_total"]) == fake.api.stats.requests
    assert cohere(first["cohere_events_events_loaded"]) == len(
        [e for m in fake.world.models.values() for e in fake.world.events_of(m.id)]
    )
    assert cohere(first["cohere_events_models_fetched"]) == len(fake.world.model_list())
    failed = cli("run", "--prometheus", str(path), env={"CO_API_KEY": "wrong-key"})
    assert failed.exit_code == 3
    second = metrics(path)
    assert cohere(second["cohere_events_last_run_success"]) == 0
    assert cohere(second["cohere_events_last_success_timestamp_seconds"]) == success
    assert cohere(second["cohere_events_requests_total"]) == cohere(first["cohere_events_requests_total"])
    fake.world.advance(timedelta(hours=1).total_seconds())
    assert cli("run", "--prometheus", str(path)).exit_code == 0
    third = metrics(path)
    assert cohere(third["cohere_events_requests_total"]) == fake.api.stats.requests - 1  # the refused request
    assert cohere(third["cohere_events_last_success_timestamp_seconds"]) > success

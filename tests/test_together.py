"""Together AI: a full load equals the simulated API row for row, later runs add exactly what is new and cost what
changed, the views hold hand-computed values, and bad input gets one line and loses nothing."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.providers.together.simulator import (
    DEFAULT_API_KEY,
    Event,
    FakeApiServer,
    FakeTogetherApi,
    Job,
    World,
    metric_rows_by_training,
)
from pipelines.runner import LoadOptions, LoadSummary, run_load
from tests.support import NOW, cli

DATASET = "together_finetuning"
WAREHOUSE = "cohere_events.duckdb"
UNDER_WAY = {"running", "compressing", "uploading", "cancel_requested"}


@pytest.fixture
def together(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTogetherApi]:
    """The simulated Together API with 40 jobs (some in flight at NOW), odd input included, secrets echoed;
    TOGETHER_BASE_URL and TOGETHER_API_KEY point at it."""
    world = World(jobs=40, seed=5, now=NOW, oddities=True, echo_secrets=True, spacing=timedelta(minutes=15))
    api = FakeTogetherApi(world)
    with FakeApiServer(api) as server:
        monkeypatch.setenv("TOGETHER_BASE_URL", server.url)
        monkeypatch.setenv("TOGETHER_API_KEY", DEFAULT_API_KEY)
        yield api


def load(api: FakeTogetherApi | None = None, **options: Any) -> LoadSummary:
    """One run of the Together provider, with no client-side rate limit (the rate has tests of its own)."""
    settings = {"provider": "together", "requests_per_minute": 0, "recheck_hours": 10_000, **options}
    from pipelines import config

    return run_load(config.api_key("together"), config.base_url("together"), LoadOptions(**settings))


def rows(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(WAREHOUSE, read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.sql(sql).fetchall()


def expected_events(world: World) -> Counter[tuple[Any, ...]]:
    """Every event the simulated API serves now, as job_events should hold it: each once."""
    found: Counter[tuple[Any, ...]] = Counter()
    for job in world.listed():
        for event in job.visible(world.now):
            found[(job.id, event.type, event.level or None, event.message, event.created_at, event.step)] = 1
    return found


def stored_events() -> Counter[tuple[Any, ...]]:
    found = rows(f"select job_id, type, level, message, created_at, step from {DATASET}.job_events")
    return Counter((j, t, lv, m, None if c is None else c.astimezone(UTC), s) for j, t, lv, m, c, s in found)


def nan_safe(value: float | None) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def expected_metrics(world: World) -> set[tuple[Any, ...]]:
    """(job, step, metric, value) in long form: the curve a job's last attempt left. Each training's rows, once it has
    logged any, replace every earlier training's from the step it began at; within one training the first row of a
    (step, metric)."""
    found: dict[tuple[str, int, str], Any] = {}
    for job in world.listed():
        for training, served in zip(job.trainings, metric_rows_by_training(job, world.now), strict=True):
            if not served:
                continue
            found = {key: value for key, value in found.items() if key[0] != job.id or key[1] < training.first_step}
            attempt: dict[tuple[str, int, str], Any] = {}
            for row in served:
                for name, value in row.items():
                    if name not in ("timestamp", "train/global_step"):
                        attempt.setdefault((job.id, row["train/global_step"], name), nan_safe(float(value)))
            found.update(attempt)
    return {(*key, value) for key, value in found.items()}


def stored_metrics() -> list[tuple[Any, ...]]:
    found = rows(f"select job_id, step, metric, value from {DATASET}.training_metrics")
    return [(j, s, m, nan_safe(v)) for j, s, m, v in found]


def assert_exact(world: World) -> None:
    assert stored_events() == expected_events(world)
    metrics = stored_metrics()
    assert len(metrics) == len(set(metrics))
    assert set(metrics) == expected_metrics(world)
    jobs = rows(f"select id, status from {DATASET}.jobs order by id")
    assert jobs == sorted((job.id, world.status_of(job.id)) for job in world.listed())


def test_a_full_load_equals_the_simulated_api_row_for_row(together: FakeTogetherApi) -> None:
    summary = load()
    assert summary.models == 40 and summary.item == "job"
    assert_exact(together.world)
    assert summary.new_events == sum(expected_events(together.world).values())
    # odd input is stored, counted and warned of once per kind
    warnings = summary.warnings()
    assert sum("of a type the status mapping does not know" in line for line in warnings) == 1
    assert sum("events without created_at" in line for line in warnings) == 1
    untimed = rows(f"select count(*) from {DATASET}.job_events where created_at is null")[0][0]
    assert untimed == sum(1 for job in together.world.listed() for e in job.events if e.created_at is None) > 0
    assert rows(f"select count(*) from {DATASET}.job_events where type = 'model_evaluating'")[0][0] > 0
    # the jobs list's empty events never become a table of their own
    tables = {
        row[0] for row in rows(f"select table_name from information_schema.tables where table_schema = '{DATASET}'")
    }
    assert not any(table.startswith("jobs__") for table in tables)


def test_a_second_run_after_time_moves_on_adds_exactly_what_is_new(together: FakeTogetherApi) -> None:
    load()
    before = sum(expected_events(together.world).values())
    metrics_before = len(expected_metrics(together.world))
    together.world.advance(3 * 3600)
    second = load()
    assert_exact(together.world)
    assert second.new_events == sum(expected_events(together.world).values()) - before > 0
    assert second.new_metric_rows == len(expected_metrics(together.world)) - metrics_before > 0  # metrics grew
    assert load().new_events == 0


def test_a_no_change_run_reads_the_list_and_the_jobs_under_way_only(together: FakeTogetherApi) -> None:
    load()
    together.stats.requests = 0
    under_way = [job.id for job in together.world.listed() if together.world.status_of(job.id) in UNDER_WAY]
    assert under_way  # the fixture's world has jobs in flight at NOW
    summary = load()
    assert summary.requests == together.stats.requests == 1 + 2 * len(under_way)
    assert (summary.new_events, summary.new_metric_rows, summary.fetched) == (0, 0, len(under_way))


def test_no_secret_the_server_echoes_reaches_any_written_file(together: FakeTogetherApi, workdir: Path) -> None:
    load()
    assert cli("export", str(workdir / "out")).exit_code == 0
    for path in workdir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (b"wandb-secret", b"hf_secret", DEFAULT_API_KEY.encode()):
                assert secret not in content, (path, secret)


def test_a_base_url_ending_in_v1_works(together: FakeTogetherApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("TOGETHER_BASE_URL", os.environ["TOGETHER_BASE_URL"] + "/v1/")
    assert load().models == 40


# A world written by hand: every interval below is computed from these times. Open intervals run to the time of the
# query, so the jobs still under way are placed relative to the real clock.
T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday
LIVE = datetime.now(UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hand_job(job_id: str, events: list[tuple[str, datetime]], created: datetime = T0) -> Job:
    made = [Event(kind, moment, f"{kind} of {job_id}", digits=6) for kind, moment in events]
    return Job(job_id, created, "meta-llama/Llama-3.3-70B", f"team/{job_id}", "user-1", True, 1, "hand", made)


HAND_JOBS = [
    hand_job(  # ties: training ends as compression begins; compression's end is the upload's start; done at once
        "ft-ties",
        [
            ("job_pending", at(0)),
            ("job_start", at(30)),
            ("training_start", at(40)),
            ("model_compressing", at(100)),
            ("training_complete", at(100)),
            ("model_uploading", at(110)),
            ("model_compression_complete", at(110)),
            ("job_complete", at(120)),
            ("model_upload_complete", at(120)),
        ],
    ),
    hand_job(  # still training at NOW: an open interval
        "ft-open",
        [("job_pending", LIVE - timedelta(hours=2)), ("job_start", LIVE - timedelta(hours=1))],
        LIVE - timedelta(hours=2),
    ),
    hand_job(  # cancelled while queued, the stop in the same instant as the request
        "ft-cancelled",
        [("job_pending", at(0)), ("job_stopped", at(10)), ("cancel_requested", at(10))],
    ),
    hand_job(  # restarted after a node failure
        "ft-restart",
        [
            ("job_pending", at(0)),
            ("job_start", at(10)),
            ("training_start", at(20)),
            ("job_restarted", at(30)),
            ("job_start", at(60)),
            ("training_start", at(70)),
            ("training_complete", at(120)),
            ("model_uploading", at(120)),
            ("model_upload_complete", at(140)),
            ("job_complete", at(150)),
        ],
    ),
    hand_job(  # a user error: the training file was bad
        "ft-user-error",
        [("job_pending", at(0)), ("job_start", at(5)), ("training_data_downloading", at(6)), ("JOB_USER_ERROR", at(7))],
    ),
    hand_job("ft-error", [("job_pending", at(0)), ("job_start", at(15)), ("job_error", at(45))]),
    hand_job("ft-stuck", [("job_pending", LIVE - timedelta(days=3))], LIVE - timedelta(days=3)),
]


@pytest.fixture
def hand(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTogetherApi]:
    world = World(jobs=0, now=LIVE)
    for job in HAND_JOBS:
        world.add(job)
    api = FakeTogetherApi(world)
    with FakeApiServer(api) as server:
        monkeypatch.setenv("TOGETHER_BASE_URL", server.url)
        monkeypatch.setenv("TOGETHER_API_KEY", DEFAULT_API_KEY)
        load()
        yield api


def intervals(job_id: str) -> list[tuple[Any, ...]]:
    return rows(
        f"select status, duration_seconds, n_events, is_open, entered_by from {DATASET}.status_intervals "
        f"where job_id = '{job_id}' order by interval_seq"
    )


def test_status_intervals_against_hand_computed_values(hand: FakeTogetherApi) -> None:
    assert [row[:4] for row in intervals("ft-ties")][:4] == [
        ("pending", 1800.0, 1, False),
        ("running", 4200.0, 2, False),
        ("compressing", 600.0, 1, False),
        ("uploading", 600.0, 2, False),
    ]
    assert intervals("ft-ties")[-1][0] == "completed" and intervals("ft-ties")[-1][3]
    # the same instant: cancel_requested ranks before cancelled whatever order the API served them in
    assert [row[:4] for row in intervals("ft-cancelled")][:2] == [
        ("pending", 600.0, 1, False),
        ("cancel_requested", 0.0, 1, False),
    ]
    assert intervals("ft-cancelled")[-1][0] == "cancelled"
    assert [row[:3] for row in intervals("ft-restart")][:5] == [
        ("pending", 600.0, 1),
        ("running", 1200.0, 2),
        ("queued", 1800.0, 1),
        ("running", 3600.0, 2),
        ("uploading", 1800.0, 1),
    ]
    assert intervals("ft-restart")[2][4] == "job_restarted"  # entered_by: the type that began the interval
    status, seconds, _, is_open, _ = intervals("ft-open")[-1]
    assert (status, is_open) == ("running", True) and seconds >= 3600  # runs to the time of the query
    assert [row[0] for row in intervals("ft-user-error")] == ["pending", "running", "user_error"]
    time_in = rows(
        f"select visits, total_seconds from {DATASET}.time_in_status where job_id = 'ft-restart' and status = 'running'"
    )
    assert time_in == [(2, 4800.0)]


def test_job_lifecycle_failure_rates_and_stale_jobs_against_hand_computed_values(hand: FakeTogetherApi) -> None:
    lifecycle = {
        row[0]: row[1:]
        for row in rows(
            f"select job_id, first_outcome, queue_seconds, setup_seconds, training_seconds, upload_seconds, restarts "
            f"from {DATASET}.job_lifecycle"
        )
    }
    assert lifecycle["ft-ties"] == ("succeeded", 1800.0, 600.0, 3600.0, 1200.0, 0)
    assert lifecycle["ft-restart"][0] == "succeeded" and lifecycle["ft-restart"][-1] == 1
    outcomes = {job: values[0] for job, values in lifecycle.items()}
    assert outcomes == {
        "ft-ties": "succeeded",
        "ft-open": "in_flight",
        "ft-cancelled": "cancelled",
        "ft-restart": "succeeded",
        "ft-user-error": "failed",
        "ft-error": "failed",
        "ft-stuck": "in_flight",
    }
    ((jobs, succeeded, failed, cancelled, in_flight, resolved, rate, low, high),) = rows(
        f"select jobs, succeeded, failed, cancelled, in_flight, resolved, failure_rate, wilson_low, wilson_high "
        f"from {DATASET}.failure_rates"
    )
    assert (jobs, succeeded, failed, cancelled, in_flight, resolved, rate) == (7, 2, 2, 1, 2, 4, 0.5)
    z, n = 1.96, 4
    margin = z * math.sqrt(0.25 / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == (pytest.approx(0.5 - margin), pytest.approx(0.5 + margin))
    assert rows(f"select job_id, current_status from {DATASET}.stale_jobs") == [("ft-stuck", "pending")]
    phases = rows(
        f"select phase, phase_seq, duration_seconds, is_open from {DATASET}.phase_intervals "
        "where job_id = 'ft-restart' order by started_at"
    )
    assert phases == [("training", 1, 600.0, False), ("training", 2, 3000.0, False), ("upload", 1, 1200.0, False)]


def test_the_report_shows_both_providers_side_by_side(hand: FakeTogetherApi, workdir: Path) -> None:
    from tests.support import Fake  # noqa: F401  # (the Cohere side comes from its own demo world)

    assert cli("demo", "--models", "12").exit_code == 0
    done = cli("report", "--format", "json")
    assert done.exit_code == 0
    found = json.loads(done.stdout)
    assert set(found["providers"]) == {"cohere", "together"}
    together = found["providers"]["together"]
    assert (together["items"], together["failure_rate"]) == (7, 0.5)
    assert together["queue_p50_seconds"] is not None and together["training_p50_seconds"] is not None
    assert found["together"]["stale_jobs"][0]["job_id"] == "ft-stuck"
    assert found["failure_rate"]["models"] == 12  # Cohere's sections stay where they were
    text = cli("report")
    assert "Together AI" in text.stdout and "Cohere" in text.stdout
    assert text.stdout.strip().splitlines()[-1].count("together: 7 jobs, failure rate 50.0%") == 1
    page = cli("report", "--format", "html", "--output", str(workdir / "report.html"))
    assert page.exit_code == 0 and page.stdout.strip().endswith("together: failure rate 50.0%, 1 stale job")
    html = (workdir / "report.html").read_text()
    cohere_rate = found["failure_rate"]["failure_rate"]
    assert f'id="overall-failure-rate">{100 * cohere_rate:.1f}%<' in html  # Cohere's page as it was
    assert 'id="together-overall-failure-rate">50.0%<' in html and "ft-stuck" in html
    assert html.index('id="provider-cohere"') < html.index('id="provider-together"')
    assert "Providers side by side" in html and html.count('role="img"') >= 6


def test_the_official_sdk_parses_every_response_of_the_simulator(workdir: Path) -> None:
    """The ``together`` SDK (a dev dependency only) reads what the simulator serves: with strict validation for
    every job whose status its generated types know, and its hand-written enums for the rest (``user_error``)."""
    from together import Together
    from together.lib.types.fine_tuning import FinetuneEventType, FinetuneJobStatus

    world = World(jobs=60, seed=11, now=NOW, spacing=timedelta(minutes=20))
    with FakeApiServer(FakeTogetherApi(world)) as server:
        strict = Together(api_key=DEFAULT_API_KEY, base_url=server.url, _strict_response_validation=True, max_retries=0)
        lenient = Together(api_key=DEFAULT_API_KEY, base_url=server.url, max_retries=0)
        listed = lenient.fine_tuning.list().data
        assert sorted(job.id for job in listed) == sorted(job.id for job in world.listed())
        statuses = {status.value for status in FinetuneJobStatus}
        types = {kind.value.lower() for kind in FinetuneEventType} | {"model_compressing"}
        strictly = 0
        for job in listed:
            assert job.status in statuses and isinstance(job.created_at, datetime)
            client = lenient if job.status == "user_error" else strict
            detail = client.fine_tuning.retrieve(job.id)
            events = client.fine_tuning.list_events(job.id).data
            assert [event.type.lower() for event in events] == [event.type for event in detail.events or []]
            assert {event.type.lower() for event in events} <= types
            metrics = client.fine_tuning.list_metrics(job.id).metrics or []
            assert all("train/global_step" in row for row in metrics)
            later = client.fine_tuning.list_metrics(job.id, global_step_from=20).metrics or []
            assert all(row["train/global_step"] >= 20 for row in later)
            client.fine_tuning.list_checkpoints(job.id)
            strictly += client is strict
        assert strictly > 40 and any(job.status == "user_error" for job in listed)


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        (401, 3, "the API refused the key (HTTP 401): check TOGETHER_API_KEY"),
        (403, 3, "the API refused the key (HTTP 403): check TOGETHER_API_KEY"),
        (422, 1, "HTTP 422 for the job list: injected failure 422"),
        (400, 1, "HTTP 400 for the job list: injected failure 400"),
        ("malformed", 1, "malformed JSON in the response for the job list"),
    ],
)
def test_a_refused_or_broken_answer_is_one_line_and_loses_nothing(
    together: FakeTogetherApi, fault: int | str, code: int, message: str
) -> None:
    assert cli("run", "--provider", "together").exit_code == 0
    before = stored_events()
    together.world.advance(3600)
    together.inject("/v1/fine-tunes", fault)
    done = cli("run", "--provider", "together")
    assert done.exit_code == code
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert stored_events() == before  # nothing half-written
    assert cli("run", "--provider", "together").exit_code == 0  # the next run loads what the failed one missed
    assert_exact(together.world)


def test_a_job_that_vanishes_between_list_and_detail_is_reported_and_skipped(together: FakeTogetherApi) -> None:
    gone = together.world.listed()[3].id
    together.inject(f"/v1/fine-tunes/{gone}/events", 404)
    done = cli("run", "--provider", "together")
    assert done.exit_code == 0
    assert f"skipped 1: events of job {gone} not found (404)" in done.stdout
    assert not rows(f"select count(*) from {DATASET}.job_events where job_id = '{gone}'")[0][0]
    assert cli("run", "--provider", "together", "--full").exit_code == 0
    assert_exact(together.world)


def test_429_is_retried_after_what_retry_after_asks(together: FakeTogetherApi) -> None:
    together.inject("/events", 429, 429)
    summary = load()
    assert summary.retries == 2
    assert_exact(together.world)


def test_no_key_is_exit_2_naming_where_the_key_goes(together: FakeTogetherApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY")
    done = cli("run", "--provider", "together")
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        "error: no Together AI API key: set TOGETHER_API_KEY, or api_key under [sources.together_finetuning] in "
        ".dlt/secrets.toml"
    )
    assert cli("run", "--provider", "nobody").exit_code == 2


def test_status_covers_each_providers_dataset(together: FakeTogetherApi) -> None:
    assert cli("run", "--provider", "together").exit_code == 0
    done = cli("status", "--format", "json")
    assert done.exit_code == 0
    found = json.loads(done.stdout)
    mine = found["providers"]["together"]
    assert (mine["dataset"], mine["jobs"], mine["jobs_with_cursor"]) == (DATASET, 40, 40)
    assert mine["job_events"] == sum(expected_events(together.world).values())
    assert found["last_load"] is None  # Cohere's figures stay at the top level: it never loaded here


def test_check_judges_the_together_dataset(hand: FakeTogetherApi, workdir: Path) -> None:
    done = cli(
        "check", "--provider", "together", "--stuck-hours", "24", "--max-failure-rate", "0.25", "--format", "json"
    )
    assert done.exit_code == 1
    found = json.loads(done.stdout)
    assert found["provider"] == "together" and found["stale_models"] == 1
    kinds = [problem["kind"] for problem in found["problems"]]
    assert kinds.count("stuck_model") == 1 and found["problems"][0]["figures"]["model_id"] == "ft-stuck"
    lines = cli("check", "--provider", "together", "--stuck-hours", "24").stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stuck: job ft-stuck (team/ft-stuck) has been pending for ")


def test_a_together_only_warehouse_reports_views_and_exports(hand: FakeTogetherApi, workdir: Path) -> None:
    text = cli("report")
    assert text.exit_code == 0 and text.stdout.strip().splitlines()[-1].startswith("report: together: 7 jobs")
    page = cli("report", "--format", "html")
    assert page.exit_code == 0 and 'id="together-overall-failure-rate">50.0%<' in page.stdout
    assert "Providers side by side" not in page.stdout  # one provider: its sections alone
    views = cli("views")
    assert views.exit_code == 0 and "together_finetuning.phase_intervals" in views.stdout
    done = cli("export", str(workdir / "out"))
    assert done.exit_code == 0
    manifest = json.loads((workdir / "out" / "_cohere_events_export.json").read_text())
    assert "together_finetuning/job_events/" in {entry["path"] for entry in manifest["tables"].values()}
    assert (workdir / "out" / "together_finetuning" / "jobs.parquet").is_file()


def test_prometheus_metrics_carry_the_provider(together: FakeTogetherApi, workdir: Path) -> None:
    metrics = workdir / "together.prom"
    assert cli("run", "--provider", "together", "--prometheus", str(metrics)).exit_code == 0
    text = metrics.read_text()
    assert 'cohere_events_last_run_success{provider="together"} 1.0' in text
    assert 'cohere_events_events_loaded{provider="together"}' in text
    checked = workdir / "check.prom"
    assert cli("check", "--provider", "together", "--prometheus", str(checked)).exit_code == 0
    assert 'cohere_events_models{current_status="completed",provider="together"}' in checked.read_text()

"""OpenAI and Azure OpenAI: a full load equals the simulated API row for row, later runs add exactly what is new and
cost what changed, a killed run is completed by the next, the views hold hand-computed values, the official SDK
reads the simulator strictly, and bad input gets one line and loses nothing."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.providers.azure import simulator as azure_simulator
from pipelines.providers.openai.lifecycle import STATUS_OF_MESSAGE, TERMINAL
from pipelines.providers.openai.simulator import (
    BASE_PATH,
    DEFAULT_API_KEY,
    Checkpoint,
    Event,
    FakeApiServer,
    FakeOpenAiApi,
    Job,
    World,
    job_body,
)
from pipelines.runner import LoadOptions, LoadSummary, run_load
from tests.support import NOW, cli, cli_process

WAREHOUSE = "cohere_events.duckdb"
REPO = Path(__file__).resolve().parent.parent
DATASETS = {"openai": "openai_finetuning", "azure": "azure_openai_finetuning"}
VARIABLES = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "azure": ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"),
}


class Served:
    """A running simulated API of one provider, and where its data lands."""

    def __init__(self, provider: str, api: FakeOpenAiApi, server: FakeApiServer) -> None:
        self.provider, self.api, self.server = provider, api, server
        self.world = api.world
        self.dataset = DATASETS[provider]
        self.key = api.api_key

    def env(self) -> dict[str, str]:
        url_variable, key_variable = VARIABLES[self.provider]
        path = BASE_PATH if self.provider == "openai" else ""  # Azure's endpoint gets /openai/v1 by itself
        return {url_variable: self.server.url + path, key_variable: self.key}


def fake(provider: str, world: World, **options: Any) -> FakeOpenAiApi:
    if provider == "azure":
        return azure_simulator.fake_api(world, **options)
    return FakeOpenAiApi(world, **options)


@pytest.fixture
def served(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The simulated OpenAI API with 40 jobs (some in flight at NOW), odd input included and a W&B key echoed;
    OPENAI_BASE_URL and OPENAI_API_KEY point at it."""
    yield from serve("openai", monkeypatch)


@pytest.fixture(params=["openai", "azure"])
def either(request: pytest.FixtureRequest, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """:func:`served`, and the same world as Azure serves it (its paths and ``api-key`` header)."""
    yield from serve(request.param, monkeypatch)


def serve(provider: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    world = World(jobs=40, seed=5, now=NOW, oddities=True, echo_secrets=True, spacing=timedelta(minutes=5))
    with FakeApiServer(fake(provider, world)) as server:
        running = Served(provider, server.api, server)  # type: ignore[arg-type]
        for name, value in running.env().items():
            monkeypatch.setenv(name, value)
        yield running


def load(provider: str, **options: Any) -> LoadSummary:
    """One run of the provider, with no client-side rate limit (the rate has tests of its own)."""
    from pipelines import config

    settings = {"provider": provider, "requests_per_minute": 0, "recheck_hours": 10_000, **options}
    return run_load(config.api_key(provider), config.base_url(provider), LoadOptions(**settings))


def rows(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(WAREHOUSE, read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.sql(sql).fetchall()


def expected_events(world: World) -> set[tuple[Any, ...]]:
    return {
        (event.id, job.id, event.at, event.level, event.kind, event.message)
        for job in world.listed()
        for event in job.visible(world.now)
    }


def stored_events(dataset: str) -> list[tuple[Any, ...]]:
    found = rows(f"select id, job_id, created_at, level, type, message from {dataset}.job_events")
    return [(i, j, c.astimezone(UTC), lv, t, m) for i, j, c, lv, t, m in found]


def visible_checkpoints(job: Job, now: datetime) -> list[Checkpoint]:
    return [checkpoint for checkpoint in job.checkpoints if checkpoint.at <= now]


def expected_metrics(world: World) -> set[tuple[Any, ...]]:
    """Every numeric key but step of each metrics event's data, then each checkpoint's metrics but step where the
    events did not give that (step, metric)."""
    found: dict[tuple[str, int, str], float] = {}
    for job in world.listed():
        for event in job.visible(world.now):
            if event.kind == "metrics" and event.data:
                for name, value in event.data.items():
                    if name != "step":
                        found.setdefault((job.id, event.data["step"], name), float(value))
        for checkpoint in visible_checkpoints(job, world.now):
            for name, value in checkpoint.metrics.items():
                if name != "step":
                    found.setdefault((job.id, checkpoint.step, name), value)
    return {(*key, value) for key, value in found.items()}


def assert_exact(served: Served) -> None:
    world, dataset = served.world, served.dataset
    events = stored_events(dataset)
    assert len(events) == len(set(events))
    assert set(events) == expected_events(world)
    metrics = rows(f"select job_id, step, metric, value from {dataset}.training_metrics")
    assert len(metrics) == len(set(metrics))
    assert set(metrics) == expected_metrics(world)
    checkpoints = rows(f"select id, job_id, step_number, created_at from {dataset}.checkpoints")
    assert {(i, j, s, c.astimezone(UTC)) for i, j, s, c in checkpoints} == {
        (checkpoint.id, job.id, checkpoint.step, checkpoint.at)
        for job in world.listed()
        for checkpoint in visible_checkpoints(job, world.now)
    }
    jobs = rows(f"select id, status from {dataset}.jobs order by id")
    assert jobs == sorted((job.id, world.status_of(job.id)) for job in world.listed())
    # seq numbers each job's events in the API's order, oldest first: within one second too
    for job in world.listed()[:8]:
        stored = rows(f"select id from {dataset}.job_events where job_id = '{job.id}' order by seq")
        assert [row[0] for row in stored] == [event.id for event in job.visible(world.now)]


def test_a_full_load_equals_the_simulated_api_row_for_row(either: Served) -> None:
    summary = load(either.provider)
    assert summary.models == 40 and summary.item == "job"
    assert_exact(either)
    assert summary.new_events == len(expected_events(either.world))
    assert summary.new_metric_rows == len(expected_metrics(either.world))
    seconds = events_per_second(either.world)
    assert max(seconds.values()) >= 3  # many events share one created_at: the fixture really tests that
    warnings = summary.warnings()
    assert sum("of a type the API does not document" in line and "moderation" in line for line in warnings) == 1
    assert sum("with a status the lifecycle does not know" in line for line in warnings) == 0  # paused is known
    assert rows(f"select count(*) from {either.dataset}.jobs where status = 'paused'")[0][0] > 0
    if either.provider == "azure":  # every request carried Azure's api-key header, none a bearer token
        assert either.api.stats.by_kind.get("auth:api-key") == either.api.stats.requests
        assert "auth:bearer" not in either.api.stats.by_kind


def events_per_second(world: World) -> dict[tuple[str, datetime], int]:
    counts: dict[tuple[str, datetime], int] = {}
    for job in world.listed():
        for event in job.visible(world.now):
            counts[(job.id, event.at)] = counts.get((job.id, event.at), 0) + 1
    return counts


def test_a_later_run_adds_exactly_what_is_new(served: Served) -> None:
    load(served.provider)
    events_before, metrics_before = len(expected_events(served.world)), len(expected_metrics(served.world))
    served.world.advance(3 * 3600)
    second = load(served.provider)
    assert_exact(served)
    assert second.new_events == len(expected_events(served.world)) - events_before > 0
    assert second.new_metric_rows == len(expected_metrics(served.world)) - metrics_before > 0
    again = load(served.provider)
    assert (again.new_events, again.new_metric_rows) == (0, 0)


def test_a_no_change_run_costs_the_list_and_the_jobs_under_way(either: Served) -> None:
    load(either.provider)
    statuses = [either.world.status_of(job.id) for job in either.world.listed()]
    waiting = sum(status in ("validating_files", "queued") for status in statuses)
    training = sum(status in ("running", "paused") for status in statuses)
    assert waiting and training  # the fixture's world has jobs in flight at NOW
    either.api.stats.requests = 0
    summary = load(either.provider)
    # one page of the list (40 jobs), one page of events of each job under way, and the checkpoints of those training
    assert summary.requests == either.api.stats.requests == 1 + waiting + 2 * training
    assert (summary.new_events, summary.new_metric_rows, summary.fetched) == (0, 0, waiting + training)


def test_a_changed_job_is_read_and_an_unchanged_finished_one_is_not(served: Served) -> None:
    """Jobs have no updated_at: a job is read again when anything the list shows of it moved, or it is under way."""
    load(served.provider)
    world = served.world
    before = {job.id: job_body(job, world.now) for job in world.listed()}
    world.advance(6 * 3600)  # the jobs in flight at NOW move on
    after = {job.id: job_body(job, world.now) for job in world.listed()}
    under_way = {job_id for job_id, body in after.items() if body["status"] not in TERMINAL}
    moved = {job_id for job_id in after if after[job_id] != before[job_id]}
    assert moved - under_way and len(moved | under_way) < len(after)
    served.api.stats.by_kind.clear()
    load(served.provider)
    assert_exact(served)
    assert served.api.stats.by_kind.get("list_events") == len(moved | under_way)


def test_a_run_killed_mid_extraction_is_completed_by_the_next(workdir: Path) -> None:
    world = World(jobs=40, seed=4, now=NOW, spacing=timedelta(minutes=5))
    api = FakeOpenAiApi(world, latency_ms=100)
    with FakeApiServer(api) as server:
        env = {"OPENAI_BASE_URL": server.url + BASE_PATH, "OPENAI_API_KEY": DEFAULT_API_KEY}
        env["DLT_DATA_DIR"] = os.environ["DLT_DATA_DIR"]
        victim = cli_process("run", "--provider", "openai", "--concurrency", "2", env=env, cwd=workdir)
        deadline = time.monotonic() + 30
        while api.stats.requests <= 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        api.latency = 0
        world.advance(3600)
        done = cli("run", "--provider", "openai", env=env)
        assert done.exit_code == 0, done.stderr
        assert_exact(Served("openai", api, server))


def test_no_secret_the_server_echoes_reaches_any_written_file(either: Served, workdir: Path) -> None:
    load(either.provider)
    assert cli("export", str(workdir / "out")).exit_code == 0
    assert cli("report", "--format", "html", "--output", str(workdir / "report.html")).exit_code == 0
    assert rows(f"select count(*) from {either.dataset}.jobs where wandb_project = 'finetunes'")[0][0] > 0
    for path in workdir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (b"wandb-secret", either.key.encode()):
                assert secret not in content, (path, secret)


def test_the_official_sdk_reads_everything_the_simulator_serves_strictly(workdir: Path) -> None:
    """The ``openai`` SDK (a dev dependency only), with strict validation, pages and parses every list and object
    of OpenAI's simulator and of Azure's (its v1 API takes a bearer key too)."""
    from openai import OpenAI

    world = World(jobs=40, seed=5, now=NOW, spacing=timedelta(minutes=5))
    for provider, path in (("openai", BASE_PATH), ("azure", azure_simulator.BASE_PATH)):
        api = fake(provider, world)
        with FakeApiServer(api) as server:
            client = OpenAI(
                api_key=api.api_key, base_url=server.url + path, _strict_response_validation=True, max_retries=0
            )
            jobs = list(client.fine_tuning.jobs.list(limit=7))  # six pages, followed by the SDK's cursor
            assert [job.id for job in jobs] == [job.id for job in world.listed()]
            statuses = {job.status for job in jobs}
            assert {"succeeded", "failed", "cancelled", "queued", "running"} <= statuses
            metrics_events = 0
            for job in jobs:
                assert client.fine_tuning.jobs.retrieve(job.id).id == job.id
                events = list(client.fine_tuning.jobs.list_events(job.id, limit=40))
                assert [event.id for event in events] == [event.id for event in world.events_of(job.id)]
                metrics_events += sum(event.type == "metrics" and bool(event.data) for event in events)
                checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id, limit=2))
                assert [checkpoint.step_number for checkpoint in checkpoints] == sorted(
                    (checkpoint.step for checkpoint in visible_checkpoints(world.jobs[job.id], world.now)),
                    reverse=True,
                )
            assert metrics_events > 100


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        (401, 3, "the API refused the key (HTTP 401): check {key}"),
        (400, 1, "HTTP 400 for the job list: injected failure 400"),
        ("malformed", 1, "malformed JSON in the response for the job list"),
    ],
)
def test_a_refused_or_broken_answer_is_one_line_and_loses_nothing(
    served: Served, fault: int | str, code: int, message: str
) -> None:
    assert cli("run", "--provider", served.provider).exit_code == 0
    before = stored_events(served.dataset)
    served.world.advance(3600)
    served.api.inject("/fine_tuning/jobs", fault)
    done = cli("run", "--provider", served.provider)
    assert done.exit_code == code
    assert done.stderr.strip().splitlines() == [f"error: {message.format(key=VARIABLES[served.provider][1])}"]
    assert stored_events(served.dataset) == before
    assert cli("run", "--provider", served.provider).exit_code == 0
    assert_exact(served)


def test_a_wrong_key_is_exit_3_and_the_key_is_never_printed(either: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "sk-wrong-key-0123456789"
    monkeypatch.setenv(VARIABLES[either.provider][1], wrong)
    done = cli("run", "--provider", either.provider)
    assert done.exit_code == 3
    assert done.stderr.strip() == f"error: the API refused the key (HTTP 401): check {VARIABLES[either.provider][1]}"
    assert wrong not in done.stdout + done.stderr and "6789" not in done.stderr


def test_429_with_openais_rate_limit_headers_is_waited_out(workdir: Path) -> None:
    world = World(jobs=6, seed=3, now=NOW, spacing=timedelta(minutes=30))
    api = FakeOpenAiApi(world, rate_limit=600)
    with FakeApiServer(api) as server:
        api.window = [time.monotonic() - 59.5] * 600  # the minute's limit is spent: half a second frees it
        env = {"OPENAI_BASE_URL": server.url + BASE_PATH, "OPENAI_API_KEY": DEFAULT_API_KEY}
        done = cli("run", "--provider", "openai", "--requests-per-minute", "0", env=env)
        assert done.exit_code == 0, done.stderr
        assert " 0 retries" not in done.stdout  # it was answered 429 and waited
        assert_exact(Served("openai", api, server))


def test_missing_settings_are_exit_2_naming_the_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = cli("run", "--provider", "openai")
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        "error: no OpenAI API key: set OPENAI_API_KEY, or api_key under [sources.openai_finetuning] in "
        ".dlt/secrets.toml"
    )
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "some-key")
    done = cli("run", "--provider", "azure")
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        "error: no Azure OpenAI endpoint: set AZURE_OPENAI_ENDPOINT (e.g. https://RESOURCE.openai.azure.com)"
    )


def test_an_azure_endpoint_with_or_without_its_path_works(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(jobs=5, seed=8, now=NOW, spacing=timedelta(hours=1))
    with FakeApiServer(azure_simulator.fake_api(world)) as server:
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", azure_simulator.DEFAULT_API_KEY)
        for endpoint in (server.url, server.url + "/", server.url + "/openai/v1", server.url + "/openai/v1/"):
            monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", endpoint)
            assert load("azure").models == 5


def test_demo_and_the_reports_serve_both_side_by_side(workdir: Path) -> None:
    assert cli("demo", "--provider", "openai", "--models", "12", "--quiet").exit_code == 0
    assert cli("demo", "--provider", "azure", "--models", "8", "--quiet").exit_code == 0
    found = json.loads(cli("report", "--format", "json").stdout)
    assert {"openai", "azure"} <= set(found["providers"])
    assert found["providers"]["openai"]["items"] == 12 and found["providers"]["azure"]["items"] == 8
    status = json.loads(cli("status", "--format", "json").stdout)
    assert status["providers"]["openai"]["jobs"] == 12 and status["providers"]["azure"]["jobs"] == 8
    check = cli("check", "--provider", "azure", "--format", "json")
    assert check.exit_code in (0, 1) and json.loads(check.stdout)["provider"] == "azure"
    views = cli("views").stdout
    assert "openai_finetuning.error_codes" in views and "azure_openai_finetuning.job_lifecycle" in views


# A world written by hand: every interval below is computed from these times. The world's clock is two hours behind
# the real one, so that the open intervals (which run to the time of the query) stay positive.
LIVE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
T0 = LIVE - timedelta(days=2)


def hand_job(job_id: str, created: datetime, messages: list[tuple[float, str]], **fields: Any) -> Job:
    """A job created at ``created`` whose events are ``messages`` (minutes after it, text); its listed status and
    finished_at are in ``fields`` (``statuses``, ``finished_at``, ``error``)."""
    events = [
        Event(
            created + timedelta(minutes=minutes), text, "error" if "failed" in text else "info", id=f"ev-{job_id}-{n}"
        )
        for n, (minutes, text) in enumerate(messages)
    ]
    job = Job(job_id, created, "gpt-4o-mini-2024-07-18", job_id[6:], "hand", 1, 4, False, 1, events=events)
    for name, value in fields.items():
        setattr(job, name, value)
    return job


def minutes(start: datetime, count: float) -> datetime:
    return start + timedelta(minutes=count)


HAND_JOBS = [
    hand_job(
        "ftjob-ok",
        T0,
        [
            (0, "Created fine-tuning job: ftjob-ok"),
            (0, "Validating training file: file-1"),
            (2, "Files validated, moving job to queued state"),
            (10, "Fine-tuning job started"),
            (40, "New fine-tuned model created: ft:gpt-4o-mini:org::ok"),
            (50, "The job has successfully completed"),
        ],
        statuses=[(T0, "validating_files"), (minutes(T0, 2), "queued"), (minutes(T0, 10), "running"),
                  (minutes(T0, 50), "succeeded")],
        finished_at=minutes(T0, 50),
        trained_tokens=1000,
    ),
    hand_job(  # validated and started in one second: the API's order decides
        "ftjob-same-second",
        T0,
        [(0, "Created fine-tuning job"), (1, "Files validated, moving job to queued state"),
         (1, "Fine-tuning job started"), (21, "Fine tuning job successfully completed")],
        statuses=[(T0, "validating_files"), (minutes(T0, 1), "queued"), (minutes(T0, 1), "running"),
                  (minutes(T0, 21), "succeeded")],
        finished_at=minutes(T0, 21),
        trained_tokens=3000,
    ),
    hand_job(
        "ftjob-bad-file",
        T0,
        [(0, "Created fine-tuning job"), (1, "The job failed due to an invalid training file.")],
        statuses=[(T0, "validating_files"), (minutes(T0, 1), "failed")],
        finished_at=minutes(T0, 1),
        error={"code": "invalid_training_file", "message": "The job failed due to an invalid training file.",
               "param": "training_file"},
    ),
    hand_job(
        "ftjob-cancelled",
        T0,
        [(0, "Created fine-tuning job"), (5, "Files validated, moving job to queued state"),
         (20, "Fine-tuning job cancelled")],
        statuses=[(T0, "validating_files"), (minutes(T0, 5), "queued"), (minutes(T0, 20), "cancelled")],
        finished_at=minutes(T0, 20),
    ),
    hand_job(  # queued for three days
        "ftjob-stuck",
        LIVE - timedelta(days=3),
        [(0, "Created fine-tuning job"), (1, "Files validated, moving job to queued state")],
        statuses=[(LIVE - timedelta(days=3), "validating_files"), (LIVE - timedelta(days=3, minutes=-1), "queued")],
    ),
    hand_job(  # a service whose messages the mapping does not know: observations are all there is
        "ftjob-quiet",
        LIVE - timedelta(hours=1),
        [(0, "Job submitted"), (30, "Training in progress"), (90, "Done")],
        statuses=[(LIVE - timedelta(hours=1), "validating_files"), (LIVE - timedelta(minutes=30), "running"),
                  (LIVE + timedelta(minutes=30), "succeeded")],
        finished_at=LIVE + timedelta(minutes=30),
        trained_tokens=500,
    ),
]  # fmt: skip


@pytest.fixture
def hand(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAiApi]:
    """The hand-made jobs, loaded at LIVE and again an hour later (``ftjob-quiet`` finished between)."""
    world = World(jobs=0, now=LIVE)
    for job in HAND_JOBS:
        world.add(job)
    api = FakeOpenAiApi(world)
    with FakeApiServer(api) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + BASE_PATH)
        monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_API_KEY)
        load("openai")
        world.advance(3600)
        load("openai")
        yield api


def intervals(job_id: str) -> list[tuple[Any, ...]]:
    return rows(
        "select status, duration_seconds, n_events, is_open, entered_by from openai_finetuning.status_intervals "
        f"where job_id = '{job_id}' order by interval_seq"
    )


def closed(job_id: str) -> list[tuple[Any, ...]]:
    return [row[:3] for row in intervals(job_id) if not row[3]]


def test_status_intervals_against_hand_computed_values(hand: FakeOpenAiApi) -> None:
    assert closed("ftjob-ok") == [("validating_files", 120.0, 3), ("queued", 480.0, 1), ("running", 2400.0, 1)]
    assert intervals("ftjob-ok")[-1][0::3] == ("succeeded", True)
    assert intervals("ftjob-ok")[-1][4] == "event"  # the message began it; finished_at, observed, listed agree
    assert closed("ftjob-same-second") == [
        ("validating_files", 60.0, 2),
        ("queued", 0.0, 1),
        ("running", 1200.0, 1),
    ]
    assert closed("ftjob-bad-file") == [("validating_files", 60.0, 2)]
    assert intervals("ftjob-bad-file")[-1][0] == "failed"
    # no message says anything: created, then what the first run saw at LIVE, then finished_at
    quiet = intervals("ftjob-quiet")
    assert [(row[0], row[1], row[4]) for row in quiet[:2]] == [
        ("validating_files", 3600.0, "created_at"),
        ("running", 1800.0, "observed"),
    ]
    assert (quiet[2][0], quiet[2][3], quiet[2][4]) == ("succeeded", True, "finished_at")
    # ordered, never overlapping, and ending in the status the job list gives
    for job in HAND_JOBS:
        found = rows(
            "select status, entered_at, exited_at from openai_finetuning.status_intervals "
            f"where job_id = '{job.id}' order by interval_seq"
        )
        assert all(a[2] == b[1] and a[1] <= a[2] for a, b in itertools.pairwise(found))
        assert found[-1][0] == hand.world.status_of(job.id) and found[-1][2] is None


def test_job_lifecycle_rates_errors_tokens_and_stale_jobs_against_hand_computed_values(hand: FakeOpenAiApi) -> None:
    lifecycle = {
        row[0]: row[1:]
        for row in rows(
            "select job_id, first_outcome, validation_seconds, queue_seconds, training_seconds, "
            "time_to_succeed_seconds, created_to_finished_seconds, trained_tokens from openai_finetuning.job_lifecycle"
        )
    }
    assert lifecycle["ftjob-ok"] == ("succeeded", 120.0, 480.0, 2400.0, 3000.0, 3000.0, 1000)
    assert lifecycle["ftjob-same-second"] == ("succeeded", 60.0, 0.0, 1200.0, 1260.0, 1260.0, 3000)
    assert lifecycle["ftjob-bad-file"][:2] == ("failed", None)
    assert lifecycle["ftjob-quiet"][:5] == ("succeeded", None, None, 1800.0, 5400.0)
    outcomes = {job: values[0] for job, values in lifecycle.items()}
    assert outcomes == {
        "ftjob-ok": "succeeded",
        "ftjob-same-second": "succeeded",
        "ftjob-bad-file": "failed",
        "ftjob-cancelled": "cancelled",
        "ftjob-stuck": "in_flight",
        "ftjob-quiet": "succeeded",
    }
    ((jobs, succeeded, failed, cancelled, in_flight, resolved, rate),) = rows(
        "select jobs, succeeded, failed, cancelled, in_flight, resolved, failure_rate "
        "from openai_finetuning.failure_rates"
    )
    assert (jobs, succeeded, failed, cancelled, in_flight, resolved, rate) == (6, 3, 1, 1, 1, 4, 0.25)
    assert rows("select job_id, current_status from openai_finetuning.stale_jobs") == [("ftjob-stuck", "queued")]
    assert rows("select error_code, jobs, share_of_failed from openai_finetuning.error_codes") == [
        ("invalid_training_file", 1, 1.0)
    ]
    assert rows(
        "select base_model, jobs, trained_tokens, max_trained_tokens from openai_finetuning.trained_tokens"
    ) == [("gpt-4o-mini-2024-07-18", 3, 4500, 3000)]
    observed = rows("select job_id, status from openai_finetuning.status_observations order by observed_at, job_id")
    assert ("ftjob-quiet", "running") in observed and ("ftjob-quiet", "succeeded") in observed
    assert len(observed) == len(HAND_JOBS) + 1  # each job once, and the one that changed between the runs


def test_every_message_mapping_begins_an_api_status() -> None:
    assert set(STATUS_OF_MESSAGE.values()) <= {
        "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
    }  # fmt: skip


def test_the_readmes_cron_line_with_the_key_in_a_file_loads(workdir: Path) -> None:
    """The OpenAI crontab line of the README, as cron runs it: a bare environment, the key read from a file."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Archive your OpenAI history", 1)[1]
    line = next(text for text in section.splitlines() if text.startswith("0 * * * *") and "openai" in text)
    command = line.split(None, 5)[5]
    world = World(jobs=10, seed=2, now=NOW, spacing=timedelta(hours=1))
    uv = shutil.which("uv")
    assert uv is not None
    with FakeApiServer(FakeOpenAiApi(world)) as server:
        (workdir / "log").mkdir()
        key_file = workdir / ".openai-key"
        key_file.write_text(DEFAULT_API_KEY + "\n")
        command = (
            command.replace("--project /srv/cohere-events", f"--project {REPO}")
            .replace("/srv/cohere-events/.openai-key", str(key_file))
            .replace("/srv/cohere-events", str(workdir))
            .replace("/var/log/cohere-events", str(workdir / "log"))
            .replace("/home/ops/.local/bin/uv", uv)
        )
        env = {"HOME": str(workdir), "PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": server.url + BASE_PATH}
        done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        log = (workdir / "log" / "openai.log").read_text()
        assert "exit=0 loaded 10 jobs" in log
        assert DEFAULT_API_KEY not in log


def test_check_speaks_of_jobs_and_of_days(hand: FakeOpenAiApi) -> None:
    done = cli("check", "--provider", "openai", "--max-failure-rate", "0.1", "--min-resolved", "1")
    assert done.exit_code == 1
    rates = [line for line in done.stdout.splitlines() if line.startswith("failure rate:")]
    assert len(rates) == 1 and "25.0 % of 4 resolved jobs first seen in the last 7 days" in rates[0]
    bad = cli("check", "--provider", "openai", "--window-days", "-1")
    assert (bad.exit_code, bad.stderr.strip()) == (2, "error: --window-days must be a number of days above 0, not -1.0")

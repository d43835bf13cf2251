"""Together AI as real jobs behave: restarts that log their steps again or continue, paged events and metrics, a job
list that runs ahead of the events endpoint. Real HTTP on 127.0.0.1 against the simulator, which does each."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.providers.together.simulator import (
    DEFAULT_API_KEY,
    FakeApiServer,
    FakeTogetherApi,
    World,
    metric_rows_by_training,
)
from tests.support import NOW, cli
from tests.test_together import DATASET, LIVE, assert_exact, at, expected_metrics, hand_job, load, rows


def serve(monkeypatch: pytest.MonkeyPatch, world: World, **api: Any) -> Iterator[FakeTogetherApi]:
    fake = FakeTogetherApi(world, **api)
    with FakeApiServer(fake) as server:
        monkeypatch.setenv("TOGETHER_BASE_URL", server.url)
        monkeypatch.setenv("TOGETHER_API_KEY", DEFAULT_API_KEY)
        yield fake


def restarted(world: World) -> list[str]:
    return [job.id for job in world.listed() if len(job.trainings) > 1]


@pytest.mark.parametrize("resumes", [False, True], ids=["trains-again-from-step-1", "resumes-from-checkpoint"])
def test_a_restarted_job_keeps_only_its_last_attempts_curve_across_runs(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, resumes: bool
) -> None:
    # jobs every 20 minutes up to NOW: the newest are mid-training, some of them in their first attempt
    world = World(jobs=60, seed=11, now=NOW - timedelta(hours=6), spacing=timedelta(minutes=20), resumes=resumes)
    for _ in serve(monkeypatch, world):
        load()
        assert_exact(world)
        for _ in range(6):  # each hour: attempts end, restarts happen, second attempts log their steps
            world.advance(3600)
            load()
            assert_exact(world)
        assert restarted(world)
        # the views see one attempt: a restarted job's first step is its last attempt's (or the first's, resumed)
        for job_id in restarted(world):
            job = world.jobs[job_id]
            if not metric_rows_by_training(job, world.now)[-1]:
                continue  # the second attempt has logged nothing yet
            first = rows(f"select min(first_step_number) from {DATASET}.training_summary where job_id = '{job_id}'")
            assert first == [(job.trainings[0 if resumes else -1].logged_every,)]


def test_a_restart_seen_in_the_steps_alone_replaces_the_rows(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(jobs=60, seed=11, now=NOW - timedelta(hours=6), spacing=timedelta(minutes=20))
    for _ in serve(monkeypatch, world):
        load(metrics=False)  # events first, on their own: the metrics run below sees no new restart event
        world.advance(6 * 3600)
        load()
        assert_exact(world)


def test_a_queued_job_that_already_trained_has_its_metrics_read_on_its_first_read(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(jobs=60, seed=11, now=NOW, spacing=timedelta(minutes=20))
    job = world.jobs[restarted(world)[0]]
    restart = next(event.created_at for event in job.events if event.type == "job_restarted")
    assert restart is not None
    world.now = restart + timedelta(seconds=60)  # waiting for hardware again, the first attempt's metrics served
    requeued = [job.id for job in world.listed() if world.status_of(job.id) == "queued" and world.metrics_of(job.id)]
    assert requeued
    for _ in serve(monkeypatch, world):
        load()
        stored = {row[0] for row in rows(f"select distinct job_id from {DATASET}.training_metrics")}
        assert set(requeued) <= stored
        assert_exact(world)


@pytest.fixture
def restarts_by_hand(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTogetherApi]:
    world = World(jobs=0, now=LIVE)
    world.add(
        hand_job(  # the node failed: job_error and job_restarted in one instant, served error first
            "ft-error-then-restart",
            [
                ("job_pending", at(0)),
                ("job_start", at(10)),
                ("training_start", at(20)),
                ("job_error", at(30)),
                ("job_restarted", at(30)),
                ("job_start", at(60)),
                ("training_start", at(70)),
                ("training_complete", at(120)),
                ("model_uploading", at(120)),
                ("job_complete", at(150)),
            ],
        )
    )
    world.add(hand_job("ft-restarting", [("job_pending", at(0)), ("job_error", at(30)), ("job_restarted", at(30))]))
    yield from serve(monkeypatch, world)


def test_an_error_and_a_restart_in_one_instant_read_as_a_restart(restarts_by_hand: FakeTogetherApi) -> None:
    load()
    statuses = rows(
        f"select status, entered_by from {DATASET}.status_intervals where job_id = 'ft-error-then-restart' "
        "order by interval_seq"
    )
    assert statuses == [
        ("pending", "job_pending"),
        ("running", "job_start"),
        ("queued", "job_restarted"),
        ("running", "job_start"),
        ("uploading", "model_uploading"),
        ("completed", "job_complete"),
    ]
    lifecycle = rows(
        f"select job_id, current_status, first_outcome, ever_failed, restarts, training_seconds "
        f"from {DATASET}.job_lifecycle order by job_id"
    )
    # training: 20 -> 30 (the failed attempt) and 70 -> 120 minutes, not 20 -> 120 with the requeue and set-up
    assert lifecycle == [
        ("ft-error-then-restart", "completed", "succeeded", False, 1, 3600.0),
        ("ft-restarting", "queued", "in_flight", False, 1, None),
    ]
    assert rows(f"select failed, in_flight from {DATASET}.failure_rates") == [(0, 1)]


@pytest.mark.parametrize("paging", ["cursor", "link"])
def test_paged_events_and_metrics_are_read_whole(workdir: Path, monkeypatch: pytest.MonkeyPatch, paging: str) -> None:
    world = World(jobs=30, seed=5, now=NOW, spacing=timedelta(minutes=15))
    for api in serve(monkeypatch, world, page_size=7, paging=paging):
        load()
        assert_exact(world)
        assert api.stats.by_kind["list_events"] > 30  # more than one page a job
        world.advance(3 * 3600)
        load(full=True)
        assert_exact(world)


def test_has_more_with_no_way_to_ask_stops_with_one_line_and_stores_nothing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(jobs=10, seed=5, now=NOW, spacing=timedelta(minutes=15))
    for _ in serve(monkeypatch, world, page_size=7, paging="bare"):
        result = cli("run", "--provider", "together")
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert "has_more" in line and "of job ft-" in line and "nothing of it was stored" in line
        assert (
            not Path("cohere_events.duckdb").exists()
            or not rows(
                f"select count(*) from information_schema.tables where table_schema = '{DATASET}' "
                "and table_name = 'job_events'"
            )[0][0]
        )


def test_a_job_list_that_runs_ahead_of_the_events_does_not_freeze_the_job(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(jobs=40, seed=5, now=NOW, spacing=timedelta(minutes=15), events_lag=timedelta(hours=3))
    for _ in serve(monkeypatch, world):
        load()
        ahead = [
            job.id
            for job in world.listed()
            if world.status_of(job.id) == "completed" and len(world.events_of(job.id)) < len(job.visible(world.now))
        ]
        assert ahead  # listed completed, while the events served end before the completion
        world.events_lag = timedelta(0)  # the events endpoint catches up
        load()
        stored = rows(f"select job_id, count(*) from {DATASET}.job_events group by all")
        counts = dict(stored)
        for job_id in ahead:
            assert counts[job_id] == len(world.jobs[job_id].visible(world.now))
        assert rows(f"select current_status from {DATASET}.job_lifecycle where job_id = '{ahead[0]}'") == [
            ("completed",)
        ]


def test_a_lag_that_goes_on_for_several_runs_is_warned_of_once_a_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(jobs=40, seed=5, now=NOW, spacing=timedelta(minutes=15), events_lag=timedelta(days=30))
    for _ in serve(monkeypatch, world):
        summaries = [load() for _ in range(3)]
        lagging = [line for line in summaries[-1].warnings() if "another status than the job list" in line]
        assert len(lagging) == 1 and "listed completed" in lagging[0]
        assert not any("another status than the job list" in line for line in summaries[1].warnings())
        assert expected_metrics(world)  # the metrics are unaffected by the events' lag

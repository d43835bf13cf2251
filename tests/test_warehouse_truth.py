"""The warehouse, not dlt's local working folder, is the truth: deleting it starts over, restoring a backup loads
what the backup lacks, and lying clocks (a server's or the host's) never freeze a model or switch re-checks off."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from tests.support import NOW, Fake, cli, expected_events, query, warehouse_events

WAREHOUSE = Path("cohere_events.duckdb")

KILL_AFTER_EXTRACT = """
import os, signal, sys
from pipelines.runner import make_pipeline
from pipelines.providers.cohere.source import cohere_finetuning
pipeline = make_pipeline()
pipeline.extract(cohere_finetuning(api_key=sys.argv[1], base_url=sys.argv[2], requests_per_minute=0))
os.kill(os.getpid(), signal.SIGKILL)
"""


def assert_exact(world: World) -> None:
    rows = warehouse_events()
    assert len(rows) == len(set(rows)), "duplicate events in the warehouse"
    assert set(rows) == expected_events(world)


def expected_metrics(world: World) -> set[tuple[str, int, str]]:
    return {
        (model_id, step, name)
        for model_id in world.models
        for step, _, values in world.metrics_of(model_id)
        for name in values
    }


def warehouse_metrics() -> list[tuple[str, int, str]]:
    sql = "select finetuned_model_id, step_number, metric from cohere_finetuning.training_step_metrics"
    return [(str(m), int(s), str(n)) for m, s, n in query(sql)]


def new_event(fake: Fake, index: int = 0, seconds: int = 5) -> None:
    """A status change after a model's newest event (the record moves with it)."""
    model = [m for m in fake.world.models.values() if fake.world.events_of(m.id)][index]
    newest = fake.world.events_of(model.id)[-1].created_at
    fake.world.add_event(model.id, "STATUS_PAUSED", min(fake.world.now, newest + timedelta(seconds=seconds)))


def kill_after_extract(fake: Fake) -> None:
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_EXTRACT, DEFAULT_API_KEY, fake.url], check=False)
    assert killed.returncode == -signal.SIGKILL


def test_dropping_the_dataset_then_creating_views_then_running_reloads_everything(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    WAREHOUSE.unlink()
    assert cli("views").exit_code == 2 and not WAREHOUSE.exists()  # no warehouse: views makes none
    assert cli("run").exit_code == 0
    with duckdb.connect(str(WAREHOUSE)) as con:
        con.execute("drop schema cohere_finetuning cascade")
    assert cli("views").exit_code == 0  # makes the dataset, without dlt's state
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    models = len(fake.world.model_list())
    assert f"fetched {models} models, skipped 0 unchanged" in result.stdout
    assert "every model is read from the start" in result.stderr
    assert_exact(fake.world)
    assert sorted(warehouse_metrics()) == sorted(expected_metrics(fake.world))


def test_deleting_the_warehouse_alone_reloads_everything(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    WAREHOUSE.unlink()
    assert cli("run").exit_code == 0
    assert_exact(fake.world)


def test_a_package_left_for_a_deleted_warehouse_is_not_loaded_into_the_new_one(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    new_event(fake)
    kill_after_extract(fake)  # a package holding one new event, and state that assumes every earlier one
    WAREHOUSE.unlink()
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "discarded an interrupted run's load package" in result.stderr
    assert_exact(fake.world)
    total = len(expected_events(fake.world))
    assert f"{total} new events" in result.stdout


def test_a_pending_package_counts_its_events_as_new(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    new_event(fake, 0)
    new_event(fake, 1)
    kill_after_extract(fake)
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "finished an interrupted earlier load first" in result.stdout
    assert "2 new events" in result.stdout, result.stdout
    assert_exact(fake.world)


def test_restoring_a_backup_is_exact_after_one_run(fake: Fake, workdir: Path) -> None:
    training = next(m.id for m in fake.world.models.values() if len(fake.world.metrics_of(m.id)) > 4)
    _, last_step_at, _ = fake.world.metrics_of(training)[-1]
    fake.world.now = last_step_at - timedelta(seconds=1)  # part-way through its training
    assert cli("run").exit_code == 0
    shutil.copy(WAREHOUSE, workdir / "backup.duckdb")
    fake.world.now = last_step_at + timedelta(seconds=1)  # more steps ...
    new_event(fake, 0)  # ... and two new events
    new_event(fake, 1)
    assert cli("run").exit_code == 0
    assert_exact(fake.world)
    shutil.copy(workdir / "backup.duckdb", WAREHOUSE)
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert_exact(fake.world)
    assert sorted(warehouse_metrics()) == sorted(expected_metrics(fake.world))


def test_a_future_dated_event_does_not_freeze_its_model(workdir: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # the run's own clock is one of the clocks it trusts
    world = World(models=6, seed=5, now=now)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        model = next(m for m in world.models.values() if world.events_of(m.id))
        assert cli("run", env=env).exit_code == 0
        world.add_event(model.id, "STATUS_PAUSED", now + timedelta(days=1), skewed=True)  # a server clock ahead
        result = cli("run", env=env)
        assert result.exit_code == 0, result.stderr
        assert f"model {model.id} has an event dated" in result.stderr
        assert result.stderr.count("after the API's clock") == 1
        world.now += timedelta(hours=1)
        world.add_event(model.id, "STATUS_READY", world.now)  # a real later event, an hour on
        assert cli("run", env=env).exit_code == 0
        assert_exact(world)


# A run as cron starts it, on a host whose clock runs ``sys.argv[1]`` seconds ahead.
RUN_WITH_SHIFTED_CLOCK = """
import sys, time
shift = float(sys.argv[1])
real = time.time
time.time = lambda: real() + shift
from pipelines.cli import main
sys.argv = ["cohere-events", *sys.argv[2:]]
main()
"""


def run_shifted(fake: Fake, seconds: float, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUN_WITH_SHIFTED_CLOCK, str(seconds), "run", "--requests-per-minute", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_a_run_with_the_host_clock_ahead_does_not_switch_rechecks_off(fake: Fake) -> None:
    assert run_shifted(fake, 30 * 86400).returncode == 0
    models = len(fake.world.model_list())
    before = fake.api.stats.by_kind["list_events"]
    result = cli("run", "--recheck-hours", "0")
    assert result.exit_code == 0, result.stderr
    assert fake.api.stats.by_kind["list_events"] - before == models, "--recheck-hours 0 must re-read every model"
    assert run_shifted(fake, 30 * 86400).returncode == 0
    before = fake.api.stats.by_kind["list_events"]
    assert cli("run").exit_code == 0
    assert fake.api.stats.by_kind["list_events"] - before == models, "a mark from the future counts as due"


def test_a_retrained_model_replaces_its_training_curve(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    model = next(m for m in fake.world.models.values() if len(fake.world.metrics_of(m.id)) > 10)
    old = dict(((s, n), v) for s, _, values in fake.world.metrics_of(model.id) for n, v in values.items())
    fake.world.retrain(model.id, fake.world.now + timedelta(minutes=1))
    fake.world.now += timedelta(minutes=40)  # a few steps of the new run, below the old highest step
    new = fake.world.metrics_of(model.id)
    assert 0 < len(new) < len(old) and new[-1][0] < max(step for step, _ in old)
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "newest first" not in result.stderr
    assert "1 model started training again" in result.stderr
    stored = query(
        "select step_number, metric, value, created_at from cohere_finetuning.training_step_metrics "
        f"where finetuned_model_id = '{model.id}'"
    )
    served = {(s, n, v, at) for s, at, values in new for n, v in values.items()}
    assert {(s, n, v, at.astimezone(UTC)) for s, n, v, at in stored} == served
    fake.world.now += timedelta(hours=2)  # the new run goes on: its later steps load as usual
    assert cli("run").exit_code == 0
    assert len(
        query(f"select * from cohere_finetuning.training_step_metrics where finetuned_model_id = '{model.id}'")
    ) == sum(len(values) for _, _, values in fake.world.metrics_of(model.id))


def test_metrics_of_a_model_in_an_unspecified_status_are_loaded(workdir: Path) -> None:
    world = World(models=12, seed=3, now=NOW)
    model = next(m for m in world.models.values() if world.metrics_of(m.id))
    world.add_event(model.id, "STATUS_UNSPECIFIED", world.events_of(model.id)[-1].created_at + timedelta(seconds=1))
    with FakeApiServer(FakeCohereApi(world)) as server:
        result = cli("run", "--page-size", "2", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 0, result.stderr
    assert "newest first" not in result.stderr, "a first read pages to the end: its order is no concern"
    assert sorted(warehouse_metrics()) == sorted(expected_metrics(world))


def test_runs_without_metrics_leave_the_metrics_rechecks_due(fake: Fake) -> None:
    """Runs with --no-metrics re-check events only: the metrics re-checks that fell due meanwhile still happen."""
    assert cli("run").exit_code == 0
    assert run_shifted(fake, 25 * 3600, "--no-metrics").returncode == 0  # a day on: every re-check due, events only
    before = fake.api.stats.by_kind["list_metrics"]
    assert run_shifted(fake, 25 * 3600 + 60).returncode == 0
    trained = [m for m in fake.world.model_list() if m.get("status") != "STATUS_QUEUED"]
    assert fake.api.stats.by_kind["list_metrics"] - before == len(trained)

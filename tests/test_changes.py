"""Runs cost what changed: unchanged models are skipped, changed, new and late-written ones are read, every model
is re-checked once per period, and what was seen commits only with a load."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.changes import ModelRef, Rechecks, Seen, SeenModels
from pipelines.config import pipelines_dir
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from pipelines.providers.cohere.source import what_to_read
from tests.support import NOW, Fake, cli, empty_model, expected_events, query, warehouse_events

DAY = 86400.0


def assert_exact(world: World) -> None:
    rows = warehouse_events()
    assert len(rows) == len(set(rows)), "duplicate events in the warehouse"
    assert set(rows) == expected_events(world)


def requests_of(fake: Fake, kind: str) -> int:
    return fake.api.stats.by_kind.get(kind, 0)


def training(world: World) -> int:
    """Models the list shows in FINETUNING: their metrics are read on every run."""
    return sum(1 for body in world.model_list() if body.get("status") == "STATUS_FINETUNING")


def test_a_no_change_run_requests_only_the_list_and_the_metrics_of_models_in_training(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    before = dict(fake.api.stats.by_kind)
    result = cli("run", "--page-size", "10")
    assert result.exit_code == 0, result.stderr
    models = len(fake.world.models)
    assert requests_of(fake, "list_models") - before["list_models"] == -(-models // 10)
    assert requests_of(fake, "list_events") == before["list_events"], "an unchanged model's events were read"
    assert requests_of(fake, "list_metrics") - before["list_metrics"] == training(fake.world)
    assert f"fetched 0 models, skipped {models} unchanged" in result.stdout
    assert_exact(fake.world)


def test_changed_new_and_late_written_models_are_read(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    changed, late, *_ = [m for m in fake.world.models.values() if len(fake.world.events_of(m.id)) >= 3]
    newest = fake.world.events_of(changed.id)[-1].created_at
    fake.world.add_event(changed.id, "STATUS_PAUSED", min(NOW, newest + timedelta(seconds=5)), user_id="u-1")
    written = fake.world.events_of(late.id)
    # Written late: older than the model's newest event, so its status stays; the API moves updated_at.
    fake.world.add_event(late.id, "STATUS_TEMPORARILY_OFFLINE", written[-1].created_at - timedelta(seconds=30))
    empty_model(fake.world, "model-new")
    fake.world.add_event("model-new", "STATUS_QUEUED", NOW - timedelta(minutes=5))
    before = requests_of(fake, "list_events")
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert requests_of(fake, "list_events") - before == 3
    assert "fetched 3 models" in result.stdout
    assert_exact(fake.world)


def test_a_model_whose_record_never_moves_is_caught_by_its_recheck(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    model = next(m for m in fake.world.models.values() if len(fake.world.events_of(m.id)) >= 2)
    events = fake.world.events_of(model.id)
    # A late event written without moving the record: only the periodic re-check can find it.
    fake.world.add_event(model.id, events[-2].status, events[-1].created_at - timedelta(seconds=1))
    model.written_at = None
    assert cli("run").exit_code == 0
    assert set(warehouse_events()) != expected_events(fake.world), "the silent change should wait for its re-check"
    assert cli("run", "--recheck-hours", "0").exit_code == 0  # every model is due at once
    assert_exact(fake.world)


def test_rechecks_come_once_per_period_spread_over_the_runs() -> None:
    """Half-hourly runs over two days after one full read: each model is re-read once in each period, and each
    run re-reads a small share of the fleet, not all of it at once."""
    models = [ModelRef(f"model-{index}", "STATUS_READY", "2026-01-01T00:00:00Z") for index in range(2000)]
    start = 1_800_000_000.0
    reads = dict.fromkeys((model.id for model in models), 0)
    busiest = 0
    for run in range(1, 97):
        rechecks = Rechecks(DAY, now=start + run * 1800, last_full_listing=start + (run - 1) * 1800)
        due = [model for model in models if rechecks.due(model.id)]
        busiest = max(busiest, len(due))
        for model in due:
            reads[model.id] += 1
    assert set(reads.values()) == {2}
    assert busiest <= 0.05 * len(models)


def test_what_a_run_reads_of_a_model() -> None:
    model = ModelRef("m", "STATUS_READY", "2026-01-01T00:00:00Z")
    seen = Seen(cursor=1, events=model.fingerprint, step=40, metrics=model.fingerprint)
    now = 1_800_000_000.0
    rechecks = Rechecks(DAY, now=now, last_full_listing=now - 1)
    assert rechecks.slot("m", now) == rechecks.slot("m", now - 1), "pick a moment away from m's re-check"
    quiet = what_to_read(model, seen, rechecks, always=False)
    assert (quiet.events, quiet.metrics) == (False, False)
    for changed in (ModelRef("m", "STATUS_DELETED", model.updated_at), ModelRef("m", "STATUS_READY", "2026-01-02")):
        read = what_to_read(changed, seen, rechecks, always=False)
        assert (read.events, read.metrics) == (True, True)
    unknown = what_to_read(ModelRef("m", "STATUS_READY", None), seen, rechecks, always=False)
    assert (unknown.events, unknown.metrics) == (True, True)
    assert what_to_read(model, Seen(), rechecks, always=False).events  # new
    assert what_to_read(model, seen, Rechecks(DAY, now=now, last_full_listing=now - 1, full=True)).events
    assert what_to_read(model, seen, rechecks, always=True).metrics  # --model-id
    training = ModelRef("m", "STATUS_FINETUNING", model.updated_at)
    seen_training = Seen(cursor=1, events=training.fingerprint, step=40, metrics=training.fingerprint)
    read = what_to_read(training, seen_training, rechecks, always=False)
    assert (read.events, read.metrics) == (False, True)  # its metrics grow while its record stays the same
    assert not what_to_read(ModelRef("m", "STATUS_QUEUED", None), Seen(), rechecks, always=True).metrics


def test_seen_models_pack_into_one_short_string_and_take_over_old_cursors() -> None:
    state: dict[str, object] = {}
    events_state: dict[str, object] = {"cursors": {"old": "2026-03-01T00:00:00.000123+00:00"}}
    seen = SeenModels(state, events_state)
    assert "cursors" not in events_state
    assert seen.get("old") == Seen(cursor=1772323200000123)
    seen.update("new", step=-1, metrics="abc")
    seen.update("new", cursor=5, events="def")
    assert state["models"] == {"old": "1772323200000123|||", "new": "5|def|-1|abc"}
    assert seen.get("new") == Seen(5, "def", -1, "abc") and seen.cursors() == 2


def test_full_and_model_id_read_unchanged_models(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    models = len(fake.world.models)
    before = requests_of(fake, "list_events")
    result = cli("run", "--full")
    assert result.exit_code == 0, result.stderr
    assert requests_of(fake, "list_events") - before == models
    assert f"fetched {models} models, skipped 0 unchanged" in result.stdout
    chosen = next(iter(fake.world.models))
    before = requests_of(fake, "list_events")
    assert cli("run", "--model-id", chosen).exit_code == 0
    assert requests_of(fake, "list_events") - before == 1
    assert_exact(fake.world)


KILL_AFTER_EXTRACT = """
import os, signal, sys
from pipelines.runner import make_pipeline
from pipelines.providers.cohere.source import cohere_finetuning
pipeline = make_pipeline()
pipeline.extract(cohere_finetuning(api_key=sys.argv[1], base_url=sys.argv[2], requests_per_minute=0))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_after_extraction_marks_nothing_as_seen(fake: Fake, workdir: Path) -> None:
    """The marks travel in the load package's state: if the package is lost (an ephemeral cron host), the next run
    restores the committed state from the warehouse and reads the changed models again."""
    assert cli("run").exit_code == 0
    model = next(iter(fake.world.models.values()))
    newest = fake.world.events_of(model.id)[-1].created_at
    fake.world.add_event(model.id, "STATUS_PAUSED", min(NOW, newest + timedelta(seconds=5)), user_id="u-1")
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_EXTRACT, DEFAULT_API_KEY, fake.url], check=False)
    assert killed.returncode == -signal.SIGKILL
    shutil.rmtree(pipelines_dir("duckdb"))  # the extracted package and the local state go with the host
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "fetched 1 model" in result.stdout
    assert_exact(fake.world)


# The CLI as cron runs it, with events handed to dlt a page at a time and a deadline after which every thread's
# stack is written out and the run ends: a deadlock becomes a failed test that shows where each thread waits.
RUN_WITH_SMALL_BATCHES = """
import faulthandler, sys
faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
from pipelines import extract
extract.BATCH_ROWS = 2
from pipelines.cli import app
app(sys.argv[2:], prog_name="cohere-events")
"""
HANG_DEADLINE = 45.0  # seconds; the run takes about 2 s


def test_a_reader_dlt_does_not_resume_never_stalls_the_other_pages_of_models(workdir: Path) -> None:
    """The deadlock of one events transformer call per page of models (before e5443b4), made certain.

    dlt runs at most ``extract.max_parallel_items`` futures at once (20 by default; 2 here) and, once it holds that
    many more sources than it started with, offers a free slot to the newest source first. Three pages of two
    models, concurrency 1 (two models paged at once, shared by every page):

    - page 1's producers take both model slots (the semaphore serves its waiters in order); pages 2 and 3 wait;
    - page 1's reader hands over a batch; its dlt slot goes to the model list, and the list's slot then to page 3,
      the newest source. dlt's two slots hold the readers of pages 2 and 3, which wait for rows that need a model
      slot, and dlt's main thread waits in ``_wait_for_free_slot`` to resume page 1's reader;
    - page 1's producers fill its queue of 64 tables (each model has 50 pages of events) and wait there, holding
      both model slots. Nothing moves again.

    The run must finish, and load every event exactly once.
    """
    world = World(models=0, now=NOW)
    for index in range(6):
        empty_model(world, f"model-{index}")
        long_history = index < 2  # the first page: more pages of events than a queue holds
        for minute in range(100 if long_history else 2):
            world.add_event(f"model-{index}", "STATUS_PAUSED", NOW - timedelta(days=10) + timedelta(minutes=minute))
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {**os.environ, "CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        env["EXTRACT__MAX_PARALLEL_ITEMS"] = "2"  # dlt's 20 at once, made small: 3 pages of models are enough
        args = ["run", "--page-size", "2", "--concurrency", "1", "--requests-per-minute", "0"]
        started = time.monotonic()
        try:
            run = subprocess.run(
                [sys.executable, "-c", RUN_WITH_SMALL_BATCHES, str(HANG_DEADLINE), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=HANG_DEADLINE + 30,  # only if the deadline inside the run failed to end it
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run neither finished nor ended itself after {HANG_DEADLINE + 30:.0f} s")
    seconds = time.monotonic() - started
    if "Timeout (" in run.stderr:
        pytest.fail(
            f"the run hung: still running after {HANG_DEADLINE:.0f} s, {server.api.stats.requests} requests in; "
            f"where each thread waited:\n{run.stderr[-6000:]}",
            pytrace=False,
        )
    assert run.returncode == 0, (run.stderr[-3000:], seconds)
    assert "loaded 6 models, 208 new events" in run.stdout, run.stdout
    assert_exact(world)


def test_the_warehouse_keeps_only_the_newest_copies_of_the_state(fake: Fake, workdir: Path) -> None:
    """dlt stores the whole state (a cursor per model) again with every load; old copies are deleted, and the
    newest one still brings a new host up to date."""
    for minutes in range(1, 6):
        model = list(fake.world.models.values())[minutes]
        newest = fake.world.events_of(model.id)[-1].created_at
        fake.world.add_event(model.id, "STATUS_PAUSED", min(NOW, newest + timedelta(seconds=minutes)))
        assert cli("run").exit_code == 0
    copies = query("select count(*) from cohere_finetuning._dlt_pipeline_state")[0][0]
    assert copies == 3
    shutil.rmtree(pipelines_dir("duckdb"))  # a new cron host: dlt restores the state from the warehouse
    before = requests_of(fake, "list_events")
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert requests_of(fake, "list_events") == before
    assert_exact(fake.world)


LEGACY_WAREHOUSE = Path(__file__).parent / "fixtures" / "warehouse-4f722e5.duckdb.gz"


def test_a_warehouse_loaded_before_the_upgrade_keeps_loading_exactly(fake: Fake, workdir: Path) -> None:
    """The warehouse that commit 4f722e5 (the last release before skipping unchanged models) loaded from this
    world, with its state (event cursors only): the upgrade's first run reads each model from its cursor, no more,
    adds the new events and the metrics, and writes no duplicate."""
    with gzip.open(LEGACY_WAREHOUSE) as packed, open(workdir / "cohere_events.duckdb", "wb") as unpacked:
        shutil.copyfileobj(packed, unpacked)
    before = set(warehouse_events())
    model = next(iter(fake.world.models.values()))
    newest = fake.world.events_of(model.id)[-1].created_at
    fake.world.add_event(model.id, "STATUS_PAUSED", min(NOW, newest + timedelta(seconds=5)), user_id="u-1")
    assert before == expected_events(fake.world) - {
        (model.id, min(NOW, newest + timedelta(seconds=5)), "STATUS_PAUSED", "u-1")
    }
    result = cli("run", "--page-size", "100")
    assert result.exit_code == 0, result.stderr
    assert "loaded 25 models, 1 new event," in result.stdout
    assert requests_of(fake, "list_events") == len(fake.world.models)  # one page each: from the old cursors
    assert_exact(fake.world)
    assert query("select count(*) from cohere_finetuning.training_step_metrics")[0][0] > 0
    again = cli("run")
    assert again.exit_code == 0 and "fetched 0 models" in again.stdout
    assert_exact(fake.world)


PREVIOUS_RELEASE = Path(__file__).parent / "fixtures" / "warehouse-7e1668f-pending.tar.gz"


def test_a_warehouse_and_local_state_of_the_previous_release_with_a_pending_package_keep_loading_exactly(
    fake: Fake, workdir: Path
) -> None:
    """What 7e1668f (the release before the warehouse became the truth) left: a warehouse that loaded this world,
    its dlt working folder, and a load package from a run killed after extracting one new event. The upgrade's first
    run finishes that package (its state is the one right after the warehouse's), then reads nothing more."""
    import json
    import tarfile

    with tarfile.open(PREVIOUS_RELEASE) as packed:
        packed.extractall(workdir, filter="data")
    (old_folder,) = (workdir / ".dlt-data" / "pipelines").iterdir()
    old_folder.rename(pipelines_dir("duckdb"))  # the folder is named after the warehouse's absolute path
    state_file = pipelines_dir("duckdb") / "cohere_events" / "state.json"
    state = json.loads(state_file.read_text())
    state["_local"]["initial_cwd"] = str(workdir)  # where the previous release ran from: another temporary folder
    state_file.write_text(json.dumps(state))
    model = next(iter(fake.world.models.values()))
    newest = fake.world.events_of(model.id)[-1].created_at
    fake.world.add_event(model.id, "STATUS_PAUSED", min(NOW, newest + timedelta(seconds=5)), user_id="u-1")
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "finished an interrupted earlier load first" in result.stdout
    assert "discarded" not in result.stderr
    assert_exact(fake.world)
    again = cli("run")
    assert again.exit_code == 0 and "fetched 0 models" in again.stdout, again.stdout
    assert_exact(fake.world)

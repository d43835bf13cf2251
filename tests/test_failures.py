"""Every bad input gets a clear one-line error, the contract's exit status, and loses nothing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer

from pipelines.cli import guarded
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, Faults, World
from tests.support import NOW, Fake, cli, cli_process, expected_events, loaded_tables, warehouse_events


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_no_key_exits_2_saying_where_to_put_it(workdir: Path) -> None:
    result = cli("run")
    assert result.exit_code == 2
    assert "no Cohere API key" in result.stderr and "CO_API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_key_from_dlt_secrets_toml_is_used(fake: Fake, workdir: Path, monkeypatch) -> None:
    monkeypatch.delenv("CO_API_KEY")
    secrets = workdir / ".dlt" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text(f'[sources.cohere_finetuning]\napi_key = "{DEFAULT_API_KEY}"\n')
    # A new process, as cron starts one: dlt reads .dlt/ in the working folder when it first loads its config.
    run = cli_process("run", env={"CO_API_URL": fake.url}, cwd=workdir)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "loaded 25 models" in out


def test_a_refused_key_exits_3_without_echoing_it(fake: Fake) -> None:
    wrong = "wrong-key-0123456789abcdef"
    result = cli("run", env={"CO_API_KEY": wrong})
    assert result.exit_code == 3
    assert wrong not in result.stdout + result.stderr
    assert last_line(result.stderr) == "error: the API refused the key (HTTP 401): check CO_API_KEY"
    assert loaded_tables() == []


def test_bad_options_exit_2(fake: Fake) -> None:
    assert cli("run", "--page-size", "0").exit_code == 2
    assert "--page-size" in cli("run", "--page-size", "0").stderr
    assert cli("run", "--no-such-option").exit_code == 2
    assert cli("run", "--concurrency", "many").exit_code == 2
    lake = cli("run", "--destination", "filesystem")
    assert lake.exit_code == 2 and "cohere-events export DIR" in lake.stderr


def test_the_retired_api_is_named_as_such(workdir: Path) -> None:
    for status in (404, 410):
        api = FakeCohereApi(World(models=3, now=NOW), faults=Faults(retired=status))
        with FakeApiServer(api) as server:
            result = cli("run", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
        assert result.exit_code == 1
        assert "retired fine-tuning on 2025-09-15" in last_line(result.stderr)
        assert f"HTTP {status}" in last_line(result.stderr)


def test_a_model_whose_events_404_is_reported_and_skipped(fake: Fake) -> None:
    gone = next(iter(fake.world.models))
    fake.api.inject(f"{gone}/events", 404)
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert f"events of model {gone} not found" in result.stdout
    loaded = {row[0] for row in warehouse_events()}
    assert gone not in loaded and len(loaded) == len(fake.world.models) - 1
    assert cli("run").exit_code == 0  # no cursor was stored for it: the next run loads its whole history
    assert set(warehouse_events()) == expected_events(fake.world)


def test_429_5xx_and_408_are_retried_and_counted(fake: Fake) -> None:
    first, second = list(fake.world.models)[:2]
    fake.api.inject("/finetuned-models", 503)  # the model list
    fake.api.inject(f"{first}/events", 429, 429, 500)
    fake.api.inject(f"{second}/events", 408, 502)
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "6 retries" in result.stdout
    assert set(warehouse_events()) == expected_events(fake.world)


def test_timeouts_are_retried(fake: Fake) -> None:
    fake.api.stall_seconds = 3
    fake.api.inject(f"{next(iter(fake.world.models))}/events", "timeout")
    result = cli("run", "--timeout", "0.5", "--requests-per-minute", "500")  # no other request near the stall
    assert result.exit_code == 0, result.stderr
    assert "1 retry" in result.stdout
    assert set(warehouse_events()) == expected_events(fake.world)


def test_retries_are_bounded(fake: Fake) -> None:
    model = next(iter(fake.world.models))
    fake.api.inject(f"{model}/events", *[429] * 8)
    result = cli("run")
    assert result.exit_code == 1
    assert f"HTTP 429 for model {model}, page 1" in last_line(result.stderr)
    assert "gave up after 8 attempts" in last_line(result.stderr)


def test_a_malformed_page_fails_naming_model_and_page_and_commits_nothing(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    before = warehouse_events()
    fake.world.advance(5 * 86400)
    model = next(m for m in fake.world.models if len(fake.world.events_of(m)) > 3)
    fake.api.inject(f"{model}/events", "malformed")
    result = cli("run", "--page-size", "2", "--full")
    assert result.exit_code == 1
    assert last_line(result.stderr) == f"error: malformed JSON in the response for model {model}, page 1"
    assert sorted(warehouse_events()) == sorted(before)
    assert cli("run").exit_code == 0  # and the next run catches up completely
    assert set(warehouse_events()) == expected_events(fake.world)


def test_an_unparseable_timestamp_fails_naming_model_and_page(fake: Fake) -> None:
    model = next(iter(fake.world.models.values()))
    model.events[0].digits = 3
    original = model.events[0].to_json

    def broken() -> dict[str, object]:
        return {**original(), "created_at": "yesterday at noon"}

    model.events[0].to_json = broken  # type: ignore[method-assign]
    result = cli("run")
    assert result.exit_code == 1
    assert f"malformed created_at in model {model.id}, page 1" in last_line(result.stderr)
    assert "yesterday at noon" in last_line(result.stderr)


def test_a_second_run_while_one_holds_the_warehouse_exits_4(workdir: Path) -> None:
    api = FakeCohereApi(World(models=40, seed=2, now=NOW), latency_ms=150)
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "DLT_DATA_DIR": os.environ["DLT_DATA_DIR"]}
        first = cli_process("run", "--concurrency", "2", env=env, cwd=workdir)
        wait_for(lambda: api.stats.requests > 0)
        started = time.monotonic()
        second = cli_process("run", env=env, cwd=workdir)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 4
        assert time.monotonic() - started < 30
        assert "another cohere-events run holds the warehouse lock (pid" in last_line(err)
        assert first.wait(timeout=120) == 0
    assert set(warehouse_events()) == expected_events(api.world)


def test_a_run_killed_during_extraction_is_completed_by_the_next(workdir: Path) -> None:
    api = FakeCohereApi(World(models=40, seed=4, now=NOW), latency_ms=100)
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "DLT_DATA_DIR": os.environ["DLT_DATA_DIR"]}
        victim = cli_process("run", "--concurrency", "2", env=env, cwd=workdir)
        wait_for(lambda: api.stats.requests > 10)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        api.latency = 0
        api.world.advance(86400)
        result = cli("run", env=env)
    assert result.exit_code == 0, result.stderr
    assert set(warehouse_events()) == expected_events(api.world)


KILL_AFTER_EXTRACT = """
import os, signal, sys
from pipelines.runner import make_pipeline
from pipelines.providers.cohere.source import cohere_finetuning
pipeline = make_pipeline()
pipeline.extract(cohere_finetuning(api_key=sys.argv[1], base_url=sys.argv[2], requests_per_minute=0))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_after_extraction_is_loaded_then_new_data_extracted(workdir: Path) -> None:
    world = World(models=20, seed=6, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        killed = subprocess.run(
            [sys.executable, "-c", KILL_AFTER_EXTRACT, DEFAULT_API_KEY, server.url], cwd=workdir, check=False
        )
        assert killed.returncode == -signal.SIGKILL
        assert loaded_tables() == []
        world.advance(2 * 86400)
        result = cli("run", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 0, result.stderr
    assert "finished an interrupted earlier load first" in result.stdout
    rows = warehouse_events()
    assert len(rows) == len(set(rows))
    assert set(rows) == expected_events(world)


def test_demo_refuses_a_warehouse_that_the_real_api_loaded(workdir: Path) -> None:
    real_looking = FakeCohereApi(World(models=5, now=NOW), announce_simulated=False)
    with FakeApiServer(real_looking) as server:
        assert cli("run", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}).exit_code == 0
    before = warehouse_events()
    result = cli("demo")
    assert result.exit_code == 2
    assert "holds real Cohere data; refusing to load simulated data" in last_line(result.stderr)
    assert str(workdir / "cohere_events.duckdb") in last_line(result.stderr)
    assert sorted(warehouse_events()) == sorted(before)


def test_run_refuses_to_mix_real_data_into_a_demo_warehouse(workdir: Path) -> None:
    assert cli("demo", "--models", "5").exit_code == 0
    real_looking = FakeCohereApi(World(models=5, now=NOW), announce_simulated=False)
    with FakeApiServer(real_looking) as server:
        result = cli("run", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 2
    assert "holds simulated Cohere data" in last_line(result.stderr)


def wait_for(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def run_with_stdout(fake: Fake, workdir: Path, stdout: Any) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pipelines.cli", "run", "--requests-per-minute", "0", "--log-file", "run.log"]
    return subprocess.run(command, cwd=workdir, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)


def test_a_committed_load_exits_0_and_logs_its_line_when_stdout_is_a_full_disk(fake: Fake, workdir: Path) -> None:
    with open("/dev/full", "w") as full:
        done = run_with_stdout(fake, workdir, full)
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "could not write to stdout" in done.stderr
    assert "exit=0 loaded 25 models" in (workdir / "run.log").read_text()
    assert set(warehouse_events()) == expected_events(fake.world)


def test_a_committed_load_exits_0_and_logs_its_line_when_the_reader_has_gone(fake: Fake, workdir: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = run_with_stdout(fake, workdir, writer)
    finally:
        os.close(writer)
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) <= 1
    assert "exit=0 loaded 25 models" in (workdir / "run.log").read_text()


def test_a_listed_model_without_a_usable_id_is_named_in_one_line(fake: Fake) -> None:
    for broken in ({"name": "no id"}, {"id": None, "name": "null id"}):
        fake.world.model_list = lambda broken=broken: [broken]  # type: ignore[method-assign]
        result = cli("run")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: malformed model in the model list, page 1: a model ")
        assert len(result.stderr.splitlines()) == 1
    assert fake.api.stats.by_kind.get("list_events", 0) == 0, "no request for /None/events"


def test_infinite_options_are_usage_errors(fake: Fake) -> None:
    for option in ("--recheck-hours", "--lookback", "--timeout"):
        for value in ("inf", "nan"):
            result = cli("run", option, value)
            assert result.exit_code == 2, (option, value, result.stderr)
            assert result.stderr.startswith(f"error: {option} must be a finite number"), result.stderr


def test_twin_events_at_page_size_1_are_not_taken_for_a_looping_server(fake: Fake) -> None:
    model = next(m for m in fake.world.models.values() if fake.world.events_of(m.id))
    moment = fake.world.events_of(model.id)[-1].created_at + timedelta(seconds=1)
    for _ in range(2):  # the API serves the same event twice: two identical pages of one
        fake.world.add_event(model.id, "STATUS_PAUSED", moment)
    result = cli("run", "--page-size", "1", "--model-id", model.id)
    assert result.exit_code == 0, result.stderr
    assert set(warehouse_events()) == {row for row in expected_events(fake.world) if row[0] == model.id}


def test_an_interrupted_command_that_loads_nothing_does_not_promise_a_load() -> None:
    def interrupted() -> str:
        raise KeyboardInterrupt

    for loads, words in ((False, "interrupted: stopped"), (True, "the next run completes the load")):
        stderr = io.StringIO()
        with pytest.raises(typer.Exit) as exited, redirect_stderr(stderr):
            guarded(interrupted, loads=loads)
        assert exited.value.exit_code == 130
        assert words in stderr.getvalue()
        if not loads:
            assert "next run" not in stderr.getvalue()

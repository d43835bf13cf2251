"""``cohere-events status``, and every reading command finding the warehouse exactly where ``run`` wrote it."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import config
from pipelines.export import MANIFEST
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY
from tests.support import Fake, cli, expected_events, query

SECRETS_GLOBAL_CONFIG = '[destination.duckdb.credentials]\nglobal_config = {memory_limit = "1GB"}\n'


EVERY_COMMAND = """
import json, sys
from typer.testing import CliRunner
from pipelines.cli import app
out = sys.argv[1]
commands = [
    ["run", "--requests-per-minute", "0"],
    ["report", "--format", "json"],
    ["export", out, "--tables", "events"],
    ["status", "--format", "json"],
]
results = [CliRunner().invoke(app, args) for args in commands]
print(json.dumps([[r.exit_code, r.stdout, r.stderr] for r in results]))
"""


def every_command(cwd: Path, out: Path) -> list[tuple[int, str, str]]:
    """``run``, ``report``, ``export`` and ``status`` in a fresh process, as dlt reads .dlt/secrets.toml once."""
    done = subprocess.run(
        [sys.executable, "-c", EVERY_COMMAND, str(out)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return [tuple(result) for result in json.loads(done.stdout.splitlines()[-1])]  # type: ignore[misc]


def status_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = cli("status", "--format", "json", *args, env=env)
    assert result.exit_code == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)  # nothing but JSON on stdout
    return found


def run() -> None:
    """One real load from the simulated API, in this process."""
    result = cli("run", "--requests-per-minute", "0")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("setting", ["global_config in secrets.toml", "credentials URL in the environment"])
def test_report_export_and_status_read_the_file_that_run_wrote(fake: Fake, workdir: Path, setting: str) -> None:
    out = workdir / "out"
    if setting.startswith("global_config"):
        (workdir / ".dlt").mkdir()
        (workdir / ".dlt" / "secrets.toml").write_text(SECRETS_GLOBAL_CONFIG)
        warehouse = workdir / "cohere_events.duckdb"
        results = every_command(workdir, out)
    else:
        warehouse = workdir / "elsewhere" / "wh.duckdb"
        warehouse.parent.mkdir()
        env = {"DESTINATION__DUCKDB__CREDENTIALS": f"duckdb:///{warehouse}"}  # duckdb:////abs/wh.duckdb
        commands = [
            ["run", "--requests-per-minute", "0"],
            ["report", "--format", "json"],
            ["export", str(out), "--tables", "events"],
            ["status", "--format", "json"],
        ]
        results = [(r.exit_code, r.stdout, r.stderr) for r in (cli(*args, env=env) for args in commands)]
    for code, _, stderr in results:
        assert code == 0, stderr
    assert warehouse.is_file()
    assert [p.name for p in workdir.glob("*.duckdb")] == ([warehouse.name] if warehouse.parent == workdir else [])
    events = len(expected_events(fake.world))
    assert json.loads(results[1][1])["warehouse"] == str(warehouse)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["warehouse"] == str(warehouse)
    assert manifest["tables"]["events"]["rows"] == events
    found = json.loads(results[3][1])
    assert (found["warehouse"], found["events"], found["models"]) == (str(warehouse), events, 25)
    assert found["local_state"] is True  # the same dlt working folder as the run's


@pytest.mark.parametrize("credentials", [":memory:", "duckdb:///:memory:"])
def test_a_duckdb_credential_without_a_file_is_one_clear_line(workdir: Path, credentials: str) -> None:
    for args in (["report"], ["export", str(workdir / "out")], ["status"]):
        result = cli(*args, env={"DESTINATION__DUCKDB__CREDENTIALS": credentials})
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "name no database file (:memory:)" in lines[0], (args, result.stderr)
    assert not (workdir / "out").exists()


def test_status_after_a_run_counts_what_the_warehouse_holds(fake: Fake, workdir: Path) -> None:
    run()
    requests = fake.api.stats.requests
    warehouse = workdir / "cohere_events.duckdb"
    expected = expected_events(fake.world)
    models_with_events = len({model for model, *_ in expected})
    (loaded_at,) = query("select max(inserted_at) from cohere_finetuning._dlt_loads where status = 0")[0]

    found = status_json()
    assert found["warehouse"] == str(warehouse) and found["warehouse_readable"] is True
    assert (found["destination"], found["dataset"]) == ("duckdb", "cohere_finetuning")
    assert (found["models"], found["events"], found["loads"]) == (25, len(expected), 1)
    assert found["models_with_cursor"] == models_with_events
    assert found["newest_event_at"] == max(c for _, c, _, _ in expected).isoformat().replace("+00:00", "Z")
    assert found["pending"] is False and found["pending_packages"] == []
    assert found["training_step_metrics"] is None or found["training_step_metrics"]["rows"] >= 0
    last = found["last_load"]
    assert last["loaded_at"] == loaded_at.isoformat().replace("+00:00", "Z")
    assert last["rows"]["finetuned_models"] == 25
    assert last["package_rows"]["events"] == len(expected)
    assert 0 <= last["age_seconds"] < 3600
    assert found["pipelines_dir"] == str(config.pipelines_dir("duckdb"))

    result = cli("status")
    assert result.exit_code == 0, result.stderr
    text = result.stdout.splitlines()
    assert text[0].startswith(f"warehouse        {warehouse}")
    assert f"models           25 ({models_with_events} with a cursor)" in text
    assert "pending          nothing" in text
    info = f"dlt pipeline --pipelines-dir {found['pipelines_dir']} cohere_events info"
    assert info in text and found["dlt_info_command"] == info
    assert text[-1].startswith("status: last load ") and text[-1].endswith("ago), nothing pending")
    assert fake.api.stats.requests == requests  # never asks the API

    dlt_cli = Path(sys.executable).with_name("dlt")  # dlt's own tool understands the line as printed
    done = subprocess.run(
        [str(dlt_cli), *shlex.split(info)[1:]], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Found pipeline cohere_events" in done.stdout and "initial_cwd: " + str(workdir) in done.stdout


KILL_AFTER_EXTRACT = """
import os, signal, sys
from pipelines.runner import make_pipeline
from pipelines.providers.cohere.source import cohere_finetuning
pipeline = make_pipeline()
pipeline.extract(cohere_finetuning(api_key=sys.argv[1], base_url=sys.argv[2], requests_per_minute=0))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_status_shows_the_package_a_killed_run_left_pending(fake: Fake, workdir: Path) -> None:
    run()
    fake.world.advance(86400)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_EXTRACT, DEFAULT_API_KEY, fake.url], cwd=workdir, timeout=120, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    found = status_json()
    assert found["pending"] is True and len(found["pending_packages"]) == 1
    assert found["loads"] == 1  # not loaded yet
    result = cli("status")
    assert f"pending          1 load package ({found['pending_packages'][0]})" in result.stdout
    assert result.stdout.strip().endswith("1 load package pending")

    run()  # the next run loads it, and status sees that
    found = status_json()
    assert (found["pending"], found["loads"]) == (False, 3)


def test_status_without_a_warehouse_is_a_usage_error_and_creates_nothing(fake: Fake, workdir: Path) -> None:
    result = cli("status")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: no warehouse at {workdir / 'cohere_events.duckdb'} (the default, in this folder): "
        "run `cohere-events run` (or `demo`) first"
    )
    assert sorted(path.name for path in workdir.iterdir()) == []
    assert cli("status", "--format", "yaml").exit_code == 2
    assert fake.api.stats.requests == 0


HOLD_RUN_LOCK = """
import sys
from pipelines import config
from pipelines.runner import warehouse_lock
with warehouse_lock(config.pipelines_dir("duckdb")):
    print("held", flush=True)
    sys.stdin.read()
"""
HOLD_DUCKDB_WRITER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_status_answers_while_a_run_holds_the_lock_or_the_file(fake: Fake, workdir: Path) -> None:
    run()
    warehouse = str(workdir / "cohere_events.duckdb")
    for script in (HOLD_RUN_LOCK, HOLD_DUCKDB_WRITER):
        holder = subprocess.Popen(
            [sys.executable, "-c", script, warehouse],
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert cli("run", "--requests-per-minute", "0").exit_code == 4  # the holder really blocks a run
            result = cli("status", "--format", "json")
            text = cli("status")
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=60)
        assert result.exit_code == 0 and text.exit_code == 0, result.stderr + text.stderr
        found = json.loads(result.stdout)
        assert found["models_with_cursor"] > 0 and found["last_load"] is not None
        if script is HOLD_RUN_LOCK:
            assert found["warehouse_readable"] is True and found["models"] == 25
        else:
            assert found["warehouse_readable"] is False and "locked by a writer" in found["warehouse_error"]
            assert found["models"] is None and found["last_load"]["source"] == "local trace"
            assert text.stdout.strip().endswith("; warehouse locked by a writer")


def test_status_reports_training_step_metrics_when_the_table_exists(fake: Fake, workdir: Path) -> None:
    run()
    import duckdb

    with duckdb.connect(str(workdir / "cohere_events.duckdb")) as con:  # as another change will load it
        con.execute(
            "create table if not exists cohere_finetuning.training_step_metrics as "
            "select 'm' as finetuned_model_id, 1::bigint as step_number, "
            "timestamptz '2026-11-20 10:00:00+00' as created_at, 'loss' as metric, 0.5::double as value"
        )
    found = status_json()
    metrics = found["training_step_metrics"]
    assert metrics["rows"] >= 1 and metrics["newest_created_at"] is not None
    if metrics["rows"] == 1:
        assert metrics["newest_created_at"] == "2026-11-20T10:00:00Z"
    assert found["last_load"]["age_seconds"] < timedelta(hours=1).total_seconds()


def test_status_polled_during_a_big_run_never_fails_it_and_tells_it_from_a_dead_one(workdir: Path) -> None:
    """A first run of 1,500 models, with `status` asked again and again until it ends: the run never fails for it,
    and every answer during the run says it is running (its pid, its start) and that nothing is pending."""
    from pipelines.providers.cohere.simulator import FakeApiServer, FakeCohereApi, World
    from tests.support import NOW, cli_process

    world = World(models=1500, seed=8, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        cli("run", "--model-id", next(iter(world.models)), env=env)  # the warehouse exists, so status answers
        victim = cli_process("run", "--requests-per-minute", "0", env=env, cwd=workdir)
        answers: list[dict[str, Any]] = []
        while victim.poll() is None:
            result = cli("status", "--format", "json")
            assert result.exit_code == 0, result.stderr
            answers.append(json.loads(result.stdout))
        _, err = victim.communicate()
    assert victim.returncode == 0, err
    during = [found for found in answers if found["running"]]
    assert len(during) >= 3, f"only {len(during)} of {len(answers)} answers came during the run"
    for found in during:
        assert found["run"]["pid"] == victim.pid and found["run"]["started_at"].endswith("Z")
        assert found["pending"] is False and found["pending_packages"] == []
    after = json.loads(cli("status", "--format", "json").stdout)
    assert after["running"] is False and after["run"] is None and after["pending"] is False

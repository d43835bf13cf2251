"""The DuckDB memory cap of a run holds, and a load still succeeds, however many threads DuckDB is told to use."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from pipelines.runner import (
    DUCKDB_GLOBAL_CONFIG,
    DUCKDB_LOAD_THREADS,
    DUCKDB_MEMORY_LIMIT_MB,
    DUCKDB_MEMORY_PER_THREAD_MB,
    duckdb_memory_cap,
    make_pipeline,
)
from tests.support import NOW, cli, expected_events, warehouse_events


def run_settings() -> tuple[int, str]:
    """DuckDB's threads and memory limit as a run's load sees them."""
    with duckdb_memory_cap("duckdb"), make_pipeline("duckdb").sql_client() as client:
        ((threads, memory),) = client.execute_sql("select current_setting('threads'), current_setting('memory_limit')")
    return int(threads), str(memory)


def mib(megabytes: int) -> str:
    """DuckDB's display of a limit set in MB (10^6 bytes): MiB cut to one decimal."""
    return f"{math.floor(megabytes * 1_000_000 / 2**20 * 10) / 10:.1f} MiB"


def test_the_load_runs_on_few_threads_whatever_the_core_count(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DUCKDB_GLOBAL_CONFIG, raising=False)
    assert run_settings() == (DUCKDB_LOAD_THREADS, mib(DUCKDB_MEMORY_LIMIT_MB))
    assert DUCKDB_GLOBAL_CONFIG not in os.environ  # for the run only


@pytest.mark.parametrize("threads", [16, 64])
def test_a_user_who_sets_many_threads_keeps_a_cap_and_loads_exactly(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    configured = f'{{"threads": {threads}}}'
    monkeypatch.setenv(DUCKDB_GLOBAL_CONFIG, configured)
    assert run_settings() == (threads, mib(threads * DUCKDB_MEMORY_PER_THREAD_MB))
    assert os.environ[DUCKDB_GLOBAL_CONFIG] == configured  # the user's setting is back after the run
    # a real load on that many threads: 60 models with long histories, loaded twice with new events between
    world = World(models=60, seed=21, now=NOW, long_history=150)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        first = cli("run", "--requests-per-minute", "0", env=env)
        assert first.exit_code == 0, first.stderr
        world.advance(2 * 86400)
        second = cli("run", "--requests-per-minute", "0", env=env)
        assert second.exit_code == 0, second.stderr
    loaded = warehouse_events()
    assert len(loaded) == len(set(loaded)) and set(loaded) == expected_events(world)


def test_the_users_memory_limit_is_theirs(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DUCKDB_GLOBAL_CONFIG, '{"memory_limit": "1GB", "threads": 3}')
    assert run_settings() == (3, mib(1000))


# A run as cron starts it, with the load's DuckDB cap squeezed to ``sys.argv[1]`` MB: a fleet-wide change then needs
# more than the cap, as 5,000 models needed more than 32 MB.
RUN_WITH_A_SMALL_CAP = """
import sys
from pipelines import runner
runner.DUCKDB_MEMORY_LIMIT_MB, runner.DUCKDB_MEMORY_PER_THREAD_MB = int(sys.argv[1]), 0
from pipelines.cli import main
sys.argv = ["cohere-events", "run", "--requests-per-minute", "0"]
main()
"""


def test_a_load_that_outgrows_the_cap_is_loaded_again_with_room_and_says_so(workdir: Path) -> None:
    world = World(models=1000, seed=11, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {**os.environ, "CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        first = subprocess.run(
            [sys.executable, "-c", RUN_WITH_A_SMALL_CAP, "32"], env=env, capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        assert world.fleet_change(7200) > 0  # two hours on: a status change across the fleet, and some late events
        second = subprocess.run(
            [sys.executable, "-c", RUN_WITH_A_SMALL_CAP, "2"], env=env, capture_output=True, text=True
        )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "did not fit DuckDB's memory cap for loads; it was loaded again with" in second.stderr
    assert len(second.stderr.splitlines()) == 1, "one line, not dlt's tracebacks of the first attempt"
    rows = warehouse_events()
    assert len(rows) == len(set(rows))
    assert set(rows) == expected_events(world)


def test_the_load_cap_grows_with_the_warehouse() -> None:
    """A fleet-wide change at 20,000 models ran out of 32 MB and loaded in 64 MB (bench/README.md)."""
    from pipelines.runner import duckdb_load_config, merge_cap_mb

    assert merge_cap_mb(0) == merge_cap_mb(5_000) == DUCKDB_MEMORY_LIMIT_MB
    assert merge_cap_mb(20_000) == 64
    assert merge_cap_mb(0, 999_999) == DUCKDB_MEMORY_LIMIT_MB and merge_cap_mb(20_000, 3_000_000) == 112
    assert duckdb_load_config({}, merge_cap_mb(20_000))["memory_limit"] == "64MB"
    assert (
        duckdb_load_config({"threads": 64}, merge_cap_mb(20_000))["memory_limit"]
        == f"{64 * DUCKDB_MEMORY_PER_THREAD_MB}MB"
    )

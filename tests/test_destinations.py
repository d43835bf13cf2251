"""The same job on another dlt destination: a real PostgreSQL server."""

from __future__ import annotations

import math
from datetime import UTC
from pathlib import Path

import psycopg2
import pytest

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from tests.postgres import run_tool
from tests.support import NOW, cli, expected_events


def postgres_events(url: str) -> list[tuple[object, ...]]:
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("select finetuned_model_id, created_at, status, user_id from cohere_finetuning.events")
        return list(cur.fetchall())


@pytest.mark.postgres
def test_run_loads_postgres_incrementally(workdir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("drop schema if exists cohere_finetuning cascade")
    world = World(models=12, seed=8, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        first = cli("run", "--destination", "postgres", env=env)
        assert first.exit_code == 0, first.stderr
        world.advance(3 * 86400)
        second = cli("run", "--destination", "postgres", env=env)
        assert second.exit_code == 0, second.stderr
    rows = postgres_events(postgres_url)
    assert len(rows) == len(set(rows))
    assert set(rows) == expected_events(world)
    assert not Path("cohere_events.duckdb").exists()
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("select count(*) from cohere_finetuning.model_lifecycle")
        assert cur.fetchone() == (12,)


@pytest.mark.postgres
def test_together_loads_postgres_with_the_same_views_as_duckdb(
    workdir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Together AI's tables and every view on a live PostgreSQL server hold what DuckDB's hold for the same API."""
    from datetime import timedelta

    from pipelines.providers.together.simulator import DEFAULT_API_KEY as TOGETHER_KEY
    from pipelines.providers.together.simulator import FakeTogetherApi
    from pipelines.providers.together.simulator import World as Jobs

    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("drop schema if exists together_finetuning cascade")
    world = Jobs(jobs=30, seed=4, now=NOW, oddities=True, spacing=timedelta(minutes=30))
    with FakeApiServer(FakeTogetherApi(world)) as server:
        env = {"TOGETHER_BASE_URL": server.url, "TOGETHER_API_KEY": TOGETHER_KEY}
        for destination in ("postgres", "duckdb"):
            done = cli("run", "--provider", "together", "--destination", destination, env=env)
            assert done.exit_code == 0, done.stderr
        world.advance(2 * 3600)
        for destination in ("postgres", "duckdb"):
            assert cli("run", "--provider", "together", "--destination", destination, env=env).exit_code == 0
    # open intervals run to the time of each query: compare what does not move
    queries = {
        "job_events": "select job_id, type, message, created_at, step from together_finetuning.job_events",
        "training_metrics": "select job_id, step, metric, value from together_finetuning.training_metrics",
        "status_intervals": "select job_id, interval_seq, status, entered_at, exited_at, n_events, entered_by, "
        "case when is_open then null else duration_seconds end from together_finetuning.status_intervals",
        "job_lifecycle": "select job_id, current_status, first_outcome, queue_seconds, setup_seconds, "
        "training_seconds, upload_seconds, restarts from together_finetuning.job_lifecycle",
        "failure_rates": "select * from together_finetuning.failure_rates",
        "failure_rates_weekly": "select * from together_finetuning.failure_rates_weekly",
        "phase_intervals": "select job_id, phase, phase_seq, started_at, ended_at, "
        "case when is_open then null else duration_seconds end from together_finetuning.phase_intervals",
        "status_duration_stats": "select status, closed_intervals, open_intervals, jobs, p50_seconds, p90_seconds "
        "from together_finetuning.status_duration_stats",
        "training_summary": "select * from together_finetuning.training_summary",
        "stale_jobs": "select job_id, current_status from together_finetuning.stale_jobs",
    }

    assert_same_rows(postgres_url, queries, may_be_empty={"stale_jobs"})


@pytest.mark.postgres
def test_openai_loads_postgres_with_the_same_views_as_duckdb(
    workdir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's tables and every view, its own included, on a live PostgreSQL server hold what DuckDB's hold."""
    from datetime import timedelta

    from pipelines.providers.openai.simulator import BASE_PATH, FakeOpenAiApi
    from pipelines.providers.openai.simulator import DEFAULT_API_KEY as OPENAI_KEY
    from pipelines.providers.openai.simulator import World as Jobs

    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_url)
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("drop schema if exists openai_finetuning cascade")
    world = Jobs(jobs=30, seed=4, now=NOW, oddities=True, spacing=timedelta(minutes=20))
    with FakeApiServer(FakeOpenAiApi(world)) as server:
        env = {"OPENAI_BASE_URL": server.url + BASE_PATH, "OPENAI_API_KEY": OPENAI_KEY}
        for _ in range(2):
            for destination in ("postgres", "duckdb"):
                done = cli("run", "--provider", "openai", "--destination", destination, env=env)
                assert done.exit_code == 0, done.stderr
            world.advance(2 * 3600)
    schema = "openai_finetuning"
    queries = {
        "job_events": f"select id, job_id, created_at, level, type, message, seq from {schema}.job_events",
        "training_metrics": f"select job_id, step, metric, value, logged_at from {schema}.training_metrics",
        "checkpoints": f"select * from {schema}.checkpoints",
        "status_intervals": "select job_id, interval_seq, status, entered_at, exited_at, n_events, entered_by, "
        f"case when is_open then null else duration_seconds end from {schema}.status_intervals",
        "job_lifecycle": "select job_id, current_status, current_since, first_outcome, validation_seconds, "
        "queue_seconds, training_seconds, time_to_succeed_seconds, created_to_finished_seconds "
        f"from {schema}.job_lifecycle",
        "failure_rates": f"select * from {schema}.failure_rates",
        "failure_rates_weekly": f"select * from {schema}.failure_rates_weekly",
        "failure_rates_by_base_model": f"select * from {schema}.failure_rates_by_base_model",
        "status_duration_stats": "select status, closed_intervals, open_intervals, jobs, p50_seconds, p90_seconds "
        f"from {schema}.status_duration_stats",
        "training_summary": f"select * from {schema}.training_summary",
        "stale_jobs": f"select job_id, current_status from {schema}.stale_jobs",
        "error_codes": f"select * from {schema}.error_codes",
        "trained_tokens": f"select * from {schema}.trained_tokens",
    }

    assert_same_rows(postgres_url, queries, may_be_empty={"stale_jobs"})


def comparable(row: tuple[object, ...]) -> tuple[object, ...]:
    """A row as PostgreSQL and DuckDB both give it: floats to 6 places (NaN as text), times in UTC, decimals as
    floats."""

    def one(value: object) -> object:
        if isinstance(value, float):
            return "NaN" if math.isnan(value) else round(value, 6)
        if hasattr(value, "astimezone"):
            return value.astimezone(UTC)  # type: ignore[attr-defined]
        return float(round(value, 6)) if type(value).__name__ == "Decimal" else value  # type: ignore[call-overload]

    return tuple(one(value) for value in row)


def assert_same_rows(postgres_url: str, queries: dict[str, str], may_be_empty: set[str]) -> None:
    """Each query gives the same rows (in any order) on the PostgreSQL server as on the DuckDB file, and some."""
    import duckdb

    with psycopg2.connect(postgres_url) as pg, pg.cursor() as cur, duckdb.connect("cohere_events.duckdb") as duck:
        for name, sql in queries.items():
            cur.execute(sql)
            in_postgres = sorted(map(comparable, cur.fetchall()), key=repr)
            in_duckdb = sorted(map(comparable, duck.execute(sql).fetchall()), key=repr)
            assert in_postgres == in_duckdb, name
            assert in_postgres or name in may_be_empty, name


def test_a_failing_postgres_tool_names_its_cause() -> None:
    """initdb and pg_ctl say why they failed on their last line: the test server's error must carry it."""
    script = "echo 'running bootstrap script ... ' >&2; echo 'initdb: error: could not open /dev/null' >&2; exit 1"
    with pytest.raises(RuntimeError, match=r"^sh failed \(exit 1\): initdb: error: could not open /dev/null$"):
        run_tool([], "sh", "-c", script)

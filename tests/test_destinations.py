"""The same job on another dlt destination: a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
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

"""The core pipeline end to end: real HTTP on 127.0.0.1 against the simulated API, real DuckDB files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import uvloop

from pipelines.loops import uvloop_event_loops
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, Faults, World
from pipelines.runner import DUCKDB_ROWS_PER_INSERT, duckdb_memory_cap, make_pipeline
from tests.support import NOW, Fake, ForwardProxy, cli, empty_model, expected_events, query, warehouse_events


def assert_warehouse_matches(fake: Fake) -> None:
    rows = warehouse_events()
    assert len(rows) == len(set(rows)), "duplicate events in the warehouse"
    assert set(rows) == expected_events(fake.world)


def test_full_load_equals_the_api_event_for_event(fake: Fake) -> None:
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert_warehouse_matches(fake)
    models = query("select count(*) from cohere_finetuning.finetuned_models")[0][0]
    assert models == len(fake.world.models)
    last_line = result.stdout.strip().splitlines()[-1]
    assert f"loaded {models} models, {len(expected_events(fake.world))} new events" in last_line
    assert "requests" in last_line and "retries" in last_line


def test_second_run_loads_new_and_late_events_without_duplicates(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    model = next(iter(fake.world.models.values()))
    newest = fake.world.events_of(model.id)[-1].created_at
    fake.world.add_event(model.id, "STATUS_TEMPORARILY_OFFLINE", newest + timedelta(minutes=5), digits=9)
    fake.world.add_event(model.id, "STATUS_READY", newest + timedelta(minutes=9), digits=0)
    # A late event: older than the cursor, inside the default one-hour lookback.
    fake.world.add_event(model.id, "STATUS_PAUSED", newest - timedelta(minutes=20), user_id="u-late", digits=3)
    fake.world.advance(3 * 86400)  # in-flight models move on
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert_warehouse_matches(fake)
    assert cli("run").exit_code == 0
    assert_warehouse_matches(fake)


def test_cursors_are_per_model_so_an_older_model_still_gets_new_events(workdir: Path, monkeypatch) -> None:
    """dlt#2838: one shared incremental drops B's new event because A's maximum is higher."""
    world = World(models=0, now=NOW)
    may, march = NOW.replace(month=5), NOW.replace(month=3)
    empty_model(world, "model-a")
    empty_model(world, "model-b")
    world.add_event("model-a", "STATUS_QUEUED", may)
    world.add_event("model-a", "STATUS_FINETUNING", may + timedelta(hours=1))
    world.add_event("model-b", "STATUS_QUEUED", march)
    world.add_event("model-b", "STATUS_FINETUNING", march + timedelta(hours=1))
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        assert cli("run", env=env).exit_code == 0
        assert len(warehouse_events()) == 4
        world.add_event("model-b", "STATUS_FAILED", march + timedelta(days=2))
        assert cli("run", env=env).exit_code == 0
    assert set(warehouse_events()) == expected_events(world)


def test_pages_reach_dlt_as_typed_arrow(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    types = dict(
        query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'cohere_finetuning' and table_name = 'events'"
        )
    )
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["finetuned_model_id"] == types["status"] == types["user_id"] == "VARCHAR"


def test_messy_data_loads_as_it_comes(workdir: Path) -> None:
    world = World(models=0, now=NOW)
    empty_model(world, "model/with spaces&odd")  # ids are URL-encoded in paths
    start = NOW - timedelta(days=2)
    world.add_event("model/with spaces&odd", "STATUS_QUEUED", start, user_id="u-1", digits=0)
    world.add_event("model/with spaces&odd", "STATUS_FINETUNING", start + timedelta(seconds=1.5), digits=3)
    world.add_event("model/with spaces&odd", "STATUS_EVALUATING", start + timedelta(seconds=2.25), digits=6)
    # STATUS_UNSPECIFIED is the enum's zero value: proto3 JSON omits the field and the client restores it.
    world.add_event("model/with spaces&odd", "STATUS_UNSPECIFIED", start + timedelta(seconds=3.123456), digits=9)
    with FakeApiServer(FakeCohereApi(world)) as server:
        result = cli("run", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 0, result.stderr
    rows = sorted(warehouse_events(), key=lambda row: row[1])
    assert [row[2] for row in rows] == [
        "STATUS_QUEUED",
        "STATUS_FINETUNING",
        "STATUS_EVALUATING",
        "STATUS_UNSPECIFIED",
    ]
    assert [row[3] for row in rows] == ["u-1", None, None, None]
    assert [(row[1] - start).total_seconds() for row in rows] == [0, 1.5, 2.25, 3.123456]


def test_models_that_vanish_from_the_list_keep_their_history(fake: Fake) -> None:
    assert cli("run").exit_code == 0
    gone = next(iter(fake.world.models))
    fake.world.hidden.add(gone)
    assert cli("run").exit_code == 0
    assert query(f"select count(*) from cohere_finetuning.events where finetuned_model_id = '{gone}'")[0][0] > 0
    assert query(f"select count(*) from cohere_finetuning.finetuned_models where id = '{gone}'")[0][0] == 1


def test_model_id_limits_the_run_and_a_missing_model_is_reported(fake: Fake) -> None:
    wanted = list(fake.world.models)[:2]
    result = cli("run", "--model-id", wanted[0], "--model-id", wanted[1], "--model-id", "no-such-model")
    assert result.exit_code == 0, result.stderr
    assert {row[0] for row in warehouse_events()} == set(wanted)
    assert "loaded 2 models" in result.stdout
    assert "model no-such-model not found" in result.stdout


def test_the_wandb_key_never_reaches_the_warehouse_or_dlt_state(fake: Fake, workdir: Path) -> None:
    secrets = [
        m.body["settings"]["wandb"]["api_key"] for m in fake.world.models.values() if "wandb" in m.body["settings"]
    ]
    assert secrets, "the simulated world should hold W&B keys"
    assert cli("run").exit_code == 0
    projects = query("select count(settings__wandb__project) from cohere_finetuning.finetuned_models")[0][0]
    assert projects == len(secrets)
    columns = [row[0] for row in query("select column_name from information_schema.columns")]
    assert not [c for c in columns if "api_key" in c]
    for path in workdir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert DEFAULT_API_KEY.encode() not in data, path
            assert not [s for s in secrets if s.encode() in data], path


def test_events_are_paged_newest_first_and_stop_at_the_cursor(fake: Fake) -> None:
    assert cli("run", "--page-size", "2").exit_code == 0
    first = Counter(fake.api.stats.by_kind)
    assert cli("run", "--page-size", "2", "--lookback", "0", "--full").exit_code == 0
    second = Counter(fake.api.stats.by_kind) - first
    # With two events a page and no lookback, the newest page reaches each model's cursor; only a model whose
    # two newest events share the cursor's instant reads one more page, for events tied with the cursor.
    histories = [fake.world.events_of(m) for m in fake.world.models]
    tied = sum(1 for events in histories if len(events) > 2 and events[-1].created_at == events[-2].created_at)
    assert second["list_events"] == len(fake.world.models) + tied
    assert first["list_events"] > 2 * len(fake.world.models)


@pytest.mark.parametrize("form", ["omit", "empty", "null"])
def test_every_end_of_pages_form_ends_paging(workdir: Path, form: str) -> None:
    world = World(models=7, seed=5, now=NOW, end_of_pages=form)
    with FakeApiServer(FakeCohereApi(world)) as server:
        result = cli("run", "--page-size", "3", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 0, result.stderr
    assert set(warehouse_events()) == expected_events(world)


def test_requests_carry_the_client_name_and_always_an_order(fake: Fake) -> None:
    assert cli("run", "--page-size", "3").exit_code == 0
    assert fake.api.stats.client_names == {"cohere-events"}
    assert fake.api.stats.lists_without_order_by == 0


def test_concurrency_bounds_the_requests_in_flight(workdir: Path) -> None:
    api = FakeCohereApi(World(models=24, seed=12, now=NOW), latency_ms=60)
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        assert cli("run", "--concurrency", "3", "--requests-per-minute", "0", env=env).exit_code == 0
    assert api.stats.max_in_flight == 3  # many models at once, never more than asked


def test_the_client_rate_limit_avoids_the_servers_429s(workdir: Path) -> None:
    api = FakeCohereApi(World(models=14, seed=13, now=NOW), faults=Faults(rate_limit_rpm=300))
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        result = cli("run", "--requests-per-minute", "300", env=env)
    assert result.exit_code == 0, result.stderr
    assert api.stats.by_kind["list_events"] == 14
    assert api.stats.errors_sent == {}
    assert "0 retries" in result.stdout


def test_the_servers_429s_are_waited_out_without_a_client_limit(workdir: Path) -> None:
    api = FakeCohereApi(World(models=6, seed=14, now=NOW), faults=Faults(rate_limit_rpm=120))
    world = api.world
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        result = cli("run", "--requests-per-minute", "0", env=env)
    assert result.exit_code == 0, result.stderr
    assert api.stats.errors_sent.get(429, 0) > 0  # the burst met the limit, and Retry-After was honoured
    assert set(warehouse_events()) == expected_events(world)


def test_a_dropped_connection_is_retried(fake: Fake) -> None:
    fake.api.inject("/events", "drop")
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    assert "1 retry" in result.stdout
    assert set(warehouse_events()) == expected_events(fake.world)


LEAN_RUN = """
import sys
from pipelines.cli import app
try:
    app(["run", "--quiet"])
except SystemExit as done:
    assert done.code == 0, done.code
print("pandas imported:", "pandas" in sys.modules)
print("httpx's command line imported:", any(name in sys.modules for name in ("click", "rich", "pygments")))
"""


def test_a_run_never_imports_pandas_or_httpxs_command_line(fake: Fake, workdir: Path) -> None:
    """pandas is 40 MB of a run's memory and a run has no use for it (see pipelines/arrow.py); httpx's command line
    (click, rich, pygments) is 50 ms before the first request, and a run never uses it (pipelines/__init__.py)."""
    done = subprocess.run(
        [sys.executable, "-c", LEAN_RUN], cwd=workdir, env=os.environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "pandas imported: False" in done.stdout
    assert "httpx's command line imported: False" in done.stdout
    assert len(warehouse_events()) == len(expected_events(fake.world))


@pytest.mark.parametrize(("configured", "limit"), [(None, "30.5 MiB"), ('{"memory_limit": "1GB"}', "953.6 MiB")])
def test_duckdb_memory_is_capped_for_the_run_unless_the_user_configures_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, configured: str | None, limit: str
) -> None:
    name = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
    if configured is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, configured)
    with duckdb_memory_cap("duckdb"), make_pipeline("duckdb").sql_client() as client:
        assert client.execute_sql("select current_setting('memory_limit')") == [(limit,)]
    # afterwards, queries in the same process (a notebook's, say) get DuckDB's default or the user's setting
    assert os.environ.get(name) == configured
    with make_pipeline("duckdb").sql_client() as client:
        after = client.execute_sql("select current_setting('memory_limit')")[0][0]
    assert after == limit if configured else after != limit


@pytest.mark.parametrize("exempt", [False, True])
def test_the_environments_proxy_carries_the_requests(fake: Fake, monkeypatch: pytest.MonkeyPatch, exempt: bool) -> None:
    """Behind a corporate proxy: HTTP(S)_PROXY is honoured and NO_PROXY exempts a host, as httpx clients do."""
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1" if exempt else "")
        result = cli("run", "--model-id", next(iter(fake.world.models)))
    assert result.exit_code == 0, result.stderr
    if exempt:
        assert proxy.urls == []
    else:
        assert proxy.urls and all(url.startswith(f"{fake.url}/v1/finetuning/") for url in proxy.urls)
        assert len(proxy.urls) == fake.api.stats.requests


def test_more_models_than_one_insert_statement_holds(workdir: Path) -> None:
    """DuckDB gets the model table in statements of DUCKDB_ROWS_PER_INSERT rows: every model still lands once."""
    world = World(models=2 * DUCKDB_ROWS_PER_INSERT + 30, seed=11, now=NOW)
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        result = cli("run", "--requests-per-minute", "0", env=env)
    assert result.exit_code == 0, result.stderr
    ids = [row[0] for row in query("select id from cohere_finetuning.finetuned_models")]
    assert sorted(ids) == sorted(world.models)
    assert set(warehouse_events()) == expected_events(world)


def test_the_event_loop_dlt_makes_during_a_run_is_uvloops_and_the_policy_is_put_back() -> None:
    before = asyncio.get_event_loop_policy()
    with uvloop_event_loops():
        loop = asyncio.new_event_loop()  # as dlt makes the loop that runs the async resources
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
    assert asyncio.get_event_loop_policy() is before

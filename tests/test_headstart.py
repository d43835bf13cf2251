"""A run's head start (pipelines/headstart.py): requests sent while the program loads, their answers taken over.

Every run here is ``cohere-events`` as its own process (a head start forks, which this test process, with threads,
never does), against the simulated API on 127.0.0.1. A run with a head start must load exactly what a run without
one loads, with exactly the same requests, under the same limits, and fail on the same one line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines import providers
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, Faults, World
from pipelines.providers.openai.simulator import BASE_PATH
from tests.support import NOW, cli_process, expected_events, query, warehouse_events

OFF = {"COHERE_EVENTS_HEAD_START": "0"}


def run(server: FakeApiServer, cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``cohere-events run`` as cron starts it, in ``cwd`` with its own dlt folder; (exit status, stdout, stderr)."""
    cwd.mkdir(exist_ok=True)
    base = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "DLT_DATA_DIR": str(cwd / ".dlt-data")}
    options = args if "--requests-per-minute" in args else ("--requests-per-minute", "0", *args)
    process = cli_process("run", *options, "--quiet", env={**base, **(env or {})}, cwd=cwd)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def requests_in(summary: str) -> int:
    """The request count of a run's summary line: "... (123 requests, 0 retries; ...)"."""
    return int(summary.rsplit("(", 1)[1].split(" request", 1)[0])


def served(api: FakeCohereApi) -> dict[str, Any]:
    stats = api.stats.to_json()
    api.stats = type(api.stats)()
    return stats


def test_a_first_load_with_a_head_start_is_exact_and_asks_nothing_twice(workdir: Path) -> None:
    api = FakeCohereApi(World(models=40, seed=21, now=NOW, long_history=3), latency_ms=20)
    with FakeApiServer(api) as server:
        code, ahead_out, err = run(server, workdir / "ahead", "--concurrency", "4")
        assert code == 0, err
        ahead = served(api)
        code, plain_out, err = run(server, workdir / "plain", "--concurrency", "4", env=OFF)
        assert code == 0, err
        plain = served(api)
    assert ahead["by_kind"] == plain["by_kind"]  # the very same requests: none wasted, none asked twice
    assert requests_in(ahead_out) == ahead["requests"] == plain["requests"] == requests_in(plain_out)
    assert ahead["max_in_flight"] <= 4  # the head start's requests and the run's shared --concurrency
    expected = expected_events(api.world)
    for folder in ("ahead", "plain"):
        rows = warehouse_events(workdir / folder / "cohere_events.duckdb")
        assert len(rows) == len(set(rows)) and set(rows) == expected, folder


@pytest.mark.parametrize("name", ["together", "openai", "azure"])
def test_every_provider_s_first_load_with_a_head_start_is_the_same(workdir: Path, name: str) -> None:
    provider = providers.get(name)
    api = provider.module("simulator").demo_api(20, latency_ms=10)
    with FakeApiServer(api) as server:
        env = {
            provider.base_url_variable: server.url + (BASE_PATH if name == "openai" else ""),
            provider.key_variables[0]: api.api_key,
        }
        counts = []
        for folder, switch in (("ahead", {}), ("plain", OFF)):
            code, out, err = run(server, workdir / folder, "--provider", name, env={**env, **switch})
            assert code == 0, err
            counts.append((requests_in(out), api.stats.to_json()))
            api.stats = type(api.stats)()
    (ahead, ahead_served), (plain, plain_served) = counts
    assert ahead_served == plain_served and ahead == plain == ahead_served["requests"]
    table = f"{provider.dataset}.{provider.events_table}"
    rows = [
        query(
            f"select * from {table} order by all",
            workdir / folder / "cohere_events.duckdb",
        )
        for folder in ("ahead", "plain")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == api.world.event_count()


def test_the_run_takes_the_answers_the_head_start_got(workdir: Path) -> None:
    """A head start given time to finish: the run's own clients then send nothing, and the summary counts what the
    head start sent."""
    api = FakeCohereApi(World(models=12, seed=4, now=NOW))
    script = """
import sys, time
from pipelines import config, headstart
options = config.LoadOptions(requests_per_minute=0, concurrency=4)
head = headstart.begin_for_run(options)
assert head is not None, "no head start began"
last = -1
for _ in range(600):  # until the head start has asked all it will and has every answer
    time.sleep(0.1)
    with head.lock:
        if head.sent == last and head.in_flight == 0:
            break
        last = head.sent
sent = head.sent
from pipelines.runner import run_load
summary = run_load(config.api_key(), config.base_url(), options)
print(sent, summary.requests)
"""
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY, "DLT_DATA_DIR": str(workdir / ".dlt-data")}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    sent, counted = map(int, done.stdout.split())
    assert sent == api.stats.requests == counted  # every request was the head start's, and the run counted them
    rows = warehouse_events(workdir / "cohere_events.duckdb")
    assert len(rows) == len(set(rows)) and set(rows) == expected_events(api.world)


def test_a_run_into_an_existing_warehouse_gets_only_the_list_ahead(workdir: Path) -> None:
    """Into a warehouse that exists, the head start asks only for the model list: which models changed is known
    only from the warehouse's state."""
    api = FakeCohereApi(World(models=30, seed=9, now=NOW), latency_ms=10)
    with FakeApiServer(api) as server:
        for folder in ("ahead", "plain"):
            code, _, err = run(server, workdir / folder)
            assert code == 0, err
        served(api)
        code, ahead_out, err = run(server, workdir / "ahead")
        assert code == 0, err
        ahead = served(api)
        code, plain_out, err = run(server, workdir / "plain", env=OFF)
        assert code == 0, err
        plain = served(api)
    assert ahead["by_kind"] == plain["by_kind"]  # the list, and the metrics of what is training: nothing more
    assert ahead["by_kind"]["list_models"] == 1 and "list_events" not in ahead["by_kind"]
    assert requests_in(ahead_out) == requests_in(plain_out) == ahead["requests"]


def test_a_rate_limit_holds_across_the_head_start_and_the_run(workdir: Path) -> None:
    api = FakeCohereApi(World(models=6, seed=2, now=NOW), faults=Faults(rate_limit_rpm=600))
    with FakeApiServer(api) as server:
        code, out, err = run(server, workdir / "ahead", "--requests-per-minute", "600", "--no-metrics")
    assert code == 0, err
    assert api.stats.errors_sent == {}  # no 429: the run's first request kept its spacing from the head start's last
    assert requests_in(out) == api.stats.requests


@pytest.mark.parametrize("fault", [503, 429, "timeout", "drop"])
def test_a_failure_the_head_start_met_is_retried_by_the_run(workdir: Path, fault: int | str) -> None:
    api = FakeCohereApi(World(models=8, seed=6, now=NOW), stall_seconds=3)
    api.inject("/finetuned-models", fault)  # the first request: the head start's first page of the model list
    with FakeApiServer(api) as server:
        code, out, err = run(server, workdir / "ahead", "--timeout", "1")
    assert code == 0, err
    assert "1 retry" in out, out  # the head start's failed answer counts as the run's first attempt
    assert requests_in(out) == api.stats.requests
    rows = warehouse_events(workdir / "ahead" / "cohere_events.duckdb")
    assert len(rows) == len(set(rows)) and set(rows) == expected_events(api.world)


@pytest.mark.parametrize(
    ("fault", "status", "line"),
    [
        (401, 3, "error: the API refused the key (HTTP 401): check CO_API_KEY"),
        ("malformed", 1, "error: malformed JSON in the response for the model list, page 1"),
    ],
)
def test_a_failure_the_head_start_met_ends_the_run_on_the_same_line(
    workdir: Path, fault: int | str, status: int, line: str
) -> None:
    lines = []
    for folder, env in (("ahead", {}), ("plain", OFF)):
        api = FakeCohereApi(World(models=5, seed=1, now=NOW))
        api.inject("/finetuned-models", fault)
        with FakeApiServer(api) as server:
            code, _, err = run(server, workdir / folder, env=env)
        assert code == status, err
        lines.append(err.strip())
        assert api.stats.requests == 1  # the head start stopped at its failure; the run did not ask again
    assert lines[0] == lines[1] == line


def test_a_signal_during_the_head_start_ends_on_one_line(workdir: Path) -> None:
    api = FakeCohereApi(World(models=60, seed=8, now=NOW), latency_ms=100)
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        victim = cli_process("run", "--requests-per-minute", "0", "--concurrency", "2", env=env, cwd=workdir)
        deadline = time.monotonic() + 60
        while api.stats.requests < 1 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.send_signal(signal.SIGTERM)
        _, err = victim.communicate(timeout=60)
    assert victim.returncode == 143, err
    assert err == "terminated: nothing half-written was committed; the next run completes the load\n"

"""No ordering of a listing loses a row, and no row is written twice: listings that ignore ``order_by``,
sub-microsecond twins, and a model list that shifts while it is paged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from tests.support import NOW, cli, empty_model, expected_events, query, warehouse_events
from tests.test_training_summary import expected_metrics, warehouse_metrics


def assert_exact(world: World) -> None:
    rows = warehouse_events()
    assert len(rows) == len(set(rows)), "duplicate events in the warehouse"
    assert set(rows) == expected_events(world)
    metrics = warehouse_metrics()
    assert len(metrics) == len(set(metrics)), "duplicate metrics in the warehouse"
    assert set(metrics) == expected_metrics(world)


@pytest.mark.parametrize("disorder", ["asc", "unordered", "mixed"])
def test_a_listing_that_ignores_order_by_is_paged_to_the_end(workdir: Path, disorder: str) -> None:
    world = World(models=6, seed=21, now=NOW, long_history=12)
    api = FakeCohereApi(world)
    with FakeApiServer(api) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        assert cli("run", "--page-size", "4", env=env).exit_code == 0
        api.faults.ignore_order_by = disorder
        for index, model in enumerate(world.models.values()):
            newest = world.events_of(model.id)[-1].created_at
            for minutes in range(1, 4 + index):  # several new pages' worth for some models
                world.add_event(model.id, "STATUS_TEMPORARILY_OFFLINE", newest + timedelta(minutes=minutes))
                world.add_event(model.id, "STATUS_READY", newest + timedelta(minutes=minutes, seconds=30))
        world.advance(86400)
        result = cli("run", "--page-size", "4", env=env)
    assert result.exit_code == 0, result.stderr
    assert_exact(world)
    assert "did not list them newest first" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "newest first" in line]
    assert len(warnings) == 1, result.stderr  # once per run, not once per model


def test_sub_microsecond_twins_are_one_row(workdir: Path) -> None:
    world = World(models=0, now=NOW)
    empty_model(world, "twins")
    moment = NOW - timedelta(hours=1)
    world.add_event("twins", "STATUS_QUEUED", moment - timedelta(minutes=5))
    world.add_event("twins", "STATUS_READY", moment, digits=9, nanos=789)
    world.add_event("twins", "STATUS_READY", moment, digits=9, nanos=1)  # ...00.123456001Z next to ...789Z
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        for page_size in ("1", "100"):  # twins on one page, and on two
            result = cli("run", "--page-size", page_size, "--full", env=env)
            assert result.exit_code == 0, result.stderr
    rows = warehouse_events()
    assert len(rows) == 2 and len(set(rows)) == 2
    intervals = query("select status, n_events from cohere_finetuning.status_intervals order by interval_seq")
    assert intervals == [("QUEUED", 1), ("READY", 1)]


def test_a_model_list_that_shifts_while_paged_reads_each_model_once(workdir: Path) -> None:
    world = World(models=12, seed=22, now=NOW)
    api = FakeCohereApi(world)
    api.faults.shift_list = 2  # the last two models of each page are listed again at the top of the next
    with FakeApiServer(api) as server:
        result = cli("run", "--page-size", "5", env={"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY})
    assert result.exit_code == 0, result.stderr
    assert "loaded 12 models" in result.stdout
    assert api.stats.by_kind["list_models"] > 3  # the list really did repeat models
    pages_per_model = {model.id: -(-len(world.events_of(model.id)) // 5) for model in world.models.values()}
    assert api.stats.by_kind["list_events"] == sum(pages_per_model.values())
    assert query("select count(*), count(distinct id) from cohere_finetuning.finetuned_models") == [(12, 12)]
    assert_exact(world)

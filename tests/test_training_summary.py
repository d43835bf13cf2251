"""The training views on real DuckDB (and PostgreSQL) warehouses loaded through dlt, against hand-computed answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest

from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World, training_span
from pipelines.providers.cohere.source import METRICS_SCHEMA
from pipelines.views import create_views
from tests.support import NOW, cli
from tests.test_views import VIEWS, events_table, hand_made, lifecycle_events, make_pipeline, model_rows, rows

NAN, INF = math.nan, math.inf
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
Metric = tuple[str, int, str, float]  # finetuned_model_id, step_number, metric, value

METRICS: list[Metric] = [
    # a chat model whose loss diverged at the last step; accuracy reached 0.7 first at step 20
    *[("chat", s, "cross_entropy", v) for s, v in ((0, 2.5), (10, 1.2), (20, 0.8), (30, 0.9), (40, NAN))],
    *[("chat", s, "accuracy", v) for s, v in ((0, 0.2), (10, 0.5), (20, 0.7), (30, 0.7), (40, 0.65))],
    # infinities on both sides are never the best; a loss named *loss* is lower-is-better too
    *[("spiky", s, "train_loss", v) for s, v in ((0, -INF), (10, 1.5), (20, INF), (30, 1.0))],
    *[("spiky", s, "f1", v) for s, v in ((0, 0.3), (10, INF), (20, 0.6), (30, 0.55))],
    # one step only: step 0, which the API sends without step_number
    ("single", 0, "accuracy", 0.4),
    ("single", 0, "cross_entropy", 3.0),
    # nothing finite at all
    ("lost", 0, "cross_entropy", NAN),
    ("lost", 10, "cross_entropy", NAN),
]
EVENTS = [
    *lifecycle_events("chat", "QUEUED", "FINETUNING", "DEPLOYING_API", "READY"),
    *lifecycle_events("spiky", "QUEUED", "FINETUNING", "FAILED"),
    *lifecycle_events("single", "QUEUED", "FINETUNING"),
    *lifecycle_events("lost", "QUEUED", "FINETUNING", "DEPLOYING_API", "READY"),
    *lifecycle_events("never", "QUEUED", "DELETED"),  # never trained: no metrics
]
BASE_MODELS = {"spiky": ("BASE_TYPE_CLASSIFICATION", "english"), "lost": ("BASE_TYPE_GENERATIVE", "command-light")}


def at(step: int) -> datetime:
    """A step's created_at: a minute per ten steps, with microseconds."""
    return START + timedelta(minutes=step // 10, microseconds=step * 7)


def metrics_table(metrics: Sequence[Metric]) -> pa.Table:
    """Long metric rows as the source yields them: a typed Arrow table."""
    ids, steps, names, values = zip(*metrics, strict=True) if metrics else ((), (), (), ())
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(steps, pa.int64()),
            pa.array([at(step) for step in steps], pa.timestamp("us", tz="UTC")),
            pa.array(names, pa.string()),
            pa.array(values, pa.float64()),
        ],
        schema=METRICS_SCHEMA,
    )


def load(pipeline: dlt.Pipeline, metrics: Sequence[Metric] = METRICS) -> dlt.Pipeline:
    models = model_rows(EVENTS, BASE_MODELS)
    pipeline.run(hand_made(models, events_table(EVENTS), metrics_table(metrics)))
    assert create_views(pipeline) == VIEWS
    return pipeline


def load_hand_made(root: Path) -> dlt.Pipeline:
    """The hand-made metrics, events and models in ``root/cohere_events.duckdb``, views created."""
    return load(make_pipeline(root))


def summary(pipeline: dlt.Pipeline) -> dict[tuple[str, str], dict[str, Any]]:
    found = rows(pipeline, "training_summary", order="finetuned_model_id, metric")
    return {(row.pop("finetuned_model_id"), row.pop("metric")): row for row in found}


def same(found: Any, expected: Any) -> bool:
    """Equal, with NaN equal to NaN and timestamps compared in UTC."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(found, float) and math.isnan(found)
    if isinstance(found, datetime):
        return found.astimezone(UTC) == expected
    return bool(found == expected)


def check(row: dict[str, Any], **expected: Any) -> None:
    wrong = {key: (row[key], value) for key, value in expected.items() if not same(row[key], value)}
    assert not wrong, wrong


def test_training_summary_by_hand(workdir: Path) -> None:
    found = summary(load(make_pipeline(workdir)))
    assert set(found) == {
        ("chat", "accuracy"),
        ("chat", "cross_entropy"),
        ("lost", "cross_entropy"),
        ("single", "accuracy"),
        ("single", "cross_entropy"),
        ("spiky", "f1"),
        ("spiky", "train_loss"),
    }  # and no row for "never", which never trained
    check(
        found["chat", "cross_entropy"],
        steps=5,
        first_step_number=0,
        last_step_number=40,
        first_step_at=at(0),
        last_step_at=at(40),
        last_value=NAN,  # the last value is kept even when it is NaN
        best_value=0.8,  # the lowest finite one
        best_step_number=20,
    )
    check(found["chat", "accuracy"], steps=5, last_value=0.65, best_value=0.7, best_step_number=20)  # first to 0.7
    check(found["spiky", "train_loss"], steps=4, last_value=1.0, best_value=1.0, best_step_number=30)  # not -inf
    check(found["spiky", "f1"], last_value=0.55, best_value=0.6, best_step_number=20)  # not +inf
    for metric, value in (("accuracy", 0.4), ("cross_entropy", 3.0)):
        check(
            found["single", metric],
            steps=1,
            first_step_number=0,
            last_step_number=0,
            first_step_at=at(0),
            last_step_at=at(0),
            last_value=value,
            best_value=value,
            best_step_number=0,
        )
    check(found["lost", "cross_entropy"], steps=2, last_value=NAN, best_value=None, best_step_number=None)


def test_training_outcomes_by_hand(workdir: Path) -> None:
    pipeline = load(make_pipeline(workdir))
    found = {row["finetuned_model_id"]: row for row in rows(pipeline, "training_outcomes")}
    assert set(found) == {"chat", "spiky", "single", "lost"}
    check(
        found["chat"],
        base_type="BASE_TYPE_CHAT",
        base_model_name="command-r",
        first_outcome="ready",
        metrics=2,
        steps=5,
        last_step_number=40,
        final_accuracy=0.65,
        best_accuracy=0.7,
        final_cross_entropy=NAN,
        best_cross_entropy=0.8,
        first_non_finite_step=40,
        diverged=True,
    )
    check(found["spiky"], base_type="BASE_TYPE_CLASSIFICATION", first_outcome="failed", final_accuracy=None)
    check(found["spiky"], final_cross_entropy=None, first_non_finite_step=0, diverged=True)  # train_loss was -inf
    check(found["single"], first_outcome="in_flight", final_accuracy=0.4, final_cross_entropy=3.0, diverged=False)
    check(found["single"], first_non_finite_step=None, steps=1, last_step_number=0)
    check(found["lost"], base_model_name="command-light", best_cross_entropy=None, first_non_finite_step=0)


def test_a_warehouse_from_before_metrics_gets_an_empty_table(workdir: Path) -> None:
    from tests.test_views import warehouse

    pipeline = warehouse(workdir, EVENTS)  # events and models only, as before training metrics were loaded
    assert rows(pipeline, "training_summary") == [] and rows(pipeline, "training_outcomes") == []
    with duckdb.connect(str(workdir / "cohere_events.duckdb"), read_only=True) as con:
        columns = con.sql(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'cohere_finetuning' and table_name = 'training_step_metrics' "
            "order by ordinal_position"
        ).fetchall()
    assert columns[:5] == [
        ("finetuned_model_id", "VARCHAR"),
        ("step_number", "BIGINT"),
        ("created_at", "TIMESTAMP WITH TIME ZONE"),
        ("metric", "VARCHAR"),
        ("value", "DOUBLE"),
    ]


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with floats as their repr (so NaN equals NaN) and timestamps in UTC."""
    out = {}
    for key, value in row.items():
        if isinstance(value, float):
            value = repr(round(value, 9))
        elif isinstance(value, datetime):
            value = value.astimezone(UTC)
        out[key] = value
    return out


@pytest.mark.postgres
def test_postgres_training_views_match_duckdb(workdir: Path, postgres_url: str) -> None:
    duck = load(make_pipeline(workdir / "duck"))
    dataset = f"training_{workdir.name[-12:].replace('-', '_')}".lower()
    postgres = make_pipeline(workdir / "pg", dlt.destinations.postgres(postgres_url), dataset)
    assert create_views(postgres) == VIEWS  # an empty warehouse: the metrics table is created for the views
    assert rows(postgres, "training_summary") == []
    load(postgres)
    for view, order in (("training_summary", "finetuned_model_id, metric"), ("training_outcomes", "1")):
        expected = [comparable(row) for row in rows(duck, view, order=order)]
        found = [comparable(row) for row in rows(postgres, view, order=order)]
        assert found == expected, view
    where = "finetuned_model_id in ('spiky', 'lost') and step_number = 0"
    values = {row["metric"]: row["value"] for row in rows(postgres, "training_step_metrics", where=where)}
    assert values["train_loss"] == -INF and math.isnan(values["cross_entropy"])  # stored as doubles, not text


def expected_summary(world: World) -> dict[tuple[str, str], tuple[Any, ...]]:
    """training_summary computed in Python from what the simulated API shows now."""
    found: dict[tuple[str, str], tuple[Any, ...]] = {}
    for model_id in world.models:
        steps = world.metrics_of(model_id)
        for name in steps[0][2] if steps else ():
            series = [(step, value) for step, _, metrics in steps for value in [metrics[name]]]
            finite = [(step, value) for step, value in series if math.isfinite(value)]
            lower = "loss" in name or "entropy" in name
            best = min(finite, key=lambda s: (s[1] if lower else -s[1], s[0])) if finite else (None, None)
            found[model_id, name] = (len(series), series[-1][0], repr(series[-1][1]), repr(best[1]), best[0])
    return found


def warehouse_summary() -> dict[tuple[str, str], tuple[Any, ...]]:
    with duckdb.connect("cohere_events.duckdb", read_only=True) as con:
        found = con.sql(
            "select finetuned_model_id, metric, steps, last_step_number, last_value, best_value, best_step_number "
            "from cohere_finetuning.training_summary"
        ).fetchall()
    return {(m, n): (steps, last, repr(value), repr(best), at) for m, n, steps, last, value, best, at in found}


def warehouse_metrics() -> list[tuple[Any, ...]]:
    with duckdb.connect("cohere_events.duckdb", read_only=True) as con:
        found = con.sql(
            "select finetuned_model_id, step_number, created_at, metric, value "
            "from cohere_finetuning.training_step_metrics"
        ).fetchall()
    return [(m, s, at.astimezone(UTC), n, repr(v)) for m, s, at, n, v in found]


def expected_metrics(world: World) -> set[tuple[Any, ...]]:
    return {
        (model_id, step, at, name, repr(value))
        for model_id in world.models
        for step, at, metrics in world.metrics_of(model_id)
        for name, value in metrics.items()
    }


def test_end_to_end_through_the_simulated_api(workdir: Path) -> None:
    world = World(models=60, seed=3, now=NOW)
    diverged = [
        m for m in world.models if any(not math.isfinite(v) for *_, d in world.metrics_of(m) for v in d.values())
    ]
    assert diverged, "the world has a diverged training"
    training = next(m for m in world.models.values() if len(world.metrics_of(m.id)) >= 6)
    start, end = training_span(training.events) or (NOW, NOW)
    world.now = start + (end - start) / 2  # the model is halfway through its training
    with FakeApiServer(FakeCohereApi(world)) as server:
        env = {"CO_API_URL": server.url, "CO_API_KEY": DEFAULT_API_KEY}
        first = cli("run", env=env)
        assert first.exit_code == 0, first.stderr
        assert 0 < len(world.metrics_of(training.id)) < len(World(models=60, seed=3, now=NOW).metrics_of(training.id))
        rows_now = warehouse_metrics()
        assert len(rows_now) == len(set(rows_now)) and set(rows_now) == expected_metrics(world)
        assert warehouse_summary() == expected_summary(world)
        world.now = NOW  # time passes: the training finishes, other models train and diverge
        second = cli("run", env=env)
        assert second.exit_code == 0, second.stderr
    rows_now = warehouse_metrics()
    assert len(rows_now) == len(set(rows_now)) and set(rows_now) == expected_metrics(world)
    summary_now = warehouse_summary()
    assert summary_now == expected_summary(world)
    assert any(summary_now[m, n][2] in ("nan", "inf") for m, n in summary_now if m in diverged)

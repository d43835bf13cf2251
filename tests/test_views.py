"""The SQL views on real DuckDB warehouses loaded by real dlt pipelines, against hand-computed answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest

from pipelines.providers.cohere.source import (
    EVENT_COLUMNS,
    EVENTS_KEY,
    EVENTS_SCHEMA,
    METRIC_COLUMNS,
    METRICS_KEY,
    MODEL_COLUMNS,
    SOURCE_NAME,
)
from pipelines.views import create_views

VIEWS = [
    "status_intervals",
    "time_in_status",
    "status_duration_stats",
    "model_lifecycle",
    "failure_rate_groups",  # not in the contract: the one place the three failure_rates views are computed
    "failure_rates",
    "failure_rates_weekly",
    "failure_rates_by_base_model",
    "stale_models",
    "training_summary",
    "training_outcomes",  # not in the contract: final metrics beside base model and outcome
]
Event = tuple[str, str | None, str, str]  # finetuned_model_id, user_id, status, created_at (ISO 8601)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def events_table(events: Sequence[Event]) -> pa.Table:
    """Events as the source yields them: a typed Arrow table, microseconds in UTC."""
    model_ids, users, statuses, stamps = zip(*events, strict=True) if events else ((), (), (), ())
    return pa.Table.from_arrays(
        [
            pa.array(model_ids, pa.string()),
            pa.array(users, pa.string()),
            pa.array(statuses, pa.string()),
            pa.array([ts(stamp) for stamp in stamps], pa.timestamp("us", tz="UTC")),
        ],
        schema=EVENTS_SCHEMA,
    )


def model_rows(events: Sequence[Event], base_models: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """One API-like model row per model of ``events`` (and of ``base_models``)."""
    ids = dict.fromkeys([event[0] for event in events] + list(base_models))
    rows = []
    for model_id in ids:
        base_type, base_name = base_models.get(model_id, ("BASE_TYPE_CHAT", "command-r"))
        rows.append(
            {
                "id": model_id,
                "name": f"ft-{model_id}",
                "status": "STATUS_READY",
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                "settings": {"base_model": {"base_type": base_type, "name": base_name}},
            }
        )
    return rows


@dlt.source(name=SOURCE_NAME, max_table_nesting=2)
def hand_made(models: list[dict[str, Any]], events: pa.Table, metrics: pa.Table | None = None) -> Any:
    """The tables (metrics only when given) with the same hints, keys and write dispositions as the real source."""

    @dlt.resource(name="finetuned_models", write_disposition="merge", primary_key="id", columns=MODEL_COLUMNS)
    def finetuned_models() -> Any:
        if models:
            yield models

    events_resource = insert_only("events", EVENTS_KEY, EVENT_COLUMNS, events)
    if metrics is None:
        return finetuned_models, events_resource
    return finetuned_models, events_resource, insert_only("training_step_metrics", METRICS_KEY, METRIC_COLUMNS, metrics)


def insert_only(name: str, key: tuple[str, ...], columns: Any, rows: pa.Table) -> Any:
    """A child table as the real source declares it: merged insert-only on its key."""

    @dlt.resource(
        name=name,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=key,
        columns=columns,
    )
    def resource() -> Any:
        if rows.num_rows:
            yield rows

    return resource


def make_pipeline(root: Path, destination: Any = None, dataset: str = "cohere_finetuning") -> dlt.Pipeline:
    """A dlt pipeline with its working folder under ``root``; DuckDB file ``root/cohere_events.duckdb``."""
    return dlt.pipeline(
        pipeline_name="cohere_events",
        destination=destination or dlt.destinations.duckdb(str(root / "cohere_events.duckdb")),
        dataset_name=dataset,
        pipelines_dir=str(root / "pipelines"),
    )


def load(
    pipeline: dlt.Pipeline,
    events: Sequence[Event],
    base_models: dict[str, tuple[str, str | None]] | None = None,
) -> dlt.Pipeline:
    """Load hand-made events (and a model row for each model) through dlt, then create the views."""
    pipeline.run(hand_made(model_rows(events, base_models or {}), events_table(events)))
    assert create_views(pipeline) == VIEWS
    return pipeline


def warehouse(root: Path, events: Sequence[Event], **kwargs: Any) -> dlt.Pipeline:
    return load(make_pipeline(root), events, **kwargs)


def rows(pipeline: dlt.Pipeline, view: str, columns: str = "*", where: str = "", order: str = "") -> list[dict]:
    """Rows of a view (through dlt's SQL client, so it works on any destination) as dicts."""
    with pipeline.sql_client() as client:
        sql = f"select {columns} from {client.make_qualified_table_name(view)}"
        sql += f" where {where}" if where else ""
        sql += f" order by {order}" if order else ""
        with client.execute_query(sql) as cursor:
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def intervals(pipeline: dlt.Pipeline, model_id: str) -> list[tuple]:
    """(status, entered_at, exited_at, is_open, n_events, prev_status, next_status, entered_by) in order."""
    found = rows(pipeline, "status_intervals", where=f"finetuned_model_id = '{model_id}'", order="interval_seq")
    assert [row["interval_seq"] for row in found] == list(range(1, len(found) + 1))
    return [
        (
            r["status"],
            r["entered_at"],
            r["exited_at"],
            r["is_open"],
            r["n_events"],
            r["prev_status"],
            r["next_status"],
            r["entered_by"],
        )
        for r in found
    ]


def durations(pipeline: dlt.Pipeline, model_id: str) -> list[float]:
    found = rows(
        pipeline, "status_intervals", where=f"finetuned_model_id = '{model_id}' and not is_open", order="interval_seq"
    )
    return [float(row["duration_seconds"]) for row in found]


def lifecycle(pipeline: dlt.Pipeline, model_id: str) -> dict[str, Any]:
    (found,) = rows(pipeline, "model_lifecycle", where=f"finetuned_model_id = '{model_id}'")
    return found


T0 = "2026-01-05T10:00:00Z"  # a Monday


def test_one_event_is_one_open_interval(workdir: Path) -> None:
    before = datetime.now(UTC)
    pipeline = warehouse(workdir, [("m1", "u1", "STATUS_QUEUED", T0)])
    (open_interval,) = rows(pipeline, "status_intervals")
    after = datetime.now(UTC)
    assert intervals(pipeline, "m1") == [("QUEUED", ts(T0), None, True, 1, None, None, "u1")]
    assert (before - ts(T0)).total_seconds() <= open_interval["duration_seconds"] <= (after - ts(T0)).total_seconds()
    model = lifecycle(pipeline, "m1")
    assert model["current_status"] == "QUEUED" and model["current_since"] == ts(T0)
    assert model["first_outcome"] == "in_flight" and not model["ever_failed"] and not model["recovered"]
    assert model["first_queued_at"] == ts(T0) and model["first_seen_at"] == ts(T0)
    assert model["queue_seconds"] is None and model["time_to_ready_seconds"] is None
    assert model["name"] == "ft-m1" and model["base_type"] == "BASE_TYPE_CHAT"
    (stale,) = rows(pipeline, "stale_models")
    assert stale["finetuned_model_id"] == "m1" and stale["current_status"] == "QUEUED"
    assert stale["stuck_seconds"] > 48 * 3600
    (visit,) = rows(pipeline, "time_in_status")
    assert (visit["visits"], visit["closed_seconds"], visit["currently_in"]) == (1, 0, True)


def test_repeated_statuses_collapse_into_one_interval(workdir: Path) -> None:
    events = [
        ("m1", "u1", "STATUS_QUEUED", "2026-01-05T10:00:00Z"),
        ("m1", "u2", "STATUS_QUEUED", "2026-01-05T10:05:00Z"),
        ("m1", None, "STATUS_FINETUNING", "2026-01-05T10:10:00Z"),
        ("m1", None, "STATUS_FINETUNING", "2026-01-05T11:00:00Z"),
        ("m1", None, "STATUS_FINETUNING", "2026-01-05T12:00:00Z"),
        ("m1", None, "STATUS_READY", "2026-01-05T12:30:00Z"),
    ]
    pipeline = warehouse(workdir, events)
    assert intervals(pipeline, "m1") == [
        ("QUEUED", ts("2026-01-05T10:00:00Z"), ts("2026-01-05T10:10:00Z"), False, 2, None, "FINETUNING", "u1"),
        ("FINETUNING", ts("2026-01-05T10:10:00Z"), ts("2026-01-05T12:30:00Z"), False, 3, "QUEUED", "READY", None),
        ("READY", ts("2026-01-05T12:30:00Z"), None, True, 1, "FINETUNING", None, None),
    ]
    assert durations(pipeline, "m1") == [600.0, 8400.0]
    stats = {row["status"]: row for row in rows(pipeline, "status_duration_stats")}
    assert stats["QUEUED"]["p50_seconds"] == 600.0 and stats["FINETUNING"]["max_seconds"] == 8400.0
    assert (stats["READY"]["closed_intervals"], stats["READY"]["open_intervals"]) == (0, 1)
    assert stats["READY"]["p50_seconds"] is None


def test_events_at_one_timestamp_follow_the_lifecycle(workdir: Path) -> None:
    events = [
        ("two", None, "STATUS_READY", T0),  # loaded before the QUEUED one on purpose
        ("two", "u1", "STATUS_QUEUED", T0),
        ("four", None, "STATUS_DELETED", T0),
        ("four", None, "STATUS_FINETUNING", T0),
        ("four", None, "STATUS_READY", T0),
        ("four", "u1", "STATUS_QUEUED", T0),
    ]
    pipeline = warehouse(workdir, events)
    assert [i[0] for i in intervals(pipeline, "two")] == ["QUEUED", "READY"]
    assert [i[0] for i in intervals(pipeline, "four")] == ["QUEUED", "FINETUNING", "READY", "DELETED"]
    assert durations(pipeline, "four") == [0.0, 0.0, 0.0]
    assert lifecycle(pipeline, "four")["first_outcome"] == "ready"
    assert lifecycle(pipeline, "four")["current_status"] == "DELETED"
    assert lifecycle(pipeline, "two")["time_to_ready_seconds"] == 0.0


def lifecycle_events(model_id: str, *statuses: str, start_hour: int = 0) -> list[Event]:
    """One event an hour from 2026-01-05 00:00 UTC."""
    return [
        (model_id, None, f"STATUS_{status}", f"2026-01-05T{start_hour + hour:02d}:00:00Z")
        for hour, status in enumerate(statuses)
    ]


def test_outcomes_failures_and_recoveries(workdir: Path) -> None:
    events = [
        *lifecycle_events(
            "retried", "QUEUED", "FINETUNING", "FAILED", "QUEUED", "FINETUNING", "DEPLOYING_API", "READY"
        ),
        *lifecycle_events("broke_later", "QUEUED", "FINETUNING", "DEPLOYING_API", "READY", "FAILED"),
        *lifecycle_events("cancelled", "QUEUED", "DELETED"),
        *lifecycle_events("failed", "QUEUED", "FAILED"),
    ]
    pipeline = warehouse(workdir, events)
    retried = lifecycle(pipeline, "retried")
    assert (retried["first_outcome"], retried["ever_failed"], retried["recovered"]) == ("failed", True, True)
    assert retried["first_failed_at"] == ts("2026-01-05T02:00:00Z")
    assert retried["first_ready_at"] == ts("2026-01-05T06:00:00Z")
    assert retried["queue_seconds"] == 3600.0 and retried["training_seconds"] == 4 * 3600.0
    assert retried["deploy_seconds"] == 3600.0 and retried["time_to_ready_seconds"] == 6 * 3600.0
    later = lifecycle(pipeline, "broke_later")
    assert (later["first_outcome"], later["ever_failed"], later["recovered"]) == ("ready", True, False)
    assert later["current_status"] == "FAILED"
    cancelled = lifecycle(pipeline, "cancelled")
    assert (cancelled["first_outcome"], cancelled["ever_failed"]) == ("cancelled", False)
    assert cancelled["first_deleted_at"] == ts("2026-01-05T01:00:00Z")
    visits = rows(pipeline, "time_in_status", where="finetuned_model_id = 'retried'", order="status")
    assert [(v["status"], v["visits"], v["closed_seconds"]) for v in visits] == [
        ("DEPLOYING_API", 1, 3600.0),
        ("FAILED", 1, 3600.0),
        ("FINETUNING", 2, 7200.0),
        ("QUEUED", 2, 7200.0),
        ("READY", 1, 0.0),
    ]
    (overall,) = rows(pipeline, "failure_rates")
    assert {k: overall[k] for k in ("models", "ready", "failed", "cancelled", "in_flight", "resolved")} == {
        "models": 4,
        "ready": 1,
        "failed": 2,
        "cancelled": 1,
        "in_flight": 0,
        "resolved": 3,
    }
    assert overall["failure_rate"] == pytest.approx(2 / 3)


def test_a_model_that_starts_at_finetuning(workdir: Path) -> None:
    pipeline = warehouse(workdir, lifecycle_events("late", "FINETUNING", "DEPLOYING_API", "READY"))
    model = lifecycle(pipeline, "late")
    assert model["first_queued_at"] is None and model["queue_seconds"] is None
    assert model["training_seconds"] == 3600.0 and model["deploy_seconds"] == 3600.0
    assert model["time_to_ready_seconds"] == 7200.0 and model["first_outcome"] == "ready"
    assert intervals(pipeline, "late")[0][5] is None


def test_unknown_and_unspecified_statuses(workdir: Path) -> None:
    events = [
        ("m1", None, "STATUS_SOMETHING_NEW", T0),
        ("m1", None, "STATUS_UNSPECIFIED", T0),
        ("m1", None, "STATUS_QUEUED", T0),
        ("m1", None, "weird_one", "2026-01-05T11:00:00Z"),
        ("m1", None, "STATUS_UNSPECIFIED", "2026-01-05T12:00:00Z"),
    ]
    pipeline = warehouse(workdir, events)
    assert [i[0] for i in intervals(pipeline, "m1")] == [
        "UNSPECIFIED",
        "QUEUED",
        "SOMETHING_NEW",
        "WEIRD_ONE",
        "UNSPECIFIED",
    ]
    assert durations(pipeline, "m1") == [0.0, 0.0, 3600.0, 3600.0]
    assert lifecycle(pipeline, "m1")["first_outcome"] == "in_flight"


def test_entered_by_is_the_user_of_the_first_event(workdir: Path) -> None:
    events = [
        ("m1", None, "STATUS_QUEUED", "2026-01-05T10:00:00Z"),
        ("m1", "u1", "STATUS_QUEUED", "2026-01-05T10:01:00Z"),
        ("m1", "u2", "STATUS_PAUSED", "2026-01-05T10:02:00Z"),
    ]
    pipeline = warehouse(workdir, events)
    assert [(i[0], i[7]) for i in intervals(pipeline, "m1")] == [("QUEUED", None), ("PAUSED", "u2")]


def test_fractional_seconds_are_exact(workdir: Path) -> None:
    events = [
        ("m1", None, "STATUS_QUEUED", "2026-01-05T10:00:00Z"),
        ("m1", None, "STATUS_FINETUNING", "2026-01-05T10:00:01.5Z"),
        ("m1", None, "STATUS_DEPLOYING_API", "2026-01-05T10:00:02.123456Z"),
        ("m1", None, "STATUS_READY", "2026-01-07T10:00:02.123457Z"),
    ]
    pipeline = warehouse(workdir, events)
    assert durations(pipeline, "m1") == pytest.approx([1.5, 0.623456, 2 * 86400 + 0.000001], abs=1e-9)
    model = lifecycle(pipeline, "m1")
    assert model["time_to_ready_seconds"] == pytest.approx(2 * 86400 + 2.123457, abs=1e-9)


def wilson(pipeline: dlt.Pipeline, view: str = "failure_rates") -> list[tuple[int, int, float, float]]:
    found = rows(pipeline, view, order="1")
    return [(r["failed"], r["resolved"], round(r["wilson_low"], 4), round(r["wilson_high"], 4)) for r in found]


@pytest.mark.parametrize(
    ("failed", "ready", "low", "high"),
    [(0, 1, 0.0, 0.7935), (1, 0, 0.2065, 1.0), (10, 90, 0.0552, 0.1744)],
)
def test_wilson_bounds(workdir: Path, failed: int, ready: int, low: float, high: float) -> None:
    events: list[Event] = []
    for number in range(failed + ready):
        outcome = "FAILED" if number < failed else "READY"
        events += lifecycle_events(f"m{number:03d}", "QUEUED", outcome)
    events += lifecycle_events("still_training", "QUEUED", "FINETUNING")  # outside the rate
    pipeline = warehouse(workdir, events)
    assert wilson(pipeline) == [(failed, failed + ready, low, high)]
    assert wilson(pipeline, "failure_rates_weekly") == [(failed, failed + ready, low, high)]
    (row,) = rows(pipeline, "failure_rates")
    assert row["failure_rate"] == pytest.approx(failed / (failed + ready))
    assert (row["models"], row["in_flight"]) == (failed + ready + 1, 1)


def test_rates_by_base_model_and_no_rate_without_resolved_models(workdir: Path) -> None:
    events = [*lifecycle_events("a", "QUEUED", "FAILED"), *lifecycle_events("b", "QUEUED")]
    bases = {"a": ("BASE_TYPE_GENERATIVE", "command-light"), "b": ("BASE_TYPE_RERANK", None)}
    pipeline = warehouse(workdir, events, base_models=bases)
    found = rows(pipeline, "failure_rates_by_base_model", order="base_type")
    assert [(r["base_type"], r["base_model_name"], r["models"], r["failed"]) for r in found] == [
        ("BASE_TYPE_GENERATIVE", "command-light", 1, 1),
        ("BASE_TYPE_RERANK", None, 1, 0),
    ]
    rerank = found[1]
    assert (rerank["resolved"], rerank["failure_rate"], rerank["wilson_low"], rerank["wilson_high"]) == (
        0,
        None,
        None,
        None,
    )


def test_views_are_idempotent_and_follow_new_loads(workdir: Path) -> None:
    pipeline = warehouse(workdir, lifecycle_events("m1", "QUEUED"))
    assert create_views(pipeline) == VIEWS
    load(pipeline, lifecycle_events("m1", "QUEUED", "FAILED"))
    assert lifecycle(pipeline, "m1")["first_outcome"] == "failed"
    assert len(rows(pipeline, "status_intervals")) == 2


def assert_empty_views(pipeline: dlt.Pipeline) -> None:
    for view in VIEWS:
        assert rows(pipeline, view) == [], view


def test_empty_warehouse_has_the_tables_and_empty_views(workdir: Path) -> None:
    pipeline = make_pipeline(workdir)
    pipeline.run(hand_made([], events_table([])))  # dlt creates no table for a run without data
    assert create_views(pipeline) == VIEWS
    assert_empty_views(pipeline)
    with duckdb.connect(str(workdir / "cohere_events.duckdb"), read_only=True) as con:
        columns = dict(
            con.sql(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'cohere_finetuning' and table_name = 'events'"
            ).fetchall()
        )
        model_columns = {
            name
            for (name,) in con.sql(
                "select column_name from information_schema.columns "
                "where table_schema = 'cohere_finetuning' and table_name = 'finetuned_models'"
            ).fetchall()
        }
    assert columns == {
        "finetuned_model_id": "VARCHAR",
        "user_id": "VARCHAR",
        "status": "VARCHAR",
        "created_at": "TIMESTAMP WITH TIME ZONE",
    }
    assert set(MODEL_COLUMNS) <= model_columns
    load(pipeline, lifecycle_events("m1", "QUEUED", "READY"))  # the first real load after that
    assert lifecycle(pipeline, "m1")["first_outcome"] == "ready"


def test_views_on_a_pipeline_that_never_ran(workdir: Path) -> None:
    pipeline = make_pipeline(workdir)
    assert create_views(pipeline) == VIEWS
    assert_empty_views(pipeline)


CHATHAM_EVENTS = [
    ("sunday_night", None, "STATUS_QUEUED", "2026-01-11T23:30:00Z"),  # Monday 13:15 in Chatham
    ("sunday_night", None, "STATUS_FAILED", "2026-01-12T01:00:00Z"),
    ("monday_early", None, "STATUS_QUEUED", "2026-01-12T00:10:00Z"),  # still Monday in UTC
    ("monday_early", None, "STATUS_READY", "2026-01-12T02:00:00.25Z"),
    ("dst_span", None, "STATUS_QUEUED", "2026-04-04T12:00:00Z"),  # Chatham leaves DST on 2026-04-05
    ("dst_span", None, "STATUS_READY", "2026-04-06T12:00:00Z"),
]
SNAPSHOT = """
select cohort_week, models, failed, ready from cohere_finetuning.failure_rates_weekly order by cohort_week;
select finetuned_model_id, first_seen_at, time_to_ready_seconds, first_outcome
    from cohere_finetuning.model_lifecycle order by finetuned_model_id;
select finetuned_model_id, interval_seq, status, entered_at, exited_at, duration_seconds
    from cohere_finetuning.status_intervals where not is_open order by finetuned_model_id, interval_seq
"""


def snapshot(path: Path, session_time_zone: str | None = None) -> str:
    """Now-independent view contents as JSON text, timestamps as UTC epochs."""
    with duckdb.connect(str(path), read_only=True) as con:
        if session_time_zone:
            con.sql(f"set TimeZone = '{session_time_zone}'")
        result = [con.sql(sql).fetchall() for sql in SNAPSHOT.split(";")]
    return json.dumps(result, default=lambda v: v.timestamp() if isinstance(v, datetime) else v.isoformat())


def test_results_are_utc_whatever_the_time_zone(workdir: Path) -> None:
    warehouse(workdir, CHATHAM_EVENTS)
    path = workdir / "cohere_events.duckdb"
    in_utc = snapshot(path, "UTC")
    weeks = json.loads(in_utc)[0]
    assert [week[0] for week in weeks] == ["2026-01-05", "2026-01-12", "2026-03-30"]
    assert snapshot(path, "Pacific/Chatham") == in_utc
    script = (
        "import sys, duckdb; from pathlib import Path; from tests.test_views import snapshot; "
        "zone = duckdb.connect().sql(\"select current_setting('TimeZone')\").fetchall()[0][0]; "
        "print(zone); print(snapshot(Path(sys.argv[1])))"
    )
    env = {**os.environ, "TZ": "Pacific/Chatham"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    zone, output = done.stdout.strip().splitlines()
    assert zone == "Pacific/Chatham"
    assert output == in_utc
    lifecycles = {row[0]: row for row in json.loads(in_utc)[1]}
    assert lifecycles["dst_span"][2] == 2 * 86400.0 and lifecycles["monday_early"][2] == 6600.25
    assert date.fromisoformat(weeks[0][0]).weekday() == 0


POSTGRES_EVENTS = [
    *lifecycle_events("retried", "QUEUED", "FINETUNING", "FAILED", "QUEUED", "FINETUNING", "READY"),
    *lifecycle_events("cancelled", "QUEUED", "DELETED"),
    ("same_time", "u1", "STATUS_QUEUED", "2026-01-11T23:30:00.123456Z"),
    ("same_time", None, "STATUS_READY", "2026-01-11T23:30:00.123456Z"),
    ("same_time", None, "mystery", "2026-01-12T01:00:00Z"),
]
COMPARED = {
    "status_intervals": (
        "finetuned_model_id, interval_seq, status, entered_at, exited_at, is_open, n_events, "
        "prev_status, next_status, entered_by",
        "finetuned_model_id, interval_seq",
    ),
    "model_lifecycle": (
        "finetuned_model_id, name, base_type, current_status, current_since, first_outcome, "
        "ever_failed, recovered, queue_seconds, training_seconds, time_to_ready_seconds",
        "finetuned_model_id",
    ),
    "failure_rates_weekly": (
        "cohort_week, models, ready, failed, cancelled, in_flight, resolved, failure_rate, wilson_low, wilson_high",
        "cohort_week",
    ),
    "time_in_status": ("finetuned_model_id, status, visits, closed_seconds, currently_in", "1, 2"),
}


def comparable(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, float | int) and not isinstance(value, bool) else value


@pytest.mark.postgres
def test_postgres_views_match_duckdb(workdir: Path, postgres_url: str) -> None:
    duck = warehouse(workdir / "duck", POSTGRES_EVENTS)
    dataset = f"views_{workdir.name[-12:].replace('-', '_')}".lower()
    postgres = make_pipeline(workdir / "pg", dlt.destinations.postgres(postgres_url), dataset)
    assert create_views(postgres) == VIEWS  # empty: creates the tables first
    assert_empty_views(postgres)
    load(postgres, POSTGRES_EVENTS)
    assert create_views(postgres) == VIEWS  # again: drop and create
    for view, (columns, order) in COMPARED.items():
        expected = [{k: comparable(v) for k, v in row.items()} for row in rows(duck, view, columns, order=order)]
        found = [{k: comparable(v) for k, v in row.items()} for row in rows(postgres, view, columns, order=order)]
        assert found == expected, view
    assert {row["finetuned_model_id"]: row["first_outcome"] for row in rows(postgres, "model_lifecycle")} == {
        "retried": "failed",
        "cancelled": "cancelled",
        "same_time": "ready",
    }


def test_wilson_bounds_are_exactly_0_and_1_at_the_ends() -> None:
    """0 failed of 4 has a lower bound of exactly 0 (the formula leaves 2.8e-17), 4 of 4 an upper bound of 1."""
    from pipelines.providers import get
    from pipelines.views import view_files

    query = dict(view_files(get("openai")))["failure_rate_groups"]
    with duckdb.connect() as con:
        con.execute("create table job_lifecycle (first_seen_at timestamptz, base_model text, first_outcome text)")
        for model, outcome in (("a", "succeeded"), ("b", "failed")):
            for _ in range(4):
                con.execute(
                    "insert into job_lifecycle values (timestamptz '2026-11-16 09:00:00+00', ?, ?)", [model, outcome]
                )
        found = con.execute(
            f"select base_model, wilson_low, wilson_high from ({query}) where grouped_by = 'base_model' order by 1"
        ).fetchall()
    assert found[0][0] == "a" and found[0][1] == 0.0 and 0 < found[0][2] < 1
    assert found[1][0] == "b" and found[1][2] == 1.0 and 0 < found[1][1] < 1

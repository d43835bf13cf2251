"""Every view file translates strictly, and sensibly, to the SQL dialect of every destination the README names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import dlt
import pytest
import sqlglot
from dlt.common.destination import Destination

from pipelines.providers import all_providers, get
from pipelines.views import (
    DIALECTS,
    ViewTranslationError,
    expand_view_queries,
    translate,
    translated_views,
    unsupported_raises,
    view_files,
    view_schema,
)
from tests.test_views import Event, load, make_pipeline, rows, warehouse

README = Path(__file__).resolve().parent.parent / "README.md"
# destination (as the README names it) -> the sqlglot dialect dlt translates the views to
DESTINATIONS = {
    "duckdb": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
}
# Functions each dialect's output may call, checked against that database's documentation. A new view that needs
# another function adds it here after checking that the function exists there with the same meaning.
COMMON = {
    "AVG", "CAST", "CEIL", "COALESCE", "COUNT", "FLOOR", "GROUPING", "LAG", "LEAD", "LOWER", "MAX", "MIN",
    "NULLIF", "REGEXP_REPLACE", "ROW_NUMBER", "SQRT", "SUM", "UPPER",
}  # fmt: skip
FUNCTIONS = {
    "duckdb": COMMON | {"BOOL_OR", "DATE_DIFF", "EPOCH_US", "GREATEST", "LEAST"},
    "postgres": COMMON | {"BOOL_OR", "EXTRACT", "GREATEST", "LEAST", "ROUND"},
    # GREATEST/LEAST only where no argument can be null: they return null for any null argument there
    "bigquery": COMMON
    | {
        "CURRENT_TIMESTAMP", "DATETIME", "DATE_DIFF", "GREATEST", "LEAST", "LOGICAL_OR", "MOD", "TIMESTAMP",
        "UNIX_MICROS",
    },
    "snowflake": COMMON
    | {
        "BOOLOR_AGG", "CONVERT_TIMEZONE", "CURRENT_TIMESTAMP", "DATEDIFF", "DATE_PART", "GREATEST_IGNORE_NULLS",
        "LEAST_IGNORE_NULLS",
    },
}  # fmt: skip
KEYWORDS = {
    "AND",
    "AS",
    "FROM",
    "IN",
    "NOT",
    "OR",
    "OVER",
    "SETS",
    "WHERE",
}  # `word (` that is not a call: cte AS (, IN (, ...
COHERE = get("cohere")
VIEW_QUERIES = list(expand_view_queries(view_files(COHERE)))
SQL = Path(__file__).resolve().parent.parent / "sql"


def provider_views(name: str) -> list[tuple[str, sqlglot.exp.Query]]:
    return list(expand_view_queries(view_files(get(name))))


def code(sql: str) -> str:
    """``sql`` without its comments, upper-cased."""
    return re.sub(r"/\*.*?\*/", "", sql, flags=re.DOTALL).upper()


def test_the_readme_names_exactly_the_checked_destinations() -> None:
    section = README.read_text(encoding="utf-8").split("### Other destinations", 1)[1].split("\n## ", 1)[0].lower()
    named = {name for name in ("motherduck", "bigquery", "snowflake", "postgres", "duckdb") if name in section}
    assert named == set(DESTINATIONS)
    for destination, dialect in DESTINATIONS.items():
        assert Destination.from_reference(destination).capabilities().sqlglot_dialect == dialect
    assert set(DESTINATIONS.values()) == set(DIALECTS)


@pytest.mark.parametrize("provider", list(all_providers()))
@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_view_translates_strictly_and_calls_only_known_functions(dialect: str, provider: str) -> None:
    views = provider_views(provider)
    own = [path for path in SQL.glob(f"{get(provider).sql_name}/*.sql") if path.name != "status_events.sql"]
    assert len(views) == len(list(SQL.glob("*.sql"))) + len(own)
    for name, query in views:
        sql = translate(name, query, dialect)  # raises on anything sqlglot cannot translate
        called = set(re.findall(r"\b([A-Z_][A-Z0-9_]*)\s*\(", code(sql))) - KEYWORDS
        assert called <= FUNCTIONS[dialect], (name, called - FUNCTIONS[dialect])


def test_bigquery_and_snowflake_get_their_own_time_arithmetic() -> None:
    views = {name: query for name, query in VIEW_QUERIES}
    bigquery = code(translate("status_intervals", views["status_intervals"], "bigquery"))
    assert "UNIX_MICROS(ENTERED_AT)" in bigquery and "TIME_TO_UNIX" not in bigquery
    snowflake = code(translate("status_intervals", views["status_intervals"], "snowflake"))
    assert "DATE_PART(EPOCH_MICROSECOND, ENTERED_AT)" in snowflake
    postgres = code(translate("status_intervals", views["status_intervals"], "postgres"))
    assert "CAST(ROUND(EXTRACT(EPOCH FROM ENTERED_AT) * 1000000) AS BIGINT)" in postgres
    for dialect in ("bigquery", "snowflake"):
        # their weeks start on sunday (bigquery) or on the session's week_start: the cohort week is counted out
        assert "TRUNC" not in code(translate("failure_rate_groups", views["failure_rate_groups"], dialect))
        stats = code(translate("status_duration_stats", views["status_duration_stats"], dialect))
        assert "PERCENTILE" not in stats and "FILTER" not in stats and "IFF" not in stats


def test_untranslatable_view_fails_naming_the_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "01_any_status.sql").write_text("select any_value(status) as status from events\n")
    (name, query), *_ = expand_view_queries(view_files(COHERE, tmp_path))
    with pytest.raises(ViewTranslationError, match="view any_status cannot be translated for postgres"):
        translate(name, query, "postgres")
    # dlt's path (a PostgreSQL pipeline: translating needs no server)
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://loader:unused@127.0.0.1:9/none")
    pipeline = make_pipeline(tmp_path / "pg", dlt.destinations.postgres())
    with pytest.raises(ViewTranslationError, match="any_status"):
        translated_views(pipeline, view_schema(pipeline), sql_dir=tmp_path)


def test_what_dlt_only_warns_about_raises() -> None:
    query = sqlglot.parse_one("select any_value(status) from events", read="duckdb")
    expected = r"view v cannot be translated for postgres: .*IGNORE NULLS"
    with pytest.raises(ViewTranslationError, match=expected), unsupported_raises("v", "postgres"):
        query.sql(dialect="postgres")  # as dlt's to_sql calls sqlglot: unsupported is a warning by default
    with unsupported_raises("v", "postgres"):
        query.sql(dialect="duckdb")


def test_a_modulo_that_sqlglot_would_misread_is_refused(tmp_path: Path) -> None:
    (tmp_path / "01_weekday.sql").write_text("select finetuned_model_id, 10 - 3 % 7 as n from events\n")
    (name, query), *_ = expand_view_queries(view_files(COHERE, tmp_path))
    with pytest.raises(ViewTranslationError, match="parentheses"):
        translate(name, query, "duckdb")


@pytest.mark.parametrize("destination", ["postgres", "motherduck"])
def test_dlt_translates_every_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, destination: str) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://loader:unused@127.0.0.1:9/none")
    monkeypatch.setenv("DESTINATION__MOTHERDUCK__CREDENTIALS", "md:///none?motherduck_token=unused")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    pipeline = dlt.pipeline(
        pipeline_name="cohere_events", destination=destination, dataset_name="cohere_finetuning",
        pipelines_dir=str(tmp_path / "pipelines"),
    )  # fmt: skip
    queries = translated_views(pipeline, view_schema(pipeline))
    assert [name for name, _ in queries] == [name for name, _ in VIEW_QUERIES]
    epoch = "EPOCH_US(" if destination == "motherduck" else "EXTRACT(EPOCH FROM"
    status_intervals = dict(queries)["status_intervals"]
    assert epoch in status_intervals.upper() and '"cohere_finetuning"."events"' in status_intervals


# closed QUEUED intervals of 7 lengths and FINETUNING ones of 2: p50 and p90 interpolate between neighbours
DURATIONS = {"QUEUED": [5.0, 1.0, 9.0, 2.5, 7.0, 100.0, 3.000001], "FINETUNING": [10.0, 20.0]}
EXPECTED = {"QUEUED p50": 5.0, "QUEUED p90": 9.0 + (100.0 - 9.0) * 0.4, "FINETUNING p50": 15.0, "FINETUNING p90": 19.0}


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def quantile_events() -> list[Event]:
    """One model per QUEUED duration; the first two then train for the FINETUNING durations and become READY."""
    events: list[Event] = []
    trainings = [*DURATIONS["FINETUNING"], *[None] * len(DURATIONS["QUEUED"])]
    for number, (queued, training) in enumerate(zip(DURATIONS["QUEUED"], trainings, strict=False)):
        start = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
        events.append((f"m{number}", None, "STATUS_QUEUED", iso(start)))
        events.append((f"m{number}", None, "STATUS_FINETUNING", iso(start + queued)))
        if training is not None:
            events.append((f"m{number}", None, "STATUS_READY", iso(start + queued + training)))
    return events


def quantiles(pipeline: dlt.Pipeline) -> dict[str, float]:
    found = rows(pipeline, "status_duration_stats", where="status in ('QUEUED', 'FINETUNING')")
    return flat({row["status"]: (row["p50_seconds"], row["p90_seconds"]) for row in found})


def flat(found: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {
        f"{status} {name}": float(value)
        for status, pair in found.items()
        for name, value in zip(("p50", "p90"), pair, strict=True)
    }


def test_percentiles_interpolate_like_quantile_cont(workdir: Path) -> None:
    pipeline = warehouse(workdir, quantile_events())
    assert quantiles(pipeline) == pytest.approx(EXPECTED, abs=1e-9)
    direct = rows(
        pipeline,
        "status_intervals",
        "status, quantile_cont(duration_seconds, 0.5) as p50, quantile_cont(duration_seconds, 0.9) as p90",
        where="not is_open and status in ('QUEUED', 'FINETUNING') group by status",
    )
    assert quantiles(pipeline) == pytest.approx(flat({r["status"]: (r["p50"], r["p90"]) for r in direct}), abs=1e-9)


@pytest.mark.postgres
def test_percentiles_and_durations_on_postgres(workdir: Path, postgres_url: str) -> None:
    dataset = f"dialects_{workdir.name[-12:].replace('-', '_')}".lower()
    events = quantile_events()
    postgres = make_pipeline(workdir / "pg", dlt.destinations.postgres(postgres_url), dataset)
    load(postgres, events)
    assert quantiles(postgres) == pytest.approx(EXPECTED, abs=1e-9)
    direct = rows(
        postgres,
        "status_intervals",
        "status, percentile_cont(0.5) within group (order by duration_seconds) as p50, "
        "percentile_cont(0.9) within group (order by duration_seconds) as p90",
        where="not is_open and status in ('QUEUED', 'FINETUNING') group by status",
    )
    assert quantiles(postgres) == pytest.approx(flat({r["status"]: (r["p50"], r["p90"]) for r in direct}), abs=1e-9)
    duck = warehouse(workdir / "duck", events)
    columns = "finetuned_model_id, queue_seconds, training_seconds, time_to_ready_seconds"
    assert rows(postgres, "model_lifecycle", columns, order="1") == rows(duck, "model_lifecycle", columns, order="1")

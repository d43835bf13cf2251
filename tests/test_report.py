"""``cohere-events report`` on hand-made warehouses, run as a separate process like a user or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb

from tests.test_views import events_table, hand_made, lifecycle_events, make_pipeline, warehouse

EVENTS = [
    *lifecycle_events("quick", "QUEUED", "FINETUNING", "DEPLOYING_API", "READY"),
    *lifecycle_events("broken", "QUEUED", "FINETUNING", "FAILED"),
    ("stuck", "u1", "STATUS_QUEUED", "2026-01-05T00:00:00Z"),
    ("stuck", None, "STATUS_FINETUNING", "2026-01-05T00:30:00Z"),
]


def report(cwd: Path, *args: str, columns: str | None = "160") -> subprocess.CompletedProcess[str]:
    """``report`` in ``cwd`` as a separate process, its output piped; ``columns``: its COLUMNS (None: unset)."""
    env = {**os.environ, "COLUMNS": columns or "", "DLT_DATA_DIR": str(cwd / ".dlt-data")}
    if columns is None:
        del env["COLUMNS"]
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "report", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def last_load(workdir: Path) -> tuple[datetime]:
    """When dlt recorded the newest successful load, in UTC."""
    with duckdb.connect(str(workdir / "cohere_events.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        row = con.execute("select max(inserted_at) from cohere_finetuning._dlt_loads where status = 0").fetchone()
    assert row is not None and row[0] is not None
    return (row[0].astimezone(UTC),)


def test_report_tables_for_people(workdir: Path) -> None:
    warehouse(workdir, EVENTS)
    done = report(workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "report: 3 models, failure rate 50.0% (95% 9.5-90.5%), 1 stale model"
    (loaded_at,) = last_load(workdir)
    assert lines[0] == f"{workdir / 'cohere_events.duckdb'}: data as of {loaded_at:%Y-%m-%d %H:%M:%S} UTC"
    text = done.stdout
    for expected in (
        "Time in status",
        "FINETUNING",
        "1h 00m",
        "By cohort week",
        "2026-01-05",
        "Stale models",
        "stuck",
        "FINETUNING",
        "50.0%",
    ):
        assert expected in text


def test_report_json_for_scripts(workdir: Path) -> None:
    warehouse(workdir, EVENTS)
    done = report(workdir, "--format", "json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)  # nothing but JSON on stdout
    assert done.stderr.strip().endswith("report: 3 models, failure rate 50.0% (95% 9.5-90.5%), 1 stale model")
    assert found["warehouse"] == str(workdir / "cohere_events.duckdb")
    (loaded_at,) = last_load(workdir)
    assert found["data_as_of"] == loaded_at.isoformat().replace("+00:00", "Z")
    times = {row["status"]: row for row in found["time_in_status"]}
    assert [row["status"] for row in found["time_in_status"]][:3] == ["QUEUED", "FINETUNING", "DEPLOYING_API"]
    assert times["QUEUED"]["p50_seconds"] == 3600.0 and times["QUEUED"]["closed_intervals"] == 3
    assert times["QUEUED"]["p90_seconds"] == 3600.0 and times["QUEUED"]["max_seconds"] == 3600.0
    assert times["FINETUNING"]["open_intervals"] == 1
    rate = found["failure_rate"]
    assert (rate["models"], rate["ready"], rate["failed"], rate["in_flight"], rate["resolved"]) == (3, 1, 1, 1, 2)
    assert (round(rate["wilson_low"], 4), round(rate["wilson_high"], 4)) == (0.0945, 0.9055)
    assert [week["cohort_week"] for week in found["failure_rates_weekly"]] == ["2026-01-05"]
    (stale,) = found["stale_models"]
    assert (stale["finetuned_model_id"], stale["name"], stale["current_status"]) == ("stuck", "ft-stuck", "FINETUNING")
    assert stale["current_since"] == "2026-01-05T00:30:00Z" and stale["stuck_seconds"] > 48 * 3600


def test_report_on_an_empty_warehouse(workdir: Path) -> None:
    pipeline = make_pipeline(workdir)
    pipeline.run(hand_made([], events_table([])))
    from pipelines.views import create_views

    create_views(pipeline)
    done = report(workdir, "--format", "json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert (found["failure_rate"], found["time_in_status"], found["stale_models"]) == (None, [], [])
    done = report(workdir)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("report: no models in ")


def test_report_without_a_warehouse_is_a_usage_error(workdir: Path) -> None:
    done = report(workdir)
    assert done.returncode == 2
    assert "no warehouse at" in done.stderr and "cohere_events.duckdb" in done.stderr
    assert not (workdir / "cohere_events.duckdb").exists()  # reading never creates one


def test_report_without_views_says_how_to_make_them(workdir: Path) -> None:
    pipeline = dlt.pipeline(
        "cohere_events",
        destination=dlt.destinations.duckdb(str(workdir / "cohere_events.duckdb")),
        dataset_name="cohere_finetuning",
        pipelines_dir=str(workdir / "pipelines"),
    )
    pipeline.run(hand_made([], events_table(EVENTS[:1])))  # loaded, but no views created
    done = report(workdir)
    assert done.returncode == 2
    assert "cohere-events views" in done.stderr


def test_report_reads_the_warehouse_read_only(workdir: Path) -> None:
    warehouse(workdir, EVENTS)
    path = workdir / "cohere_events.duckdb"
    with duckdb.connect(str(path), read_only=True):  # a notebook holding the file open to read
        done = report(workdir, "--format", "json")
    assert done.returncode == 0, done.stderr


def test_report_training_section(workdir: Path) -> None:
    from tests.test_training_summary import load_hand_made

    load_hand_made(workdir)
    done = report(workdir, "--format", "json")
    assert done.returncode == 0, done.stderr
    training = json.loads(done.stdout)["training"]  # valid JSON: NaN travels as the string "NaN"
    by_base = {row["base_model"]: row for row in training["by_base_model"]}
    assert list(by_base) == ["command-r", "english", "command-light"]
    chat = by_base["command-r"]  # "chat" (0.65, NaN) and "single" (0.4, 3.0); the NaN cross-entropy is left out
    assert (chat["models"], chat["median_final_accuracy"], chat["median_final_cross_entropy"]) == (2, 0.525, 3.0)
    assert chat["diverged"] == 1
    assert by_base["command-light"]["median_final_cross_entropy"] is None and by_base["english"]["diverged"] == 1
    diverged = {row["finetuned_model_id"]: row for row in training["diverged"]}
    assert set(diverged) == {"chat", "spiky", "lost"}
    assert (diverged["chat"]["first_non_finite_step"], diverged["chat"]["final_cross_entropy"]) == (40, "NaN")
    assert diverged["spiky"]["final_cross_entropy"] is None

    done = report(workdir)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for expected in ("Training: final metrics by base model", "command-r", "0.525", "3.000", "Diverged trainings"):
        assert expected in text
    assert "NaN" in text.split("Diverged trainings")[1]


def test_report_on_a_warehouse_from_before_training_metrics(workdir: Path) -> None:
    warehouse(workdir, EVENTS)
    with duckdb.connect(str(workdir / "cohere_events.duckdb")) as con:  # views as an older version made them
        con.execute("drop view cohere_finetuning.training_outcomes")
        con.execute("drop view cohere_finetuning.training_summary")
        con.execute("drop table cohere_finetuning.training_step_metrics")
    done = report(workdir, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["training"] is None
    done = report(workdir)
    assert done.returncode == 0, done.stderr
    assert "Training" not in done.stdout and "Time in status" in done.stdout


def test_report_without_training_metrics_has_no_training_tables(workdir: Path) -> None:
    warehouse(workdir, EVENTS)  # current views, but no model logged metrics
    done = report(workdir, "--format", "json")
    assert json.loads(done.stdout)["training"] == {"by_base_model": [], "diverged": []}
    done = report(workdir)
    assert done.returncode == 0 and "Training" not in done.stdout and "Diverged" not in done.stdout

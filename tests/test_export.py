"""``cohere-events export``: Parquet round trip, UTC month partitions, atomic replacement, refusals, subsets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.export import MANIFEST, PARTITION, export_warehouse, provider_items, swap_by_renames
from pipelines.providers import get
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from pipelines.runner import LoadOptions, run_load

NAMES = [item.key for item in provider_items(get("cohere"))]  # Cohere's layout: the tables, then the views
PARTITIONED = {"events": PARTITION}

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WAREHOUSE = "cohere_events.duckdb"
DATASET = "cohere_finetuning"
BOUNDARY = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # already November east of UTC, still October in UTC


def load(world: World) -> None:
    """One real incremental load of ``world`` through the simulated API into ./cohere_events.duckdb."""
    with FakeApiServer(FakeCohereApi(world)) as server:
        run_load(DEFAULT_API_KEY, server.url, LoadOptions(requests_per_minute=0))


def export(*args: str) -> Any:
    """``cohere-events export ...`` in this process; returns click's result."""
    return CliRunner().invoke(app, ["export", *args], catch_exceptions=False)


def query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """A read-only query on the warehouse in a UTC session."""
    with duckdb.connect(WAREHOUSE, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def parquet_source(folder: Path, name: str) -> str:
    """DuckDB's reader over one exported table or view."""
    if name in PARTITIONED:
        return f"read_parquet('{folder / name}/**/*.parquet', hive_partitioning = true)"
    return f"read_parquet('{folder / name}.parquet')"


def exported_types(folder: Path, name: str) -> list[tuple[str, str]]:
    """Column names and DuckDB types as read back from Parquet, without the partition column."""
    rows = query(f"describe select * from {parquet_source(folder, name)}")
    partition = PARTITIONED.get(name, ("", ""))[1]
    return [(str(row[0]), str(row[1])) for row in rows if row[0] != partition]


def expected_type(column: str, kind: str) -> str:
    """What each warehouse type becomes in Parquet: timestamps keep UTC, durations are doubles."""
    if kind.startswith("TIMESTAMP"):
        return "TIMESTAMP WITH TIME ZONE"
    if kind == "INTERVAL" or kind.startswith("DECIMAL") or column.endswith("_seconds"):
        return "DOUBLE"
    if kind in ("HUGEINT", "UHUGEINT"):
        return "BIGINT"
    return kind


def utc_months() -> set[str]:
    """The UTC months of the warehouse's events, computed in Python."""
    return {f"{created.astimezone(UTC):%Y-%m}" for (created,) in query(f"select created_at from {DATASET}.events")}


def partitions(folder: Path) -> set[str]:
    return {path.name.removeprefix("month=") for path in (folder / "events").iterdir()}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def siblings(folder: Path) -> list[str]:
    """Names beside ``folder`` that an export might have left behind."""
    return sorted(path.name for path in folder.parent.iterdir() if path.name.startswith(f".{folder.name}."))


@pytest.fixture
def world(workdir: Path) -> World:
    """A simulated API whose models span several months, with one event an hour before a UTC month ends."""
    world = World(models=30, seed=11, now=NOW)
    model = next(m for m in world.models.values() if m.events[0].created_at < BOUNDARY - timedelta(days=3))
    world.add_event(model.id, "STATUS_PAUSED", BOUNDARY)
    return world


def test_round_trip_keeps_rows_and_types_of_every_table_and_view(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    result = export(str(folder))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"exported {len(NAMES)} tables and views to ")

    manifest = json.loads((folder / MANIFEST).read_text())
    assert list(manifest["tables"]) == list(NAMES)
    expected_files = {f"{name}.parquet" for name in NAMES if name not in PARTITIONED} | set(PARTITIONED)
    assert {path.name for path in folder.iterdir()} == expected_files | {MANIFEST}
    for name in NAMES:
        rows = query(f"select count(*) from {DATASET}.{name}")[0][0]
        assert query(f"select count(*) from {parquet_source(folder, name)}")[0][0] == rows, name
        assert manifest["tables"][name]["rows"] == rows, name
        warehouse = [(str(c), str(k)) for c, k, *_ in query(f"describe {DATASET}.{name}")]
        assert exported_types(folder, name) == [(c, expected_type(c, k)) for c, k in warehouse], name
    assert query(f"select count(*) from {DATASET}.events")[0][0] > 0
    assert query(f"select count(*) from {DATASET}.status_intervals")[0][0] > 0


def test_pyarrow_and_pandas_read_timestamps_with_time_zone_and_float_durations(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    assert export(str(folder)).exit_code == 0
    for name in NAMES:
        path = folder / name if name in PARTITIONED else folder / f"{name}.parquet"
        table = pads.dataset(path, format="parquet", partitioning="hive").to_table()
        frame = pd.read_parquet(path)
        assert len(frame) == table.num_rows, name
        for field in table.schema:
            if field.name.endswith("_at") or field.name.endswith("_since"):
                assert pa.types.is_timestamp(field.type) and field.type.tz == "UTC", (name, field)
                assert isinstance(frame[field.name].dtype, pd.DatetimeTZDtype), (name, field.name)
                assert str(frame[field.name].dtype.tz) == "UTC", (name, field.name)
            if field.name.endswith("_seconds"):
                assert field.type == pa.float64(), (name, field)
                assert frame[field.name].dtype == "float64", (name, field.name)
    events = pd.read_parquet(folder / "events")
    assert str(events["created_at"].dtype) == "datetime64[us, UTC]"
    assert {f"{moment:%Y-%m}" for moment in events["created_at"]} == set(events["month"].astype(str))


def test_events_partitioned_by_utc_month_whatever_the_machine_time_zone(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    command = [sys.executable, "-m", "pipelines.cli", "export", str(folder), "--tables", "events"]
    env = {**os.environ, "TZ": "Pacific/Kiritimati"}  # UTC+14: 23:30 on 31 October is already November there
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert partitions(folder) == utc_months()
    assert len(utc_months()) >= 3
    boundary = query(
        f"select count(*) from {parquet_source(folder, 'events')} where created_at = ? and month = '2026-10'",
        [BOUNDARY],
    )
    assert boundary[0][0] == 1
    misplaced = query(
        f"select count(*) from {parquet_source(folder, 'events')} where strftime(created_at, '%Y-%m') <> month"
    )
    assert misplaced[0][0] == 0


def test_repeat_export_replaces_everything_and_leaves_no_stale_partition(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    assert export(str(folder)).exit_code == 0
    first = partitions(folder)
    assert first == utc_months()

    model = next(iter(world.models.values()))
    world.add_event(model.id, "STATUS_DELETED", NOW + timedelta(days=15))  # a new month arrives
    world.advance(30 * 86400)
    load(world)
    assert export(str(folder)).exit_code == 0
    assert partitions(folder) == utc_months() == first | {"2026-12"}

    oldest = min(first)
    with duckdb.connect(WAREHOUSE) as con:  # a month disappears from the warehouse
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"delete from {DATASET}.events where strftime(created_at, '%Y-%m') = ?", [oldest])
    result = export(str(folder), "--tables", "events")
    assert result.exit_code == 0, result.output
    assert oldest not in partitions(folder)
    assert partitions(folder) == utc_months()
    rows = query(f"select count(*) from {DATASET}.events")[0][0]
    assert query(f"select count(*) from {parquet_source(folder, 'events')}")[0][0] == rows
    assert {path.name for path in folder.iterdir()} == {"events", MANIFEST}  # the other files went too
    assert list(json.loads((folder / MANIFEST).read_text())["tables"]) == ["events"]
    assert siblings(folder) == []


def test_foreign_folder_is_refused_untouched(world: World, workdir: Path) -> None:
    load(world)
    foreign = workdir / "photos"
    (foreign / "2024").mkdir(parents=True)
    (foreign / "2024" / "beach.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (foreign / MANIFEST).write_text('{"format": "something else"}')
    before = tree(foreign)
    result = export(str(foreign), "--tables", "events")
    assert result.exit_code == 2
    assert "refusing" in result.output and str(foreign) in result.output
    assert tree(foreign) == before
    assert siblings(foreign) == []

    a_file = workdir / "notes.txt"
    a_file.write_text("keep me")
    result = export(str(a_file), "--tables", "events")
    assert result.exit_code == 2 and "not a folder" in result.output
    assert a_file.read_text() == "keep me"


def test_empty_or_missing_folder_is_fine(world: World, workdir: Path) -> None:
    load(world)
    empty = workdir / "empty"
    empty.mkdir()
    assert export(str(empty), "--tables", "events").exit_code == 0
    nested = workdir / "a" / "b" / "exports"
    assert export(str(nested), "--tables", "finetuned_models").exit_code == 0
    assert {path.name for path in nested.iterdir()} == {"finetuned_models.parquet", MANIFEST}
    assert (empty / "events").is_dir()


def test_tables_subset_and_unknown_names(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "subset"
    result = export(str(folder), "--tables", "finetuned_models, events")
    assert result.exit_code == 0, result.output
    assert {path.name for path in folder.iterdir()} == {"events", "finetuned_models.parquet", MANIFEST}
    manifest = json.loads((folder / MANIFEST).read_text())
    assert list(manifest["tables"]) == ["events", "finetuned_models"]
    assert manifest["tables"]["finetuned_models"]["rows"] == 30
    columns = [str(row[0]) for row in query(f"describe select * from {parquet_source(folder, 'finetuned_models')}")]
    assert not [column for column in columns if "api_key" in column]

    before = tree(folder)
    result = export(str(folder), "--tables", "events,failure_rate,nope")
    assert result.exit_code == 2
    assert "unknown table or view: failure_rate, nope" in result.output
    assert "failure_rates_weekly" in result.output  # the message lists what may be chosen
    assert tree(folder) == before


def test_export_without_a_warehouse_is_a_usage_error(workdir: Path) -> None:
    result = export(str(workdir / "out"))
    assert result.exit_code == 2
    assert "no warehouse" in result.output
    assert not (workdir / "out").exists()


def test_a_reader_never_finds_the_export_missing_during_repeat_exports(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    names = ["finetuned_models", "failure_rates"]
    export_warehouse(folder, names)
    missing: list[str] = []
    reads = 0
    stop = threading.Event()

    def read_forever() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
                listed = manifest["tables"]["finetuned_models"]["path"]
                assert (folder / listed).read_bytes()[:4] == b"PAR1"
                reads += 1
            except FileNotFoundError as error:
                missing.append(str(error.filename))

    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    try:
        for _ in range(32):
            export_warehouse(folder, names)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    assert missing == [], f"the export was missing {len(missing)} times out of {reads + len(missing)} reads"
    assert reads > 0
    assert siblings(folder) == []
    assert is_complete_export(folder)


def is_complete_export(folder: Path) -> bool:
    """Whether ``folder`` holds our manifest and every file it lists, with the rows it claims."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for name, table in manifest["tables"].items():
        rows = query(f"select count(*) from {parquet_source(folder, name)}")[0][0]
        if rows != table["rows"]:
            return False
    return manifest["format"] == "cohere-events export" and bool(manifest["tables"])


CRASH_DURING_EXPORT = """
import os, signal, sys
from pathlib import Path
from pipelines.export import MANIFEST, export_warehouse

target, crash_at = Path(sys.argv[1]), int(sys.argv[2])
ours = (target.name, f".{target.name}.")
armed, steps = False, 0

def step(event, args):
    # every change to the export folders once the new export is written, and every foreign call (renameat2)
    if event == "ctypes.call_function":
        return True
    if event in ("os.rename", "os.replace", "os.chmod", "os.mkdir", "os.rmdir", "shutil.rmtree") and args:
        path = Path(os.fsdecode(args[0])) if isinstance(args[0], (str, bytes, os.PathLike)) else None
        return path is not None and path.parent == target.parent and path.name.startswith(ours)
    return False

def crash_at_step(event, args):
    global armed, steps
    if event == "open" and str(args[0]).endswith(MANIFEST) and "w" in str(args[1]):
        armed = True
    elif armed and step(event, args):
        steps += 1
        if steps == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(crash_at_step)
export_warehouse(target, ["finetuned_models", "events"])
print("finished after", steps, "steps")
"""


def test_a_repeat_export_killed_at_any_step_leaves_a_complete_export(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    export_warehouse(folder, ["finetuned_models"])
    crashes = 0
    for crash_at in range(1, 20):
        done = subprocess.run(
            [sys.executable, "-c", CRASH_DURING_EXPORT, str(folder), str(crash_at)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert folder.is_dir(), f"killed at step {crash_at}, the export folder was gone"
        assert is_complete_export(folder), crash_at
        if done.returncode == 0:
            assert done.stdout.startswith("finished"), done.stdout
            break
        assert done.returncode == -signal.SIGKILL, done.stderr
        crashes += 1
    else:
        pytest.fail("the export never finished")
    assert crashes >= 3  # the chmod, the exchange and the clean-up were each interrupted
    assert set(json.loads((folder / MANIFEST).read_text())["tables"]) == {"finetuned_models", "events"}


def test_the_fallback_swap_without_renameat2_replaces_the_export_too(world: World, workdir: Path) -> None:
    load(world)
    folder = workdir / "export"
    export_warehouse(folder, ["finetuned_models", "events"])
    staging = workdir / ".export.export-by-hand"
    export_warehouse(staging, ["finetuned_models"])  # a complete new export beside the old one
    swap_by_renames(staging, folder)
    assert not staging.exists() and siblings(folder) == []
    assert {path.name for path in folder.iterdir()} == {"finetuned_models.parquet", MANIFEST}
    assert is_complete_export(folder)


def test_training_metrics_round_trip_with_non_finite_values(workdir: Path) -> None:
    from tests.test_training_summary import METRICS, at, load_hand_made

    load_hand_made(workdir)
    folder = workdir / "export"
    result = export(str(folder), "--tables", "training_step_metrics,training_summary")
    assert result.exit_code == 0, result.output
    table = pads.dataset(folder / "training_step_metrics.parquet", format="parquet").to_table()
    types = {field.name: field.type for field in table.schema}
    assert types["step_number"] == pa.int64() and types["value"] == pa.float64()
    assert types["created_at"] == pa.timestamp("us", tz="UTC")
    assert pa.types.is_string(types["metric"]) and pa.types.is_string(types["finetuned_model_id"])
    found = sorted(
        (row["finetuned_model_id"], row["step_number"], row["metric"], repr(row["value"]), row["created_at"])
        for row in table.to_pylist()
    )
    assert found == sorted((m, s, name, repr(value), at(s)) for m, s, name, value in METRICS)
    assert {"nan", "inf", "-inf"} <= {repr_ for *_, repr_, _ in found}
    summary = pd.read_parquet(folder / "training_summary.parquet")
    assert str(summary["last_step_at"].dtype) == "datetime64[us, UTC]"
    assert summary["last_value"].isna().sum() == 2 and summary["best_value"].isna().sum() == 1  # NaN kept, NULL kept


def test_export_into_an_empty_mount_point_works_and_repeats(world: World, workdir: Path) -> None:
    """A container's volume: DIR is a mount point, so it cannot be swapped whole; files are renamed in one by one."""
    load(world)
    folder = workdir / "volume"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=False).returncode:
        pytest.fail(f"this test needs to mount a tmpfs (run as root, or with CAP_SYS_ADMIN): {folder}")
    try:
        result = export(str(folder))
        assert result.exit_code == 0, result.output
        assert partitions(folder) == utc_months()
        rows = query(f"select count(*) from {DATASET}.events")[0][0]
        assert query(f"select count(*) from {parquet_source(folder, 'events')}")[0][0] == rows
        result = export(str(folder), "--tables", "events")  # a repeat export removes what it no longer writes
        assert result.exit_code == 0, result.output
        assert {path.name for path in folder.iterdir()} == {"events", MANIFEST}
        assert query(f"select count(*) from {parquet_source(folder, 'events')}")[0][0] == rows
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)

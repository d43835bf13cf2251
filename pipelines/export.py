"""``cohere-events export DIR``: every table and view of the warehouse as Parquet, replaced atomically.

``events`` is split by the UTC month of ``created_at`` (hive style, ``DIR/events/month=2025-03/*.parquet``); every
other table and view is one file, ``DIR/<name>.parquet``. That is the default provider's (Cohere's) layout; every
other provider that loaded the warehouse has its own folder named after its dataset, laid out the same way
(``DIR/together_finetuning/job_events/month=2026-11/*.parquet``, ``DIR/together_finetuning/jobs.parquet``).
A manifest (``_cohere_events_export.json``) marks the folder as ours: a repeat export builds the new folder beside
the old one and exchanges the two in one atomic rename (Linux ``renameat2``), so DIR never goes missing, and a
folder without the manifest that holds anything is refused untouched.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines import config, locks, providers
from pipelines.providers import Provider
from pipelines.words import plural

INTERNAL_VIEWS = {"failure_rate_groups"}  # what the failure_rates views select from; not exported
PARTITION = ("created_at", "month")  # the events table of each provider: (timestamp column, partition column)
MANIFEST = "_cohere_events_export.json"
MANIFEST_FORMAT = "cohere-events export"
AT_FDCWD = -100  # renameat2: paths relative to the working directory
RENAME_EXCHANGE = 2
TIMESTAMP_TYPES = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATETIME")


@dataclass
class Exported:
    """One table or view as written: where, how many rows, files and bytes."""

    path: str
    rows: int
    files: int
    bytes: int
    dataset: str


@dataclass(frozen=True)
class Item:
    """A table or view to export: its key (its path under DIR, without ``.parquet``), dataset and name."""

    key: str
    dataset: str
    name: str
    partitioned: bool
    is_view: bool
    made_by_views: bool  # `views` creates it empty in a warehouse loaded before it existed


def provider_items(provider: Provider) -> list[Item]:
    """A provider's tables (events, items, metrics) and views, in that order; keys under its dataset's folder,
    except for the default provider, whose layout is DIR itself."""
    prefix = "" if provider.name == providers.DEFAULT else f"{provider.dataset}/"
    tables = [
        Item(f"{prefix}{table}", provider.dataset, table, table == provider.events_table, False, made)
        for table, made in (
            (provider.events_table, False),
            (provider.items_table, False),
            (provider.metrics_table, True),
        )
    ]
    views = [
        Item(f"{prefix}{name}", provider.dataset, name, False, True, False)
        for name, _, _ in provider.view_files()
        if name not in INTERNAL_VIEWS
    ]
    return tables + views


def all_items() -> list[Item]:
    return [item for provider in providers.all_providers().values() for item in provider_items(provider)]


def export_warehouse(directory: Path, names: Sequence[str] | None = None) -> str:
    """Export ``names`` (default: every table and view of every provider that loaded the warehouse) to
    ``directory``; returns the summary line. Another provider's names are given as ``<dataset>/<name>``."""
    target = check_target(Path(os.path.abspath(Path(directory).expanduser())))
    warehouse = config.existing_warehouse("export")
    selected = select_names(names, warehouse)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    in_place = target.is_dir() and not swappable(target)
    if in_place:
        remove_leftovers(target)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(target), dir=target if in_place else target.parent))
    try:
        results = write_all(warehouse, selected, staging)
        write_manifest(staging, warehouse, results)
        if in_place:
            move_in(staging, target)
        else:
            swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary_line(target, results, time.monotonic() - started)


def select_names(names: Sequence[str] | None, warehouse: Path) -> list[Item]:
    """The named tables and views in contract order (default: those of every provider whose dataset the warehouse
    holds); unknown names are a usage error."""
    items = all_items()
    if not names:
        present = datasets(warehouse)
        loaded = [item for item in items if item.dataset in present]
        default = providers.get(providers.DEFAULT).dataset
        return loaded or [item for item in items if item.dataset == default]  # which then says what is missing
    known = [item.key for item in items]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise config.ConfigError(f"unknown table or view: {', '.join(unknown)}; choose from {', '.join(known)}")
    return [item for item in items if item.key in names]


def datasets(warehouse: Path) -> set[str]:
    """The schemas the warehouse holds."""
    with locks.reading(config.pipelines_dir("duckdb")):
        connection = connect(warehouse)
        try:
            rows = connection.execute("select schema_name from information_schema.schemata").fetchall()
            return {str(row[0]) for row in rows}
        finally:
            connection.close()


def check_target(target: Path) -> Path:
    """Refuse a target that is a file, a symlink, or a non-empty folder that is not a previous export."""
    if target.parent == target:
        raise config.ConfigError(f"refusing to export into {target}: give a folder of its own")
    if target.is_symlink():
        raise config.ConfigError(f"{target} is a symbolic link; give the real folder to export into")
    if not target.exists():
        return target
    if not target.is_dir():
        raise config.ConfigError(f"{target} exists and is not a folder; refusing to replace it")
    if any(not is_leftover(entry, target) for entry in target.iterdir()) and not is_previous_export(target):
        raise config.ConfigError(
            f"{target} is not empty and holds no {MANIFEST} from an earlier export; refusing to replace it "
            "(give an empty or new folder)"
        )
    return target


def is_previous_export(folder: Path) -> bool:
    """Whether ``folder`` carries our manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose session time zone is UTC, so months and casts are UTC everywhere."""
    connection = duckdb.connect(str(warehouse), read_only=True)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def write_all(warehouse: Path, names: list[Item], staging: Path) -> dict[str, Exported]:
    """Write every name into ``staging``; a missing table or view fails before anything is written."""
    with locks.reading(config.pipelines_dir("duckdb")):
        connection = connect(warehouse)  # a run waits for this read to finish before it writes
        try:
            return write_each(connection, names, staging)
        finally:
            connection.close()


def write_each(connection: duckdb.DuckDBPyConnection, items: list[Item], staging: Path) -> dict[str, Exported]:
    check_present(connection, items)
    results: dict[str, Exported] = {}
    for index, item in enumerate(items, 1):
        result = results[item.key] = write_one(connection, item, staging)
        progress(f"[{index}/{len(items)}] {item.key}: {plural(result.rows, 'row')}, {plural(result.files, 'file')}")
    return results


def check_present(connection: duckdb.DuckDBPyConnection, items: list[Item]) -> None:
    """Every requested table and view must be in its dataset."""
    rows = connection.execute("select table_schema, table_name from information_schema.tables").fetchall()
    present = {(str(schema), str(name)) for schema, name in rows}
    missing = [item for item in items if (item.dataset, item.name) not in present]
    if missing:
        hint = (
            "run `cohere-events views`"
            if all(item.is_view or item.made_by_views for item in missing)
            else "run `cohere-events run` first"
        )
        raise config.ConfigError(f"not in the warehouse: {', '.join(item.key for item in missing)} ({hint})")


def write_one(connection: duckdb.DuckDBPyConnection, item: Item, staging: Path) -> Exported:
    """COPY one table or view to Parquet: a hive-partitioned folder for the events, else one file."""
    table = qualified(item.dataset, item.name)
    select = f"select {', '.join(portable_columns(connection, table))} from {table}"
    (staging / item.key).parent.mkdir(parents=True, exist_ok=True)
    if item.partitioned:
        column, key = PARTITION
        destination = staging / item.key
        destination.mkdir()
        sql = (
            f"copy (select *, strftime({quote(column)}, '%Y-%m') as {quote(key)} from ({select})) "
            f"to '{sql_path(destination)}' (format parquet, partition_by ({quote(key)}))"
        )
        rows = copy(connection, sql)
        files = sorted(destination.rglob("*.parquet"))
        return Exported(f"{item.key}/", rows, len(files), sum(f.stat().st_size for f in files), item.dataset)
    destination = staging / f"{item.key}.parquet"
    rows = copy(connection, f"copy ({select}) to '{sql_path(destination)}' (format parquet)")
    return Exported(f"{item.key}.parquet", rows, 1, destination.stat().st_size, item.dataset)


def copy(connection: duckdb.DuckDBPyConnection, sql: str) -> int:
    """Run a COPY and return the rows it wrote."""
    row = connection.execute(sql).fetchone()
    return int(row[0]) if row else 0


def portable_columns(connection: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Select expressions that keep every type readable by pandas and pyarrow.

    Naive timestamps become UTC ``timestamptz``; intervals, decimals and ``*_seconds`` columns become seconds as
    ``double``; DuckDB's 128-bit integers (from ``sum``) become ``bigint``.
    """
    described = connection.execute(f"describe select * from {table}").fetchall()
    return [portable(str(row[0]), str(row[1]).upper()) for row in described]


def portable(column: str, kind: str) -> str:
    """One column's select expression, converted where its DuckDB type travels badly."""
    quoted = quote(column)
    if kind in TIMESTAMP_TYPES:
        return f"timezone('UTC', {quoted}::timestamp) as {quoted}"
    if kind == "INTERVAL":
        return f"epoch({quoted})::double as {quoted}"
    if kind.startswith("DECIMAL") or (column.endswith("_seconds") and kind in numeric_types()):
        return f"{quoted}::double as {quoted}"
    if kind in ("HUGEINT", "UHUGEINT"):
        return f"{quoted}::bigint as {quoted}"
    return quoted


def numeric_types() -> set[str]:
    """Integer and float types that a duration column is cast from."""
    return {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "REAL",
    }


def qualified(dataset: str, name: str) -> str:
    return f"{quote(dataset)}.{quote(name)}"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def write_manifest(staging: Path, warehouse: Path, results: dict[str, Exported]) -> None:
    """Mark the folder as a cohere-events export: names, paths, row counts, time."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "warehouse": str(warehouse),
        "dataset": providers.get(providers.DEFAULT).dataset,  # the one at the top; the others are in `datasets`
        "datasets": sorted({result.dataset for result in results.values()}),
        "partitioning": {
            name: f"hive, {PARTITION[1]} = UTC month of {PARTITION[0]}"
            for name, result in results.items()
            if result.path.endswith("/")
        },
        "tables": {name: asdict(result) for name, result in results.items()},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def staging_prefix(target: Path) -> str:
    return f".{target.name}.export-"


def is_leftover(entry: Path, target: Path) -> bool:
    """A staging folder that an export into ``target`` in place left behind when it was killed."""
    return entry.name.startswith(staging_prefix(target)) and entry.is_dir()


def remove_leftovers(target: Path) -> None:
    for entry in target.iterdir():
        if is_leftover(entry, target):
            shutil.rmtree(entry, ignore_errors=True)


def swappable(target: Path) -> bool:
    """Whether ``target`` can be swapped whole: not a mount point (a container's volume), and on its parent's
    file system."""
    return not os.path.ismount(target) and target.stat().st_dev == target.parent.stat().st_dev


def move_in(staging: Path, target: Path) -> None:
    """Put an export written in ``staging`` (a hidden folder inside ``target``) into ``target`` a file or folder at a
    time, for a ``target`` that cannot be swapped whole (a mount point). Each one is renamed over the old one, so a
    reader sees an old or a new file, never half of one; stale ones go; the manifest comes last."""
    fresh = {entry.name for entry in staging.iterdir()} - {MANIFEST}
    for name in sorted(fresh):
        put(staging / name, target / name)
    for entry in target.iterdir():
        if entry.name not in fresh and entry.name != MANIFEST and entry != staging:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    os.replace(staging / MANIFEST, target / MANIFEST)


def put(new: Path, old: Path) -> None:
    """Rename ``new`` over ``old``: one step for a file, an exchange for a folder where the system has one."""
    if old.is_dir() and not old.is_symlink():
        if exchange(new, old):
            return  # the old folder is now at ``new``, inside staging, which the caller deletes
        shutil.rmtree(old)
    os.replace(new, old)


def swap_into_place(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target`` in one step: at every moment ``target`` is either the old or the new export.

    An existing ``target`` is exchanged with ``staging`` by one ``renameat2(RENAME_EXCHANGE)``, so the old export
    ends up at ``staging``, which the caller deletes; a crash before that leaves the complete new export at
    ``target`` and the old one in the hidden staging folder.
    """
    os.chmod(staging, 0o777 & ~current_umask())
    if not target.exists():
        staging.rename(target)
    elif not exchange(staging, target):
        swap_by_renames(staging, target)


def exchange(first: Path, second: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    function = renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # an old kernel or a filesystem without it
        return False
    raise OSError(error, os.strerror(error), str(second))


@functools.cache
def renameat2() -> Any:
    """libc's ``renameat2`` (glibc 2.28+), or None on other systems."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def swap_by_renames(staging: Path, target: Path) -> None:
    """The fallback without ``renameat2``: two renames, so ``target`` is briefly absent between them.

    A reader may miss the export for that moment, and a crash between the renames leaves it at a hidden
    ``.DIR.old-*`` folder beside ``target``; the old export is put back if the second rename fails.
    """
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def current_umask() -> int:
    """The process umask (mkdtemp makes 0700 folders; an export should look like any other folder)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def progress(message: str) -> None:
    """A progress line on stderr, only for people watching a terminal."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def summary_line(target: Path, results: dict[str, Exported], seconds: float) -> str:
    files = sum(result.files for result in results.values())
    rows = sum(result.rows for result in results.values())
    size = sum(result.bytes for result in results.values())
    return (
        f"exported {len(results)} tables and views to {target}: {plural(files, 'file')}, {plural(rows, 'row')}, "
        f"{human_bytes(size)} in {seconds:.1f} s"
    )


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"

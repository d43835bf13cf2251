"""One incremental load: the warehouse lock, pending packages, the dlt run, the views and the summary."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import orjson
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.runtime.collector import LogCollector, NullCollector

from pipelines import config, locks, providers
from pipelines.config import LoadOptions
from pipelines.extract import MixedOriginError, RunReport
from pipelines.http import ApiError
from pipelines.loops import uvloop_event_loops
from pipelines.memory import cgroup_room_bytes, fix_mmap_threshold, imports_out_of_gc, release_free_memory
from pipelines.providers import Provider, provider_of
from pipelines.signals import stop_on_signals
from pipelines.warehouse_state import trust_the_warehouse, warehouse_state_hash
from pipelines.words import plural

# DuckDB's buffer pool for a run's load, beyond which it spills to a temporary folder beside the warehouse: without
# a cap it keeps every block the load writes in memory, and a run's peak grows with the events it loads. Part of what
# a query needs cannot spill and grows with DuckDB's threads (one per core by default): the merge of a big load ran
# out of 32 MB with 64 threads. So the load runs on DUCKDB_LOAD_THREADS threads whatever the core count, and a user
# who sets more threads gets DUCKDB_MEMORY_PER_THREAD for each.
DUCKDB_MEMORY_LIMIT_MB = 32
DUCKDB_LOAD_THREADS = 2
DUCKDB_MEMORY_PER_THREAD_MB = 4
DUCKDB_GLOBAL_CONFIG = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"
DUCKDB_ROWS_PER_INSERT = 100
DUCKDB_RETRY_MIN_MB = 256  # the least a load gets once more after it ran out of the cap
# What a merge needs grows with the warehouse: a fleet-wide change of 20,000 models (123k events, 1.5M metric values)
# ran out of 32 MB and loaded in 64 MB. So the cap grows by this much per 10,000 models the warehouse holds.
DUCKDB_MB_PER_10K_MODELS = 16
# And with the rows a load brings: a first load of 20,000 Together AI jobs (273k events, 2.8M metric values) ran out
# of 32 MB now and then (the merge de-duplicates the staged rows) and loaded in 48 MB. So 16 MB more per million rows.
DUCKDB_MB_PER_MILLION_ROWS = 16


STATE_VERSIONS_KEPT = 3
log = logging.getLogger(__name__)


class LockedError(Exception):
    """Another run holds the warehouse: exit status 4."""


class IncompleteLoadError(Exception):
    """dlt's load step returned with jobs of the package still to load: exit status 1."""


INCOMPLETE = "the load did not complete (dlt left jobs of the package unloaded); the next run tries it again"


class HostError(Exception):
    """The host refused a write (a full disk, a read-only folder, a permission): exit status 1."""


# What the host refused, by errno and as DuckDB words it (its I/O errors are text, not OSError).
HOST_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
QUOTED_PATH = re.compile(r'"(/[^"]+)"')  # DuckDB names the file: Could not write file "/srv/x.duckdb.wal": ...


@dataclass
class LoadSummary:
    """What a run did, for its last line."""

    models: int
    new_events: int
    requests: int
    retries: int
    seconds: float
    new_metric_rows: int = 0
    fetched: int = 0
    unchanged: int = 0
    paged_in_full: int = 0
    first_out_of_order: str = ""
    finished_pending: bool = False
    skipped: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    restarted: int = 0
    future_dated: int = 0
    first_future_dated: str = ""
    notes: list[str] = field(default_factory=list)
    item: str = "model"  # what the provider lists: "model", "job"
    oddities: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> value -> how often (see RunReport.odd)

    def warnings(self) -> list[str]:
        """What went wrong without failing the run, a line each, for stderr."""
        found = [f"note: {note}" for note in self.notes]
        if self.paged_in_full:
            found.append(
                f"warning: the API did not list {self.first_out_of_order} newest first (it may ignore order_by); "
                f"{plural(self.paged_in_full, self.item)} paged to the end, so nothing was lost, at the cost of more "
                "requests"
            )
        if self.future_dated:
            found.append(
                f"warning: {self.first_future_dated}; {plural(self.future_dated, self.item)} with such events: "
                "their cursors stay at the API's clock, so later events still load"
            )
        for kind, values in self.oddities.items():
            common = ", ".join(f"{value} ({count})" for value, count in values.most_common(3))
            found.append(f"warning: {values.total()} {kind}: {common}; stored as served")
        if self.restarted:
            found.append(
                f"note: {plural(self.restarted, self.item)} started training again from "
                "an earlier step (retrained under the same id, or restarted): their stored training metrics were "
                "replaced with the curve of the last attempt"
            )
        return found

    def line(self) -> str:
        text = (
            f"loaded {plural(self.models, self.item)}, {plural(self.new_events, 'new event')}, "
            f"{plural(self.new_metric_rows, 'new metric value')} in {self.seconds:.1f} s "
            f"({plural(self.requests, 'request')}, {plural(self.retries, 'retry', 'retries')}; "
            f"fetched {plural(self.fetched, self.item)}, skipped {self.unchanged} unchanged)"
        )
        if self.paged_in_full:
            text += f"; paged {plural(self.paged_in_full, self.item)} in full: the API did not list them newest first"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: {'; '.join(self.skipped[:3])}"
        if self.finished_pending:
            text += "; finished an interrupted earlier load first"
        return text


@contextmanager
def warehouse_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock for the whole run; a second run fails at once with LockedError."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockedError(f"another cohere-events run holds the warehouse lock ({holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # `status` tells a live run by this text: see locks.running


def make_pipeline(
    destination: str = "duckdb", progress: bool = False, provider: Provider | None = None
) -> dlt.Pipeline:
    """The dlt pipeline of ``provider`` (default: Cohere) for this warehouse, with its working folder kept apart
    from other warehouses and providers. Every provider's pipeline has the same name, so that dlt finds the same
    DuckDB file for each; each loads its own dataset."""
    dataset = (provider or providers.get(providers.DEFAULT)).dataset
    target: str | Destination[Any, Any] = destination
    if destination == "duckdb":
        # dlt loads the model table as one INSERT ... VALUES statement, and DuckDB needed 90 MB to parse one of 1,000
        # rows (440 MB for 5,000). In statements of 100 rows, 1,000 models take about 10 MB.
        target = dlt.destinations.duckdb(max_rows_per_insert=DUCKDB_ROWS_PER_INSERT)
    collector = LogCollector(log_period=2.0, logger=sys.stderr, dump_system_stats=False) if progress else None
    return dlt.pipeline(
        pipeline_name=config.PIPELINE_NAME,
        destination=target,
        dataset_name=dataset,
        pipelines_dir=str(config.pipelines_dir(destination, dataset)),
        progress=collector or NullCollector(),
    )


def duckdb_load_config(configured: dict[str, Any], memory_mb: int | None = None) -> dict[str, Any]:
    """DuckDB's global settings for a run's load: the user's, with a memory cap of at least ``memory_mb`` and enough
    for the threads, unless they set ``memory_limit`` themselves."""
    try:
        threads = int(configured.get("threads", DUCKDB_LOAD_THREADS))
    except (TypeError, ValueError):
        return configured  # DuckDB says what is wrong with it
    if "memory_limit" in configured:
        return configured
    memory_mb = max(memory_mb or 0, DUCKDB_MEMORY_LIMIT_MB, threads * DUCKDB_MEMORY_PER_THREAD_MB)
    return {**configured, "threads": threads, "memory_limit": f"{memory_mb}MB"}


def merge_cap_mb(models: int, rows: int = 0) -> int:
    """The load's cap for a warehouse that holds ``models`` models (or jobs) and a load of ``rows`` rows: what their
    merges need, measured."""
    return (
        DUCKDB_MEMORY_LIMIT_MB
        + DUCKDB_MB_PER_10K_MODELS * (models // 10_000)
        + DUCKDB_MB_PER_MILLION_ROWS * (rows // 1_000_000)
    )


def configured_duckdb() -> dict[str, Any]:
    """The DuckDB global settings the user configured the dlt way (environment or config files)."""
    return dict(dlt.config.get("destination.duckdb.credentials.global_config", dict) or {})


def user_memory_limit() -> bool:
    """Whether the user set DuckDB's ``memory_limit`` themselves (then it is theirs to raise)."""
    return "memory_limit" in configured_duckdb()


def available_mb() -> int | None:
    """The machine's available memory now, in MB (``MemAvailable``, else the free pages); None when unknown."""
    available_kb = 0
    with suppress(OSError, ValueError, IndexError, StopIteration), open("/proc/meminfo", encoding="ascii") as meminfo:
        available_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    if not available_kb:
        with suppress(OSError, ValueError, AttributeError):
            available_kb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    return available_kb // 1024 if available_kb else None


def room_mb() -> int | None:
    """What this process may still use, in MB: the machine's available memory, bounded by its container's cgroup
    limit; None when neither can be read."""
    cgroup = cgroup_room_bytes()
    rooms = [room for room in (available_mb(), None if cgroup is None else cgroup >> 20) if room is not None]
    return min(rooms) if rooms else None


def bounded_cap_mb(cap_mb: int) -> int:
    """``cap_mb``, but at most half of what the container lets this process still use (DuckDB then spills to disk
    instead of the kernel killing the load), and never under DUCKDB_MEMORY_LIMIT_MB / 2."""
    room = room_mb()
    return cap_mb if room is None else max(DUCKDB_MEMORY_LIMIT_MB // 2, min(cap_mb, room // 2))


def roomier_cap_mb() -> int:
    """A cap for loading again after DuckDB ran out of memory: half of what the machine has available now, at least
    DUCKDB_RETRY_MIN_MB; never more than half of what the container's cgroup limit leaves."""
    cap_mb = max(DUCKDB_RETRY_MIN_MB, (available_mb() or 0) // 2)
    return cap_mb if cgroup_room_bytes() is None else bounded_cap_mb(cap_mb)


def out_of_memory(error: BaseException) -> bool:
    """Whether DuckDB ran out of the memory it was allowed (its error is text, wrapped by dlt)."""
    return any("Out of Memory Error" in str(cause) for cause in error_chain(error))


@contextmanager
def duckdb_memory_cap(destination: str, memory_mb: int | None = None) -> Iterator[None]:
    """Cap DuckDB's memory and threads while a run loads, merged into the global settings the user configured.

    Only for the run: a load spills to disk beyond the cap, but queries such as the views' window functions may
    not, so connections opened afterwards in the same process get DuckDB's defaults (or the user's settings) again.
    """
    if destination != "duckdb":
        yield
        return
    with environment({DUCKDB_GLOBAL_CONFIG: orjson.dumps(duckdb_load_config(configured_duckdb(), memory_mb)).decode()}):
        yield


# dlt writes the model table (and its state) as INSERT files and hands DuckDB a whole file in one call: 20,000 models
# in one file took DuckDB 200 MB to parse. Files of 1,000 rows, loaded one at a time, keep that flat.
FLAT_LOADS = {"NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS": "1000", "LOAD__WORKERS": "1"}


@contextmanager
def flat_loads() -> Iterator[None]:
    """For the run only, dlt settings that keep the load's memory flat in the number of models, unless the user set
    them (environment or config files)."""
    unset = {
        name: value
        for name, value in FLAT_LOADS.items()
        if name not in os.environ and dlt.config.get(name.lower().replace("__", ".")) is None
    }
    with environment(unset):
        yield


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (dlt reads its settings there too) for a block; restore what was there before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warehouse_simulated(pipeline: dlt.Pipeline) -> bool | None:
    """Whether the warehouse holds simulated data (True), real data (False), or nothing yet (None)."""
    pipeline.sync_destination()
    source = provider_of(pipeline).dataset
    state: dict[str, Any] = pipeline.state.get("sources", {}).get(source, {})  # type: ignore[assignment]
    value = state.get("simulated")
    return bool(value) if value is not None else None


def run_load(api_key: str, base_url: str, options: LoadOptions) -> LoadSummary:
    """Load new models and events, then recreate the views. Raises on failure; nothing half-written commits.

    SIGTERM and SIGINT raise :class:`Interrupted`; a full disk, a read-only folder or a permission :class:`HostError`.
    """
    options.validate()
    with stop_on_signals(), config.settled(), imports_out_of_gc(), uvloop_event_loops():
        try:
            return load_once(api_key, base_url, options)
        except Exception as error:
            problem = host_error(error, options.destination)
            if problem:
                raise problem from None
            raise


def load_once(api_key: str, base_url: str, options: LoadOptions) -> LoadSummary:
    """The body of :func:`run_load`."""
    from pipelines.views import create_views

    started = time.monotonic()
    fix_mmap_threshold()  # before extraction allocates: see memory.py
    provider = config.provider(options.provider)
    folder = config.pipelines_dir(options.destination)  # the warehouse's locks, whichever provider loads
    with warehouse_lock(folder), flat_loads():
        pipeline = make_pipeline(options.destination, options.progress, provider)
        with writing(folder, options.destination):
            with warehouse_kept_open(options.destination):
                notes, stored_hash = trust_the_warehouse(pipeline)
                # before a pending package is loaded: its rows are new
                events_before, metrics_before, items = count_rows(
                    pipeline, provider.events_table, provider.metrics_table, provider.items_table
                )
                cap_mb = merge_cap_mb(items)
            finished_pending = finish_pending(pipeline, options.destination, notes, cap_mb)
            with warehouse_kept_open(options.destination):
                expect_simulated = warehouse_simulated(pipeline)
                # the newest state the warehouse holds: as trusted above, unless a pending package just added one
                based_on = warehouse_state_hash(pipeline) if finished_pending else stored_hash
        report = RunReport()
        source = provider.module("source").make_source(
            api_key=api_key,
            base_url=base_url,
            model_ids=list(options.model_ids) or None,
            page_size=options.page_size,
            concurrency=options.concurrency,
            requests_per_minute=options.requests_per_minute,
            lookback_seconds=options.lookback_seconds,
            timeout_seconds=options.timeout_seconds,
            recheck_hours=options.recheck_hours,
            full=options.full,
            metrics=options.metrics,
            report=report,
            expect_simulated=expect_simulated,
            based_on=based_on,
        )
        try:
            # extract, normalize and load: what pipeline.run does after syncing, which warehouse_simulated just did
            pipeline.extract(source)  # the warehouse is closed meanwhile, so notebooks and reports can read it
            release_free_memory()  # what extraction freed, before DuckDB (its own allocator) loads: see memory.py
            pipeline.normalize()
            release_free_memory()
            with writing(folder, options.destination):
                loaded_rows = report.models + report.events + report.metric_rows
                cap_mb = merge_cap_mb(items, loaded_rows)
                load_capped(pipeline, options.destination, notes, report.restarted, cap_mb)
                with warehouse_kept_open(options.destination):
                    events_after, metrics_after = count_rows(pipeline, provider.events_table, provider.metrics_table)
                    new_events, new_metric_rows = events_after - events_before, metrics_after - metrics_before
                    prune_state_history(pipeline)
                    views = create_views(pipeline)
        except Exception as error:
            cause = root_cause(error)
            if isinstance(cause, MixedOriginError):
                raise MixedOriginError(f"{cause}: {warehouse_name(options.destination, provider)}") from None
            raise
    return LoadSummary(
        models=report.models,
        new_events=new_events,
        requests=report.requests.requests,
        retries=report.requests.retries,
        seconds=time.monotonic() - started,
        new_metric_rows=new_metric_rows,
        fetched=report.fetched,
        unchanged=report.unchanged,
        paged_in_full=len(report.paged_in_full),
        first_out_of_order=report.first_out_of_order,
        finished_pending=finished_pending,
        skipped=report.skipped,
        views=views,
        restarted=len(report.restarted),
        future_dated=report.future_dated,
        first_future_dated=report.first_future_dated,
        notes=notes,
        item=provider.item,
        oddities=report.oddities,
    )


@contextmanager
def writing(folder: Path, destination: str) -> Iterator[None]:
    """While the run writes a DuckDB warehouse, readers wait (see locks.py); other destinations need no such care."""
    if destination != "duckdb":
        yield
        return
    with locks.writing(folder):
        yield


def warehouse_name(destination: str, provider: Provider | None = None) -> str:
    """The warehouse as a user would name it: the DuckDB file, else the destination and dataset."""
    path = config.duckdb_path() if destination == "duckdb" else None
    return str(path) if path else f"the {destination} dataset {(provider or providers.get(providers.DEFAULT)).dataset}"


def finish_pending(pipeline: dlt.Pipeline, destination: str, notes: list[str], cap_mb: int = 0) -> bool:
    """Load what an interrupted run left behind, so this run can extract new data afterwards."""
    if not pipeline.has_pending_data:
        return False
    source_state: Any = pipeline.state.get("sources", {}).get(provider_of(pipeline).dataset, {})
    pipeline.normalize()
    load_capped(pipeline, destination, notes, list(source_state.get("restarted") or ()), cap_mb)
    return True


def load_capped(
    pipeline: dlt.Pipeline, destination: str, notes: list[str], restarted: Sequence[str] = (), cap_mb: int = 0
) -> None:
    """dlt's load step under the memory cap: the cap is for loading only, never for reading state or views.

    A load that runs out of the cap (a merge can need more than a flat peak allows, and the package would then stay
    pending for good) is loaded once more with room from the machine, and ``notes`` says so.
    The training-step metrics of ``restarted`` models are deleted first, so that the package's rows (the model's
    whole new curve) replace them: an insert-only merge would keep the old value at every step both runs reached.
    """
    retry = destination == "duckdb" and not user_memory_limit()
    cap_mb = bounded_cap_mb(cap_mb) if retry else cap_mb
    try:
        with duckdb_memory_cap(destination, cap_mb):
            replace_restarted(pipeline, restarted)  # under the cap too: a delete from a large table is a query
            pipeline.load()
    except Exception as error:
        if not retry or not out_of_memory(error):
            raise
    else:
        if not pipeline.list_normalized_load_packages():
            return
        if not retry:  # dlt returns with jobs left when they keep failing in ways it retries
            raise IncompleteLoadError(INCOMPLETE)
    roomier = roomier_cap_mb()
    if roomier <= cap_mb:
        raise IncompleteLoadError(
            f"the load needs more than the {cap_mb} MB of memory that this container leaves DuckDB (cgroup limit); "
            "raise the container's memory limit or set destination.duckdb.credentials.global_config memory_limit"
        )
    with duckdb_memory_cap(destination, roomier):
        pipeline.load()
    if pipeline.list_normalized_load_packages():
        raise IncompleteLoadError(f"{INCOMPLETE}, even with {roomier} MB for DuckDB")
    notes.append(f"the load did not fit DuckDB's memory cap for loads; it was loaded again with {roomier} MB")


def replace_restarted(pipeline: dlt.Pipeline, restarted: Sequence[str]) -> None:
    """Delete the stored training-step metrics of models whose training started again (see fetch_metrics)."""
    provider = provider_of(pipeline)
    if not restarted or count_rows(pipeline, provider.metrics_table) == [0]:
        return
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(provider.metrics_table)
        marks = ", ".join(["%s"] * len(restarted))
        client.execute_sql(f"delete from {table} where {provider.id_column} in ({marks})", *restarted)


@contextmanager
def warehouse_kept_open(destination: str) -> Iterator[None]:
    """Keep the DuckDB warehouse open for a block of steps that each open and close it (dlt's state, counts, views).

    Each open reads the catalog again and each close checkpoints: about 20 ms a time. DuckDB shares one open database
    between the connections of a process, so while this one is held the opens are instant. Never around a load: kept
    open across its jobs, a load of 20,000 models' records ran out of its 32 MB cap; closed after each job, it fits.
    """
    path = config.duckdb_path() if destination == "duckdb" else None
    if path is None or not path.parent.is_dir():
        yield
        return
    import duckdb

    connection = duckdb.connect(str(path))
    try:
        yield
    except BaseException:
        with suppress(Exception):  # what failed inside says what went wrong, not a failing checkpoint after it
            connection.close()
        raise
    connection.close()


def prune_state_history(pipeline: dlt.Pipeline, keep: int = STATE_VERSIONS_KEPT) -> None:
    """Delete all but the newest ``keep`` copies of this pipeline's state from the warehouse.

    dlt stores the whole state again with every load that changes it, and reads only the newest. With a cursor per
    model that is megabytes a run at fleet scale: the table would grow without end, and reading it back at the start
    of a run needs memory in proportion (DuckDB ran out at its 32 MB cap). A failed prune never fails the run.
    """
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("_dlt_pipeline_state")
            client.execute_sql(
                f"delete from {table} where pipeline_name = %s and _dlt_load_id not in "
                f"(select _dlt_load_id from {table} where pipeline_name = %s order by version desc, _dlt_load_id desc "
                f"limit {keep})",
                pipeline.pipeline_name,
                pipeline.pipeline_name,
            )
    except Exception as error:  # the load itself has committed; old state copies only cost space
        log.warning("could not delete old copies of dlt's state: %s", " ".join(str(error).split())[:200])


def count_rows(pipeline: dlt.Pipeline, *tables: str) -> list[int]:
    """Rows in each warehouse table, in one query; 0 for a table that does not exist (yet). Asked of the warehouse,
    never of the local schema, which may name tables the warehouse lost."""
    try:
        with pipeline.sql_client() as client:
            names = [client.make_qualified_table_name(table) for table in tables]
            try:
                rows = client.execute_sql("select " + ", ".join(f"(select count(*) from {name})" for name in names))
                return [int(count) for count in rows[0]] if rows else [0] * len(tables)
            except DestinationUndefinedEntity:  # one of them is not there yet: count each on its own
                return [count_one(client, name) for name in names]
    except DestinationUndefinedEntity:  # the dataset is not there yet
        return [0] * len(tables)


def count_one(client: Any, name: str) -> int:
    try:
        rows = client.execute_sql(f"select count(*) from {name}")
    except DestinationUndefinedEntity:
        return 0
    return int(rows[0][0]) if rows else 0


def root_cause(error: BaseException) -> BaseException:
    """The error behind dlt's wrappers (PipelineStepFailed, ResourceExtractionError, ...).

    A full disk or a refused write wins over what was raised while handling it: dlt's fallback from a hard link or
    rename to a copy raises the copy's ENOSPC with the first attempt's EXDEV as its context.
    """
    chain = error_chain(error)
    known = ApiError | MixedOriginError | LockedError | HostError | config.ConfigError | KeyboardInterrupt
    for current in chain:
        if isinstance(current, known):
            return current
    for current in chain:
        if isinstance(current, OSError) and current.errno in HOST_ERRNOS:
            return current
    return next((current for current in reversed(chain) if host_errno(current)), chain[-1])


def error_chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__ or getattr(current, "exception", None)
    return chain


def host_errno(error: BaseException) -> int | None:
    """The errno of a full disk or a refused write, from an OSError or from DuckDB's text about a file."""
    if isinstance(error, OSError):
        return error.errno if error.errno in HOST_ERRNOS else None
    text = str(error).lower()
    if not QUOTED_PATH.search(text):  # e.g. PostgreSQL's "permission denied for schema": not the host's
        return None
    return next((code for code, words in HOST_ERRNOS.items() if words in text), None)


def host_error(error: BaseException, destination: str) -> HostError | None:
    """One line naming the folder and what the host refused, or None for any other failure."""
    cause = root_cause(error)
    code = host_errno(cause)
    # a copy's ENOSPC names no file: the EXDEV of the rename it replaced names the destination
    others = [other for other in error_chain(error) if isinstance(other, OSError)]
    folder = next(filter(None, map(error_folder, [cause, *others])), None)
    if code is None and isinstance(cause, OSError) and cause.errno == errno.EXDEV and cause.filename2:
        # the cross-device fallback is a copy: if it failed, the destination is probably full
        code = errno.ENOSPC if free_bytes(folder) < 1 << 20 else None
    if code is None:
        return None
    working = config.pipelines_dir(destination)
    if folder and folder.is_relative_to(working):  # not the package's inner folders: the one the user chose
        folder = working
    place = str(folder) if folder else busiest_folder(destination, code)
    what = {
        errno.ENOSPC: f"no space left on device in {place}: free some space",
        errno.EDQUOT: f"disk quota exceeded in {place}: free some space or raise the quota",
        errno.EROFS: f"{place} is on a read-only file system: the warehouse and DLT_DATA_DIR must be writable",
    }.get(code, f"{HOST_ERRNOS[code]} writing in {place}: the user running cohere-events needs write access")
    return HostError(f"{what}; nothing half-written was committed and the next run completes the load")


def error_folder(error: BaseException) -> Path | None:
    """The folder the failed write was in: from the OSError's paths or DuckDB's quoted file name."""
    if isinstance(error, OSError):
        name = error.filename2 or error.filename  # a rename's, link's or copy's destination
    else:
        quoted = QUOTED_PATH.search(str(error))
        name = quoted.group(1) if quoted else None
    if not name or not isinstance(name, str | Path):
        return None
    path = Path(name)
    return path if path.is_dir() and isinstance(error, OSError) and not error.filename2 else path.parent


def busiest_folder(destination: str, code: int) -> str:
    """The warehouse's folder or dlt's working folder, whichever the error most likely came from."""
    warehouse = config.duckdb_path() if destination == "duckdb" else None
    folders = [folder for folder in (warehouse and warehouse.parent, config.pipelines_dir(destination)) if folder]
    if code in (errno.ENOSPC, errno.EDQUOT):
        return str(min(folders, key=free_bytes))
    refused = [folder for folder in folders if not writable(folder)]
    return " and ".join(str(folder) for folder in refused or folders)


def free_bytes(folder: Path | None) -> int:
    """Free space in ``folder`` (or its nearest existing parent); a large number when unknown."""
    while folder is not None and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free if folder else 1 << 62
    except OSError:
        return 1 << 62


def writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (or its nearest existing parent), tried for real."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        (folder / f".cohere-events-probe-{os.getpid()}").touch()
        (folder / f".cohere-events-probe-{os.getpid()}").unlink()
    except OSError:
        return False
    return True

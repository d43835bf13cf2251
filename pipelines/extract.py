"""What every provider's dlt source shares: the run's report, the feed of listed items to child resources, the
fan-out that reads many of them at once, de-duplication of a listing's rows, and timestamps.

An "item" is what a provider lists (a Cohere model, a Together job); its children are its events and metrics.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dlt
import pyarrow as pa
from dlt.common.data_types import TDataType
from dlt.common.schema.typing import TTableSchemaColumns

from pipelines import arrow
from pipelines.changes import ModelRef, Rechecks, SeenModels
from pipelines.http import ApiClient, ClientSettings, MalformedResponseError, NotFoundError, RequestStats, SharedLimits

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # protobuf JSON's non-finite doubles
BASED_ON = "based_on"  # source state: the warehouse state's hash an extraction started from (warehouse_state.py)
UTC_NANOS = pa.timestamp("ns", tz="UTC")
BATCH_ROWS = 20_000  # rows handed to dlt at once: big enough to be cheap, small enough to stay flat


class MixedOriginError(Exception):
    """Simulated and real API data would end up in one warehouse."""


@dataclass
class RunReport:
    """What one extraction did, for the summary line."""

    requests: RequestStats = field(default_factory=RequestStats)
    models: int = 0
    events: int = 0
    metric_rows: int = 0
    fetched: int = 0  # models whose events were read
    unchanged: int = 0  # models skipped as unchanged since the last committed load
    skipped: list[str] = field(default_factory=list)
    paged_in_full: set[str] = field(default_factory=set)  # models whose listing was not newest first
    first_out_of_order: str = ""
    restarted: list[str] = field(default_factory=list)  # models whose training steps started again
    future_dated: int = 0  # models with an event after the API's clock
    first_future_dated: str = ""
    oddities: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> value -> how often

    def odd(self, kind: str, value: str) -> None:
        """Count something odd the API served that was stored anyway (an unknown event type ...); the run warns once
        per kind, with its most common values."""
        self.oddities.setdefault(kind, Counter())[value] += 1

    def out_of_order(self, model_id: str, what: str) -> None:
        """Note a listing that was not newest first; the run warns once, naming the first such listing."""
        if not self.paged_in_full:
            self.first_out_of_order = f"{what} of model {model_id}"
        self.paged_in_full.add(model_id)

    def future(self, model_id: str, event_us: int, clock_us: int) -> None:
        """Note an event dated after what the API's clock vouches for; the run warns once, naming the first."""
        if not self.future_dated:
            self.first_future_dated = (
                f"model {model_id} has an event dated {iso_micros(event_us)}, after the API's clock "
                f"({iso_micros(clock_us)})"
            )
        self.future_dated += 1


def loaded_state_hash(source_state: dict[str, Any]) -> str:
    """The hash of the pipeline state this extraction starts from, when an earlier load made it ("" for none):
    without a runner to ask the warehouse, the local state stands for what the warehouse holds."""
    if not source_state.get("models") and "rechecked_at" not in source_state:
        return ""
    return str(dlt.current.pipeline().state.get("_version_hash") or "")


def nullable_columns(data_type: TDataType, *names: str) -> TTableSchemaColumns:
    """dlt column hints: ``names`` of one ``data_type``, each nullable (a source declares its tables with them)."""
    return {name: {"data_type": data_type, "nullable": True} for name in names}


def metric_value(value: Any, name: str, where: str, non_finite: dict[str, float] = NON_FINITE) -> float:
    """A metric as a double: numbers as they are, the strings of ``non_finite`` ("NaN", "Infinity", "-Infinity") as
    those; anything else is a one-line MalformedResponseError naming the metric and where it was served."""
    if type(value) is float or type(value) is int:
        return float(value)
    if isinstance(value, str) and value in non_finite:
        return non_finite[value]
    raise MalformedResponseError(f"malformed value of metric {name!r} in {where}: {value!r:.60}")


async def named_items(
    get: Callable[[str], Awaitable[dict[str, Any]]], ids: Sequence[str], report: RunReport, item: str
) -> list[dict[str, Any]]:
    """The items (models, jobs) a run was limited to, each once, fetched one by one with ``get``; one that answers
    404 is reported and skipped."""
    found = []
    for item_id in dict.fromkeys(ids):
        try:
            found.append(await get(item_id))
        except NotFoundError:
            report.skipped.append(f"{item} {item_id} not found (404)")
    report.models += len(found)
    return found


class ModelFeed:
    """The listed models, handed from the model list to one child resource. Unbounded: it holds only small
    references, and the model list must never wait for a child (dlt runs them side by side)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ModelRef | None] = asyncio.Queue()

    def publish(self, models: list[ModelRef]) -> None:
        for model in models:
            self.queue.put_nowait(model)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def next(self) -> ModelRef | None:
        """The next listed model; None (again and again) once the list is done."""
        model = await self.queue.get()
        if model is None:
            self.queue.put_nowait(None)  # for the other workers
        return model


Client = TypeVar("Client", bound=ApiClient)
Fetch = Callable[[Client, ModelRef, "asyncio.Queue[pa.Table | None]"], Awaitable[None]]


async def fan_out(
    api: Client,
    feed: ModelFeed,
    wanted: Callable[[ModelRef], bool],
    fetch: Fetch[Client],
    what: str,
    report: RunReport,
) -> AsyncIterator[pa.Table]:
    """Fetch the wanted models of ``feed`` a few at a time; yield their rows in batches of about BATCH_ROWS.

    One producer and one bounded queue for all models: as many models are paged at once as keep every request
    slot busy, and a slow consumer only pauses them.
    """
    out: asyncio.Queue[pa.Table | None] = asyncio.Queue(maxsize=64)
    collector = dlt.current.pipeline().collector
    children, _, item = what.rpartition(" of ")  # "events of model" -> "models read for events"
    progress_label = f"{item}s read for {children}"

    async def worker() -> None:
        while (model := await feed.next()) is not None:
            if not wanted(model):
                continue
            try:
                await fetch(api, model, out)
            except NotFoundError:
                report.skipped.append(f"{what} {model.id} not found (404)")
            collector.update(progress_label)

    async def workers() -> None:
        # The end mark goes to a reader that is there: not when cancelled (the reader closed early and the queue
        # may be full). Decided by the exception: after a model's failure, cancelling() stayed above zero here
        # (Python 3.11), and skipping the mark then hung the reader.
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(api.settings.concurrency * 2):
                    group.create_task(worker())
        except ExceptionGroup as failures:
            await out.put(None)
            raise failures.exceptions[0] from None  # the first failure, with its one-line message
        await out.put(None)

    producer = asyncio.create_task(workers())
    pending: list[pa.Table] = []
    rows = 0
    try:
        while (table := await out.get()) is not None:
            pending.append(table)
            rows += table.num_rows
            if rows >= BATCH_ROWS:
                yield pa.concat_tables(pending)
                pending, rows = [], 0
        await producer  # raises the first failure of any model
        if rows:
            yield pa.concat_tables(pending)
    finally:
        if not producer.done():
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)


def check_origin(simulated: bool | None, expect_simulated: bool | None, provider: str = "Cohere") -> None:
    """Refuse data from the other kind of API (simulated or real) than the warehouse's dataset holds."""
    if expect_simulated is None or simulated is None or simulated == expect_simulated:
        return
    this, other = ("simulated", "real") if simulated else ("real", "simulated")
    raise MixedOriginError(f"this warehouse holds {other} {provider} data; refusing to load {this} data into it")


async def put_unseen(
    out: asyncio.Queue[pa.Table | None],
    table: pa.Table,
    keys: list[tuple[int, str]],
    seen: set[tuple[int, str]],
    floor: int | None = None,
) -> None:
    """Queue the rows whose key (stored form) this listing has not queued yet and whose key's first part is not
    below ``floor``: two rows with one key would both be written, as insert-only merges do not dedupe a batch."""
    fresh = set(keys)
    if len(fresh) == len(keys) and fresh.isdisjoint(seen) and (floor is None or not keys or min(keys)[0] >= floor):
        seen |= fresh  # the usual page, checked with set operations rather than row by row
        await out.put(table)
        return
    keep = []  # some rows repeat or fall below the floor: the rest, row by row
    for index, key in enumerate(keys):
        if (floor is None or key[0] >= floor) and key not in seen:
            seen.add(key)
            keep.append(index)
    if keep:
        await out.put(table.take(arrow.int64s(keep)))


STR: frozenset[type] = frozenset({str})
STR_OR_NONE: frozenset[type] = frozenset({str, type(None)})


def only(values: list[Any], types: frozenset[type]) -> bool:
    """Whether every value has exactly one of these types (a set of types: much faster than a loop in Python)."""
    return set(map(type, values)) <= types


def parse_timestamps(stamps: list[str], where: str) -> pa.Array:
    """RFC 3339 strings (any offset, 0 to 9 fractional digits) as UTC microseconds; nanoseconds are truncated."""
    try:
        parsed = arrow.strings(stamps).cast(UTC_NANOS)  # nanoseconds: protobuf JSON writes up to 9 digits
    except pa.ArrowInvalid:
        return arrow.int64s([to_micros(lenient(stamp, where)) for stamp in stamps], arrow.UTC_MICROS)
    return parsed.cast(arrow.UTC_MICROS, safe=False)  # warehouses keep microseconds


def lenient(stamp: str, where: str) -> datetime:
    """The slow path: a lower-case ``z`` or ``t`` (RFC 3339 allows both), or no offset at all (the API's UTC)."""
    text = stamp.strip().upper()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise MalformedResponseError(f"malformed created_at in {where}: {stamp!r:.60}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def api_clock(updated_at: str | None, started_us: int) -> int:
    """The latest moment the API's clock vouches for, in microseconds: the model's ``updated_at`` or the run's start,
    whichever is later (the start alone when ``updated_at`` is absent or unreadable)."""
    if not updated_at:
        return started_us
    try:
        updated_us = parse_timestamps([updated_at], "updated_at").cast(pa.int64())[0].as_py()
    except MalformedResponseError:
        return started_us
    return max(int(updated_us), started_us)


def iso_micros(micros: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC."""
    return (EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


class Extraction:
    """What the resources of one extraction share, whichever the provider: the client's settings and limits, the
    run's report, the re-check schedules, the per-item marks in dlt state and the feeds of listed items (models,
    jobs) to the child resources (events, metrics)."""

    def __init__(
        self,
        settings: ClientSettings,
        report: RunReport | None,
        recheck_hours: float,
        full: bool,
        children: Sequence[str],
    ) -> None:
        self.settings = settings
        self.report = report or RunReport()
        self.started = time.time()
        self.rechecks = Rechecks(period_seconds=recheck_hours * 3600, now=self.started, full=full)
        self.metric_rechecks = Rechecks(period_seconds=recheck_hours * 3600, now=self.started, full=full)
        self.feeds = {child: ModelFeed() for child in children}
        self.limits: SharedLimits | None = None  # made on first use, inside dlt's event loop
        self._seen: SeenModels | None = None

    def client(self, kind: type[Client]) -> Client:
        """A client of ``kind`` under the run's shared limits, counting into the run's report."""
        if self.limits is None:
            self.limits = SharedLimits.after_head_start(self.settings)
            if self.limits.prefetched is not None:
                self.report.requests.requests += self.limits.prefetched.sent
        return kind(self.settings, self.report.requests, self.limits)

    @property
    def seen(self) -> SeenModels:
        """The per-item marks; there once the list resource has begun (dlt state exists only while one runs)."""
        if self._seen is None:
            raise RuntimeError("the list resource has not begun")
        return self._seen

    def begin_listing(self, state: dict[str, Any], based_on: str | None, events_resource: str) -> None:
        """In the list resource, before anything is listed: mark which warehouse state this extraction continues,
        and read the marks and the last complete listing's time from the source's state."""
        state[BASED_ON] = loaded_state_hash(state) if based_on is None else based_on
        self._seen = SeenModels(state, dlt.current.resource_state(events_resource))  # by name: async has no current
        self.rechecks.last_full_listing = state.get("rechecked_at")
        self.metric_rechecks.last_full_listing = state.get("metrics_rechecked_at", self.rechecks.last_full_listing)

    def publish(self, refs: list[ModelRef]) -> None:
        """Hand listed items, with what this run reads of each, to the child resources."""
        self.report.fetched += sum(ref.events for ref in refs)
        self.report.unchanged += sum(not ref.events for ref in refs)
        for feed in self.feeds.values():
            feed.publish(refs)

    def end_listing(self, state: dict[str, Any], complete: bool, metrics: bool) -> None:
        """After a listing of every item (``complete``), each one due was read: the re-checks move on."""
        if complete:
            state["rechecked_at"] = self.rechecks.now
            if metrics:
                state["metrics_rechecked_at"] = self.metric_rechecks.now

    def close(self) -> None:
        """No more items: the child resources finish what they were handed."""
        for feed in self.feeds.values():
            feed.close()

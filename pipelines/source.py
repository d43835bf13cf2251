"""The dlt source: fine-tuned models merged on ``id`` and their status events, with a cursor per model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.data_types import TDataType
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from pipelines import arrow
from pipelines.client import (
    ClientSettings,
    FinetuningClient,
    MalformedResponseError,
    ModelNotFoundError,
    RequestStats,
    SharedLimits,
)

SOURCE_NAME = "cohere_finetuning"
EVENTS_KEY = ("finetuned_model_id", "created_at", "status")
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("finetuned_model_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
UTC_NANOS = pa.timestamp("ns", tz="UTC")
BATCH_ROWS = 20_000  # events handed to dlt at once: big enough to be cheap, small enough to stay flat


def _cols(data_type: TDataType, *names: str) -> TTableSchemaColumns:
    return {name: {"data_type": data_type, "nullable": True} for name in names}


# Declared so every column the views use exists even before the API has sent a value for it.
MODEL_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    **_cols("text", "name", "creator_id", "organization_id", "status"),
    **_cols("timestamp", "created_at", "updated_at", "completed_at", "last_used"),
    **_cols(
        "text",
        "settings__base_model__name",
        "settings__base_model__version",
        "settings__base_model__base_type",
        "settings__base_model__strategy",
        "settings__dataset_id",
    ),
    **_cols("bool", "settings__multi_label"),
    **_cols(
        "bigint",
        "settings__hyperparameters__early_stopping_patience",
        "settings__hyperparameters__train_batch_size",
        "settings__hyperparameters__train_epochs",
        "settings__hyperparameters__lora_alpha",
        "settings__hyperparameters__lora_rank",
    ),
    **_cols(
        "double",
        "settings__hyperparameters__early_stopping_threshold",
        "settings__hyperparameters__learning_rate",
    ),
    **_cols("text", "settings__hyperparameters__lora_target_modules", "settings__wandb__project"),
    **_cols("text", "settings__wandb__entity"),
}
EVENT_COLUMNS: TTableSchemaColumns = {
    "finetuned_model_id": {"data_type": "text", "nullable": False},
    "user_id": {"data_type": "text", "nullable": True},
    "status": {"data_type": "text", "nullable": False},
    "created_at": {"data_type": "timestamp", "nullable": False, "timezone": True, "precision": 6},
}

METRICS_KEY = ("finetuned_model_id", "step_number", "metric")
METRIC_COLUMNS: TTableSchemaColumns = {
    "finetuned_model_id": {"data_type": "text", "nullable": False},
    "step_number": {"data_type": "bigint", "nullable": False},
    "created_at": {"data_type": "timestamp", "nullable": False, "timezone": True, "precision": 6},
    "metric": {"data_type": "text", "nullable": False},
    "value": {"data_type": "double", "nullable": True},
}


class MixedOriginError(Exception):
    """Simulated and real API data would end up in one warehouse."""


@dataclass
class RunReport:
    """What one extraction did, for the summary line."""

    requests: RequestStats = field(default_factory=RequestStats)
    models: int = 0
    events: int = 0
    skipped: list[str] = field(default_factory=list)


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=2)
def cohere_finetuning(
    api_key: str = dlt.secrets.value,
    base_url: str = "https://api.cohere.com",
    model_ids: Sequence[str] | None = None,
    page_size: int = 100,
    concurrency: int = 16,
    requests_per_minute: int = 500,
    lookback_seconds: float = 3600,
    timeout_seconds: float = 30,
    report: RunReport | None = None,
    expect_simulated: bool | None = None,
) -> tuple[DltResource, DltResource]:
    """Fine-tuned models and their status events from Cohere's fine-tuning API.

    ``model_ids`` limits the run to those models; ``lookback_seconds`` re-reads that far behind each model's
    cursor for late events. ``expect_simulated`` refuses data from the other kind of API (simulated or real).
    """
    settings = ClientSettings(
        base_url=base_url,
        api_key=api_key,
        page_size=page_size,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        timeout_seconds=timeout_seconds,
    )
    report = report or RunReport()
    limits: list[SharedLimits] = []  # made on first use, inside dlt's event loop

    def client() -> FinetuningClient:
        if not limits:
            limits.append(SharedLimits.for_settings(settings))
        return FinetuningClient(settings, report.requests, limits[0])

    @dlt.resource(name="finetuned_models", write_disposition="merge", primary_key="id", columns=MODEL_COLUMNS)
    async def finetuned_models() -> AsyncIterator[list[dict[str, Any]]]:
        async with client() as api:
            async for page in model_pages(api, model_ids, report):
                check_origin(report.requests.simulated, expect_simulated)
                dlt.current.source_state()["simulated"] = report.requests.simulated
                yield page

    @dlt.transformer(  # type: ignore[call-overload]  # dlt's stubs omit the dict form of write_disposition
        name="events",
        data_from=finetuned_models,
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=EVENTS_KEY,
        columns=EVENT_COLUMNS,
    )
    async def events(models: list[dict[str, Any]]) -> AsyncIterator[pa.Table]:
        cursors: dict[str, str] = dlt.current.resource_state("events").setdefault("cursors", {})
        ids = [str(model["id"]) for model in models]
        async with client() as api:
            async for table in new_events(api, ids, cursors, timedelta(seconds=lookback_seconds), report):
                yield table

    return finetuned_models, events


async def model_pages(
    api: FinetuningClient, model_ids: Sequence[str] | None, report: RunReport
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of models: the whole list, or only the named models (a 404 is reported and skipped)."""
    if not model_ids:
        async for page in api.list_model_pages():
            report.models += len(page)
            yield page
        return
    found = []
    for model_id in dict.fromkeys(model_ids):
        try:
            found.append(await api.get_model(model_id))
        except ModelNotFoundError:
            report.skipped.append(f"model {model_id} not found")
    report.models += len(found)
    if found:
        yield found


def check_origin(simulated: bool | None, expect_simulated: bool | None) -> None:
    if expect_simulated is None or simulated is None or simulated == expect_simulated:
        return
    this, other = ("simulated", "real") if simulated else ("real", "simulated")
    raise MixedOriginError(f"this warehouse holds {other} Cohere data; refusing to load {this} data into it")


async def new_events(
    api: FinetuningClient,
    model_ids: list[str],
    cursors: dict[str, str],
    lookback: timedelta,
    report: RunReport,
) -> AsyncIterator[pa.Table]:
    """New events of many models fetched at once, in batches of about BATCH_ROWS rows."""
    queue: asyncio.Queue[pa.Table | None] = asyncio.Queue(maxsize=64)

    collector = dlt.current.pipeline().collector

    async def fetch(model_id: str) -> None:
        try:
            async with api.limits.models_at_once:  # shared by every page of models dlt runs at once
                newest = await fetch_model(api, model_id, cursors.get(model_id), lookback, queue)
        except ModelNotFoundError:
            report.skipped.append(f"events of model {model_id} not found (404)")
            return
        finally:
            collector.update("models paged")
        if newest is not None:
            cursors[model_id] = newest

    async def fetch_all() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for model_id in model_ids:
                    group.create_task(fetch(model_id))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None  # the first failure, with its one-line message
        finally:
            await queue.put(None)

    producer = asyncio.create_task(fetch_all())
    pending: list[pa.Table] = []
    rows = 0
    try:
        while (table := await queue.get()) is not None:
            pending.append(table)
            rows += table.num_rows
            if rows >= BATCH_ROWS:
                report.events += rows
                yield pa.concat_tables(pending)
                pending, rows = [], 0
        await producer  # raises the first failure of any model
        if rows:
            report.events += rows
            yield pa.concat_tables(pending)
    finally:
        if not producer.done():
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)


async def fetch_model(
    api: FinetuningClient,
    model_id: str,
    cursor: str | None,
    lookback: timedelta,
    queue: asyncio.Queue[pa.Table | None],
) -> str | None:
    """Page a model's events newest first until past its cursor minus the lookback; returns the new cursor."""
    floor = datetime.fromisoformat(cursor) - lookback if cursor else None
    floor_us = to_micros(floor) if floor else None
    seen: set[tuple[int, str]] = set()
    newest = to_micros(datetime.fromisoformat(cursor)) if cursor else None
    async with aclosing(api.event_pages(model_id)) as pages:
        async for number, events in pages:
            table, keys = events_table(model_id, events, f"model {model_id}, page {number}")
            micros = [key[0] for key in keys]
            keep = [key not in seen and (floor_us is None or key[0] >= floor_us) for key in keys]
            seen.update(keys)
            if micros:
                newest = max(newest or micros[0], max(micros))
            if all(keep):
                await queue.put(table)
            elif any(keep):
                await queue.put(table.take(arrow.int64s([index for index, kept in enumerate(keep) if kept])))
            if floor_us is not None and micros and min(micros) < floor_us:
                break
    return from_micros(newest) if newest is not None else None


def events_table(model_id: str, events: list[dict[str, Any]], where: str) -> tuple[pa.Table, list[tuple[int, str]]]:
    """One page of events as a typed Arrow table, and each event's key: (microseconds since the epoch, status)."""
    stamps = [event.get("created_at") for event in events]
    statuses = [event.get("status", "STATUS_UNSPECIFIED") for event in events]  # proto3 JSON omits the zero enum
    users = [event.get("user_id") for event in events]
    columns = ((stamps, STR), (statuses, STR), (users, STR_OR_NONE))
    if not all(only(values, types) for values, types in columns):
        bad = next(i for i in range(len(events)) if any(type(values[i]) not in types for values, types in columns))
        raise MalformedResponseError(f"malformed event in {where}: {events[bad]!r:.120}")
    users = [user_id or None for user_id in users]  # an empty user id is no user
    created = parse_timestamps(stamps, where)  # type: ignore[arg-type]  # all strings, checked above
    table = pa.Table.from_arrays(
        [arrow.repeated(model_id, len(events)), arrow.strings(users), arrow.strings(statuses), created],
        schema=EVENTS_SCHEMA,
    )
    micros = created.cast(pa.int64()).to_pylist()
    return table, list(zip(micros, statuses, strict=True))


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


def from_micros(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()

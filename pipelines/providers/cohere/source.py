"""The dlt source: fine-tuned models merged on ``id``, their status events and training-step metrics.

Each model has its own cursor in dlt state for events (a timestamp) and for metrics (a step). A model's children
are read only when the model is new, its ``status`` or ``updated_at`` changed, or its periodic re-check is due: see
:mod:`pipelines.changes`. The model list feeds one producer per child table, with a bounded queue, so the number of
pages of models never matters to dlt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from pipelines import arrow
from pipelines.changes import DEFAULT_RECHECK_HOURS, ModelRef, Rechecks, Seen
from pipelines.extract import (
    STR,
    STR_OR_NONE,
    Extraction,
    RunReport,
    api_clock,
    check_origin,
    fan_out,
    metric_value,
    named_items,
    nullable_columns,
    only,
    parse_timestamps,
    put_unseen,
)
from pipelines.providers.cohere.client import (
    ClientSettings,
    FinetuningClient,
    MalformedResponseError,
    never_started,
)

SOURCE_NAME = "cohere_finetuning"
TRAINING = "STATUS_FINETUNING"  # a model in training: its metrics grow while the model record stays the same
EVENTS_KEY = ("finetuned_model_id", "created_at", "status")
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("finetuned_model_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
METRICS_SCHEMA = pa.schema(
    [
        pa.field("finetuned_model_id", pa.string(), nullable=False),
        pa.field("step_number", pa.int64(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
)
FIRST_READ_ROWS = 2_000  # events of a model's first read turned into Arrow at once


# Declared so every column the views use exists even before the API has sent a value for it.
MODEL_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    **nullable_columns("text", "name", "creator_id", "organization_id", "status"),
    **nullable_columns("timestamp", "created_at", "updated_at", "completed_at", "last_used"),
    **nullable_columns(
        "text",
        "settings__base_model__name",
        "settings__base_model__version",
        "settings__base_model__base_type",
        "settings__base_model__strategy",
        "settings__dataset_id",
    ),
    **nullable_columns("bool", "settings__multi_label"),
    **nullable_columns(
        "bigint",
        "settings__hyperparameters__early_stopping_patience",
        "settings__hyperparameters__train_batch_size",
        "settings__hyperparameters__train_epochs",
        "settings__hyperparameters__lora_alpha",
        "settings__hyperparameters__lora_rank",
    ),
    **nullable_columns(
        "double",
        "settings__hyperparameters__early_stopping_threshold",
        "settings__hyperparameters__learning_rate",
    ),
    **nullable_columns("text", "settings__hyperparameters__lora_target_modules", "settings__wandb__project"),
    **nullable_columns("text", "settings__wandb__entity"),
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
# Every table with the columns this source declares: the views need them even before a load created them.
SOURCE_TABLES: dict[str, TTableSchemaColumns] = {
    "events": {name: {**column, "primary_key": name in EVENTS_KEY} for name, column in EVENT_COLUMNS.items()},
    "finetuned_models": MODEL_COLUMNS,
    "training_step_metrics": {
        name: {**column, "primary_key": name in METRICS_KEY} for name, column in METRIC_COLUMNS.items()
    },
}


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
    recheck_hours: float = DEFAULT_RECHECK_HOURS,
    full: bool = False,
    metrics: bool = True,
    report: RunReport | None = None,
    expect_simulated: bool | None = None,
    based_on: str | None = None,
) -> list[DltResource]:
    """Fine-tuned models, their status events and training-step metrics from Cohere's fine-tuning API.

    ``model_ids`` limits the run to those models (always read); ``lookback_seconds`` re-reads that far behind each
    model's event cursor for late events. Unchanged models are skipped until their re-check, due once every
    ``recheck_hours``, or now with ``full``. ``metrics=False`` leaves training-step metrics out.
    ``expect_simulated`` refuses data from the other kind of API (simulated or real). ``based_on`` is the hash of
    the warehouse state this extraction continues (default: the local state's), kept in the package's state.
    """
    settings = ClientSettings(
        base_url=base_url,
        api_key=api_key,
        page_size=page_size,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        timeout_seconds=timeout_seconds,
    )
    run = Extraction(settings, report, recheck_hours, full, ["events", *(["training_step_metrics"] if metrics else [])])
    report = run.report
    lookback = timedelta(seconds=lookback_seconds)
    started_us = int(run.started * 1_000_000)

    def plan(model: dict[str, Any]) -> ModelRef:
        ref = ModelRef.of(model)
        return what_to_read(ref, run.seen.get(ref.id), run.rechecks, run.metric_rechecks, always=bool(model_ids))

    @dlt.resource(name="finetuned_models", write_disposition="merge", primary_key="id", columns=MODEL_COLUMNS)
    async def finetuned_models() -> AsyncIterator[list[dict[str, Any]]]:
        state = dlt.current.source_state()
        run.begin_listing(state, based_on, "events")
        state["restarted"] = report.restarted  # replaced before the package loads: see runner.replace_restarted
        try:
            async with run.client(FinetuningClient) as api:
                async for page in model_pages(api, model_ids, report):
                    check_origin(report.requests.simulated, expect_simulated)
                    state["simulated"] = report.requests.simulated
                    run.publish([plan(model) for model in page])
                    yield page
            run.end_listing(state, complete=not model_ids, metrics=metrics)  # every model listed, each due read
        finally:
            run.close()

    @dlt.resource(  # type: ignore[call-overload]  # dlt's stubs omit the dict form of write_disposition
        name="events",
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=EVENTS_KEY,
        columns=EVENT_COLUMNS,
    )
    async def events() -> AsyncIterator[pa.Table]:
        async def fetch(api: FinetuningClient, model: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
            clock = api_clock(model.updated_at, started_us)  # no cursor runs ahead of what that clock vouches for
            cursor = run.seen.get(model.id).cursor
            newest = await fetch_events(
                api, model.id, None if cursor is None else min(cursor, clock), lookback, out, report
            )
            if newest is not None and newest > clock:
                report.future(model.id, newest, clock)
                newest = clock
            run.seen.update(model.id, cursor=newest, events=model.fingerprint)

        async with run.client(FinetuningClient) as api:
            feed = run.feeds["events"]
            async for table in fan_out(api, feed, lambda model: model.events, fetch, "events of model", report):
                report.events += table.num_rows
                yield table

    @dlt.resource(  # type: ignore[call-overload]
        name="training_step_metrics",
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=METRICS_KEY,
        columns=METRIC_COLUMNS,
    )
    async def training_step_metrics() -> AsyncIterator[pa.Table]:
        async def fetch(api: FinetuningClient, model: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
            loaded = run.seen.get(model.id)
            stored = None if loaded.step in (None, -1) else Step(loaded.step, loaded.step_at)  # type: ignore[arg-type]
            highest = await fetch_metrics(api, model.id, stored, out, report)
            step, step_at = (-1, None) if highest is None else (highest.number, highest.created_us)
            run.seen.update(model.id, step=step, step_at=step_at, metrics=model.fingerprint)

        async with run.client(FinetuningClient) as api:
            feed, what = run.feeds["training_step_metrics"], "training-step metrics of model"
            async for table in fan_out(api, feed, lambda model: model.metrics, fetch, what, report):
                report.metric_rows += table.num_rows
                yield table

    return [finetuned_models, events, *([training_step_metrics] if metrics else [])]


make_source = cohere_finetuning


def what_to_read(
    model: ModelRef, seen: Seen, rechecks: Rechecks, metric_rechecks: Rechecks | None = None, always: bool = False
) -> ModelRef:
    """The model with what this run reads of it: events when it changed or is due; metrics likewise (on their own
    schedule, which runs without metrics do not advance), and always while it trains. A queued model that never
    had metrics and never started (no ``completed_at``) has none to read; any other status may (an unspecified one
    included)."""
    fingerprint = model.fingerprint
    events = always or rechecks.due(model.id) or not fingerprint or seen.events != fingerprint
    metrics_due = always or (metric_rechecks or rechecks).due(model.id)
    untrained = never_started(model) and (seen.step is None or seen.step < 0)
    metrics = not untrained and (
        model.status == TRAINING or metrics_due or not fingerprint or seen.metrics != fingerprint
    )
    return replace(model, events=events, metrics=metrics)


async def model_pages(
    api: FinetuningClient, model_ids: Sequence[str] | None, report: RunReport
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of models: the whole list, or only the named models (a 404 is reported and skipped). A model that a
    shifting list shows twice is passed on once."""
    if not model_ids:
        listed: set[str] = set()
        async for page in api.list_model_pages():
            fresh = [model for model in page if str(model["id"]) not in listed]
            listed.update(str(model["id"]) for model in fresh)
            report.models += len(fresh)
            if fresh:
                yield fresh
        return
    found = await named_items(api.get_model, model_ids, report, "model")
    if found:
        yield found


class NewestFirst:
    """Whether a listing is really newest first, so that paging may stop early.

    A newest-first listing starts at or above what the last run saw as newest, and never rises within a page or
    from one page to the next. Anything else (a deployment that ignores ``order_by``, an unordered or mixed
    listing) is paged to the end.
    """

    def __init__(self, cursor: int | None) -> None:
        self.cursor = cursor
        self.last: int | None = None
        self.holds = cursor is not None  # the first read of a model pages to the end anyway

    def check(self, values: list[int]) -> bool:
        """Take the next page's sort values in the order served; False once the order is broken."""
        if not self.holds or not values:
            return self.holds
        first_ok = values[0] >= self.cursor if self.last is None else values[0] <= self.last  # type: ignore[operator]
        self.holds = first_ok and values == sorted(values, reverse=True)  # a sort of sorted values is linear
        self.last = values[-1]
        return self.holds


async def fetch_events(
    api: FinetuningClient,
    model_id: str,
    cursor_us: int | None,
    lookback: timedelta,
    out: asyncio.Queue[pa.Table | None],
    report: RunReport,
) -> int | None:
    """Page a model's events newest first until past its cursor (microseconds since the epoch) minus the lookback;
    returns the new cursor."""
    if cursor_us is None:
        return await fetch_all_events(api, model_id, out)
    floor_us = cursor_us - lookback // timedelta(microseconds=1)
    order = NewestFirst(cursor_us)
    seen: set[tuple[int, str]] = set()
    newest = cursor_us
    async with aclosing(api.event_pages(model_id)) as pages:
        async for number, events in pages:
            table, micros, keys = events_table(model_id, events, f"model {model_id}, page {number}")
            trusted = order.check(micros)
            if not trusted:
                report.out_of_order(model_id, "the events")
            await put_unseen(out, table, keys, seen, floor_us)
            if micros:
                newest = max(newest, max(micros))
            if trusted and micros and min(micros) < floor_us:
                break
    return newest


async def fetch_all_events(api: FinetuningClient, model_id: str, out: asyncio.Queue[pa.Table | None]) -> int | None:
    """A model's first read: every page, in rows built a few pages at a time (pyarrow's cost per call is most of
    what a page of 100 events costs); returns the newest event's time."""
    seen: set[tuple[int, str]] = set()
    newest: int | None = None
    pending: list[tuple[str, list[dict[str, Any]]]] = []
    rows = 0

    async def put_pending() -> None:
        nonlocal newest, rows
        table, micros, keys = pages_table(model_id, pending)
        await put_unseen(out, table, keys, seen)
        if micros:
            newest = max(micros) if newest is None else max(newest, max(micros))
        pending.clear()
        rows = 0

    async with aclosing(api.event_pages(model_id)) as pages:
        async for number, events in pages:
            pending.append((f"model {model_id}, page {number}", events))
            rows += len(events)
            if rows >= FIRST_READ_ROWS:
                await put_pending()
    if pending:
        await put_pending()
    return newest


def pages_table(
    model_id: str, pages: list[tuple[str, list[dict[str, Any]]]]
) -> tuple[pa.Table, list[int], list[tuple[int, str]]]:
    """:func:`events_table` of several pages (where, events) at once; a malformed event is named by its page."""
    try:
        return events_table(model_id, [event for _, events in pages for event in events], pages[0][0])
    except MalformedResponseError:
        for where, events in pages:
            events_table(model_id, events, where)  # raises, naming the page
        raise


@dataclass(frozen=True, slots=True)
class Step:
    """A model's highest loaded training step and when the API says it ran (None before this was kept)."""

    number: int
    created_us: int | None = None


async def fetch_metrics(
    api: FinetuningClient,
    model_id: str,
    stored: Step | None,
    out: asyncio.Queue[pa.Table | None],
    report: RunReport,
) -> Step | None:
    """Page a model's training-step metrics newest step first until past its highest loaded step; returns the new
    highest step. The endpoint takes no ``order_by``: the order served is checked before paging stops early.

    A retrained model (deleted and created again with the same id) starts again at step 0: when the served steps
    show that, the whole listing is read and the model is noted in ``report.restarted``, whose stored metrics the
    load replaces with these.
    """
    order = NewestFirst(None if stored is None else stored.number)
    seen: set[tuple[int, str]] = set()
    highest = stored
    restarted = False
    async with aclosing(api.metric_pages(model_id)) as pages:
        async for number, items in pages:
            where = f"model {model_id}, training-step metrics page {number}"
            table, steps, keys, times = metrics_table(model_id, items, where)
            if stored is not None and not restarted and restarts(stored, steps, times):
                restarted, highest, order.holds = True, None, False  # read it all, and keep the new curve's top
                report.restarted.append(model_id)
            trusted = order.check(steps)
            if not trusted and stored is not None and not restarted:
                report.out_of_order(model_id, "the training-step metrics")
            await put_unseen(out, table, keys, seen)
            for step, created in zip(steps, times, strict=True):
                if highest is None or step > highest.number or (step == highest.number and highest.created_us is None):
                    highest = Step(step, created)
            if trusted and order.cursor is not None and steps and min(steps) <= order.cursor:
                break
    return highest


def restarts(stored: Step, steps: list[int], times: list[int]) -> bool:
    """Whether served steps show training that started again: the stored highest step with another time, or a step
    at or below it that ran after it."""
    if stored.created_us is None:
        return False
    return any(
        step <= stored.number
        and (created > stored.created_us or (step == stored.number and created != stored.created_us))
        for step, created in zip(steps, times, strict=True)
    )


def events_table(
    model_id: str, events: list[dict[str, Any]], where: str
) -> tuple[pa.Table, list[int], list[tuple[int, str]]]:
    """One page of events as a typed Arrow table, each event's time (microseconds since the epoch) in the order
    served, and each event's key: (time, status)."""
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
    micros: list[int] = created.view(pa.int64()).to_pylist()
    return table, micros, list(zip(micros, statuses, strict=True))


def metrics_table(
    model_id: str, items: list[dict[str, Any]], where: str
) -> tuple[pa.Table, list[int], list[tuple[int, str]], list[int]]:
    """One page of training steps as a typed Arrow table in long form (a row per step and metric), each step's
    number in the order served, each row's key: (step, metric), and each step's time (microseconds)."""
    steps: list[int] = []
    stamps: list[str] = []
    names: list[str] = []
    values: list[float] = []
    step_of_row: list[int] = []
    stamp_of_row: list[int] = []
    for index, item in enumerate(items):
        step = item.get("step_number", 0)  # proto3 JSON omits step 0
        stamp = item.get("created_at")
        measured = item.get("metrics", {})
        if type(step) is not int or not isinstance(stamp, str) or not isinstance(measured, dict):
            raise MalformedResponseError(f"malformed step in {where}: {item!r:.120}")
        steps.append(step)
        stamps.append(stamp)
        for name, value in measured.items():
            names.append(name)
            values.append(metric_value(value, name, where))
            step_of_row.append(step)
            stamp_of_row.append(index)
    created = parse_timestamps(stamps, where).cast(pa.int64()).to_pylist()
    table = pa.Table.from_arrays(
        [
            arrow.repeated(model_id, len(names)),
            arrow.int64s(step_of_row),
            arrow.int64s([created[index] for index in stamp_of_row], arrow.UTC_MICROS),
            arrow.strings(names),
            arrow.float64s(values),
        ],
        schema=METRICS_SCHEMA,
    )
    return table, steps, list(zip(step_of_row, names, strict=True)), created

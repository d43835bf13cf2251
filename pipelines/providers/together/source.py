"""The dlt source for Together AI: ``jobs`` merged on ``id``, their ``job_events`` and ``training_metrics``.

The job list is read on every run. A job's events and metrics are read only when the job is new, its ``status`` or
``updated_at`` changed, it is under way (running, compressing, uploading, cancel requested: metrics grow with no
event), or its rolling re-check is due (:mod:`pipelines.changes`). The events endpoint answers with all of a job's
events, which carry no id: each is stored once under a key made of (job_id, created_at, type, message, step), so a
NULL step matches a NULL step. Metrics are asked for from the highest stored step on, that step included (its eval
row may come later), and stored long: one row per (job_id, step, metric).

A restarted job trains again, from step 1 or from a checkpoint. Its metrics are the curve its last attempt left:
at each step the value of the newest attempt that reached it (see :func:`final_curve`). A restart is seen in the
job's events (a new ``job_restarted``: its events are read first, in the same run) or in the metrics served (a step
logged again, or the stored highest step served with a later time); the whole listing is then read again and the
load replaces the job's stored rows (runner.replace_restarted). A job whose events end in another status than the
list gives is not marked as read, so the next run reads it again (the list can run ahead of the events).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import dlt
import orjson
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from pipelines import arrow, extract
from pipelines.changes import DEFAULT_RECHECK_HOURS, ModelRef, Rechecks, Seen
from pipelines.extract import (
    Extraction,
    RunReport,
    check_origin,
    fan_out,
    metric_value,
    named_items,
    nullable_columns,
    parse_timestamps,
)
from pipelines.http import ClientSettings, MalformedResponseError
from pipelines.providers.together.client import TogetherClient
from pipelines.providers.together.lifecycle import (
    KNOWN_STATUSES,
    KNOWN_TYPES,
    RESTART_TYPE,
    TERMINAL,
    agrees,
    last_mapped_status,
)

SOURCE_NAME = "together_finetuning"
STEP, TIMESTAMP = "train/global_step", "timestamp"
UNDER_WAY_READ_EVERY_RUN = frozenset({"running", "compressing", "uploading", "cancel_requested"})
NOT_STARTED = frozenset({"pending", "queued"})
NON_FINITE = {**extract.NON_FINITE, "nan": math.nan}  # and Python's spelling, should a server write it as text
UNKNOWN_TYPE = "events of a type the status mapping does not know"
UNTIMED = "events without created_at (stored with no time, left out of the status views)"
UNKNOWN_STATUS = "jobs with a status the lifecycle does not know"
STEPLESS = "metric rows without train/global_step (not stored)"
# an eval row repeats its train row's epoch (and every row has these two): no new attempt
REPEATED_BY_DESIGN = frozenset({"train/epoch", STEP, TIMESTAMP})
LAGGING = "lagging"  # source state: job id -> runs in a row whose events ended in another status than the list's
LAG_WARN_RUNS = 3
LAGGING_JOBS = (
    f"jobs whose events have ended in another status than the job list's for {LAG_WARN_RUNS} runs or more (read "
    "again on every run until they agree)"
)


# Declared so every column the views use exists even before the API has sent a value for it.
JOB_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    **nullable_columns("text", "status", "user_id", "model", "model_output_name", "suffix", "training_file"),
    **nullable_columns(
        "text", "validation_file", "training_type__type", "training_method__method", "wandb_project_name"
    ),
    **nullable_columns("timestamp", "created_at", "updated_at", "started_at"),
    **nullable_columns("bigint", "n_epochs", "n_checkpoints", "batch_size", "token_count", "total_price"),
    **nullable_columns("double", "learning_rate"),
}
EVENTS_KEY = "event_key"
EVENT_COLUMNS: TTableSchemaColumns = {
    "job_id": {"data_type": "text", "nullable": False},
    "type": {"data_type": "text", "nullable": False},
    "level": {"data_type": "text", "nullable": True},
    "message": {"data_type": "text", "nullable": True},
    "created_at": {"data_type": "timestamp", "nullable": True, "timezone": True, "precision": 6},
    "step": {"data_type": "bigint", "nullable": True},
    "total_steps": {"data_type": "bigint", "nullable": True},
    "checkpoint_path": {"data_type": "text", "nullable": True},
    "wandb_url": {"data_type": "text", "nullable": True},
    EVENTS_KEY: {"data_type": "text", "nullable": False, "primary_key": True},
}
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("level", pa.string()),
        pa.field("message", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("step", pa.int64()),
        pa.field("total_steps", pa.int64()),
        pa.field("checkpoint_path", pa.string()),
        pa.field("wandb_url", pa.string()),
        pa.field(EVENTS_KEY, pa.string(), nullable=False),
    ]
)
METRICS_KEY = ("job_id", "step", "metric")
METRIC_COLUMNS: TTableSchemaColumns = {
    "job_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "step": {"data_type": "bigint", "nullable": False, "primary_key": True},
    "metric": {"data_type": "text", "nullable": False, "primary_key": True},
    "value": {"data_type": "double", "nullable": True},
    "logged_at": {"data_type": "timestamp", "nullable": True, "timezone": True, "precision": 6},
}
METRICS_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("logged_at", pa.timestamp("us", tz="UTC")),
    ]
)
# Every table with the columns this source declares: the views need them even before a load created them.
SOURCE_TABLES: dict[str, TTableSchemaColumns] = {
    "jobs": JOB_COLUMNS,
    "job_events": EVENT_COLUMNS,
    "training_metrics": METRIC_COLUMNS,
}


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=1)
def together_finetuning(
    api_key: str = dlt.secrets.value,
    base_url: str = "https://api.together.ai",
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
    """Fine-tuning jobs, their event logs and training metrics from Together AI's API.

    ``model_ids`` limits the run to those jobs (always read). Unchanged jobs are skipped until their re-check, due
    once every ``recheck_hours``, or now with ``full``; ``metrics=False`` leaves training metrics out.
    ``page_size`` and ``lookback_seconds`` are Cohere's: this API neither pages nor needs a lookback (a job's events
    are read whole). ``expect_simulated`` and ``based_on`` are as for Cohere's source.
    """
    settings = ClientSettings(
        base_url=base_url,
        api_key=api_key,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        timeout_seconds=timeout_seconds,
    )
    run = Extraction(settings, report, recheck_hours, full, ["job_events", *(["training_metrics"] if metrics else [])])
    report = run.report

    handoffs: dict[str, asyncio.Future[Restarts | None]] = {}  # the restarts a job's events show, for its metrics
    lag: dict[str, Any] = {}

    def plan(job: dict[str, Any]) -> ModelRef:
        ref = ModelRef.of(job)
        return what_to_read(ref, run.seen.get(ref.id), run.rechecks, run.metric_rechecks, always=bool(model_ids))

    def hand_over(refs: list[ModelRef]) -> None:
        loop = asyncio.get_running_loop()
        for ref in refs:
            if ref.events and ref.metrics and metrics:
                handoffs[ref.id] = loop.create_future()

    @dlt.resource(name="jobs", write_disposition="merge", primary_key="id", columns=JOB_COLUMNS)
    async def jobs() -> AsyncIterator[list[dict[str, Any]]]:
        state = dlt.current.source_state()
        run.begin_listing(state, based_on, "job_events")
        state["restarted"] = report.restarted  # replaced before the package loads: see runner.replace_restarted
        lag.update(state.setdefault(LAGGING, {}))
        state[LAGGING] = lag
        try:
            async with run.client(TogetherClient) as api:
                listed = await listed_jobs(api, model_ids, report)
                check_origin(report.requests.simulated, expect_simulated, "Together AI")
                state["simulated"] = report.requests.simulated
                for job in listed:
                    job.pop("events", None)  # the list's are empty; a job's events are a table of their own
                    status = str(job.get("status") or "")
                    if status.lower() not in KNOWN_STATUSES:
                        report.odd(UNKNOWN_STATUS, status or "(none)")
                refs = [plan(job) for job in listed]
                hand_over(refs)
                run.publish(refs)
                if listed:
                    yield listed
            run.end_listing(state, complete=not model_ids, metrics=metrics)  # every job listed, each due read
        finally:
            run.close()

    @dlt.resource(  # type: ignore[call-overload]  # dlt's stubs omit the dict form of write_disposition
        name="job_events",
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=EVENTS_KEY,
        columns=EVENT_COLUMNS,
    )
    async def job_events() -> AsyncIterator[pa.Table]:
        async def fetch(api: TogetherClient, job: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
            restarts: Restarts | None = None
            try:
                served = await api.events(job.id)
                table, newest = events_table(job.id, served, f"events of job {job.id}", report)
                timed = timed_events(table)
                restarts = Restarts(tuple(sorted({at for at, kind, _ in timed if kind.lower() == RESTART_TYPE})))
                if table.num_rows:
                    await out.put(table)
            finally:
                handoff = handoffs.get(job.id)
                if handoff is not None and not handoff.done():
                    handoff.set_result(restarts)
            ended = last_mapped_status(timed)
            in_step = agrees(job.status, ended)
            run.seen.update(job.id, cursor=newest, events=job.fingerprint if in_step else "")
            note_lag(job, in_step, ended)

        def note_lag(job: ModelRef, in_step: bool, ended: str | None) -> None:
            """Count the runs in a row in which a job's events lag its listed status; warn once a run past a few."""
            if in_step:
                lag.pop(job.id, None)
                return
            lag[job.id] = runs = int(lag.get(job.id, 0)) + 1
            if runs >= LAG_WARN_RUNS:
                report.odd(
                    LAGGING_JOBS, f"{job.id} listed {job.status}, events end in {ended or 'no status'}, {runs} runs"
                )

        async with run.client(TogetherClient) as api:
            feed, what = run.feeds["job_events"], "events of job"
            async for table in fan_out(api, feed, lambda job: job.events, fetch, what, report):
                report.events += table.num_rows
                yield table

    @dlt.resource(  # type: ignore[call-overload]
        name="training_metrics",
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        primary_key=METRICS_KEY,
        columns=METRIC_COLUMNS,
    )
    async def training_metrics() -> AsyncIterator[pa.Table]:
        async def fetch(api: TogetherClient, job: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
            handoff = handoffs.get(job.id)
            restarts = await handoff if handoff is not None else None  # its events are read first, in this run
            handoffs.pop(job.id, None)
            seen = run.seen.get(job.id)
            never_started = job.status.lower() in NOT_STARTED and not job.started and not (restarts and restarts.times)
            if never_started and (seen.step is None or seen.step < 0):  # nothing to read yet
                run.seen.update(job.id, step=-1, metrics=job.fingerprint)
                return
            curve = await read_metrics(api, job.id, seen, restarts, report)
            if curve.table.num_rows:
                await out.put(curve.table)
            run.seen.update(
                job.id,
                step=curve.highest,
                step_at=curve.highest_at,
                metrics=job.fingerprint,
                restarts=len(restarts.times) if restarts is not None else seen.restarts,
            )

        async with run.client(TogetherClient) as api:
            feed, what = run.feeds["training_metrics"], "training metrics of job"
            async for table in fan_out(api, feed, lambda job: job.metrics, fetch, what, report):
                report.metric_rows += table.num_rows
                yield table

    return [jobs, job_events, *([training_metrics] if metrics else [])]


make_source = together_finetuning


def what_to_read(
    job: ModelRef, seen: Seen, rechecks: Rechecks, metric_rechecks: Rechecks, always: bool = False
) -> ModelRef:
    """The job with what this run reads of it: events and metrics when it is new or changed, under way, or due
    for its re-check (metrics on their own schedule). Whether a job not started has metrics to read is decided when
    they are due, from its events (a restarted job is queued, yet trained): see the metrics resource."""
    fingerprint = job.fingerprint
    status = job.status.lower()
    under_way = status in UNDER_WAY_READ_EVERY_RUN or (status not in TERMINAL and status not in NOT_STARTED)
    changed = not fingerprint or under_way
    events = always or changed or rechecks.due(job.id) or seen.events != fingerprint
    metrics = always or changed or metric_rechecks.due(job.id) or seen.metrics != fingerprint
    return ModelRef(job.id, job.status, job.updated_at, events=events, metrics=metrics, started=job.started)


async def listed_jobs(api: TogetherClient, job_ids: Sequence[str] | None, report: RunReport) -> list[dict[str, Any]]:
    """The whole job list (each job once), or only the named jobs (a 404 is reported and skipped)."""
    if not job_ids:
        unique = {str(job["id"]): job for job in await api.list_jobs()}
        report.models += len(unique)
        return list(unique.values())
    return await named_items(api.get_job, job_ids, report, "job")


def event_key(job_id: str, created_us: int | None, event: dict[str, Any]) -> str:
    """An event's identity: (job_id, created_at, type, message, step), with None apart from any value."""
    identity = [job_id, created_us, event.get("type"), event.get("message"), event.get("step")]
    return hashlib.blake2b(orjson.dumps(identity), digest_size=16).hexdigest()


def events_table(
    job_id: str, events: list[dict[str, Any]], where: str, report: RunReport
) -> tuple[pa.Table, int | None]:
    """A job's events as a typed Arrow table, each once, and the newest event's time (microseconds)."""
    for event in events:
        if not all(isinstance(event.get(name), str | None) for name in ("type", "created_at", "message", "level")):
            raise MalformedResponseError(f"malformed event in {where}: {event!r:.120}")
        if not all(type(event.get(name)) in (int, type(None)) for name in ("step", "total_steps")):
            raise MalformedResponseError(f"malformed step in an event in {where}: {event!r:.120}")
    stamps = [event.get("created_at") or None for event in events]
    timed = [index for index, stamp in enumerate(stamps) if stamp is not None]
    micros: list[int | None] = [None] * len(events)
    if timed:
        parsed = parse_timestamps([stamps[index] for index in timed], where)  # type: ignore[misc]
        for index, value in zip(timed, parsed.cast(pa.int64()).to_pylist(), strict=True):
            micros[index] = value
    keep, keys = [], set()
    for index, event in enumerate(events):
        key = event_key(job_id, micros[index], event)
        if key in keys:
            continue  # the same event served twice: stored once
        keys.add(key)
        keep.append((index, key))
        kind = str(event.get("type") or "")
        if kind.lower() not in KNOWN_TYPES:
            report.odd(UNKNOWN_TYPE, kind or "(none)")
        if micros[index] is None:
            report.odd(UNTIMED, job_id)
    rows = [events[index] for index, _ in keep]
    table = pa.Table.from_arrays(
        [
            arrow.repeated(job_id, len(rows)),
            arrow.strings([str(row.get("type") or "") for row in rows]),
            arrow.strings([row.get("level") or None for row in rows]),
            arrow.strings([row.get("message") for row in rows]),
            arrow.optional_int64s([micros[index] for index, _ in keep], arrow.UTC_MICROS),
            arrow.optional_int64s([row.get("step") for row in rows]),
            arrow.optional_int64s([row.get("total_steps") for row in rows]),
            arrow.strings([text_or_none(row.get("checkpoint_path")) for row in rows]),
            arrow.strings([text_or_none(row.get("wandb_url")) for row in rows]),
            arrow.strings([key for _, key in keep]),
        ],
        schema=EVENTS_SCHEMA,
    )
    known = [value for value in micros if value is not None]
    return table, max(known) if known else None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Restarts:
    """When a job's events say it restarted (``job_restarted``), in microseconds, oldest first."""

    times: tuple[int, ...] = ()


@dataclass(frozen=True)
class Curve:
    """A job's metrics as stored: the rows, the highest step and when it was last logged, and how many attempts
    (trainings from a restart on) the rows served came from."""

    table: pa.Table
    highest: int
    highest_at: int | None
    attempts: int = 1


def timed_events(table: pa.Table) -> list[tuple[int, str, str]]:
    """(time µs, type, message) of each event with a time, from an events table."""
    moments = table.column("created_at").cast(pa.int64()).to_pylist()
    kinds, messages = table.column("type").to_pylist(), table.column("message").to_pylist()
    return [
        (moment, kind, message or "")
        for moment, kind, message in zip(moments, kinds, messages, strict=True)
        if moment is not None
    ]


async def read_metrics(
    api: TogetherClient, job_id: str, seen: Seen, restarts: Restarts | None, report: RunReport
) -> Curve:
    """A job's training metrics, from its highest stored step on, or whole when nothing is stored yet or it restarted
    since (then the load replaces its stored rows: ``report.restarted``)."""
    where = f"training metrics of job {job_id}"
    stored = seen.step if seen.step is not None and seen.step >= 0 else None
    times = restarts.times if restarts is not None else ()
    restarted = stored is not None and restarts is not None and len(times) > (seen.restarts or 0)
    if stored is not None and not restarted:
        rows = await api.metrics(job_id, stored)
        curve = final_curve(job_id, rows, where, report, times)
        if curve.attempts == 1 and not logged_again(rows, stored, seen.step_at):
            top = max(stored, curve.highest)
            return Curve(curve.table, top, curve.highest_at if top == curve.highest else seen.step_at)
        restarted = curve.attempts > 1  # else the top step was logged again: read it all to tell
    curve = final_curve(job_id, await api.metrics(job_id, None), where, report, times)
    if stored is not None and (restarted or curve.attempts > 1):
        report.restarted.append(job_id)
    return curve


def logged_again(rows: list[dict[str, Any]], stored: int, stored_at: int | None) -> bool:
    """Whether the stored highest step (or one below it) is served logged after it was: a new attempt, or a late
    eval row of that step (telling the two apart needs the whole listing)."""
    if stored_at is None:
        return False
    for row in rows:
        step, stamp = row.get(STEP), row.get(TIMESTAMP)
        if isinstance(step, int | float) and step <= stored and type(stamp) is int and stamp // 1000 > stored_at:
            return True
    return False


def final_curve(
    job_id: str, rows: list[dict[str, Any]], where: str, report: RunReport, restart_times: Sequence[int] = ()
) -> Curve:
    """Metric rows in long form (one row per step and metric) as the job's last attempt left its curve.

    ``train/global_step`` is the step, ``timestamp`` (integer nanoseconds) when it was logged; every other key is a
    metric, NaN and infinities kept. Rows are served oldest first; a new attempt begins where a step goes down, a
    metric is logged again at its step at another time (an eval row's ``train/epoch`` aside), or a row is logged
    after a restart the events show. An attempt that trained from step s (:func:`attempt_start`) replaces every
    earlier value from step s on: trained again from step 1 it replaces the whole curve, resumed from a checkpoint it
    keeps the steps before it, and one that continues past the last step replaces nothing. Within an attempt the
    first value served is kept.
    """
    attempts: list[list[tuple[int, int | None, dict[str, Any]]]] = [[]]
    logged_in_attempt: dict[tuple[int, str], int | None] = {}
    top, restarts_before = None, 0
    for row in rows:
        step = row.get(STEP)
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if step is None:
            report.odd(STEPLESS, job_id)
            continue
        if type(step) is not int:
            raise MalformedResponseError(f"malformed {STEP} in {where}: {row!r:.120}")
        stamp = row.get(TIMESTAMP)
        logged_us = stamp // 1000 if type(stamp) is int else None
        after = restarts_before if logged_us is None else sum(1 for at in restart_times if at < logged_us)
        relogged = any(
            logged_in_attempt[(step, name)] != logged_us
            for name in row
            if name not in REPEATED_BY_DESIGN and (step, name) in logged_in_attempt
        )
        if attempts[-1] and ((top is not None and step < top) or after > restarts_before or relogged):
            attempts.append([])
            logged_in_attempt, top = {}, None
        restarts_before = max(restarts_before, after)
        attempts[-1].append((step, logged_us, row))
        for name in row:
            logged_in_attempt.setdefault((step, name), logged_us)
        top = step if top is None else max(top, step)
    kept: dict[tuple[int, str], tuple[float | None, int | None]] = {}
    for attempt in attempts:
        if not attempt:
            continue
        begins = attempt_start([step for step, _, _ in attempt])
        kept = {key: value for key, value in kept.items() if key[0] < begins}
        values: dict[tuple[int, str], tuple[float | None, int | None]] = {}
        for step, logged_us, row in attempt:
            for name, value in row.items():
                if name not in (STEP, TIMESTAMP) and (step, name) not in values:
                    values[(step, name)] = (optional_metric(value, name, where), logged_us)
        kept.update(values)
    count = sum(1 for attempt in attempts if attempt) or 1
    keys = sorted(kept)
    table = pa.Table.from_arrays(
        [
            arrow.repeated(job_id, len(keys)),
            arrow.int64s([step for step, _ in keys]),
            arrow.strings([name for _, name in keys]),
            arrow.optional_float64s([kept[key][0] for key in keys]),
            arrow.optional_int64s([kept[key][1] for key in keys], arrow.UTC_MICROS),
        ],
        schema=METRICS_SCHEMA,
    )
    if not keys:
        return Curve(table, -1, None, count)
    highest = keys[-1][0]
    times = [logged for (step, _), (_, logged) in kept.items() if step == highest and logged is not None]
    return Curve(table, highest, max(times) if times else None, count)


def attempt_start(steps: list[int]) -> int:
    """The step an attempt trained from: 1 when its first logged step is within its logging interval (it trained
    from scratch), else its first logged step (it resumed from a checkpoint)."""
    distinct = sorted(set(steps))
    first = distinct[0]
    interval = distinct[1] - first if len(distinct) > 1 else first
    return 1 if first <= max(1, interval) else first


def optional_metric(value: Any, name: str, where: str) -> float | None:
    """A metric as a double, as :func:`pipelines.extract.metric_value` reads it; null as NULL."""
    return None if value is None else metric_value(value, name, where, NON_FINITE)

"""The dlt source for OpenAI's fine-tuning jobs (and every service that serves the same API, Azure's included):
``jobs`` merged on ``id``, their ``job_events``, ``checkpoints``, ``training_metrics`` and ``status_observations``.

The job list is read whole on every run (it has no "changed since" filter). Jobs have no ``updated_at``, so a job's
version is what moves when it changes: its status, ``finished_at``, ``fine_tuned_model``, ``trained_tokens``,
``estimated_finish``, its error code and how many result files it has (:func:`version`). A job is read again when
it is new, its version moved, it is under way (validating files, queued, running, paused, or a status the lifecycle
does not know), or its rolling re-check is due (:mod:`pipelines.changes`): a job terminal and unchanged costs no
request beyond the list.

Events are listed newest first and carry ids: a run asks for the events served before the newest one stored (one
page on a job with nothing new) and stops there; ``seq`` numbers each job's events oldest first, the API's order
within one second (``created_at`` is whole seconds). Metrics come from the ``data`` of ``metrics`` events (every
numeric key but ``step``) and from checkpoints' ``metrics`` (every key but ``step``, at the checkpoint's
``step_number``); both go to ``training_metrics``, one row per (job, step, metric), the first value read kept.
Each run also notes the status the list gives where it differs from the last one noted (``status_observations``):
the fallback of the status history (see lifecycle.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import orjson
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from pipelines import arrow, extract
from pipelines.changes import DEFAULT_RECHECK_HOURS, ModelRef, Seen
from pipelines.extract import Extraction, RunReport, check_origin, fan_out, named_items, nullable_columns
from pipelines.http import ClientSettings, MalformedResponseError, server_clock_micros
from pipelines.providers.openai.client import OpenAiClient
from pipelines.providers.openai.lifecycle import (
    HAS_CHECKPOINTS,
    KNOWN_EVENT_TYPES,
    KNOWN_STATUSES,
    TERMINAL,
)

NON_FINITE = {**extract.NON_FINITE, "nan": math.nan}
NEWEST = "newest_event"  # source state: job id -> the id of its newest event stored
OBSERVED = "observed"  # source state: job id -> the status last noted in status_observations
UNKNOWN_STATUS = "jobs with a status the lifecycle does not know"
UNKNOWN_TYPE = "events of a type the API does not document"
STEPLESS = "metrics events without a step (their metrics are not stored)"

JOB_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    **nullable_columns("text", "object", "status", "model", "fine_tuned_model", "organization_id", "training_file"),
    **nullable_columns("text", "validation_file", "suffix", "method", "batch_size", "learning_rate_multiplier"),
    **nullable_columns("text", "n_epochs", "error_code", "error_message", "error_param", "wandb_project"),
    **nullable_columns("text", "wandb_entity", "result_files", "metadata"),
    **{
        name: {"data_type": "timestamp", "nullable": True, "timezone": True, "precision": 6}
        for name in ("created_at", "finished_at", "estimated_finish")
    },
    **nullable_columns("bigint", "trained_tokens", "seed"),
}
EVENT_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    "job_id": {"data_type": "text", "nullable": False},
    "created_at": {"data_type": "timestamp", "nullable": True, "timezone": True, "precision": 6},
    "level": {"data_type": "text", "nullable": True},
    "type": {"data_type": "text", "nullable": True},
    "message": {"data_type": "text", "nullable": True},
    "seq": {"data_type": "bigint", "nullable": False},
}
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("level", pa.string()),
        pa.field("type", pa.string()),
        pa.field("message", pa.string()),
        pa.field("seq", pa.int64(), nullable=False),
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
CHECKPOINT_COLUMNS: TTableSchemaColumns = {
    "id": {"data_type": "text", "nullable": False, "primary_key": True},
    "job_id": {"data_type": "text", "nullable": False},
    "step_number": {"data_type": "bigint", "nullable": True},
    "fine_tuned_model_checkpoint": {"data_type": "text", "nullable": True},
    "created_at": {"data_type": "timestamp", "nullable": True, "timezone": True, "precision": 6},
}
OBSERVATION_KEY = ("job_id", "observed_at")
OBSERVATION_COLUMNS: TTableSchemaColumns = {
    "job_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "observed_at": {"data_type": "timestamp", "nullable": False, "timezone": True, "precision": 6, "primary_key": True},
    "status": {"data_type": "text", "nullable": False},
}
SOURCE_TABLES: dict[str, TTableSchemaColumns] = {
    "jobs": JOB_COLUMNS,
    "job_events": EVENT_COLUMNS,
    "training_metrics": METRIC_COLUMNS,
    "checkpoints": CHECKPOINT_COLUMNS,
    "status_observations": OBSERVATION_COLUMNS,
}
INSERT_ONLY = {"disposition": "merge", "strategy": "insert-only"}

Measurements = list[tuple[int, str, float, int | None]]  # (step, metric, value, logged µs) of one job


def finetuning_source(name: str, client: type[OpenAiClient], title: str) -> Callable[..., Any]:
    """The dlt source of one service that serves OpenAI's fine-tuning API: named ``name`` (its dataset and config
    section), read with ``client`` (its auth), called ``title`` in messages."""

    @dlt.source(name=name, section=name, max_table_nesting=0)
    def source(
        api_key: str = dlt.secrets.value,
        base_url: str = "https://api.openai.com/v1",
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
        """Fine-tuning jobs, their events, checkpoints and training metrics.

        ``model_ids`` limits the run to those jobs (always read). Unchanged jobs are skipped until their re-check,
        due once every ``recheck_hours``, or now with ``full``; ``metrics=False`` leaves checkpoints and training
        metrics out. ``page_size`` is the lists' ``limit`` (at most 100); ``lookback_seconds`` is Cohere's: events
        here have ids, and a job's new ones are exactly those before the newest stored.
        """
        settings = ClientSettings(
            base_url=base_url,
            api_key=api_key,
            page_size=page_size,
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            timeout_seconds=timeout_seconds,
        )
        children = ["job_events", "status_observations", *(["checkpoints", "training_metrics"] if metrics else [])]
        run = Extraction(settings, report, recheck_hours, full, children)
        report = run.report
        newest: dict[str, str] = {}
        observed: dict[str, str] = {}
        listed_at: list[int] = []  # when the list was read (µs): the time of this run's observations
        from_events: dict[str, asyncio.Future[Measurements | None]] = {}
        from_checkpoints: dict[str, asyncio.Future[Measurements | None]] = {}

        def hand_over(refs: list[ModelRef]) -> None:
            if not metrics:
                return
            loop = asyncio.get_running_loop()
            for ref in refs:
                if ref.events:
                    from_events[ref.id] = loop.create_future()
                if ref.metrics:
                    from_checkpoints[ref.id] = loop.create_future()

        @dlt.resource(name="jobs", write_disposition="merge", primary_key="id", columns=JOB_COLUMNS)
        async def jobs() -> AsyncIterator[list[dict[str, Any]]]:
            state = dlt.current.source_state()
            run.begin_listing(state, based_on, "job_events")
            newest.update(state.setdefault(NEWEST, {}))
            state[NEWEST] = newest
            observed.update(state.setdefault(OBSERVED, {}))
            state[OBSERVED] = observed
            try:
                async with run.client(client) as api:
                    listed = await listed_jobs(api, model_ids, report)
                    # observations are timed by the API's clock (its Date header), as its own timestamps are
                    listed_at.append(server_clock_micros(api.server_date) or extract.to_micros(datetime.now(UTC)))
                    check_origin(report.requests.simulated, expect_simulated, title)
                    state["simulated"] = report.requests.simulated
                    rows = [job_row(job) for job in listed]
                    for row in rows:
                        if str(row["status"]).lower() not in KNOWN_STATUSES:
                            report.odd(UNKNOWN_STATUS, str(row["status"]) or "(none)")
                    refs = [
                        what_to_read(ModelRef(row["id"], row["status"], version(job)), run, bool(model_ids))
                        for row, job in zip(rows, listed, strict=True)
                    ]
                    hand_over(refs)
                    run.publish(refs)
                    if rows:
                        yield rows
                run.end_listing(state, complete=not model_ids, metrics=metrics)
            finally:
                run.close()

        @dlt.resource(  # type: ignore[call-overload]
            name="status_observations",
            write_disposition=INSERT_ONLY,
            primary_key=OBSERVATION_KEY,
            columns=OBSERVATION_COLUMNS,
        )
        async def status_observations() -> AsyncIterator[list[dict[str, Any]]]:
            feed = run.feeds["status_observations"]
            rows = []
            while (job := await feed.next()) is not None:
                if observed.get(job.id) != job.status:
                    observed[job.id] = job.status
                    rows.append(
                        {"job_id": job.id, "observed_at": micros_to_datetime(listed_at[0]), "status": job.status}
                    )
            if rows:
                yield rows

        @dlt.resource(name="job_events", write_disposition=INSERT_ONLY, primary_key="id", columns=EVENT_COLUMNS)  # type: ignore[call-overload]
        async def job_events() -> AsyncIterator[pa.Table]:
            async def fetch(api: OpenAiClient, job: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
                handoff = from_events.get(job.id)
                rows: Measurements | None = None
                seen = run.seen.get(job.id)
                served: list[dict[str, Any]] = []
                try:
                    served, met = await api.events_since(job.id, newest.get(job.id))
                    base = (seen.cursor or 0) if met else 0
                    table = events_table(job.id, served, base, report)
                    if handoff is not None:
                        rows = event_metrics(job.id, served, report)
                    if table.num_rows:
                        await out.put(table)
                finally:
                    if handoff is not None and not handoff.done():
                        handoff.set_result(rows)
                if served:
                    newest[job.id] = str(served[0]["id"])
                top = base + len(served) if served else seen.cursor  # base 0: the whole history, renumbered
                run.seen.update(job.id, cursor=top, events=job.fingerprint)

            async with run.client(client) as api:
                feed = run.feeds["job_events"]
                async for table in fan_out(api, feed, lambda job: job.events, fetch, "events of job", report):
                    report.events += table.num_rows
                    yield table

        @dlt.resource(name="checkpoints", write_disposition=INSERT_ONLY, primary_key="id", columns=CHECKPOINT_COLUMNS)  # type: ignore[call-overload]
        async def checkpoints() -> AsyncIterator[pa.Table]:
            async def fetch(api: OpenAiClient, job: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
                handoff = from_checkpoints.get(job.id)
                rows: Measurements | None = None
                try:
                    served = await api.checkpoints(job.id)
                    table = checkpoints_table(job.id, served)
                    rows = checkpoint_metrics(job.id, served)
                    if table.num_rows:
                        await out.put(table)
                finally:
                    if handoff is not None and not handoff.done():
                        handoff.set_result(rows)
                run.seen.update(job.id, metrics=job.fingerprint)

            async with run.client(client) as api:
                feed = run.feeds["checkpoints"]
                async for found in fan_out(api, feed, lambda job: job.metrics, fetch, "checkpoints of job", report):
                    yield found

        @dlt.resource(  # type: ignore[call-overload]
            name="training_metrics", write_disposition=INSERT_ONLY, primary_key=METRICS_KEY, columns=METRIC_COLUMNS
        )
        async def training_metrics() -> AsyncIterator[pa.Table]:
            async def gather(api: OpenAiClient, job: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
                found: Measurements = []
                for handoffs in (from_events, from_checkpoints):  # events first: theirs is kept where both have one
                    handoff = handoffs.get(job.id)
                    if handoff is not None:
                        found += await handoff or []  # read by the events and checkpoints resources, in this run
                        handoffs.pop(job.id, None)
                table = metric_rows(job.id, found)
                if table.num_rows:
                    await out.put(table)

            async with run.client(client) as api:
                feed, wanted = run.feeds["training_metrics"], lambda job: job.events or job.metrics
                async for table in fan_out(api, feed, wanted, gather, "training metrics of job", report):
                    report.metric_rows += table.num_rows
                    yield table

        resources = [jobs, job_events, status_observations]
        return resources + ([checkpoints, training_metrics] if metrics else [])

    return source


openai_finetuning = finetuning_source("openai_finetuning", OpenAiClient, "OpenAI")
make_source = openai_finetuning


def version(job: dict[str, Any]) -> str:
    """What moves when a job changes, OpenAI's jobs having no ``updated_at`` (the status is added by ModelRef)."""
    files = job.get("result_files")
    parts = [
        job.get("finished_at"),
        job.get("fine_tuned_model"),
        job.get("trained_tokens"),
        job.get("estimated_finish"),
        mapping(job.get("error")).get("code"),
        len(files) if isinstance(files, list) else None,
    ]
    return orjson.dumps(parts).decode()


def what_to_read(job: ModelRef, run: Extraction, always: bool = False) -> ModelRef:
    """The job with what this run reads of it: its events when it is new or changed, under way, or due for its
    re-check; its checkpoints likewise, once it may have trained."""
    seen: Seen = run.seen.get(job.id)
    status = job.status.lower()
    under_way = status not in TERMINAL  # validating files, queued, running, paused, or a status not known
    events = always or under_way or run.rechecks.due(job.id) or seen.events != job.fingerprint
    trained = status in HAS_CHECKPOINTS or status not in KNOWN_STATUSES
    changed = seen.metrics != job.fingerprint
    metrics = trained and (always or under_way or changed or run.metric_rechecks.due(job.id))
    return ModelRef(job.id, job.status, job.updated_at, events=events, metrics=metrics)


async def listed_jobs(api: OpenAiClient, job_ids: Sequence[str] | None, report: RunReport) -> list[dict[str, Any]]:
    """The whole job list (each job once), or only the named jobs (a 404 is reported and skipped)."""
    if not job_ids:
        unique = {str(job["id"]): job for job in await api.list_jobs()}
        report.models += len(unique)
        return list(unique.values())
    return await named_items(api.get_job, job_ids, report, "job")


def unix_micros(value: Any, name: str, where: str) -> int | None:
    """Unix seconds (an integer, or a float from some servers) as microseconds; null as None."""
    if value is None:
        return None
    if type(value) is int:
        return value * 1_000_000
    if type(value) is float and math.isfinite(value):
        return round(value * 1_000_000)
    raise MalformedResponseError(f"malformed {name} in {where}: {value!r:.60} is not unix seconds")


def micros_to_datetime(micros: int | None) -> datetime | None:
    return None if micros is None else extract.EPOCH + timedelta(microseconds=micros)


def text(value: Any) -> str | None:
    """A hyperparameter or other scalar as text, as served ("auto", 3, 0.1); None for null or an object."""
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def mapping(value: Any) -> dict[str, Any]:
    """An object of the API's, or an empty one for null or anything else."""
    return value if isinstance(value, dict) else {}


def job_row(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the ``jobs`` table keeps it: the API's fields, flattened; integrations only by W&B project and
    entity (a server may echo a key there); hyperparameters from the job's method, else the legacy field."""
    where = f"job {job['id']}"
    error = mapping(job.get("error"))
    method = mapping(job.get("method"))
    method_type = method.get("type") if isinstance(method.get("type"), str) else None
    hyper = mapping(mapping(method.get(method_type)).get("hyperparameters")) if method_type else {}
    hyper = hyper or mapping(job.get("hyperparameters"))
    integrations: list[Any] = job["integrations"] if isinstance(job.get("integrations"), list) else []
    wandb = next((mapping(item.get("wandb")) for item in map(mapping, integrations) if item.get("type") == "wandb"), {})
    files, metadata = job.get("result_files"), job.get("metadata")
    return {
        "id": job["id"],
        "object": text(job.get("object")),
        "status": str(job.get("status") or ""),
        "model": text(job.get("model")),
        "fine_tuned_model": text(job.get("fine_tuned_model")),
        "organization_id": text(job.get("organization_id")),
        "created_at": micros_to_datetime(unix_micros(job.get("created_at"), "created_at", where)),
        "finished_at": micros_to_datetime(unix_micros(job.get("finished_at"), "finished_at", where)),
        "estimated_finish": micros_to_datetime(unix_micros(job.get("estimated_finish"), "estimated_finish", where)),
        "trained_tokens": job.get("trained_tokens") if type(job.get("trained_tokens")) is int else None,
        "seed": job.get("seed") if type(job.get("seed")) is int else None,
        "training_file": text(job.get("training_file")),
        "validation_file": text(job.get("validation_file")),
        "suffix": text(job.get("user_provided_suffix") or job.get("suffix")),
        "method": method_type,
        "batch_size": text(hyper.get("batch_size")),
        "learning_rate_multiplier": text(hyper.get("learning_rate_multiplier")),
        "n_epochs": text(hyper.get("n_epochs")),
        "error_code": text(error.get("code")),
        "error_message": text(error.get("message")),
        "error_param": text(error.get("param")),
        "wandb_project": text(wandb.get("project")),
        "wandb_entity": text(wandb.get("entity")),
        "result_files": orjson.dumps(files).decode() if isinstance(files, list) else None,
        "metadata": orjson.dumps(metadata).decode() if isinstance(metadata, dict) else None,
    }


def events_table(job_id: str, events: list[dict[str, Any]], base: int, report: RunReport) -> pa.Table:
    """A job's new events (served newest first) as a typed Arrow table, numbered oldest first from ``base`` + 1."""
    where = f"events of job {job_id}"
    for event in events:
        if not all(isinstance(event.get(name), str | None) for name in ("level", "type", "message")):
            raise MalformedResponseError(f"malformed event in {where}: {event!r:.120}")
        kind = event.get("type")
        if kind is not None and kind not in KNOWN_EVENT_TYPES:
            report.odd(UNKNOWN_TYPE, str(kind))
    ordered = events[::-1]
    return pa.Table.from_arrays(
        [
            arrow.strings([str(event["id"]) for event in ordered]),
            arrow.repeated(job_id, len(ordered)),
            arrow.optional_int64s(
                [unix_micros(event.get("created_at"), "created_at", where) for event in ordered], arrow.UTC_MICROS
            ),
            arrow.strings([event.get("level") for event in ordered]),
            arrow.strings([event.get("type") for event in ordered]),
            arrow.strings([event.get("message") for event in ordered]),
            arrow.int64s(range(base + 1, base + len(ordered) + 1)),
        ],
        schema=EVENTS_SCHEMA,
    )


def is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) or (isinstance(value, str) and value in NON_FINITE)


def as_step(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def event_metrics(job_id: str, events: list[dict[str, Any]], report: RunReport) -> Measurements:
    """The metrics of a job's ``metrics`` events: every numeric key of ``data`` but ``step``, at that step."""
    where = f"events of job {job_id}"
    found: Measurements = []
    for event in events:
        data = event.get("data")
        if event.get("type") != "metrics" or not isinstance(data, dict):
            continue
        step = as_step(data.get("step"))
        if step is None:
            report.odd(STEPLESS, job_id)
            continue
        logged = unix_micros(event.get("created_at"), "created_at", where)
        for name, value in data.items():
            if name != "step" and is_number(value):
                found.append((step, name, extract.metric_value(value, name, where, NON_FINITE), logged))
    return found


def checkpoint_metrics(job_id: str, checkpoints: list[dict[str, Any]]) -> Measurements:
    """The metrics of a job's checkpoints: every key of ``metrics`` but ``step``, at the checkpoint's step (a null
    value is no measurement)."""
    where = f"checkpoints of job {job_id}"
    found: Measurements = []
    for checkpoint in checkpoints:
        values = checkpoint.get("metrics")
        step = as_step(checkpoint.get("step_number"))
        if not isinstance(values, dict) or step is None:
            continue
        logged = unix_micros(checkpoint.get("created_at"), "created_at", where)
        for name, value in values.items():
            if name != "step" and value is not None:
                found.append((step, name, extract.metric_value(value, name, where, NON_FINITE), logged))
    return found


def metric_rows(job_id: str, found: Measurements) -> pa.Table:
    """A job's measurements as a metrics table, the first of each (step, metric) kept (an event's and a
    checkpoint's value of one step describe the same step)."""
    index: dict[tuple[int, str], int] = {}
    for position, (step, name, _, _) in enumerate(found):
        index.setdefault((step, name), position)
    kept = [found[position] for position in index.values()]
    table = pa.Table.from_arrays(
        [
            arrow.repeated(job_id, len(kept)),
            arrow.int64s([row[0] for row in kept]),
            arrow.strings([row[1] for row in kept]),
            arrow.float64s([row[2] for row in kept]),
            arrow.optional_int64s([row[3] for row in kept], arrow.UTC_MICROS),
        ],
        schema=METRICS_SCHEMA,
    )
    return table


CHECKPOINTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("step_number", pa.int64()),
        pa.field("fine_tuned_model_checkpoint", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


def checkpoints_table(job_id: str, checkpoints: list[dict[str, Any]]) -> pa.Table:
    """A job's checkpoints as a typed Arrow table."""
    where = f"checkpoints of job {job_id}"
    return pa.Table.from_arrays(
        [
            arrow.strings([str(checkpoint["id"]) for checkpoint in checkpoints]),
            arrow.repeated(job_id, len(checkpoints)),
            arrow.optional_int64s([as_step(checkpoint.get("step_number")) for checkpoint in checkpoints]),
            arrow.strings([text(checkpoint.get("fine_tuned_model_checkpoint")) for checkpoint in checkpoints]),
            arrow.optional_int64s(
                [unix_micros(checkpoint.get("created_at"), "created_at", where) for checkpoint in checkpoints],
                arrow.UTC_MICROS,
            ),
        ],
        schema=CHECKPOINTS_SCHEMA,
    )

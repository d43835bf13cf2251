"""A simulated Together AI fine-tuning API served over real HTTP on 127.0.0.1.

It serves ``GET /v1/fine-tunes`` (every job, no events, no paging), ``/v1/fine-tunes/{id}`` (with events),
``/{id}/events``, ``/{id}/metrics`` (``global_step_from``/``_to``; null for a job that never trained) and
``/{id}/checkpoints`` over generated lifecycles: completed jobs, errors, user errors, cancellations while queued
and while running, restarts, jobs stuck pending, several events with one timestamp, and training metrics (train and
eval rows, ``timestamp`` in nanoseconds) that grow while a job runs. Errors are ``{"error": {...}}`` and a wrong key
is a 401 with code ``invalid_api_key``. Timestamps are UTC with ``Z`` and 0, 3 or 6 fractional digits, or now and
then ``+00:00``. ``oddities`` adds what a demanding test needs: an event type no mapping knows, an event without
``created_at``, a job in 2023's upper-case types, and NaN losses written as bare ``NaN``. ``echo_secrets`` makes the
server echo request-only secrets (``wandb_key``, ``hf_api_token``) in its job bodies.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pipelines.providers.together.client import JOBS_PATH
from pipelines.providers.together.lifecycle import STATUS_OF_TYPE
from pipelines.simulated import DROP, Controls, FakeApiServer, serve_forever, timeline, truncate  # noqa: F401  # re-exported: the server every simulator shares

DEFAULT_API_KEY = "simulated-together-key"
BASE_MODELS = [
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "meta-llama/Llama-3.3-70B-Instruct-Reference",
    "Qwen/Qwen2.5-7B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.2",
    "google/gemma-3-12b-it",
]
# (lifecycle, weight): how jobs end, roughly as a busy team's jobs do
LIFECYCLES = [
    ("completed", 62),
    ("error", 8),
    ("user_error", 8),
    ("cancelled_queued", 5),
    ("cancelled_running", 5),
    ("restarted", 6),
    ("stuck_pending", 3),
    ("billing_limit", 3),
]
SECONDS_PER_STEP = 30.0
QUEUED_AFTER = timedelta(minutes=10)  # a pending job is listed `queued` after this (no event marks it)


@dataclass(slots=True)
class Event:
    type: str
    created_at: datetime | None
    message: str
    level: str | None = "info"
    step: int | None = None
    total_steps: int | None = None
    digits: int = 3
    offset: bool = False  # written with +00:00 instead of Z
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "object": "fine-tune-event",
            "created_at": None if self.created_at is None else stamp(self.created_at, self.digits, self.offset),
            "message": self.message,
            "type": self.type,
            "level": self.level,
        }
        if self.step is not None:
            body["step"] = self.step
        if self.total_steps is not None:
            body["total_steps"] = self.total_steps
        return body | (self.extra or {})


def stamp(moment: datetime, digits: int, offset: bool = False) -> str:
    """RFC 3339 in UTC with ``digits`` fractional digits (0, 3 or 6), ending in Z or +00:00."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += f".{moment.microsecond:06d}"[: digits + 1]
    return text + ("+00:00" if offset else "Z")


@dataclass
class Training:
    """When a job trained and how its curve looks; its metric rows are made on request, never stored."""

    start: datetime
    end: datetime  # when training stopped (or would stop, for a job still training)
    total_steps: int
    logged_every: int
    eval_every: int
    diverges: bool
    seed: int
    first_step: int = 1  # a training resumed from a checkpoint logs from the step after it
    planned_steps: int = 0  # the steps the job would train to


@dataclass
class Job:
    id: str
    created_at: datetime
    model: str
    output_name: str
    user_id: str
    lora: bool
    n_epochs: int
    lifecycle: str
    events: list[Event] = field(default_factory=list)
    trainings: list[Training] = field(default_factory=list)
    secrets: bool = False

    def visible(self, now: datetime) -> list[Event]:
        return [event for event in self.events if event.created_at is None or event.created_at <= now]


def status_at(job: Job, events: list[Event], now: datetime) -> str:
    """The job's status as the API lists it: the last mapped event's, `queued` after a long wait as pending."""
    status = "pending"
    for event in events:
        status = STATUS_OF_TYPE.get(event.type.lower(), status)
    if status == "pending" and now - job.created_at > QUEUED_AFTER:
        return "queued"
    return status


def job_body(job: Job, now: datetime, with_events: bool) -> dict[str, Any]:
    events = job.visible(now)
    timed = [event.created_at for event in events if event.created_at is not None]
    updated = max(timed, default=job.created_at)
    status = status_at(job, events, now)
    body: dict[str, Any] = {
        "id": job.id,
        "status": status,
        "created_at": stamp(job.created_at, 3),
        "updated_at": stamp(updated, 6),
        "user_id": job.user_id,
        "model": job.model,
        "model_output_name": job.output_name,
        "suffix": job.output_name.rsplit("-", 1)[-1],
        "training_file": f"file-{job.id[3:15]}",
        "validation_file": "",
        "n_epochs": job.n_epochs,
        "n_checkpoints": 1,
        "n_evals": 2,
        "batch_size": 16,
        "learning_rate": 1e-5,
        "training_type": {"type": "Lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
        if job.lora
        else {"type": "Full"},
        "training_method": {"method": "sft", "train_on_inputs": "auto"},
        "token_count": 120_000 + len(job.id) * 1000,
        "total_price": 4_500_000_000,
        "wandb_project_name": "finetunes",
        "events": [event.to_json() for event in events] if with_events else [],
    }
    started = next((e.created_at for e in events if e.type.lower() == "job_start"), None)
    if started is not None:
        body["started_at"] = stamp(started, 3)
    if job.secrets:
        body["wandb_key"] = f"wandb-secret-{job.id[-6:]}"
        body["hf_api_token"] = f"hf_secret_{job.id[-6:]}"
        body["training_method"]["wandb_api_key"] = "wandb-secret-nested"
    return body


class JobWriter:
    """Appends a job's events at a moving clock, a few seconds apart unless told to share a timestamp."""

    def __init__(self, job: Job, rng: random.Random) -> None:
        self.job, self.rng = job, rng
        self.clock = job.created_at

    def add(
        self,
        kind: str,
        message: str,
        after: float = 0.0,
        level: str | None = "info",
        step: int | None = None,
        total_steps: int | None = None,
    ) -> Event:
        self.clock += timedelta(seconds=after)
        digits = self.rng.choice((0, 3, 3, 6))
        offset = self.rng.random() < 0.1
        event = Event(kind, truncate(self.clock, digits), message, level, step, total_steps, digits, offset)
        self.job.events.append(event)
        return event

    def queue(self) -> None:
        self.add("job_pending", "Fine tune request created", level=None)
        self.clock += timedelta(seconds=self.rng.lognormvariate(math.log(1500), 0.9))

    def start(self) -> None:
        self.add("job_start", f"Job started at {self.clock:%a %b %d %H:%M:%S UTC %Y}")
        self.add("model_downloading", "Downloading model data", after=self.rng.uniform(2, 20))
        self.add("model_download_complete", "Model data downloaded", after=self.rng.uniform(20, 300))
        self.add("training_data_downloading", "Downloading training data", after=1)
        self.add("training_data_download_complete", "Training data downloaded", after=self.rng.uniform(5, 60))
        self.add("wandb_init", "Weights & Biases run initialised", after=self.rng.uniform(1, 5))

    def train(self, until_step: int | None = None, resume: Training | None = None) -> Training:
        """Training from step 1 (or from the step after ``resume`` stopped), epoch by epoch, to the job's last step
        (or ``until_step``)."""
        total = self.job.n_epochs * self.rng.choice((20, 40, 60)) if resume is None else resume.planned_steps
        first = 1 if resume is None else resume.total_steps + 1
        last = total if until_step is None else until_step
        start = self.clock + timedelta(seconds=self.rng.uniform(1, 30))
        self.clock = start
        self.add("training_start", "Training started for model " + self.job.model, total_steps=total)
        per_epoch = total // self.job.n_epochs
        for epoch in range(1, self.job.n_epochs + 1):
            step = epoch * per_epoch
            if step < first:
                continue
            if step > last:
                break
            self.clock = start + timedelta(seconds=(step - first + 1) * SECONDS_PER_STEP)
            self.add("epoch_complete", f"Epoch completed, at step {step}", step=step, total_steps=total)
            if epoch == self.job.n_epochs:
                # the checkpoint of the last epoch is written in the same instant as the epoch's end
                self.add("checkpoint_save", f"New checkpoint saved at step {step}", step=step, total_steps=total)
        self.clock = start + timedelta(seconds=(last - first + 1) * SECONDS_PER_STEP)
        diverges = self.job.lifecycle == "error"
        training = Training(
            start, self.clock, last, self.rng.choice((1, 2, 5)), 10, diverges, self.rng.randrange(2**31), first, total
        )
        self.job.trainings.append(training)
        return training

    def finish(self) -> None:
        self.add("training_complete", "Training completed for model " + self.job.model, after=1)
        if self.rng.random() < 0.5:  # 2025's jobs compress before the upload; 2026's go straight to it
            self.add("model_compressing", "Compressing output model")  # same instant as the training's end
            self.add("model_compression_complete", "Model compression complete", after=self.rng.uniform(60, 400))
        self.add("model_uploading", "Uploading output model", after=self.rng.uniform(1, 10))
        self.add("model_upload_complete", "Model upload complete", after=self.rng.uniform(120, 900))
        self.add("job_complete", f"Job finished at {self.clock:%a %b %d %H:%M:%S UTC %Y}")  # same instant


def write_lifecycle(job: Job, rng: random.Random, resumes: bool = False) -> None:
    writer = JobWriter(job, rng)
    writer.queue()
    kind = job.lifecycle
    if kind == "stuck_pending":
        return  # only job_pending: the queue never ends
    if kind == "cancelled_queued":
        writer.clock = job.created_at + timedelta(seconds=rng.uniform(60, 1200))
        writer.add("cancel_requested", "Cancel requested by user")
        writer.add("job_stopped", "Job stopped", after=rng.uniform(5, 60))
        return
    writer.start()
    if kind == "user_error":
        writer.add(
            "job_user_error",
            "Invalid training file: line 42 is not valid JSON",
            level="error",
        )  # same instant as the data download's end
        return
    if kind == "cancelled_running":
        writer.train(until_step=rng.randrange(5, 30))
        writer.add("cancel_requested", "Cancel requested by user", after=1)
        writer.add("job_stopped", "Job stopped", after=rng.uniform(10, 90))
        return
    if kind == "billing_limit":
        writer.train(until_step=rng.randrange(5, 30))
        writer.add("billing_limit", "Billing limit reached; the job will likely get cancelled", level="warning")
        writer.add("job_stopped", "Job stopped", after=rng.uniform(30, 300))
        return
    if kind == "error":
        writer.train(until_step=rng.randrange(10, 40))
        writer.add("job_error", "Training failed: loss became NaN", level="error", after=2)
        return
    aborted = None
    if kind == "restarted":
        aborted = writer.train(until_step=rng.randrange(5, 20))
        writer.add("job_restarted", "Job restarted after a node failure", level="warning", after=5)
        writer.clock += timedelta(seconds=rng.uniform(120, 1800))
        writer.start()
    writer.train(resume=aborted if resumes else None)
    writer.finish()


def make_job(rng: random.Random, index: int, created: datetime, oddities: bool = False, resumes: bool = False) -> Job:
    kinds, weights = zip(*LIFECYCLES, strict=True)
    digest = hashlib.sha1(f"{index}:{rng.random()}".encode()).hexdigest()
    job_id = f"ft-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    model = rng.choice(BASE_MODELS)
    job = Job(
        id=job_id,
        created_at=truncate(created, 3),
        model=model,
        output_name=f"team-ml/{model.split('/')[-1]}-ft-{digest[:6]}",
        user_id=f"user-{rng.randrange(1, 6)}",
        lora=rng.random() < 0.7,
        n_epochs=rng.choice((1, 2, 3)),
        lifecycle=rng.choices(kinds, weights)[0],
    )
    write_lifecycle(job, rng, resumes)
    if oddities and index % 7 == 3:
        moment = job.events[-1].created_at or job.created_at
        job.events.append(Event("model_evaluating", moment, "Evaluating the model (a type no mapping knows)"))
        job.events.append(Event("warning", None, "An event with no time"))
    if oddities and index % 11 == 5:
        for event in job.events:
            event.type = "COMPRESSING_MODEL" if event.type == "model_compressing" else event.type.upper()
    return job


def metric_rows(job: Job, now: datetime) -> list[dict[str, Any]]:
    """The job's metric rows logged by ``now``, chronological: a train row every few steps, an eval row every
    ``eval_every`` steps (same step, later timestamp). A job that diverges logs NaN losses at its end."""
    return [row for rows in metric_rows_by_training(job, now) for row in rows]


def metric_rows_by_training(job: Job, now: datetime) -> list[list[dict[str, Any]]]:
    """:func:`metric_rows`, a list for each training of the job (a restarted job has two)."""
    trainings: list[list[dict[str, Any]]] = []
    for training in job.trainings:
        rows: list[dict[str, Any]] = []
        trainings.append(rows)
        rng = random.Random(training.seed)
        floor = rng.uniform(0.4, 1.1)
        every = training.logged_every
        for step in range(-(-training.first_step // every) * every, training.total_steps + 1, every):
            at = training.start + timedelta(seconds=(step - training.first_step + 1) * SECONDS_PER_STEP)
            if at > now:
                break
            progress = step / max(1, training.total_steps)
            loss = floor + 1.6 * math.exp(-4 * progress) + rng.uniform(-0.03, 0.03)
            if training.diverges and progress > 0.8:
                loss = math.nan
            ns = int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000 + rng.randrange(1000)
            rows.append(
                {
                    "timestamp": ns,
                    "train/global_step": step,
                    "train/epoch": round(step / training.total_steps * job.n_epochs, 4),
                    "train/loss": loss,
                    "train/grad_norm": rng.uniform(0.3, 1.5),
                    "train/learning_rate": 1e-5 * (1 - progress),
                }
            )
            if step % training.eval_every == 0:
                rows.append(
                    {
                        "timestamp": ns + 2_000_000_000,
                        "train/global_step": step,
                        "train/epoch": round(step / training.total_steps * job.n_epochs, 4),
                        "eval/loss": loss + 0.05 if not math.isnan(loss) else loss,
                    }
                )
    return trainings


class World:
    """The simulated API's data: jobs with whole lifecycles, shown as they stand at the world's clock."""

    def __init__(
        self,
        jobs: int = 60,
        seed: int = 7,
        now: datetime | None = None,
        oddities: bool = False,
        echo_secrets: bool = False,
        spacing: timedelta | None = None,
        ahead: timedelta = timedelta(0),
        resumes: bool = False,
        events_lag: timedelta = timedelta(0),
    ) -> None:
        """``jobs`` created over the 90 days before ``now`` (or every ``spacing`` up to ``now``), and over ``ahead``
        after it: those appear as the clock moves on. ``resumes``: a restarted job resumes from its checkpoint
        (logging no step again) instead of training again from step 1. ``events_lag``: the events endpoint shows
        events that old and older only, while the job list is up to date (the list runs ahead of the events)."""
        self.now = now or datetime.now(UTC)
        self.events_lag = events_lag
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        first = self.now - timedelta(days=90)
        for index in range(jobs):
            rng = random.Random(seed * 1_000_003 + index)
            if spacing:
                created = self.now - spacing * (jobs - index) + timedelta(seconds=rng.uniform(0, 600))
            else:
                span = (self.now + ahead - first).total_seconds() - 600
                created = first + timedelta(seconds=rng.uniform(0, span))
            self.add(make_job(rng, index, created, oddities, resumes), echo_secrets)

    @classmethod
    def timeline(cls, seed: int = 7, jobs: int = 60, now: datetime | None = None) -> World:
        """The demo's world: one job every 12 hours on a fixed timeline, the latest ``jobs`` of them, so that a
        repeated demo loads only what time revealed."""
        now = now or datetime.now(UTC)
        world = cls(jobs=0, seed=seed, now=now)
        for slot, rng, created in timeline(seed, jobs, now):
            world.add(make_job(rng, slot, created))
        return world

    def size(self) -> int:
        """How many jobs the world holds."""
        return len(self.jobs)

    def add(self, job: Job, echo_secrets: bool = False) -> None:
        job.secrets = echo_secrets
        self.jobs[job.id] = job

    def listed(self) -> list[Job]:
        with self.lock:
            return sorted(
                (job for job in self.jobs.values() if job.created_at <= self.now),
                key=lambda job: (job.created_at, job.id),
            )

    def job_list(self) -> list[dict[str, Any]]:
        return [job_body(job, self.now, with_events=False) for job in self.listed()]

    def job_body(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return job_body(job, self.now, with_events=True) if job and job.created_at <= self.now else None

    def events_of(self, job_id: str) -> list[Event]:
        with self.lock:
            return self.jobs[job_id].visible(self.now - self.events_lag)

    def metrics_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return metric_rows(self.jobs[job_id], self.now)

    def status_of(self, job_id: str) -> str:
        with self.lock:
            job = self.jobs[job_id]
            return status_at(job, job.visible(self.now), self.now)

    def advance(self, seconds: float) -> int:
        """Move the clock on; returns how many events became visible."""
        with self.lock:
            before = self.event_count()
            self.now += timedelta(seconds=seconds)
            return self.event_count() - before

    def event_count(self) -> int:
        with self.lock:
            return sum(len(job.visible(self.now)) for job in self.listed())


class ApiError(Exception):
    """An error answer, in Together's shape."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeTogetherApi(Controls):
    """The request logic of the simulated Together API, independent of the HTTP server that carries it."""

    def __init__(
        self,
        world: World,
        api_key: str = DEFAULT_API_KEY,
        announce_simulated: bool = True,
        latency_ms: float = 0.0,
        stall_seconds: float = 5.0,
        page_size: int = 0,
        paging: str = "cursor",
    ) -> None:
        """``page_size`` > 0 pages the events and metrics answers (the real API does not): ``paging`` "cursor"
        (``has_more`` and ``next_cursor``, asked back as ``cursor``), "link" (a ``next`` link), or "bare"
        (``has_more`` alone: no way to ask for the rest)."""
        super().__init__()
        self.page_size, self.paging = page_size, paging
        self.world = world
        self.api_key = api_key
        self.announce_simulated = announce_simulated
        self.latency = latency_ms / 1000
        self.stall_seconds = stall_seconds

    def handle(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        url = urlsplit(raw_path)
        path = url.path.rstrip("/")
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/_simulator/"):
            return self.control(path, query)
        with self.lock:
            self.stats.requests += 1
        if self.latency:
            time.sleep(self.latency)
        try:
            if headers.get("authorization", "") != f"Bearer {self.api_key}":
                raise ApiError(401, "Invalid API key provided", "invalid_api_key")
            fault = self.next_fault(path)
            if fault == "malformed":
                return 200, b'{"data": [{"id": "ft-', {}
            if fault == "timeout":
                time.sleep(self.stall_seconds)
            elif fault == "drop":
                return DROP, b"", {}
            elif isinstance(fault, int):
                raise ApiError(fault, f"injected failure {fault}", headers={"Retry-After": "1"} if fault == 429 else {})
            body = self.route(method, path, query)
            return 200, dumps(body), {}
        except ApiError as error:
            payload = {"error": {"message": error.message, "type": "invalid_request_error", "param": None}}
            payload["error"]["code"] = error.code
            return error.status, orjson.dumps(payload), error.headers

    def route(self, method: str, path: str, query: dict[str, str]) -> Any:
        if method != "GET":
            raise ApiError(405, "method not allowed")
        if path == JOBS_PATH:
            self.count("list_jobs")
            return {"data": self.world.job_list()}
        if not path.startswith(JOBS_PATH + "/"):
            raise ApiError(404, "Not found")
        job_id, *rest = path[len(JOBS_PATH) + 1 :].split("/")
        job_id = unquote(job_id)
        body = self.world.job_body(job_id)
        if body is None:
            raise ApiError(404, f"Fine-tune job {job_id} not found", "not_found")
        if not rest:
            self.count("get_job")
            return body
        if rest == ["events"]:
            self.count("list_events")
            return self.paged("data", [event.to_json() for event in self.world.events_of(job_id)], path, query)
        if rest == ["metrics"]:
            self.count("list_metrics")
            return self.paged("metrics", self.metrics(job_id, query), path, query)
        if rest == ["checkpoints"]:
            self.count("list_checkpoints")
            return {"data": checkpoints(body)}
        raise ApiError(404, "Not found")

    def metrics(self, job_id: str, query: dict[str, str]) -> list[dict[str, Any]] | None:
        rows = self.world.metrics_of(job_id)
        if not rows and not self.world.jobs[job_id].trainings:
            return None  # a job that never trained: the API's null
        low, high = step_bound(query, "global_step_from"), step_bound(query, "global_step_to")
        return [
            row
            for row in rows
            if (low is None or row["train/global_step"] >= low) and (high is None or row["train/global_step"] <= high)
        ]

    def paged(self, key: str, items: list[dict[str, Any]] | None, path: str, query: dict[str, str]) -> Any:
        """``{key: items}``, or one page of them when paging is on."""
        if not self.page_size or items is None:
            return {key: items}
        offset = int(query.get("cursor") or query.get("offset") or 0)
        page = items[offset : offset + self.page_size]
        body: dict[str, Any] = {key: page, "has_more": offset + self.page_size < len(items)}
        if body["has_more"] and self.paging == "cursor":
            body["next_cursor"] = str(offset + self.page_size)
        elif body["has_more"] and self.paging == "link":
            rest = "&".join(f"{name}={value}" for name, value in query.items() if name != "offset")
            body["next"] = f"{path}?offset={offset + self.page_size}" + (f"&{rest}" if rest else "")
        return body


def step_bound(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise ApiError(422, f"{name} must be an integer", "invalid_parameter") from None


def checkpoints(body: dict[str, Any]) -> list[dict[str, Any]]:
    saves = [event for event in body["events"] if str(event["type"]).lower() == "checkpoint_save"]
    return [
        {"checkpoint_type": "Intermediate", "created_at": event["created_at"], "path": f"{body['id']}/ckpt",
         "step": event.get("step")}
        for event in saves
    ]  # fmt: skip


def dumps(body: Any) -> bytes:
    """JSON as the API writes it: a NaN metric as a bare ``NaN`` token (Python's json; orjson would write null)."""
    rows = body.get("metrics") if isinstance(body, dict) else None
    if isinstance(rows, list) and has_nan(rows):
        return json.dumps(body).encode()
    return orjson.dumps(body)


def has_nan(rows: list[dict[str, Any]]) -> bool:
    return any(isinstance(value, float) and math.isnan(value) for row in rows for value in row.values())


def demo_api(
    jobs: int = 60, seed: int = 7, api_key: str = DEFAULT_API_KEY, latency_ms: float = 0.0, **faults: Any
) -> FakeTogetherApi:
    """The simulated API of ``demo`` and ``fake-api``: the demo's timeline of ``jobs`` jobs. ValueError for a fault
    switch of another simulator's."""
    unsupported = [name for name, value in faults.items() if value]
    if unsupported:
        raise ValueError(f"the simulated Together AI API has no {', '.join(unsupported)} switch")
    return FakeTogetherApi(World.timeline(seed=seed, jobs=jobs), api_key=api_key, latency_ms=latency_ms)

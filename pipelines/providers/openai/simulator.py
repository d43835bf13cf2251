"""A simulated OpenAI fine-tuning jobs API served over real HTTP on 127.0.0.1 (Azure's too, under its own paths and
auth: see pipelines/providers/azure/simulator.py).

It serves ``GET {prefix}/fine_tuning/jobs`` (newest first, ``limit`` at most 100, ``after`` a job id, ``has_more``),
``/{id}``, ``/{id}/events`` (newest first, ``after`` an event id) and ``/{id}/checkpoints`` (newest first, with
``first_id`` and ``last_id``) over generated lifecycles: successes, files that fail validation, trainings that fail
with an error code, cancellations while queued and while running, jobs stuck in the queue, validation files,
a ``metrics`` event for every step (several a second: ``created_at`` is whole seconds), checkpoints at the ends of
the last three epochs with ``full_valid_*`` metrics, and jobs that train as the clock moves on. A wrong key is a 401
with OpenAI's error body (``invalid_api_key``); ``rate_limit`` answers 429 with ``retry-after`` and the
``x-ratelimit-*`` headers. ``oddities`` adds a paused job and an event of a type the SDK does not name;
``echo_secrets`` echoes a W&B key inside ``integrations``. Everything else parses with the official SDK, strictly.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pipelines.providers.openai.client import JOBS_PATH, MAX_LIMIT
from pipelines.simulated import DROP, Controls, FakeApiServer, serve_forever, timeline  # noqa: F401  # re-exported: the server every simulator shares

DEFAULT_API_KEY = "sk-simulated-openai-key"
BASE_PATH = "/v1"  # the simulated server's base URL is its address plus this (OPENAI_BASE_URL includes /v1)
BASE_MODELS = ["gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14", "gpt-4.1-2025-04-14", "gpt-4o-2024-08-06"]
# (lifecycle, weight): how jobs end, roughly as a busy team's jobs do
LIFECYCLES = [
    ("succeeded", 66),
    ("invalid_file", 7),
    ("training_error", 7),
    ("cancelled_queued", 5),
    ("cancelled_running", 5),
    ("stuck_queued", 3),
    ("succeeded_no_validation", 7),
]
TRAINING_ERRORS = [
    ("server_error", "The job failed due to an internal error. Please try again."),
    ("exceeded_quota", "The job failed because it exceeded your organization's hard limit."),
]
SECONDS_PER_STEP = 0.4  # several steps a second: many metrics events share one created_at
LIMIT = 20  # the API's default limit


@dataclass(slots=True)
class Event:
    at: datetime
    message: str
    level: str = "info"
    kind: str = "message"
    data: dict[str, Any] | None = None
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job.event",
            "id": self.id,
            "created_at": int(self.at.timestamp()),
            "level": self.level,
            "message": self.message,
            "data": self.data or {},
            "type": self.kind,
        }


@dataclass(slots=True)
class Checkpoint:
    at: datetime
    step: int
    metrics: dict[str, float]
    id: str


@dataclass
class Job:
    id: str
    created_at: datetime
    model: str
    suffix: str
    lifecycle: str
    n_epochs: int
    batch_size: int | str
    validation: bool
    seed: int
    events: list[Event] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    statuses: list[tuple[datetime, str]] = field(default_factory=list)  # the truth: when each status began
    finished_at: datetime | None = None
    finish_estimate: datetime | None = None
    error: dict[str, Any] | None = None
    trained_tokens: int = 0
    metadata: dict[str, str] | None = None
    wandb: bool = False
    secrets: bool = False

    def visible(self, now: datetime) -> list[Event]:
        return [event for event in self.events if event.at <= now]

    def status_at(self, now: datetime) -> str:
        current = "validating_files"
        for moment, status in self.statuses:
            if moment <= now:
                current = status
        return current

    @property
    def fine_tuned_model(self) -> str:
        return f"ft:{self.model}:simulated-org:{self.suffix}:{self.id[-8:]}"


def whole(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class JobWriter:
    """Appends a job's events and status changes at a moving clock."""

    def __init__(self, job: Job, rng: random.Random) -> None:
        self.job, self.rng = job, rng
        self.clock = job.created_at

    def add(self, message: str, after: float = 0.0, level: str = "info", kind: str = "message", **data: Any) -> None:
        self.clock += timedelta(seconds=after)
        job = self.job
        digest = hashlib.sha1(f"{job.id}:{len(job.events)}".encode()).hexdigest()
        job.events.append(Event(whole(self.clock), message, level, kind, data or None, f"ftevent-{digest[:24]}"))

    def status(self, status: str) -> None:
        self.job.statuses.append((whole(self.clock), status))

    def finish(self, status: str) -> None:
        self.status(status)
        self.job.finished_at = whole(self.clock)

    def validate(self) -> None:
        job = self.job
        self.status("validating_files")
        self.add(f"Created fine-tuning job: {job.id}")
        self.add(f"Validating training file: file-train{job.id[-10:]}")
        if job.validation:
            self.add(f"Validating validation file: file-valid{job.id[-10:]}")

    def queue(self) -> None:
        self.add("Files validated, moving job to queued state", after=self.rng.uniform(20, 300))
        self.status("queued")

    def start(self) -> None:
        self.add("Fine-tuning job started", after=self.rng.lognormvariate(math.log(900), 0.8))
        self.status("running")

    def train(self, until_step: int | None = None) -> None:
        """Training from step 1, a metrics event for every step, checkpoints at the ends of the last three epochs."""
        job, rng = self.job, self.rng
        per_epoch = rng.choice((10, 20, 30))
        total = job.n_epochs * per_epoch
        last = total if until_step is None else until_step
        floor, start = rng.uniform(0.2, 0.9), self.clock
        job.finish_estimate = whole(start + timedelta(seconds=total * SECONDS_PER_STEP + 600))
        for step in range(1, last + 1):
            self.clock = start + timedelta(seconds=step * SECONDS_PER_STEP)
            progress = step / total
            loss = round(floor + 1.8 * math.exp(-4 * progress) + rng.uniform(-0.02, 0.02), 5)
            accuracy = round(min(0.99, 0.5 + 0.45 * progress + rng.uniform(-0.01, 0.01)), 5)
            data: dict[str, Any] = {"step": step, "train_loss": loss, "train_mean_token_accuracy": accuracy}
            message = f"Step {step}/{total}: training loss={loss:.2f}"
            if job.validation and step % 5 == 0:
                data |= {"valid_loss": round(loss + 0.04, 5), "valid_mean_token_accuracy": round(accuracy - 0.02, 5)}
                message += f", validation loss={loss + 0.04:.2f}"
            if step % 10 == 0:
                data["total_steps"] = total  # some deployments add it: a numeric key, so a metric too
            self.add(message, kind="metrics", **data)
            epoch, at_end = divmod(step, per_epoch)
            if at_end == 0 and epoch > job.n_epochs - 3:
                self.checkpoint(step, loss, accuracy)
        job.trained_tokens = last * job.n_epochs * 2048

    def checkpoint(self, step: int, loss: float, accuracy: float) -> None:
        job = self.job
        metrics = {"step": float(step), "train_loss": loss, "train_mean_token_accuracy": accuracy}
        if job.validation:
            metrics |= {
                "valid_loss": round(loss + 0.04, 5),
                "valid_mean_token_accuracy": round(accuracy - 0.02, 5),
                "full_valid_loss": round(loss + 0.05, 5),
                "full_valid_mean_token_accuracy": round(accuracy - 0.03, 5),
            }
        digest = hashlib.sha1(f"{job.id}:ckpt:{step}".encode()).hexdigest()
        job.checkpoints.append(Checkpoint(whole(self.clock), step, metrics, f"ftckpt_{digest[:24]}"))
        self.add(f"Checkpoint created at step {step}")

    def succeed(self) -> None:
        job = self.job
        self.add(f"New fine-tuned model created: {job.fine_tuned_model}", after=self.rng.uniform(30, 200))
        self.add("Evaluating model against our usage policies", after=1)
        self.add(
            "Usage policy evaluations completed, model is now enabled for sampling", after=self.rng.uniform(60, 400)
        )
        self.add("The job has successfully completed")  # same second
        self.finish("succeeded")

    def cancel(self) -> None:
        self.add("Fine-tuning job cancelled", after=self.rng.uniform(10, 600))
        self.finish("cancelled")

    def fail(self, code: str, message: str, param: str | None = None) -> None:
        self.add(message, level="error", after=self.rng.uniform(1, 30))
        self.job.error = {"code": code, "message": message, "param": param}
        self.finish("failed")


def write_lifecycle(job: Job, rng: random.Random) -> None:
    writer = JobWriter(job, rng)
    writer.validate()
    kind = job.lifecycle
    if kind == "invalid_file":
        message = "The job failed due to an invalid training file. Expected file to have JSONL format."
        writer.fail("invalid_training_file", message, "training_file")
        return
    writer.queue()
    if kind == "stuck_queued":
        return
    if kind == "cancelled_queued":
        writer.cancel()
        return
    writer.start()
    if kind == "cancelled_running":
        writer.train(until_step=rng.randrange(3, 10))
        writer.cancel()
        return
    if kind == "training_error":
        writer.train(until_step=rng.randrange(3, 10))
        writer.fail(*rng.choice(TRAINING_ERRORS))
        return
    if kind == "paused":
        writer.train(until_step=rng.randrange(3, 10))
        writer.add("Fine-tuning job paused", after=2)
        writer.status("paused")
        return
    writer.train()
    writer.succeed()


def make_job(rng: random.Random, index: int, created: datetime, oddities: bool = False) -> Job:
    kinds, weights = zip(*LIFECYCLES, strict=True)
    digest = hashlib.sha1(f"{index}:{rng.random()}".encode()).hexdigest()
    lifecycle = rng.choices(kinds, weights)[0]
    if oddities and index % 9 == 4:
        lifecycle = "paused"
    job = Job(
        id=f"ftjob-{digest[:24]}",
        created_at=whole(created),
        model=rng.choice(BASE_MODELS),
        suffix=rng.choice(("support-bot", "classifier", "summaries", "sql-helper")),
        lifecycle=lifecycle,
        n_epochs=rng.choice((1, 2, 3, 4)),
        batch_size=rng.choice((1, 4, 8, "auto")),
        validation=lifecycle != "succeeded_no_validation",
        seed=rng.randrange(2**31),
        metadata={"team": rng.choice(("search", "support", "ml-platform"))} if rng.random() < 0.5 else None,
        wandb=rng.random() < 0.4,
    )
    write_lifecycle(job, rng)
    if oddities and index % 7 == 3:
        moment = job.events[-1].at
        job.events.append(Event(moment, "Moderation checks passed", kind="moderation", id=f"ftevent-odd{digest[:21]}"))
    return job


def job_body(job: Job, now: datetime) -> dict[str, Any]:
    """A job as the API lists it at ``now``."""
    status = job.status_at(now)
    finished = job.finished_at if job.finished_at is not None and job.finished_at <= now else None
    succeeded = status == "succeeded"
    estimate = int(job.finish_estimate.timestamp()) if job.finish_estimate else None
    hyperparameters = {"batch_size": job.batch_size, "learning_rate_multiplier": 1.8, "n_epochs": job.n_epochs}
    body: dict[str, Any] = {
        "object": "fine_tuning.job",
        "id": job.id,
        "model": job.model,
        "created_at": int(job.created_at.timestamp()),
        "finished_at": int(finished.timestamp()) if finished else None,
        "fine_tuned_model": job.fine_tuned_model if succeeded else None,
        "organization_id": "org-simulated",
        "result_files": [f"file-result{job.id[-10:]}"] if succeeded else [],
        "status": status,
        "validation_file": f"file-valid{job.id[-10:]}" if job.validation else None,
        "training_file": f"file-train{job.id[-10:]}",
        "hyperparameters": hyperparameters,
        "trained_tokens": job.trained_tokens if succeeded else None,
        "error": job.error if status == "failed" else None,
        "user_provided_suffix": job.suffix,
        "seed": job.seed,
        "estimated_finish": estimate if status == "running" else None,
        "integrations": [],
        "metadata": job.metadata,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
    }
    if job.wandb or job.secrets:
        wandb: dict[str, Any] = {"project": "finetunes", "entity": None, "name": None, "tags": [job.suffix]}
        if job.secrets:
            wandb["api_key"] = f"wandb-secret-{job.id[-6:]}"
        body["integrations"] = [{"type": "wandb", "wandb": wandb}]
    return body


def checkpoint_body(job: Job, checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": checkpoint.id,
        "created_at": int(checkpoint.at.timestamp()),
        "fine_tuned_model_checkpoint": f"{job.fine_tuned_model}:ckpt-step-{checkpoint.step}",
        "step_number": checkpoint.step,
        "metrics": checkpoint.metrics,
        "fine_tuning_job_id": job.id,
    }


class World:
    """The simulated API's data: jobs with whole lifecycles, shown as they stand at the world's clock."""

    def __init__(
        self,
        jobs: int = 60,
        seed: int = 11,
        now: datetime | None = None,
        oddities: bool = False,
        echo_secrets: bool = False,
        spacing: timedelta | None = None,
        ahead: timedelta = timedelta(0),
    ) -> None:
        """``jobs`` created over the 90 days before ``now`` (or every ``spacing`` up to ``now``), and over ``ahead``
        after it: those appear as the clock moves on."""
        self.now = whole(now or datetime.now(UTC))
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        first = self.now - timedelta(days=90)
        for index in range(jobs):
            rng = random.Random(seed * 1_000_003 + index)
            if spacing:
                created = self.now - spacing * (jobs - index) + timedelta(seconds=rng.uniform(0, 600))
            else:
                created = first + timedelta(seconds=rng.uniform(0, (self.now + ahead - first).total_seconds() - 600))
            self.add(make_job(rng, index, created, oddities), echo_secrets)

    @classmethod
    def timeline(cls, seed: int = 11, jobs: int = 60, now: datetime | None = None) -> World:
        """The demo's world: one job every 12 hours on a fixed timeline, the latest ``jobs`` of them."""
        now = now or datetime.now(UTC)
        world = cls(jobs=0, seed=seed, now=now)
        for slot, rng, created in timeline(seed, jobs, now):
            world.add(make_job(rng, slot, created))
        return world

    def size(self) -> int:
        return len(self.jobs)

    def add(self, job: Job, echo_secrets: bool = False) -> None:
        job.secrets = echo_secrets
        self.jobs[job.id] = job

    def listed(self) -> list[Job]:
        """The jobs created by now, newest first."""
        with self.lock:
            shown = [job for job in self.jobs.values() if job.created_at <= self.now]
        return sorted(shown, key=lambda job: (job.created_at, job.id), reverse=True)

    def job(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.created_at <= self.now else None

    def events_of(self, job_id: str) -> list[Event]:
        """A job's events by now, newest first (within one second, the later written first)."""
        with self.lock:
            return self.jobs[job_id].visible(self.now)[::-1]

    def checkpoints_of(self, job_id: str) -> list[Checkpoint]:
        with self.lock:
            return [ckpt for ckpt in self.jobs[job_id].checkpoints if ckpt.at <= self.now][::-1]

    def status_of(self, job_id: str) -> str:
        with self.lock:
            return self.jobs[job_id].status_at(self.now)

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
    """An error answer, in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error", **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.headers = status, message, code, kind, headers


class FakeOpenAiApi(Controls):
    """The request logic of the simulated OpenAI API, independent of the HTTP server that carries it."""

    def __init__(
        self,
        world: World,
        api_key: str = DEFAULT_API_KEY,
        announce_simulated: bool = True,
        latency_ms: float = 0.0,
        stall_seconds: float = 5.0,
        prefix: str = BASE_PATH,
        key_header: str = "authorization",
        rate_limit: int = 0,
    ) -> None:
        """``prefix`` is the path the API is served under; ``key_header`` carries the key (``authorization`` as a
        bearer token, or Azure's ``api-key``); ``rate_limit`` requests a minute are answered, the rest get 429."""
        super().__init__()
        self.world = world
        self.api_key = api_key
        self.announce_simulated = announce_simulated
        self.latency = latency_ms / 1000
        self.stall_seconds = stall_seconds
        self.prefix, self.key_header = prefix.rstrip("/"), key_header
        self.rate_limit = rate_limit
        self.window: list[float] = []

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
            self.authenticate(headers)
            self.take_rate_limit_token()
            fault = self.next_fault(path)
            if fault == "malformed":
                return 200, b'{"object": "list", "data": [{"id": "ftjob-', {}
            if fault == "timeout":
                time.sleep(self.stall_seconds)
            elif fault == "drop":
                return DROP, b"", {}
            elif isinstance(fault, int):
                extra = {"retry-after": "1"} if fault == 429 else {}
                raise ApiError(fault, f"injected failure {fault}", None, "server_error", **extra)
            return 200, orjson.dumps(self.route(method, path, query)), {"x-request-id": f"req_{self.stats.requests}"}
        except ApiError as error:
            body = {"error": {"message": error.message, "type": error.kind, "param": None, "code": error.code}}
            return error.status, orjson.dumps(body), error.headers

    def clock(self) -> float:
        """The world's time, served as the ``Date`` header."""
        return self.world.now.timestamp()

    def authenticate(self, headers: dict[str, str]) -> None:
        """A bearer key, or the key in ``key_header`` (Azure's ``api-key``; Azure's v1 API takes a bearer key too);
        ``stats.by_kind`` counts which header carried it."""
        if headers.get("authorization") == f"Bearer {self.api_key}":
            self.count("auth:bearer")
            return
        if self.key_header != "authorization" and headers.get(self.key_header) == self.api_key:
            self.count(f"auth:{self.key_header}")
            return
        shown = (headers.get(self.key_header) or headers.get("authorization") or "").removeprefix("Bearer ")
        masked = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
        raise ApiError(401, f"Incorrect API key provided: {masked}.", "invalid_api_key")

    def take_rate_limit_token(self) -> None:
        """A sliding one-minute window of ``rate_limit`` requests, with OpenAI's rate-limit headers."""
        if not self.rate_limit:
            return
        with self.lock:
            now = time.monotonic()
            self.window = [moment for moment in self.window if now - moment < 60]
            if len(self.window) < self.rate_limit:
                self.window.append(now)
                return
            wait = 60 - (now - self.window[0])
        raise ApiError(
            429,
            f"Rate limit reached for requests: limit {self.rate_limit} per minute. Please try again in {wait:.0f}s.",
            "rate_limit_exceeded",
            "requests",
            **{
                "retry-after": str(max(1, math.ceil(wait))),
                "x-ratelimit-limit-requests": str(self.rate_limit),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{wait:.0f}s",
            },
        )

    def route(self, method: str, path: str, query: dict[str, str]) -> Any:
        if method != "GET":
            raise ApiError(405, "method not allowed")
        base = self.prefix + JOBS_PATH
        if path == base:
            self.count("list_jobs")
            with self.world.lock:
                listed, now = self.world.listed(), self.world.now
            return paged(listed, query, lambda job: job_body(job, now))
        if not path.startswith(base + "/"):
            raise ApiError(404, "Invalid URL (GET " + path + ")")
        job_id, *rest = path[len(base) + 1 :].split("/")
        job_id = unquote(job_id)
        with self.world.lock:
            job = self.world.job(job_id)
            if job is None:
                raise ApiError(404, f"No fine-tuning job found with id '{job_id}'", "fine_tune_not_found")
            if not rest:
                self.count("get_job")
                return job_body(job, self.world.now)
            if rest == ["events"]:
                self.count("list_events")
                return paged(self.world.events_of(job_id), query, Event.to_json)
            if rest == ["checkpoints"]:
                self.count("list_checkpoints")
                shown = self.world.checkpoints_of(job_id)
                return paged(shown, query, lambda ckpt: checkpoint_body(job, ckpt), default_limit=10, ends=True)
        raise ApiError(404, "Invalid URL (GET " + path + ")")


def paged(
    items: Sequence[Any],
    query: dict[str, str],
    body_of: Callable[[Any], dict[str, Any]],
    default_limit: int = LIMIT,
    ends: bool = False,
) -> Any:
    """One page of a newest-first list: ``limit`` items after the item ``after`` (by id), each as ``body_of`` writes
    it, and whether there are more."""
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError:
        raise ApiError(400, "limit must be an integer", "invalid_limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}", "invalid_limit")
    start = 0
    if "after" in query:
        start = next((index + 1 for index, item in enumerate(items) if item.id == query["after"]), -1)
        if start < 0:
            raise ApiError(400, f"after {query['after']!r} is not an item of this list", "invalid_after")
    page = [body_of(item) for item in items[start : start + limit]]
    body: dict[str, Any] = {"object": "list", "data": page, "has_more": start + limit < len(items)}
    if ends:
        body |= {"first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}
    return body


def demo_api(
    jobs: int = 60,
    seed: int = 11,
    api_key: str = DEFAULT_API_KEY,
    latency_ms: float = 0.0,
    rate_limit: int = 0,
    **faults: Any,
) -> FakeOpenAiApi:
    """The simulated API of ``demo`` and ``fake-api``: the demo's timeline of ``jobs`` jobs. ValueError for a fault
    switch of another simulator's."""
    unsupported = [name for name, value in faults.items() if value]
    if unsupported:
        raise ValueError(f"the simulated OpenAI API has no {', '.join(unsupported)} switch")
    return FakeOpenAiApi(World.timeline(seed=seed, jobs=jobs), api_key, latency_ms=latency_ms, rate_limit=rate_limit)

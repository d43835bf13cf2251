"""A simulated Cohere fine-tuning API served over real HTTP on 127.0.0.1.

It serves the four GET endpoints of the fine-tuning API over generated, realistic model lifecycles and keeps the
real API's quirks: empty fields omitted, timestamps with 0, 3, 6 or 9 fractional digits, either end-of-pages form,
opaque page tokens, ``{"message": ...}`` error bodies and 401 on a wrong key. Switches add latency, a server-side
rate limit, injected failures, the 2025 retirement and new events arriving over time. Training-step metrics
follow each model's first training run: curves per base type that grow while it trains, now and then diverging to
NaN or Infinity (sent as strings, as protobuf JSON does).
"""

from __future__ import annotations

import base64
import bisect
import functools
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from pipelines.providers.cohere.client import MODELS_PATH
from pipelines.simulated import DROP, FakeApiServer, serve_forever, timeline, truncate  # noqa: F401  # re-exported: the server every simulator shares

DEFAULT_API_KEY = "simulated-cohere-key"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
BASE_MODELS = [
    ("BASE_TYPE_CHAT", "command-r-08-2024"),
    ("BASE_TYPE_CHAT", "command-r7b-12-2024"),
    ("BASE_TYPE_GENERATIVE", "command-light"),
    ("BASE_TYPE_CLASSIFICATION", "english"),
    ("BASE_TYPE_CLASSIFICATION", "multilingual"),
    ("BASE_TYPE_RERANK", "rerank-english-v3.0"),
]
USER_STATUSES = {"STATUS_QUEUED", "STATUS_DELETED", "STATUS_PAUSED"}


@dataclass
class Event:
    status: str
    created_at: datetime
    user_id: str | None
    digits: int  # fractional digits shown in created_at: 0, 3, 6 or 9
    nanos: int = 0  # sub-microsecond digits shown when digits == 9
    written_at: datetime | None = None  # stamped by a skewed clock: shown from this moment, whatever created_at says

    def visible(self, now: datetime) -> bool:
        return self.created_at <= now if self.written_at is None else self.written_at <= now

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"created_at": format_timestamp(self)}
        if self.status != "STATUS_UNSPECIFIED":  # proto3 JSON leaves out an enum's zero value
            body["status"] = self.status
        if self.user_id:
            body["user_id"] = self.user_id
        return body


@dataclass
class Model:
    body: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    written_at: datetime | None = None  # when an event was last written late: the record's updated_at moves then
    retrained_at: datetime | None = None  # deleted and created again under the same id: its metrics start again
    planned_training: tuple[datetime, datetime] | None = None  # the span its curves were laid out over, once shown

    @property
    def id(self) -> str:
        return str(self.body["id"])


def format_timestamp(event: Event) -> str:
    """RFC 3339 in UTC with ``Z`` and the event's number of fractional digits, as protobuf JSON writes them."""
    base = event.created_at.strftime("%Y-%m-%dT%H:%M:%S")
    micros = f"{event.created_at.microsecond:06d}"
    fraction = {0: "", 3: "." + micros[:3], 6: "." + micros, 9: f".{micros}{event.nanos:03d}"}[event.digits]
    return base + fraction + "Z"


class LifecycleWriter:
    """Writes one model's status events with realistic gaps, precisions and user ids."""

    def __init__(self, rng: random.Random, start: datetime, user_id: str) -> None:
        self.rng = rng
        self.clock = start
        self.user_id = user_id
        self.events: list[Event] = []

    def emit(self, status: str, after_seconds: float = 0.0) -> None:
        user = self.user_id if status in USER_STATUSES or self.rng.random() < 0.05 else None
        if not after_seconds and self.events:  # a tie: the very same instant as the previous event
            last = self.events[-1]
            self.events.append(Event(status, last.created_at, user, last.digits, last.nanos))
            return
        self.clock += timedelta(seconds=after_seconds)
        digits = self.rng.choice((0, 3, 6, 6, 9))
        moment = truncate(self.clock, digits)
        nanos = self.rng.randrange(1000) if digits == 9 else 0
        self.events.append(Event(status, moment, user, digits, nanos))

    def wait(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)


def write_lifecycle(writer: LifecycleWriter, long_history: int = 0) -> None:
    """A model's whole story, future included: queued, trained, deployed, maybe failed, retried, deleted,
    offline or paused. Events later than the world's clock stay hidden until time passes them."""
    rng = writer.rng
    kind = rng.choices(
        ["ready", "failed", "retried", "deleted_early", "stuck", "starts_training", "odd"],
        weights=[58, 12, 8, 6, 3, 2, 2],
    )[0]
    if kind != "starts_training":
        writer.emit("STATUS_QUEUED")
        if rng.random() < 0.15:
            writer.emit("STATUS_QUEUED", writer.wait(5, 120))  # a repeated status: one interval
    if kind == "stuck":
        return
    if kind == "deleted_early":
        writer.emit("STATUS_DELETED", writer.wait(60, 3600))
        return
    writer.emit("STATUS_FINETUNING", writer.wait(30, 1800) if kind != "starts_training" else 0)
    if rng.random() < 0.3:
        writer.emit("STATUS_FINETUNING", writer.wait(300, 3600))
    if kind in ("failed", "retried"):
        writer.emit("STATUS_FAILED", writer.wait(600, 7200))
        if kind == "failed":
            return
        writer.emit("STATUS_QUEUED", writer.wait(3600, 86400))
        writer.emit("STATUS_FINETUNING", writer.wait(30, 900))
    if kind == "odd":
        writer.emit(rng.choice(["STATUS_UNSPECIFIED", "STATUS_EVALUATING"]), writer.wait(10, 600))
    writer.emit("STATUS_DEPLOYING_API", writer.wait(1200, 14400))
    # READY sometimes lands in the same instant as the last deploy event: the tie-break decides the order.
    writer.emit("STATUS_READY", 0 if rng.random() < 0.05 else writer.wait(120, 1800))
    spells = long_history or (rng.random() < 0.25) * rng.randint(1, 3)
    gap = (60, 900) if long_history else (600, 86400)
    for _ in range(spells):
        writer.emit(rng.choice(["STATUS_TEMPORARILY_OFFLINE", "STATUS_PAUSED"]), writer.wait(*gap))
        writer.emit("STATUS_READY", writer.wait(gap[0], gap[1] / 4))
    if rng.random() < 0.1:
        writer.emit("STATUS_DELETED", writer.wait(3600, 86400 * 3))


def make_model(rng: random.Random, index: int, created: datetime, long_history: int = 0) -> Model:
    """One model with its whole lifecycle; the same rng state always makes the same model."""
    base_type, base_name = rng.choice(BASE_MODELS)
    user_id = str(uuid.UUID(int=rng.getrandbits(128)))
    writer = LifecycleWriter(rng, created, user_id)
    write_lifecycle(writer, long_history)
    events = writer.events
    settings: dict[str, Any] = {
        "base_model": {"base_type": base_type, "strategy": "STRATEGY_TFEW"},
        "dataset_id": f"dataset-{rng.getrandbits(40):010x}",
    }
    if base_type != "BASE_TYPE_RERANK":
        settings["base_model"]["name"] = base_name
    if rng.random() < 0.5:
        settings["base_model"]["version"] = f"{rng.randint(1, 3)}.0.0"
    if base_type == "BASE_TYPE_CLASSIFICATION":
        settings["multi_label"] = rng.random() < 0.3
    if rng.random() < 0.7:
        settings["hyperparameters"] = {
            "early_stopping_patience": rng.choice([4, 6, 10]),
            "early_stopping_threshold": 0.001,
            "train_batch_size": rng.choice([8, 16, 32]),
            "train_epochs": rng.randint(1, 10),
            "learning_rate": rng.choice([0.0001, 0.00005, 0.01]),
        }
    if rng.random() < 0.3:
        settings["wandb"] = {
            "project": f"ft-{index}",
            "api_key": f"wandb-secret-{rng.getrandbits(64):016x}",
            "entity": "ml-platform",
        }
    model = Model(
        body={
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "name": f"ft-{base_name}-{index:04d}",
            "creator_id": user_id,
            "organization_id": "org-00000000-simulated",
            "settings": settings,
            "created_at": format_timestamp(Event("", created, None, 3)),
        },
        events=events,
    )
    return model


def model_body_at(model: Model, now: datetime) -> dict[str, Any]:
    """The model as the API shows it at ``now``: status and timestamps from its latest visible event."""
    body = dict(model.body)
    visible = [e for e in model.events if e.visible(now)]
    if not visible:
        return body
    body["status"] = visible[-1].status
    body["updated_at"] = format_timestamp(visible[-1])
    skewed = [e.written_at for e in visible if e.written_at is not None]
    if skewed:  # the record moves when an event is written, not at the time a skewed clock stamped on it
        late = [model.written_at] if model.written_at and model.written_at <= now else []
        body["updated_at"] = format_timestamp(Event("", max(skewed + late), None, 6))
    elif model.written_at and visible[-1].created_at < model.written_at <= now:
        body["updated_at"] = format_timestamp(Event("", model.written_at, None, 6))
    ready = [e for e in visible if e.status == "STATUS_READY"]
    if ready:
        body["completed_at"] = format_timestamp(ready[0])
        body["last_used"] = format_timestamp(ready[-1])
    return body


@dataclass
class Faults:
    """Failures the server injects, deterministically (queued per path) or at random rates."""

    queued: dict[str, list[int | str]] = field(default_factory=dict)
    error_rate: float = 0.0  # probability of a random 503 or 429 per request
    retired: int | None = None  # 404 or 410 on every endpoint, as after the 2025 retirement
    rate_limit_rpm: int = 0  # server-side limit; 0 means none
    retry_after: bool = True  # send Retry-After with 429
    # Every Nth request the server receives (0: none) is answered with fault_status and ``Retry-After: 1``.
    fault_every: int = 0
    fault_status: int = 429
    # A listing that never ends: "same-token" puts page 1's next_page_token on every page, forever; "same-page"
    # ignores page_token and serves page 1 again, each time with a fresh token.
    stuck_paging: str | None = None
    # Events and training-step metrics served in another order than asked: "asc" oldest first whatever order_by
    # says; "unordered" a fixed shuffle of the whole history (the same for a model every time); "mixed" pages
    # taken alternately from the newest end (newest first) and the oldest end (oldest first), so that every item
    # is still served exactly once but the listing as a whole has no order.
    ignore_order_by: str | None = None
    # A model list that grows while it is paged: every page after the first is served as if this many models had
    # been inserted before it, so the last models of one page appear again on the next.
    shift_list: int = 0


class World:
    """The simulated API's data: models with whole lifecycles, shown as they stand at the world's clock.

    Each model is made from its own seeded generator, so a world is the same whenever it is built. Models and
    events later than ``now`` stay hidden; :meth:`advance` moves the clock and reveals them.
    """

    def __init__(
        self,
        models: int = 60,
        seed: int = 7,
        now: datetime | None = None,
        long_history: int = 0,
        end_of_pages: str = "mixed",
        spacing: timedelta | None = None,
    ) -> None:
        """``models`` created over the 120 days before ``now``, or every ``spacing`` up to ``now``."""
        self.now = now or datetime.now(UTC)
        self.lock = threading.RLock()
        self.end_of_pages = end_of_pages
        self.models: dict[str, Model] = {}
        self.hidden: set[str] = set()  # stored but no longer listed
        first = self.now - timedelta(days=120 if not long_history else 150)
        for index in range(models):
            rng = random.Random(seed * 1_000_003 + index)
            if spacing:
                created = self.now - spacing * (models - index) + timedelta(seconds=rng.uniform(0, 600))
            else:
                created = first + timedelta(seconds=rng.uniform(0, (self.now - first).total_seconds() - 3600))
            model = make_model(
                rng, index, created.replace(microsecond=created.microsecond // 1000 * 1000), long_history
            )
            self.models[model.id] = model

    @classmethod
    def timeline(cls, seed: int = 7, models: int = 60, now: datetime | None = None) -> World:
        """The demo's world: one model every 12 hours on a fixed timeline, the latest ``models`` of them.

        The same models carry the same events on every run, so a repeated demo loads only what time revealed.
        """
        now = now or datetime.now(UTC)
        world = cls(models=0, seed=seed, now=now)
        for slot, rng, created in timeline(seed, models, now):
            model = make_model(rng, slot, created)
            world.models[model.id] = model
        return world

    def size(self) -> int:
        """How many models the world holds."""
        return len(self.models)

    def visible_events(self, model: Model) -> list[Event]:
        return [e for e in model.events if e.visible(self.now)]

    def model_list(self) -> list[dict[str, Any]]:
        with self.lock:
            listed = [
                model_body_at(m, self.now)
                for m in self.models.values()
                if m.id not in self.hidden and m.events and m.events[0].created_at <= self.now
            ]
        return sorted(listed, key=lambda body: (str(body["created_at"]), str(body["id"])))

    def model_body(self, model_id: str) -> dict[str, Any] | None:
        with self.lock:
            model = self.models.get(model_id)
            return model_body_at(model, self.now) if model else None

    def events_of(self, model_id: str) -> list[Event]:
        with self.lock:
            return self.visible_events(self.models[model_id])

    def step_metrics_of(self, model_id: str) -> list[StepMetrics]:
        """The model's training steps visible now, ascending by step (the API serves them newest first)."""
        with self.lock:
            return step_metrics(self.models[model_id], self.now)

    def metrics_of(self, model_id: str) -> list[tuple[int, datetime, dict[str, float]]]:
        """(step number, created_at, {metric: value}) of every visible step: what the warehouse should hold."""
        return [(s.step, s.created_at, dict(s.metrics)) for s in self.step_metrics_of(model_id)]

    def add_event(
        self,
        model_id: str,
        status: str,
        created_at: datetime,
        user_id: str | None = None,
        digits: int = 6,
        nanos: int = 0,
        skewed: bool = False,
    ) -> Event:
        """Add an event, in order or late (older than the newest one); ``nanos`` (0-999) are the sub-microsecond
        digits that a timestamp with ``digits=9`` shows. A ``skewed`` event is written now, whatever its time (a
        server clock running ahead)."""
        if not 0 <= nanos < 1000 or (nanos and digits != 9):
            raise ValueError("nanos must be 0-999, and only with digits=9")
        with self.lock:
            model = self.models[model_id]
            event = Event(status, truncate(created_at, digits), user_id, digits, nanos, self.now if skewed else None)
            if model.events and event.created_at < model.events[-1].created_at:
                model.written_at = max(self.now, model.written_at or self.now)  # a late event: the record moves
            model.events.append(event)
            # stable: ties keep the order they were added in
            model.events.sort(key=lambda e: (e.created_at, e.nanos if e.digits == 9 else 0))
            return event

    def retrain(self, model_id: str, at: datetime) -> None:
        """The model is deleted and created again under the same id at ``at``: queued, then training from step 0."""
        with self.lock:
            model = self.models[model_id]
            model.events = [e for e in model.events if e.created_at < at]
            model.retrained_at = at
            self.add_event(model_id, "STATUS_QUEUED", at, user_id="user-1")
            self.add_event(model_id, "STATUS_FINETUNING", at + timedelta(minutes=2))

    def advance(self, seconds: float) -> int:
        """Move the clock on; returns how many events became visible."""
        with self.lock:
            before = self.event_count()
            self.now += timedelta(seconds=seconds)
            return self.event_count() - before

    def fleet_change(self, seconds: float) -> int:
        """Move the clock on and change every listed model: a new status within the last ``seconds``, and on every
        50th model a late event too (older than its newest). Returns how many models changed."""
        with self.lock:
            self.advance(seconds)
            rng = random.Random(f"fleet:{self.now.isoformat()}")
            changed = 0
            for index, model in enumerate(self.models.values()):
                events = self.visible_events(model)
                if not events or model.id in self.hidden:
                    continue
                moment = max(events[-1].created_at, self.now - timedelta(seconds=rng.uniform(0, seconds / 2)))
                self.add_event(model.id, rng.choice(("STATUS_READY", "STATUS_PAUSED")), moment + timedelta(seconds=1))
                late = events[-1].created_at - timedelta(seconds=30)
                before = events[-2] if len(events) > 1 else None
                if index % 50 == 0 and before and before.status != "STATUS_FINETUNING" and before.created_at < late:
                    self.add_event(model.id, before.status, late)  # written late, repeating the status it falls in
                changed += 1
            return changed

    def event_count(self) -> int:
        with self.lock:
            return sum(len(self.visible_events(m)) for m in self.models.values())


def encode_token(offset: int, salt: str, nonce: int | None = None) -> str:
    """An opaque page token; a ``nonce`` makes a token that differs from every other for the same offset."""
    fields: dict[str, Any] = {"o": offset, "s": salt}
    if nonce is not None:
        fields["n"] = nonce
    raw = orjson.dumps(fields)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int:
    padded = token + "=" * (-len(token) % 4)
    offset = orjson.loads(base64.urlsafe_b64decode(padded))["o"]
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(token)
    return offset


class ApiError(Exception):
    """An answer other than the page asked for: an error status, or a ``raw`` body sent as it is."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.raw = raw


TRUNCATED_JSON = b'{"events": [{"status": "STATUS_READY", "created_at": '
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in - Corporate Proxy</title></head>"
    b'<body><form method="post" action="/login"><input name="user"><input name="password" type="password">'
    b"</form></body></html>"
)


@dataclass
class Stats:
    """What clients did: for tests and the benchmark."""

    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors_sent: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    client_names: set[str] = field(default_factory=set)
    lists_without_order_by: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_kind": dict(self.by_kind),
            "errors_sent": {str(k): v for k, v in self.errors_sent.items()},
            "max_in_flight": self.max_in_flight,
        }


class FakeCohereApi:
    """The request logic of the simulated API, independent of the HTTP server that carries it."""

    def __init__(
        self,
        world: World,
        api_key: str = DEFAULT_API_KEY,
        latency_ms: float = 0.0,
        faults: Faults | None = None,
        announce_simulated: bool = True,
        stall_seconds: float = 5.0,
    ) -> None:
        self.world = world
        self.announce_simulated = announce_simulated  # off: look like the real API to the client
        self.stall_seconds = stall_seconds
        self.api_key = api_key
        self.latency = latency_ms / 1000
        self.faults = faults or Faults()
        self.stats = Stats()
        self.lock = threading.Lock()
        self.rng = random.Random(11)
        self.received = 0  # API requests so far, for Faults.fault_every
        self.nonce = 0  # makes every token of Faults.stuck_paging == "same-page" fresh
        self._bucket_tokens: float | None = None  # full on first use
        self._bucket_time = time.monotonic()

    def inject(self, path_contains: str, *outcomes: int | str) -> None:
        """Queue outcomes for the next requests whose path contains ``path_contains``: HTTP codes, ``"malformed"``
        (a 200 with truncated JSON), ``"html"`` (a 200 with a proxy's HTML login page), ``"timeout"`` or ``"drop"``."""
        with self.lock:
            self.faults.queued.setdefault(path_contains, []).extend(outcomes)

    def handle(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        url = urlsplit(raw_path)
        path = url.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/_simulator/"):
            return self.control(method, path, query)
        number = self.enter(path, query, headers)
        try:
            if self.latency:
                time.sleep(self.latency)
            self.check_limits(path, headers, number)
            body = self.route(method, path, query)
            return 200, orjson.dumps(body), {}
        except ApiError as error:
            with self.lock:
                self.stats.errors_sent[error.status] = self.stats.errors_sent.get(error.status, 0) + 1
            if error.status == DROP:
                return DROP, b"", {}
            if error.raw is not None:
                return error.status, error.raw, error.headers
            payload = orjson.dumps({"id": str(uuid.uuid4()), "message": error.message})
            return error.status, payload, error.headers
        finally:
            self.leave()

    def enter(self, path: str, query: dict[str, str], headers: dict[str, str]) -> int:
        """Count the request; returns its number, counting from 1."""
        with self.lock:
            self.received += 1
            stats = self.stats
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            stats.client_names.add(headers.get("x-client-name", ""))
            if "order_by" not in query and (path == MODELS_PATH or path.endswith("/events")):
                stats.lists_without_order_by += 1
            return self.received

    def leave(self) -> None:
        with self.lock:
            self.stats.in_flight -= 1

    def check_limits(self, path: str, headers: dict[str, str], number: int = 0) -> None:
        if headers.get("authorization", "") != f"Bearer {self.api_key}":
            raise ApiError(401, "invalid api token")
        every = self.faults.fault_every
        if every and number % every == 0:
            status = self.faults.fault_status
            raise ApiError(status, f"injected failure {status} on request {number}", {"Retry-After": "1"})
        queued = self.next_queued_fault(path)
        if queued == "timeout":
            time.sleep(self.stall_seconds)
        elif queued == "malformed":
            raise ApiError(200, "malformed", {"Content-Type": "application/json"}, TRUNCATED_JSON)
        elif queued == "html":
            raise ApiError(200, "html login page", {"Content-Type": "text/html; charset=utf-8"}, LOGIN_PAGE)
        elif queued == "drop":
            raise ApiError(DROP, "connection dropped")
        elif isinstance(queued, int):
            raise ApiError(queued, f"injected failure {queued}", {"Retry-After": "0"} if queued == 429 else {})
        if self.faults.retired:
            raise ApiError(self.faults.retired, "fine-tuning is no longer available: the API was retired")
        self.take_rate_limit_token()
        if self.faults.error_rate and self.rng.random() < self.faults.error_rate:
            status = self.rng.choice((429, 500, 503))
            raise ApiError(status, "the service is temporarily overloaded", {"Retry-After": "0"})

    def next_queued_fault(self, path: str) -> int | str | None:
        with self.lock:
            for pattern, outcomes in self.faults.queued.items():
                if pattern in path and outcomes:
                    return outcomes.pop(0)
        return None

    def take_rate_limit_token(self) -> None:
        rpm = self.faults.rate_limit_rpm
        if not rpm:
            return
        rate = rpm / 60.0
        capacity = max(2.0, rate)  # about a second's worth of burst, as a per-minute limiter allows
        with self.lock:
            now = time.monotonic()
            tokens = capacity if self._bucket_tokens is None else self._bucket_tokens
            self._bucket_tokens = min(capacity, tokens + (now - self._bucket_time) * rate)
            self._bucket_time = now
            if self._bucket_tokens >= 1:
                self._bucket_tokens -= 1
                return
            wait = (1 - self._bucket_tokens) / rate
        headers = {"Retry-After": f"{max(1, round(wait))}"} if self.faults.retry_after else {}
        raise ApiError(429, "You are past the per minute request limit, please wait and try again later.", headers)

    def count(self, kind: str) -> None:
        with self.lock:
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1

    def route(self, method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        if method != "GET":
            raise ApiError(405, "method not allowed")
        if path == MODELS_PATH:
            self.count("list_models")
            return self.page(self.world.model_list(), query, "finetuned_models", shift=self.faults.shift_list)
        if not path.startswith(MODELS_PATH + "/"):
            raise ApiError(404, "Not Found")
        parts = path[len(MODELS_PATH) + 1 :].split("/")
        model_id = unquote(parts[0])
        body = self.world.model_body(model_id)
        if body is None:
            raise ApiError(404, f"finetuned model {model_id} not found")
        if len(parts) == 1:
            self.count("get_model")
            return {"finetuned_model": body}
        if parts[1:] == ["events"]:
            self.count("list_events")
            events = self.world.events_of(model_id)
            return self.page(events, query, "events", salt=model_id, encode=encode_event, reorderable=True)
        if parts[1:] == ["training-step-metrics"]:
            self.count("list_metrics")
            metrics = self.world.step_metrics_of(model_id)
            return self.page(
                metrics,
                query,
                "step_metrics",
                ordered=False,
                salt=model_id,
                encode=StepMetrics.to_json,
                reorderable=True,
            )
        raise ApiError(404, "Not Found")

    def page(
        self,
        items: list[Any],
        query: dict[str, str],
        name: str,
        ordered: bool = True,
        salt: str = "",
        encode: Callable[[Any], dict[str, Any]] | None = None,
        reorderable: bool = False,
        shift: int = 0,
    ) -> dict[str, Any]:
        """One page of ``items`` (stored oldest first). ``ordered`` listings take ``order_by``; the others are
        served newest first. ``reorderable`` listings obey Faults.ignore_order_by; ``shift`` is Faults.shift_list."""
        size = parse_page_size(query.get("page_size", ""))
        newest_first = True
        if ordered:
            order = query.get("order_by", "created_at").strip().lower()
            if order not in ("created_at", "created_at asc", "created_at desc"):
                raise ApiError(400, f"invalid order_by {order!r}: supported fields are created_at")
            newest_first = order.endswith("desc")  # stored ascending with the tie order kept
        try:
            offset = decode_token(query["page_token"]) if query.get("page_token") else 0
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "invalid page_token") from None
        stuck = self.faults.stuck_paging
        if stuck == "same-page":
            offset = 0
        elif offset:
            offset = max(0, offset - shift)
        items = self.arrange(items, newest_first, size, salt if reorderable else None)
        chunk = items[offset : offset + size]
        if encode is not None:  # only the page served, not the whole history on every request
            chunk = [encode(item) for item in chunk]
        body: dict[str, Any] = {name: chunk}
        if stuck == "same-token" and len(items) > size:
            body["next_page_token"] = encode_token(size, salt[:8])  # page 1's token, forever
        elif offset + size < len(items):
            body["next_page_token"] = encode_token(offset + size, salt[:8], self.fresh() if stuck else None)
        else:
            self.end_page(body, salt)
        if offset == 0:
            body["total_size"] = len(items)
        return body

    def arrange(self, items: list[Any], newest_first: bool, size: int, reorder_salt: str | None) -> list[Any]:
        """Items in the order served: as asked, or as Faults.ignore_order_by disorders them."""
        mode = self.faults.ignore_order_by if reorder_salt is not None else None
        if mode is None:
            return items[::-1] if newest_first else items
        if mode == "asc":
            return items
        if mode == "unordered":
            shuffled = list(items)
            random.Random(reorder_salt).shuffle(shuffled)
            return shuffled
        if mode == "mixed":
            served: list[Any] = []
            low, high = 0, len(items)
            while low < high:
                if len(served) // size % 2 == 0:  # pages 1, 3, 5...: the newest remaining, newest first
                    taken = items[max(low, high - size) : high][::-1]
                    high -= len(taken)
                else:  # pages 2, 4, 6...: the oldest remaining, oldest first
                    taken = items[low : min(high, low + size)]
                    low += len(taken)
                served += taken
            return served
        raise ValueError(f"unknown ignore_order_by {mode!r}")

    def fresh(self) -> int:
        with self.lock:
            self.nonce += 1
            return self.nonce

    def end_page(self, body: dict[str, Any], salt: str) -> None:
        form = self.world.end_of_pages
        if form == "mixed":
            form = ("omit", "empty", "null")[sum(map(ord, salt)) % 3]
        if form == "empty":
            body["next_page_token"] = ""
        elif form == "null":
            body["next_page_token"] = None

    def control(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """``/_simulator/stats``, ``/_simulator/advance?seconds=N`` and ``/_simulator/fleet-change?seconds=N``: for
        benchmarks and development."""
        if path == "/_simulator/stats":
            body = self.stats.to_json() | {
                "models": len(self.world.models),
                "events": self.world.event_count(),
            }
            return 200, orjson.dumps(body), {}
        if path == "/_simulator/advance":
            added = self.world.advance(float(query.get("seconds", "3600")))
            return 200, orjson.dumps({"added": added}), {}
        if path == "/_simulator/fleet-change":
            changed = self.world.fleet_change(float(query.get("seconds", "7200")))
            return 200, orjson.dumps({"changed": changed}), {}
        if path == "/_simulator/reset-stats":
            with self.lock:
                self.stats = Stats()
            return 200, b"{}", {}
        return 404, orjson.dumps({"message": "Not Found"}), {}


def parse_page_size(value: str) -> int:
    try:
        size = int(value) if value else 0
    except ValueError:
        raise ApiError(400, f"invalid page_size {value!r}") from None
    if size < 0:
        raise ApiError(400, "page_size must not be negative")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


# Training-step metrics: which metrics each base type reports. Rerank names follow Cohere's rerank results page
# (Accuracy@1, Accuracy@3, MRR@10); the API's exact keys for them are not documented, so these are our spelling.
METRIC_NAMES = {
    "BASE_TYPE_GENERATIVE": ("accuracy", "cross_entropy"),
    "BASE_TYPE_CHAT": ("accuracy", "cross_entropy"),
    "BASE_TYPE_CLASSIFICATION": ("accuracy", "f1", "precision", "recall"),
    "BASE_TYPE_RERANK": ("accuracy_at_1", "accuracy_at_3", "mrr_at_10"),
}
LOGGED_EVERY = (10, 25, 50)  # training steps between two logged metric points, chosen per model
SECONDS_PER_POINT = 240.0  # roughly one logged point per 4 minutes of training
MAX_POINTS = 80
UNFINISHED_TRAINING = timedelta(hours=4)  # how long training runs when no later event ends it
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class StepMetrics:
    """One logged training step as the API serves it, with its metrics as doubles (NaN and ±inf included)."""

    step: int
    created_at: datetime
    digits: int
    nanos: int
    metrics: tuple[tuple[str, float], ...]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "created_at": format_timestamp(Event("", self.created_at, None, self.digits, self.nanos))
        }
        if self.step:  # omitted on step 0, as proto3 JSON does
            body["step_number"] = self.step
        body["metrics"] = {name: json_double(value) for name, value in self.metrics}
        return body


def json_double(value: float) -> float | str:
    """A double as protobuf JSON writes it: non-finite values become the strings "NaN", "Infinity", "-Infinity"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def training_span(events: list[Event], since: datetime | None = None) -> tuple[datetime, datetime] | None:
    """The first training run (since ``since``): from the first FINETUNING event to the first later event of another
    status.

    ``events`` is the model's whole story, future included: training that is still running at the world's clock
    already knows where it will end, and only steps up to the clock are shown.
    """
    for index, event in enumerate(events):
        if event.status == "STATUS_FINETUNING" and (since is None or event.created_at >= since):
            end = next((e.created_at for e in events[index:] if e.status != "STATUS_FINETUNING"), None)
            return event.created_at, end or event.created_at + UNFINISHED_TRAINING
    return None


@functools.lru_cache(maxsize=4096)
def training_curves(model_id: str, base_type: str, start: datetime, end: datetime) -> tuple[StepMetrics, ...]:
    """A model's whole training run, in ascending step order: the same arguments always give the same curves.

    Cross-entropy falls towards a floor with noise, accuracy-like metrics rise and saturate. About one model in
    twenty diverges: from some step on its loss (or F1, for classification) is NaN or Infinity, once or to the end.
    """
    names = METRIC_NAMES.get(base_type, METRIC_NAMES["BASE_TYPE_GENERATIVE"])
    rng = random.Random(f"metrics:{model_id}")
    seconds = max((end - start).total_seconds(), 1.0)
    points = int(min(MAX_POINTS, max(2, seconds / SECONDS_PER_POINT)))
    every = rng.choice(LOGGED_EVERY)
    speed = rng.uniform(2.0, 6.0)  # how fast the curves approach their plateau
    loss_start, loss_floor = rng.uniform(2.0, 4.5), rng.uniform(0.15, 0.9)
    score_start, score_top = rng.uniform(0.05, 0.35), rng.uniform(0.6, 0.97)
    skew = rng.uniform(-0.08, 0.08)  # precision above or below recall
    diverges_at = rng.randrange(1, points) if rng.random() < 0.05 else None
    diverged_value = rng.choice((math.nan, math.nan, math.inf))
    stays_diverged = rng.random() < 0.5
    steps = []
    for index in range(points):
        progress = (index + 1) / points
        settled = 1 - math.exp(-speed * progress)
        score = min(0.999, max(0.0, score_start + (score_top - score_start) * settled + rng.gauss(0, 0.015)))
        values = {
            "accuracy": score,
            "cross_entropy": max(0.01, loss_floor + (loss_start - loss_floor) * (1 - settled) + rng.gauss(0, 0.04)),
            "precision": min(0.999, max(0.0, score + skew + rng.gauss(0, 0.01))),
            "recall": min(0.999, max(0.0, score - skew + rng.gauss(0, 0.01))),
            "accuracy_at_1": score,
            "accuracy_at_3": min(0.999, score + (1 - score) * 0.5),
            "mrr_at_10": min(0.999, score + (1 - score) * 0.3),
        }
        precision, recall = values["precision"], values["recall"]
        values["f1"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if diverges_at is not None and (index == diverges_at or (stays_diverged and index > diverges_at)):
            values["cross_entropy" if "cross_entropy" in names else names[1]] = diverged_value
        digits = rng.choice((0, 3, 6, 6, 9))
        moment = truncate(start + (end - start) * progress, digits)
        nanos = rng.randrange(1000) if digits == 9 and moment < end else 0
        metrics = tuple(
            (name, round(values[name], 6) if math.isfinite(values[name]) else values[name]) for name in names
        )
        steps.append(StepMetrics(index * every, moment, digits, nanos, metrics))
    return tuple(steps)


def encode_event(event: Event) -> dict[str, Any]:
    return event.to_json()  # the instance's method: a test may replace it


def step_metrics(model: Model, now: datetime) -> list[StepMetrics]:
    """The model's logged training steps visible at ``now``, ascending by step; none if it never trained."""
    span = training_span(model.events, model.retrained_at)
    if span is None:
        return []
    # Steps once shown never change: an event added later that ends the training sooner (a test's, the bench's)
    # stops the curve there, as a real training stops logging, instead of laying it out anew over a shorter span.
    if model.planned_training is None or model.planned_training[0] != span[0]:
        model.planned_training = span
    base_type = str(model.body.get("settings", {}).get("base_model", {}).get("base_type", ""))
    curves = training_curves(model.id, base_type, *model.planned_training)
    visible = bisect.bisect_right(curves, min(now, span[1]), key=lambda step: step.created_at)
    return list(curves[:visible])


def demo_api(
    models: int = 60,
    seed: int = 7,
    api_key: str = DEFAULT_API_KEY,
    latency_ms: float = 0.0,
    rate_limit: int = 0,
    error_rate: float = 0.0,
    long_history: int = 0,
    retired: bool = False,
) -> FakeCohereApi:
    """The simulated API of ``demo`` and ``fake-api``: the demo's timeline of ``models`` models, or with
    ``long_history`` a world of long histories; the fault switches as ``fake-api`` names them."""
    world = (
        World(models=models, seed=seed, long_history=long_history)
        if long_history
        else World.timeline(seed=seed, models=models)
    )
    faults = Faults(error_rate=error_rate, rate_limit_rpm=rate_limit, retired=410 if retired else None)
    return FakeCohereApi(world, api_key=api_key, latency_ms=latency_ms, faults=faults)

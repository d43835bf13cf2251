"""An async httpx client for Cohere's fine-tuning API: auth, paging, retries, rate limit and concurrency."""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

MODELS_PATH = "/v1/finetuning/finetuned-models"
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CLIENT_NAME = "cohere-events"
SIMULATED_HEADER = "X-Cohere-Events-Simulated"  # set by the simulated API, so no warehouse mixes its data with real
# Pages one listing may take before the client calls it a loop: 10 million items at the default page size, far
# beyond any real model list or history, yet finite, so that a server that never ends a listing cannot page forever.
MAX_PAGES = 100_000
SAME_ITEM_PAGES = 16  # one-item pages served the same this many times more in a row: a loop, not twin events
LOOPING = "(a looping server or caching proxy)"
RETIRED = "Cohere retired fine-tuning on 2025-09-15; point CO_API_URL at a deployment that still serves it"
# httpx checks every connection of its pool on each request, so one pool of 16 connections costs about twice the
# CPU per request of eight pools of 2: requests go to the least busy of several small pools.
CONNECTIONS_PER_POOL = 2


class CohereApiError(Exception):
    """A failure talking to the API; its message is one line and never contains the API key."""


class AuthError(CohereApiError):
    """The API refused the key (401 or 403)."""


class ApiRetiredError(CohereApiError):
    """The fine-tuning API is gone: 410 anywhere, or 404 on the model list. Cohere retired fine-tuning in 2025."""


class ModelNotFoundError(CohereApiError):
    """One fine-tuned model answered 404."""


class MalformedResponseError(CohereApiError):
    """A page that is not the JSON the API documents, or a listing that never ends."""


class RetryableError(CohereApiError):
    """A 408, 429 or 5xx answer, or a connection failure, that is worth another attempt."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ClientSettings:
    """How the client talks to the API."""

    base_url: str
    api_key: str
    page_size: int = 100
    concurrency: int = 16
    requests_per_minute: int = 500
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    max_retry_seconds: float = 300.0
    max_backoff_seconds: float = 60.0
    max_pages: int = MAX_PAGES  # per listing


@dataclass
class RequestStats:
    """Counters shared by every request of one run."""

    requests: int = 0
    retries: int = 0
    simulated: bool | None = None
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SharedLimits:
    """The limits of one run, shared by every client: the rate limiter and the requests in flight."""

    limiter: AsyncLimiter | None
    in_flight: asyncio.Semaphore

    @classmethod
    def for_settings(cls, settings: ClientSettings) -> SharedLimits:
        return cls(make_limiter(settings.requests_per_minute), asyncio.Semaphore(max(1, settings.concurrency)))


class FinetuningClient:
    """Pages through fine-tuned models and their events. Use ``async with``; one instance per event loop."""

    def __init__(
        self,
        settings: ClientSettings,
        stats: RequestStats | None = None,
        shared: SharedLimits | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats or RequestStats()
        self.limits = shared or SharedLimits.for_settings(settings)
        concurrency = max(1, settings.concurrency)
        tls = tls_context()
        connections = min(concurrency, CONNECTIONS_PER_POOL)
        proxy = environment_proxy(settings.base_url)
        self.pools = [make_pool(connections, tls, proxy) for _ in range(-(-concurrency // connections))]
        self.busy = [0] * len(self.pools)  # requests in flight per pool
        self.base_url = settings.base_url.rstrip("/")
        self.headers = httpx.Headers(
            {
                "Authorization": f"Bearer {settings.api_key}",
                "X-Client-Name": CLIENT_NAME,
                "User-Agent": f"{CLIENT_NAME} (httpx)",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        timeout = httpx.Timeout(settings.timeout_seconds, connect=min(10.0, settings.timeout_seconds))
        self.extensions = {"timeout": timeout.as_dict()}

    async def __aenter__(self) -> FinetuningClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pool in self.pools:
            await pool.aclose()

    async def list_model_pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Every fine-tuned model, a page at a time, oldest first, with the W&B key removed."""
        try:
            async for number, models in self.pages(MODELS_PATH, "finetuned_models", "the model list"):
                yield [checked_id(scrub_model(model), f"the model list, page {number}") for model in models]
        except ModelNotFoundError as error:
            raise ApiRetiredError(f"the fine-tuning API answered {error}: {RETIRED}") from None

    async def get_model(self, model_id: str) -> dict[str, Any]:
        """One fine-tuned model, with the W&B key removed; raises ModelNotFoundError on 404, ApiRetiredError on 410."""
        body = await self.get_json(f"{MODELS_PATH}/{quote(model_id, safe='')}", {}, f"model {model_id}")
        model = body.get("finetuned_model")
        if not isinstance(model, dict):
            raise MalformedResponseError(f"malformed response for model {model_id}: no finetuned_model object")
        return checked_id(scrub_model(model), f"model {model_id}")

    async def event_pages(self, model_id: str) -> AsyncGenerator[tuple[int, list[dict[str, Any]]]]:
        """A model's status events newest first, as (page number, events); stop iterating to stop paging."""
        path = f"{MODELS_PATH}/{quote(model_id, safe='')}/events"
        async for number, events in self.pages(path, "events", f"model {model_id}", order="created_at desc"):
            yield number, events

    async def metric_pages(self, model_id: str) -> AsyncGenerator[tuple[int, list[dict[str, Any]]]]:
        """A model's training-step metrics as (page number, step metrics), in the order the API serves them (it
        documents newest step first; the endpoint takes no order_by); stop iterating to stop paging."""
        path = f"{MODELS_PATH}/{quote(model_id, safe='')}/training-step-metrics"
        what = f"training-step metrics of model {model_id}"
        async for number, metrics in self.pages(path, "step_metrics", what, order=None):
            yield number, metrics

    async def pages(
        self, path: str, items_key: str, what: str, order: str | None = "created_at"
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """Every page of a listing as (page number, items), sending ``order`` as order_by unless it is None.

        A listing that repeats a page token, serves the same page twice in a row, or runs past ``max_pages``
        raises MalformedResponseError instead of paging forever.
        """
        token: str | None = None
        tokens: set[str] = set()
        previous, repeats = b"", 0
        for number in range(1, self.settings.max_pages + 1):
            params: dict[str, Any] = {"page_size": self.settings.page_size}
            if order is not None:
                params["order_by"] = order
            if token:
                params["page_token"] = token
            where = f"{what}, page {number}"
            body = await self.get_json(path, params, where)
            items = body.get(items_key, [])  # proto3 JSON leaves an empty list out
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise MalformedResponseError(f"malformed response for {where}: '{items_key}' is not a list of objects")
            token = body.get("next_page_token") or None  # absent, null and "" all end the listing
            if token is not None and not isinstance(token, str):
                raise MalformedResponseError(f"malformed response for {where}: next_page_token is not a string")
            if items:
                # a snapshot, not the items: the consumer may change them (the W&B key is removed)
                snapshot = orjson.dumps(items)
                repeats = repeats + 1 if snapshot == previous else 0
                # a page of one item may truly repeat (twin events at page size 1); a longer page never does
                if repeats >= (1 if len(items) > 1 else SAME_ITEM_PAGES):
                    raise MalformedResponseError(
                        f"the API served the same page again for {what} at page {number} {LOOPING}; stopped paging"
                    )
                previous = snapshot
            if token in tokens:
                raise MalformedResponseError(
                    f"the API repeated page token {self.redact(token or '')[:24]!r} for {what} at page {number} "
                    f"{LOOPING}; stopped paging"
                )
            yield number, items
            if token is None:
                return
            tokens.add(token)
        raise MalformedResponseError(
            f"the API served more than {self.settings.max_pages} pages for {what}; stopped paging at page "
            f"{self.settings.max_pages} (a looping server or caching proxy?)"
        )

    async def get_json(self, path: str, params: dict[str, Any], where: str) -> dict[str, Any]:
        """GET with retries on 408, 429, 5xx and connection errors; returns the decoded JSON object."""
        try:  # the first attempt on its own: tenacity's bookkeeping costs about 30 µs a request, retried or not
            return await self.get_once(path, params, where)
        except RetryableError as error:
            failed: RetryableError | None = error
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.settings.max_attempts) | stop_after_delay(self.settings.max_retry_seconds),
            wait=self.backoff,
            before_sleep=self.count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if failed:  # attempt 1 is the one above: tenacity counts it, waits as it asks, then retries
                        first, failed = failed, None
                        raise first
                    return await self.get_once(path, params, where)
        except RetryableError as error:
            raise CohereApiError(
                f"{error} (gave up after {self.settings.max_attempts} attempts or "
                f"{self.settings.max_retry_seconds:.0f} s)"
            ) from None
        raise AssertionError("unreachable")

    async def get_once(self, path: str, params: dict[str, Any], where: str) -> dict[str, Any]:
        async with self.limits.in_flight:
            if self.limits.limiter is not None:
                await self.limits.limiter.acquire()
            self.stats.requests += 1
            pool = min(range(len(self.pools)), key=self.busy.__getitem__)
            self.busy[pool] += 1
            request = httpx.Request(
                "GET", self.base_url + path, params=params, headers=self.headers, extensions=self.extensions
            )
            try:
                response = await self.pools[pool].handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.TimeoutException:
                raise RetryableError(f"timed out waiting for {where}") from None
            except httpx.TransportError as error:
                raise RetryableError(f"connection failed for {where}: {type(error).__name__}") from None
            finally:
                self.busy[pool] -= 1
        if self.stats.simulated is None:
            self.stats.simulated = response.headers.get(SIMULATED_HEADER) == "1"
        if response.status_code == 200:
            try:
                return decode_object(response.content, where)
            except MalformedResponseError as error:
                raise self.not_json(response, where) or error from None
        raise self.error_for(response, where)

    def not_json(self, response: httpx.Response, where: str) -> MalformedResponseError | None:
        """For an answer that does not even claim to be JSON (a proxy's login page): its content type and start."""
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "application/json" or media_type.endswith("+json"):
            return None
        text = self.redact(" ".join(response.content.decode("utf-8", "replace").split()))
        return MalformedResponseError(
            f"malformed response for {where}: expected JSON, got {media_type or 'no Content-Type'}: {text[:60]!r}"
        )

    def error_for(self, response: httpx.Response, where: str) -> CohereApiError:
        status = response.status_code
        message = self.redact(api_message(response))
        text = f"HTTP {status} for {where}" + (f": {message}" if message else "")
        if status in (401, 403):
            return AuthError(f"the API refused the key (HTTP {status}): check CO_API_KEY")
        if status == 410:
            return ApiRetiredError(f"the fine-tuning API answered {text}: {RETIRED}")
        if status == 429:
            self.stats.rate_limited += 1
        if status in RETRYABLE_STATUS:
            return RetryableError(text, parse_retry_after(response.headers.get("Retry-After")))
        if status == 404:
            return ModelNotFoundError(text)
        return CohereApiError(text)

    def redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text

    def backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        cap = self.settings.max_backoff_seconds
        if isinstance(error, RetryableError) and error.retry_after is not None:
            # never sooner than asked, but never all at once either: every client that met one overloaded
            # moment would otherwise come back in the same instant, and meet the next
            return min(error.retry_after * random.uniform(1.0, 1.5), cap)
        exponential = min(cap, 0.5 * 2 ** (state.attempt_number - 1))
        return random.uniform(exponential / 2, exponential)  # "equal jitter": never zero, never in lockstep

    def count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The CA bundle, loaded once per process and shared by every pool: each load takes about 0.9 MB, and dlt runs
    up to 20 pages of models, each with its own client, at once."""
    return httpx.create_ssl_context()


def make_pool(connections: int, tls: ssl.SSLContext, proxy: str | None) -> httpx.AsyncHTTPTransport:
    """One small pool of keep-alive connections.

    The client sends through httpx's transport directly: the ``AsyncClient`` layer above it (URL merging, cookies,
    auth and redirect hooks) cost about a quarter of a run's CPU, and this API needs none of it.
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=None)
    return httpx.AsyncHTTPTransport(verify=tls, limits=limits, proxy=proxy)


def environment_proxy(base_url: str) -> str | None:
    """The proxy that HTTPS_PROXY, HTTP_PROXY or ALL_PROXY name for the API, unless NO_PROXY exempts its host."""
    url = httpx.URL(base_url)
    if urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


def make_limiter(requests_per_minute: int) -> AsyncLimiter | None:
    """Requests spaced evenly at the given rate, so a run never provokes an avoidable 429; 0 means no limit."""
    if requests_per_minute <= 0:
        return None
    return AsyncLimiter(1, 60.0 / requests_per_minute)


def decode_object(content: bytes, where: str) -> dict[str, Any]:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise MalformedResponseError(f"malformed JSON in the response for {where}") from None
    if not isinstance(body, dict):
        raise MalformedResponseError(f"malformed response for {where}: expected a JSON object")
    return body


def api_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        message = body.get("message", "") if isinstance(body, dict) else ""
    except orjson.JSONDecodeError:
        message = response.text
    return " ".join(str(message).split())[:200]


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


def scrub_model(model: dict[str, Any]) -> dict[str, Any]:
    """Remove the Weights & Biases key that the API returns inside model settings."""
    settings = model.get("settings")
    wandb = settings.get("wandb") if isinstance(settings, dict) else None
    if isinstance(wandb, dict):
        wandb.pop("api_key", None)
    return model


def checked_id(model: dict[str, Any], where: str) -> dict[str, Any]:
    """The model, if its ``id`` is a non-empty string; else a one-line error naming where it was served."""
    model_id = model.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        problem = "without an id" if model_id is None else f"with id {model_id!r:.40}, not a non-empty string"
        raise MalformedResponseError(f"malformed model in {where}: a model {problem}: {model!r:.120}")
    return model

"""The HTTP machinery every provider's client shares: auth, retries, the rate limit, concurrency and errors.

A provider's client subclasses :class:`ApiClient` and adds its endpoints; everything here is provider-neutral.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import random
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

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

from pipelines.words import plural

if TYPE_CHECKING:
    from pipelines.headstart import Handover, Recorder

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CLIENT_NAME = "cohere-events"
SIMULATED_HEADER = "X-Cohere-Events-Simulated"  # set by the simulated APIs, so no warehouse mixes their data with real
# httpx checks every connection of its pool on each request, so one pool of 16 connections costs about twice the
# CPU per request of eight pools of 2: requests go to the least busy of several small pools.
CONNECTIONS_PER_POOL = 2
# Pages one listing may take before the client calls it a loop: 10 million items at the default page size, far
# beyond any real model list or history, yet finite, so that a server that never ends a listing cannot page forever.
MAX_PAGES = 100_000


class ApiError(Exception):
    """A failure talking to the API; its message is one line and never contains the API key."""


class AuthError(ApiError):
    """The API refused the key (401 or 403)."""


class NotFoundError(ApiError):
    """One item (a model, a job) answered 404."""


class MalformedResponseError(ApiError):
    """A page that is not the JSON the API documents, or a listing that never ends."""


class RetryableError(ApiError):
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
    """The limits of one run, shared by every client: the rate limiter and the requests in flight; and what a head
    start (pipelines/headstart.py) handed over."""

    limiter: AsyncLimiter | None
    in_flight: asyncio.Semaphore
    prefetched: Handover | None = None
    not_before: float = 0.0  # time.monotonic() before which no request is sent: a head start's last, spaced

    @classmethod
    def for_settings(cls, settings: ClientSettings) -> SharedLimits:
        return cls(make_limiter(settings.requests_per_minute), asyncio.Semaphore(max(1, settings.concurrency)))

    @classmethod
    def after_head_start(cls, settings: ClientSettings) -> SharedLimits:
        """:meth:`for_settings`, taking over this process's head start if there is one: its requests still in flight
        hold their places under ``concurrency`` until they finish, and under a rate limit the first request keeps
        its spacing from the head start's last. Call it inside the event loop the clients run in."""
        from pipelines.headstart import hand_over

        loop = asyncio.get_running_loop()
        limits = cls.for_settings(settings)

        def release() -> None:
            with contextlib.suppress(RuntimeError):  # the run's loop is already closed: nothing waits any more
                loop.call_soon_threadsafe(limits.in_flight.release)

        handover, in_flight, last_sent = hand_over(settings, release)
        limits.in_flight = asyncio.Semaphore(max(0, max(1, settings.concurrency) - in_flight))
        limits.prefetched = handover
        if last_sent and settings.requests_per_minute > 0:
            limits.not_before = last_sent + 60.0 / settings.requests_per_minute
        return limits


class ApiClient:
    """GETs JSON objects with retries under the run's shared limits. Use ``async with``; one per event loop.

    Subclasses name the variable that holds the key (``key_hint``) and may map statuses (``error_for``).
    """

    key_hint = "the API key"
    recorder: Recorder | None = None  # set on a head start's own client: its answers go to the run

    async def head_start(self, first_load: bool, metrics: bool) -> None:
        """Ask what a run will surely ask first (see pipelines/headstart.py); a provider's client overrides it.
        ``first_load``: nothing of this provider was loaded into the warehouse yet, so every item will be read."""

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
        self.server_date: str | None = None  # the Date of the last answer: the API's clock
        self.headers = httpx.Headers(
            {
                **self.auth_headers(settings.api_key),
                "X-Client-Name": CLIENT_NAME,
                "User-Agent": f"{CLIENT_NAME} (httpx)",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        timeout = httpx.Timeout(settings.timeout_seconds, connect=min(10.0, settings.timeout_seconds))
        self.extensions = {"timeout": timeout.as_dict()}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the key: a bearer token, unless the provider's API wants another."""
        return {"Authorization": f"Bearer {api_key}"}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pool in self.pools:
            await pool.aclose()

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
            raise ApiError(
                f"{error} (gave up after {plural(self.settings.max_attempts, 'attempt')} or "
                f"{self.settings.max_retry_seconds:.0f} s)"
            ) from None
        raise AssertionError("unreachable")

    async def every_page(
        self, path: str, params: dict[str, Any], key: str, where: str, null_is_empty: bool = False
    ) -> list[dict[str, Any]]:
        """``key``'s objects of every page of a listing (see :meth:`each_page`)."""
        items: list[dict[str, Any]] = []
        async for page in self.each_page(path, params, key, where, null_is_empty):
            items.extend(page)
        return items

    async def each_page(
        self, path: str, params: dict[str, Any], key: str, where: str, null_is_empty: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """``key``'s objects of each page of a listing: the first page, then each one its answer points at (see
        :func:`next_page`), until the last or until the caller stops. An answer that says there is more with no way
        to ask raises IncompleteAnswerError, so a listing is had whole or not at all; a marker that repeats is a
        MalformedResponseError, not a loop."""
        query = dict(params)
        number = 1
        asked = {page_marker(path, query)}
        while True:
            body = await self.get_json(path, query, where if number == 1 else f"{where}, page {number}")
            page = objects(body, key, where, null_is_empty)
            following = next_page(body, page, self.base_url, where)
            yield page
            if following is None:
                return
            if LINK in following:
                link = urlsplit(following[LINK])
                path, query = link.path, dict(parse_qsl(link.query, keep_blank_values=True))
            else:
                query = {**params, **following}
            marker = page_marker(path, query)
            if marker in asked:
                raise MalformedResponseError(f"{where}: the API pointed at page {number} again (a paging loop)")
            asked.add(marker)
            number += 1

    async def get_once(self, path: str, params: dict[str, Any], where: str) -> dict[str, Any]:
        prefetched, response = self.limits.prefetched, None
        if prefetched is not None and (ahead := prefetched.take(page_marker(self.base_url + path, params))) is not None:
            response = await prefetched.answer(ahead)  # None: the head start was stopped before its answer came
        if response is None:
            response = await self.send(path, params, where)
        if self.stats.simulated is None:
            self.stats.simulated = response.headers.get(SIMULATED_HEADER) == "1"
        self.server_date = response.headers.get("Date")
        if response.status_code == 200:
            try:
                return decode_object(response.content, where)
            except MalformedResponseError as error:
                raise self.not_json(response, where) or error from None
        raise self.error_for(response, where)

    async def send(self, path: str, params: dict[str, Any], where: str) -> httpx.Response:
        """One request under the run's limits. A head start's client tells the run of it once it has its place, and
        then what it got (see pipelines/headstart.py)."""
        async with self.limits.in_flight:
            if self.limits.not_before and (wait := self.limits.not_before - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self.limits.limiter is not None:
                await self.limits.limiter.acquire()
            recorder = self.recorder
            key = None if recorder is None else recorder.claim(page_marker(self.base_url + path, params))
            answer: httpx.Response | RetryableError | None = None
            try:
                answer = await self.request(path, params, where)
                return answer
            except RetryableError as error:
                answer = error
                raise
            finally:
                if recorder is not None and key is not None:
                    recorder.settle(key, answer)

    async def request(self, path: str, params: dict[str, Any], where: str) -> httpx.Response:
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
        return response

    def not_json(self, response: httpx.Response, where: str) -> MalformedResponseError | None:
        """For an answer that does not even claim to be JSON (a proxy's login page): its content type and start."""
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "application/json" or media_type.endswith("+json"):
            return None
        text = self.redact(" ".join(response.content.decode("utf-8", "replace").split()))
        return MalformedResponseError(
            f"malformed response for {where}: expected JSON, got {media_type or 'no Content-Type'}: {text[:60]!r}"
        )

    def error_for(self, response: httpx.Response, where: str) -> ApiError:
        status = response.status_code
        message = self.redact(api_message(response))
        text = f"HTTP {status} for {where}" + (f": {message}" if message else "")
        if status in (401, 403):
            return AuthError(f"the API refused the key (HTTP {status}): check {self.key_hint}")
        if status == 429:
            self.stats.rate_limited += 1
        if status in RETRYABLE_STATUS:
            return RetryableError(text, retry_after(response.headers))
        if status == 404:
            return NotFoundError(text)
        return ApiError(text)

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
    from pipelines.network import on_asyncio_network  # imports httpcore, which httpx too imports only here

    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, proxy=proxy)
    on_asyncio_network(transport)  # asyncio's streams under httpcore, not anyio's: see pipelines/network.py
    return transport


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
        body = loads_non_finite(content, where)
    if not isinstance(body, dict):
        raise MalformedResponseError(f"malformed response for {where}: expected a JSON object")
    return body


def loads_non_finite(content: bytes, where: str) -> Any:
    """JSON with bare ``NaN``, ``Infinity`` or ``-Infinity`` numbers (Python's json writes them; Together's metrics
    carry them): orjson refuses them, the standard library reads them. Anything else malformed is one line."""
    if b"NaN" not in content and b"Infinity" not in content:
        raise MalformedResponseError(f"malformed JSON in the response for {where}")
    try:
        return json.loads(content)
    except ValueError:
        raise MalformedResponseError(f"malformed JSON in the response for {where}") from None


def api_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        message = body.get("message", "") if isinstance(body, dict) else ""
        nested = body.get("error") if isinstance(body, dict) else None
        if not message and isinstance(nested, dict):  # {"error": {"message": ...}}, as OpenAI-style APIs answer
            message = nested.get("message", "")
    except orjson.JSONDecodeError:
        message = response.text
    return " ".join(str(message).split())[:200]


def retry_after(headers: httpx.Headers) -> float | None:
    """The seconds an answer asks to wait: ``retry-after-ms`` (as Together's SDK reads it), else ``Retry-After``."""
    milliseconds = parse_retry_after(headers.get("retry-after-ms"))
    return milliseconds / 1000 if milliseconds is not None else parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


def server_clock_micros(date: str | None) -> int | None:
    """An answer's ``Date`` header (the server's clock, to the second) as epoch microseconds; None when absent or
    unreadable."""
    if not date:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp()) * 1_000_000


def checked_id(item: dict[str, Any], where: str, kind: str) -> dict[str, Any]:
    """The listed ``kind`` of item (a model, a job), if its ``id`` is a non-empty string; else a one-line error naming
    where it was served."""
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        problem = "without an id" if item_id is None else f"with id {item_id!r:.40}, not a non-empty string"
        raise MalformedResponseError(f"malformed {kind} in {where}: a {kind} {problem}: {item!r:.120}")
    return item


def objects(body: dict[str, Any], key: str, where: str, null_is_empty: bool = False) -> list[dict[str, Any]]:
    """``body[key]`` as a list of objects: absent is none (proto3 JSON leaves an empty list out), and so is null
    where the API documents it (``null_is_empty``); anything else is a one-line MalformedResponseError."""
    items = body.get(key, [])
    if items is None and null_is_empty:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise MalformedResponseError(f"malformed response for {where}: '{key}' is not a list of objects")
    return items


class IncompleteAnswerError(MalformedResponseError):
    """An answer says there is more but gives no way to ask for it: nothing of that listing may be stored."""


# Paging markers that name the next page: (the answer's field, the query parameter it is sent back as).
TOKEN_MARKERS = (("next_page_token", "page_token"), ("next_cursor", "cursor"), ("next_token", "next_token"))
LINK_MARKERS = ("next", "next_url", "next_page_url", "next_page")


def next_page(body: dict[str, Any], items: list[dict[str, Any]], base_url: str, where: str) -> dict[str, Any] | None:
    """The query of the next page an answer points at, or None on the last page: a token (``next_page_token``,
    ``next_cursor``, ...), a link (``next``), or ``has_more`` with items that carry ids (``after`` = the last id,
    as OpenAI-style lists page). ``has_more`` with none of those is an IncompleteAnswerError."""
    for marker, parameter in TOKEN_MARKERS:
        token = body.get(marker)
        if isinstance(token, str | int) and not isinstance(token, bool) and str(token):
            return {parameter: str(token)}
    for marker in LINK_MARKERS:
        link = body.get(marker)
        if isinstance(link, str) and link:
            return {LINK: link_path(link, base_url, where)}
    if body.get("has_more") is not True:
        return None
    last_id = items[-1].get("id") if items else None
    if isinstance(last_id, str) and last_id:
        return {"after": last_id}
    raise IncompleteAnswerError(
        f"{where}: the API says there is more (has_more) but gives no cursor, token or link to ask for it; "
        "nothing of it was stored"
    )


def page_marker(path: str, query: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a page request asks for, comparable: a listing that asks for the same page twice is looping, and a head
    start's answer goes to the request that asks what it asked (with the base URL in ``path``)."""
    return path, tuple(sorted((name, str(value)) for name, value in query.items()))


LINK = "\0link"  # a next_page query that is a whole path and query of its own


def link_path(link: str, base_url: str, where: str) -> str:
    """A next-page link as a path (with its query) under the client's base URL; another origin is refused."""
    target, base = urlsplit(link), urlsplit(base_url)
    if target.scheme and (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise MalformedResponseError(f"{where}: the next page's link points at another server ({target.netloc})")
    path = target.path
    prefix = base.path.rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return path + (f"?{target.query}" if target.query else "")

"""What every simulated API shares: a real HTTP server on 127.0.0.1 that hands each request to a provider's
request logic (an object with ``handle``), and the foreground loop of ``fake-api``."""

from __future__ import annotations

import gzip
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson

from pipelines.http import SIMULATED_HEADER

DROP = -1  # an injected outcome: close the connection without answering
TIMELINE_START = datetime(2026, 1, 1, tzinfo=UTC)  # the demo's timeline: one item every 12 hours since then
TIMELINE_SPACING = timedelta(hours=12)
GZIP_FROM_BYTES = 1024  # answers this long or longer are gzipped for a client that accepts it


def truncate(moment: datetime, digits: int) -> datetime:
    """Drop the digits a timestamp will not show, so what is served is exactly what is stored."""
    if digits >= 6:
        return moment
    step = 10 ** (6 - digits)
    return moment.replace(microsecond=moment.microsecond // step * step)


def timeline(seed: int, count: int, now: datetime) -> Iterator[tuple[int, random.Random, datetime]]:
    """The demo's world, for any simulator: the latest ``count`` slots of a fixed timeline before ``now``, each as
    (slot, its own seeded generator, when its item was created). The same slots carry the same items on every run,
    so a repeated demo loads only what time revealed."""
    slots = int((now - TIMELINE_START) / TIMELINE_SPACING)
    for slot in range(max(0, slots - count), slots):
        rng = random.Random(seed * 1_000_003 + slot)
        yield slot, rng, TIMELINE_START + TIMELINE_SPACING * slot + timedelta(seconds=rng.randrange(600))


@dataclass
class Stats:
    """What a simulated API was asked: every request, and each kind of request."""

    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_kind": dict(self.by_kind)}


class Controls:
    """What the request logic of the job simulators (Together AI, OpenAI) shares: statistics, queued faults and the
    ``/_simulator/`` endpoints. The world needs ``jobs``, ``event_count()`` and ``advance(seconds)``."""

    world: Any

    def __init__(self) -> None:
        self.stats = Stats()
        self.lock = threading.Lock()
        self.queued: dict[str, list[int | str]] = {}

    def inject(self, path_contains: str, *outcomes: int | str) -> None:
        """Queue outcomes for the next requests whose path contains ``path_contains``: HTTP codes (429 with a
        retry-after of 1 s), ``"malformed"`` (truncated JSON), ``"timeout"`` or ``"drop"``."""
        with self.lock:
            self.queued.setdefault(path_contains, []).extend(outcomes)

    def next_fault(self, path: str) -> int | str | None:
        with self.lock:
            for pattern, outcomes in self.queued.items():
                if pattern in path and outcomes:
                    return outcomes.pop(0)
        return None

    def count(self, kind: str) -> None:
        with self.lock:
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1

    def control(self, path: str, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """``/_simulator/stats``, ``/_simulator/advance?seconds=N`` and ``/_simulator/reset-stats``."""
        if path == "/_simulator/stats":
            body = self.stats.to_json() | {"jobs": len(self.world.jobs), "events": self.world.event_count()}
            return 200, orjson.dumps(body), {}
        if path == "/_simulator/advance":
            return 200, orjson.dumps({"added": self.world.advance(float(query.get("seconds", "3600")))}), {}
        if path == "/_simulator/reset-stats":
            with self.lock:
                self.stats = Stats()
            return 200, b"{}", {}
        return 404, orjson.dumps({"error": {"message": "Not found"}}), {}


class SimulatedWorld(Protocol):
    def advance(self, seconds: float) -> Any: ...


class SimulatedApi(Protocol):
    """A provider simulator's request logic: (status, body, extra headers) for each request."""

    announce_simulated: bool
    world: Any

    def handle(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    api: SimulatedApi
    compress: bool = True

    def do_GET(self) -> None:
        self.respond("GET")

    def do_POST(self) -> None:
        self.respond("POST")

    def respond(self, method: str) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.api.handle(method, self.path, headers)
        if status == DROP:  # hang up without an answer, as a failing proxy does
            self.close_connection = True
            return
        if self.compress and len(body) >= GZIP_FROM_BYTES and "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)  # as the real APIs' front ends answer a client that asks
            extra["Content-Encoding"] = "gzip"
        self.send_response(status)
        self.send_header("Content-Type", extra.pop("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        if self.api.announce_simulated:
            self.send_header(SIMULATED_HEADER, "1")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header: the simulated world's clock where the API has one (``clock()``), as a real API's is
        its own clock."""
        clock = getattr(self.api, "clock", None)
        if timestamp is None and clock is not None:
            timestamp = clock()
        return super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that, like a real API, says nothing when a client hangs up mid-request."""

    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeApiServer:
    """Serves a simulated API on 127.0.0.1 in a background thread; use as a context manager. ``compress``: answers
    of 1 KB and more are gzipped for a client that accepts it, as the real APIs' front ends do."""

    def __init__(self, api: SimulatedApi, port: int = 0, host: str = "127.0.0.1", compress: bool = True) -> None:
        handler = type("Handler", (_Handler,), {"api": api, "compress": compress})
        self.api = api
        self.httpd = QuietServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # a stalled request must not hold up shutdown
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="simulated-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(server: FakeApiServer, advance_every: float = 0.0) -> None:
    """Serve in the foreground until interrupted; with ``advance_every`` seconds, in-flight models move on."""
    server.start()
    try:
        while True:
            time.sleep(advance_every or 3600)
            if advance_every:
                server.api.world.advance(advance_every)
    finally:
        server.stop()

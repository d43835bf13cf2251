"""Helpers for the pipeline tests: the simulated API on 127.0.0.1 and what the warehouse holds."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, Model, World

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EventRow = tuple[str, datetime, str, str | None]


@dataclass
class Fake:
    """A running simulated API and its world."""

    world: World
    api: FakeCohereApi
    server: FakeApiServer

    @property
    def url(self) -> str:
        return self.server.url

    def env(self, **extra: str) -> dict[str, str]:
        return {"CO_API_URL": self.url, "CO_API_KEY": DEFAULT_API_KEY, **extra}


def expected_events(world: World) -> set[EventRow]:
    """Every event the simulated API shows now, as the warehouse should hold it."""
    rows = set()
    for model in world.models.values():
        for event in world.visible_events(model):
            rows.add((model.id, event.created_at, event.status, event.user_id))
    return rows


def warehouse_events(path: Path | str = "cohere_events.duckdb") -> list[EventRow]:
    """Every row of the events table, as a list so that duplicates would show."""
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.sql(
            "select finetuned_model_id, created_at, status, user_id from cohere_finetuning.events"
        ).fetchall()
    return [(m, c.astimezone(UTC), s, u) for m, c, s, u in rows]


def loaded_tables(path: Path | str = "cohere_events.duckdb") -> list[str]:
    """The tables of the dataset; empty when nothing was ever loaded."""
    if not Path(path).exists():
        return []
    sql = "select table_name from information_schema.tables where table_schema = 'cohere_finetuning'"
    return sorted(row[0] for row in query(sql, path))


def query(sql: str, path: Path | str = "cohere_events.duckdb") -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql(sql).fetchall()


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """Invoke ``cohere-events`` in this process; returns click's Result (exit_code, stdout, stderr).

    ``run`` gets ``--requests-per-minute 0`` unless the test names a rate: spacing requests at Cohere's 500 a minute
    would only slow the suite (0.12 s a request); the rate limit has tests of its own that name it.
    """
    if args[:1] == ("run",) and "--requests-per-minute" not in args:
        args = (*args, "--requests-per-minute", "0")
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def cli_process(*args: str, env: dict[str, str], cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """Start ``cohere-events`` as a separate process, as cron would."""
    full_env = {**os.environ, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def empty_model(world: World, model_id: str, name: str = "hand-made") -> Model:
    """A model with no events yet, for hand-written histories."""
    model = Model(
        body={
            "id": model_id,
            "name": name,
            "creator_id": "user-1",
            "organization_id": "org-1",
            "settings": {"base_model": {"base_type": "BASE_TYPE_CHAT", "name": "command-r"}, "dataset_id": "d-1"},
            "created_at": "2026-03-01T00:00:00Z",
        }
    )
    world.models[model_id] = model
    return model


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that records the absolute URLs it was asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        handler = type("ProxyHandler", (_ProxyHandler,), {"urls": self.urls})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    urls: list[str]
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.urls.append(self.path)  # absolute form: http://host:port/path?query
        target = urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "proxy-connection")}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        try:
            upstream.request("GET", f"{target.path}?{target.query}" if target.query else target.path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

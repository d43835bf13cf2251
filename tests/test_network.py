"""The sockets under httpx (pipelines/network.py): plain HTTP and TLS, against the simulated API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from pipelines.http import ApiError, ClientSettings, make_pool, tls_context
from pipelines.network import AsyncioStream
from pipelines.providers.cohere.client import FinetuningClient
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, World
from tests.support import NOW, Fake, cli_process, expected_events, warehouse_events


@pytest.fixture
def tls_api(workdir: Path) -> Iterator[tuple[World, str, Path]]:
    """The simulated API served over TLS with a certificate of a throwaway CA: (world, https URL, the CA's file)."""
    authority = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(served)
    ca_file = workdir / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    world = World(models=12, seed=5, now=NOW)
    server = FakeApiServer(FakeCohereApi(world))
    server.httpd.socket = served.wrap_socket(server.httpd.socket, server_side=True)
    with server:
        yield world, server.url.replace("http://", "https://"), ca_file


def test_a_run_over_tls_loads_every_event_once(tls_api: tuple[World, str, Path], workdir: Path) -> None:
    """A run as cron starts it, head start included (a process of its own: it forks), over TLS to the API."""
    world, url, ca_file = tls_api
    env = {"CO_API_URL": url, "CO_API_KEY": DEFAULT_API_KEY, "SSL_CERT_FILE": str(ca_file)}
    run = cli_process("run", "--requests-per-minute", "0", env=env, cwd=workdir)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "loaded 12 models" in stdout
    assert sorted(warehouse_events()) == sorted(expected_events(world))


def test_an_untrusted_certificate_is_one_line_naming_the_connection(tls_api: tuple[World, str, Path]) -> None:
    _, url, _ = tls_api

    async def list_models() -> None:
        settings = ClientSettings(base_url=url, api_key=DEFAULT_API_KEY, requests_per_minute=0, max_attempts=1)
        async with FinetuningClient(settings) as api:
            async for _ in api.list_model_pages():
                pass

    with pytest.raises(ApiError) as failed:
        asyncio.run(list_models())
    message = str(failed.value)
    assert message == "connection failed for the model list, page 1: ConnectError (gave up after 1 attempt or 300 s)"
    assert "\n" not in message and DEFAULT_API_KEY not in message


def test_requests_travel_on_asyncio_streams_kept_alive(fake: Fake) -> None:
    """Each pool's connections are this package's streams (not anyio's), reused from one request to the next."""

    async def two_requests() -> list[object]:
        pool = make_pool(1, tls_context(), None)
        streams = []
        async with pool:
            for _ in range(2):
                request = httpx.Request("GET", f"{fake.url}/v1/finetuning/finetuned-models", headers=auth())
                response = await pool.handle_async_request(request)
                await response.aread()
                assert response.status_code == 200
                streams.append(response.extensions["network_stream"])
                await response.aclose()
        return streams

    first, second = asyncio.run(two_requests())
    assert isinstance(first, AsyncioStream)
    assert second is first  # kept alive: the server did not close it, so it was not taken for expired


def test_a_connection_the_server_closed_since_is_not_reused() -> None:
    """A kept-alive connection that the server closed after its answer is taken for expired: the next request opens
    a new one, rather than failing on the dead one ("server disconnected without sending a response")."""

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()  # no "Connection: close": the client keeps it, and learns of the close only from the socket

    async def two_requests() -> list[object]:
        server = await asyncio.start_server(answer_then_close, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        streams = []
        async with server, make_pool(1, tls_context(), None) as pool:
            for _ in range(2):
                response = await pool.handle_async_request(httpx.Request("GET", f"http://{host}:{port}/"))
                assert (response.status_code, await response.aread()) == (200, b"{}")
                streams.append(response.extensions["network_stream"])
                await response.aclose()
                await asyncio.sleep(0.1)  # the server's close arrives
        return streams

    first, second = asyncio.run(two_requests())
    assert isinstance(second, AsyncioStream) and second is not first


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEFAULT_API_KEY}"}

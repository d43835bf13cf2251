"""The sockets under httpx: httpcore's network backend on asyncio's own streams.

httpcore reaches the network through a backend (``httpcore.AsyncNetworkBackend``, its documented extension point).
Its default on asyncio is anyio's, which opens a cancel scope around every read and write to apply the timeout,
and that is about a tenth of the CPU a request costs the client (bench/transport.py; bench/README.md has the
figures). This backend does the same on asyncio's streams, with ``asyncio.timeout`` (the event loop's own timer)
for each timeout, and raises httpcore's own exceptions, so httpx and the client see what they saw before:
``ConnectError``, ``ConnectTimeout``, ``ReadError``, ``ReadTimeout``, ``WriteError``, ``WriteTimeout``. TLS (and
TLS through a proxy's tunnel) is asyncio's own ``start_tls``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterable
from typing import Any

import httpcore

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, as httpcore reads and writes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout(f"no answer within {timeout} s") from None
        except OSError as error:
            raise httpcore.ReadError(str(error) or type(error).__name__) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self.writer.transport.is_closing():  # asyncio would drop the bytes and, after five, log a warning
            raise httpcore.WriteError("the connection is closed")
        try:
            async with asyncio.timeout(timeout):
                self.writer.write(buffer)
                await self.writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout(f"could not send within {timeout} s") from None
        except OSError as error:
            raise httpcore.WriteError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        self.writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self.writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            self.writer.close()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except (OSError, ssl.SSLError) as error:  # ssl.SSLError is an OSError; named for the reader
            self.writer.close()
            raise httpcore.ConnectError(str(error) or type(error).__name__) from error
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # httpcore's test of a kept-alive connection before reuse: the server closed it
            return self.reader.at_eof() or self.writer.transport.is_closing()
        name = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return self.writer.get_extra_info(name[info]) if info in name else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections opened by asyncio's event loop (uvloop's in a run: see pipelines/loops.py)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = None if local_address is None else (local_address, 0)
        return await connected(asyncio.open_connection(host, port, local_addr=local), timeout, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await connected(asyncio.open_unix_connection(path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def connected(
    opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    timeout: float | None,
    socket_options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    """The stream a connection ``opening`` gives, with httpx's socket options set (asyncio already sets
    TCP_NODELAY); its failures as httpcore's ConnectTimeout or ConnectError."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no connection within {timeout} s") from None
    except OSError as error:
        raise httpcore.ConnectError(str(error) or type(error).__name__) from error
    sock = writer.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(reader, writer)


ASYNCIO_NETWORK = AsyncioBackend()  # stateless: one for every pool


def on_asyncio_network(transport: Any) -> None:
    """Make an httpx transport's connection pool (a proxy's too) open its connections with :data:`ASYNCIO_NETWORK`.

    httpx builds the pool (TLS, proxies, limits) and offers no say in its backend; the pool keeps it as
    ``_network_backend`` and reads it for each new connection. A test checks the streams a run gets are ours.
    """
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return  # another httpx: its own backend, as before
    pool._network_backend = ASYNCIO_NETWORK

"""httpcore's network layer on asyncio's own streams instead of anyio's.

Why: profiled over a steady cycle (benchmarks.fleet, 200 tenants), httpcore's default anyio backend cost about a
fifth of the monitor's CPU on its own: anyio's TLS stream drives the SSL object from Python on every read and write
(`TLSStream._call_sslobject_method`, 9 %), and httpcore asks each idle pooled connection "did the server close you?"
on every request start and end, which anyio answers by building its whole extra-attributes table and polling the
socket (`get_extra_info("is_readable")`, 6 %). asyncio's streams read through the event loop's own SSL protocol, and
that question is answered from the stream's state (data or EOF already received), with no system call.

The interface is httpcore's public `AsyncNetworkBackend` / `AsyncNetworkStream`
(https://www.encode.io/httpcore/network-backends/), errors mapped as its anyio backend maps them, so httpx raises the
same `ConnectError`/`ReadTimeout`/... either way.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

_CONNECT_ERRORS: dict[type[Exception], type[Exception]] = {
    TimeoutError: httpcore.ConnectTimeout, ssl.SSLError: httpcore.ConnectError, OSError: httpcore.ConnectError}
_READ_ERRORS: dict[type[Exception], type[Exception]] = {TimeoutError: httpcore.ReadTimeout,
                                                        OSError: httpcore.ReadError}
_WRITE_ERRORS: dict[type[Exception], type[Exception]] = {TimeoutError: httpcore.WriteTimeout,
                                                         OSError: httpcore.WriteError}


def _mapped(error: Exception, mapping: dict[type[Exception], type[Exception]]) -> Exception:
    for kind, named in mapping.items():  # TimeoutError first: it is an OSError too
        if isinstance(error, kind):
            return named(str(error) or type(error).__name__)
    return error


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as an asyncio reader/writer pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except (TimeoutError, OSError) as error:
            raise _mapped(error, _READ_ERRORS) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except (TimeoutError, OSError) as error:
            raise _mapped(error, _WRITE_ERRORS) from error

    async def aclose(self) -> None:
        # As httpcore's anyio backend does (standard_compatible=False): close without waiting for the peer's TLS
        # close_notify; the loop finishes the shutdown in the background, bounded by its ssl_shutdown_timeout.
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except (TimeoutError, OSError) as error:  # ssl.SSLError is an OSError
            self._writer.close()
            raise _mapped(error, _CONNECT_ERRORS) from error
        _smaller_tls_buffer(self._writer.transport)
        return AsyncioStream(self._reader, self._writer)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore's "has the server closed this idle connection?" The loop has already read whatever arrived
            # into the reader, so: anything buffered, an end of stream, or a transport going away.
            transport = self._writer.transport
            return bool(self._reader._buffer) or self._reader.at_eof() or transport is None or \
                transport.is_closing()
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
                 "socket": "socket"}
        return self._writer.get_extra_info(names[info]) if info in names else None


# asyncio's TLS protocol gives every connection a 256 KiB receive buffer (SSLProtocol.max_size, zero-filled, so
# resident): with the 128 pooled connections that was +32 MB of peak RSS over anyio's stream. A TLS record is at
# most 16 KiB (RFC 8446 §5.1), so 64 KiB still takes four per read.
TLS_BUFFER_BYTES = 64 * 1024


def _smaller_tls_buffer(transport: Any) -> None:
    """Shrink this connection's TLS receive buffer, where asyncio's SSLProtocol is the one known (CPython 3.11+:
    `max_size` read by get_buffer, `_ssl_buffer` and its view); anything else is left as it is."""
    protocol = getattr(transport, "_ssl_protocol", None)
    if protocol is None or not hasattr(protocol, "_ssl_buffer_view") or protocol.max_size <= TLS_BUFFER_BYTES:
        return
    protocol.max_size = TLS_BUFFER_BYTES  # an instance attribute: get_buffer then never asks for more
    protocol._ssl_buffer = bytearray(TLS_BUFFER_BYTES)
    protocol._ssl_buffer_view = memoryview(protocol._ssl_buffer)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections for httpcore's pool, opened with asyncio.open_connection."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None)
        except (TimeoutError, OSError) as error:
            raise _mapped(error, _CONNECT_ERRORS) from error
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except (TimeoutError, OSError) as error:
            raise _mapped(error, _CONNECT_ERRORS) from error
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def asyncio_transport(verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool on the asyncio backend (same pool, same limits)."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx builds its pool without a way to pass a backend; this is the pool it builds (httpx 0.28,
    # _transports/default.py), with the backend given. tests/unit/test_asyncio_backend.py fails if that changes.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend())
    return transport

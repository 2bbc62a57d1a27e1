"""The HTTP stack authwatch talks to Microsoft with: httpx over httpcore's pool on asyncio's own streams
(shared/collect/asyncio_backend.py), Graph's and Exchange's clients sharing one pool per shard.

Real sockets throughout: the simulator over TLS with its throw-away CA, and small asyncio servers for the failures a
network gives (a server closing an idle connection, one that never answers, a port nobody listens on)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import httpx
import pytest

from shared.collect import MicrosoftEndpoints
from shared.collect.asyncio_backend import TLS_BUFFER_BYTES, AsyncioBackend, asyncio_transport
from shared.collect.connection import ConnectionPools
from tests.integration.conftest import endpoints_for

T1 = "11111111-1111-4111-8111-111111111111"
APP = {"clientId": "aaaaaaaa-0000-4000-8000-000000000001", "clientSecret": "s3cret"}


def scenario() -> dict:
    return {"app": dict(APP), "tenants": [{"tenantId": T1, "displayName": "Contoso", "consent": True}]}


async def _server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> \
        tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _plain_client(timeout: float = 5.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    return httpx.AsyncClient(transport=asyncio_transport(ssl.create_default_context(), limits), timeout=timeout)


def test_graph_and_exchange_share_one_verified_tls_pool_on_the_asyncio_backend(simulator_for) -> None:
    sim = simulator_for(scenario())

    async def run() -> tuple[int, int, int, str]:
        pools = ConnectionPools(endpoints_for(sim))
        graph, exchange = pools.http(T1), pools.exchange_http(T1)
        assert graph is not exchange
        token = (await httpx.AsyncClient(verify=endpoints_for(sim).ssl_context()).post(
            f"{sim.url}/{T1}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": APP["clientId"],
                  "client_secret": APP["clientSecret"], "scope": "https://graph.microsoft.com/.default"})).json()
        first = await graph.get(f"{sim.graph_url}/organization",
                                headers={"Authorization": f"Bearer {token['access_token']}"})
        second = await exchange.get(f"{sim.graph_url}/organization",
                                    headers={"Authorization": f"Bearer {token['access_token']}"})
        pool = graph._transport.transport._pool  # type: ignore[attr-defined]
        connections = len(pool.connections)
        stream = first.extensions["network_stream"]
        cipher = stream.get_extra_info("ssl_object").version()
        # Each pooled TLS connection reads into a 64 KiB buffer, not asyncio's 256 KiB (peak RSS, 128 connections).
        assert len(stream._writer.transport._ssl_protocol.get_buffer(-1)) == TLS_BUFFER_BYTES
        await pools.aclose()
        return first.status_code, second.status_code, connections, cipher

    first, second, connections, tls = asyncio.run(run())
    assert (first, second) == (200, 200)
    assert connections == 1  # the Exchange client reused the Graph client's kept-alive connection
    assert tls.startswith("TLS")


def test_an_untrusted_certificate_is_refused_with_a_connect_error(simulator_for) -> None:
    sim = simulator_for(scenario())

    async def run() -> None:
        async with _plain_client() as client:  # the system's CAs: the simulator's throw-away CA is not among them
            await client.get(f"{sim.graph_url}/organization")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())


def test_a_port_nobody_listens_on_is_a_connect_error() -> None:
    async def run() -> None:
        server, port = await _server(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()
        async with _plain_client() as client:
            await client.get(f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())


def test_a_server_that_never_answers_is_a_read_timeout_within_the_timeout() -> None:
    async def run() -> float:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)
            writer.close()

        server, port = await _server(silent)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with _plain_client(timeout=0.3) as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(f"http://127.0.0.1:{port}/")
            return loop.time() - started
        finally:
            server.close()

    assert asyncio.run(run()) < 2.0


def test_an_idle_connection_the_server_closed_is_replaced_not_failed() -> None:
    """httpcore asks the backend whether a kept connection was closed by the server before reusing it; answered
    wrongly, the next request would go out on a dead socket and fail."""
    async def run() -> tuple[list[int], int]:
        accepted = 0

        async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive by default in HTTP/1.1
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()  # ... and then the server drops it while idle

        server, port = await _server(answer_once_then_close)
        try:
            async with _plain_client() as client:
                statuses = [(await client.get(f"http://127.0.0.1:{port}/")).status_code]
                await asyncio.sleep(0.3)
                statuses.append((await client.get(f"http://127.0.0.1:{port}/")).status_code)
            return statuses, accepted
        finally:
            server.close()

    statuses, accepted = asyncio.run(run())
    assert statuses == [200, 200]
    assert accepted == 2


def test_the_backend_reports_a_closed_stream_as_readable() -> None:
    async def run() -> tuple[bool, bool]:
        async def close_soon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.1)
            writer.close()

        server, port = await _server(close_soon)
        try:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=2)
            before = stream.get_extra_info("is_readable")
            await asyncio.sleep(0.3)
            after = stream.get_extra_info("is_readable")
            await stream.aclose()
            return before, after
        finally:
            server.close()

    assert asyncio.run(run()) == (False, True)


def test_pools_close_cleanly_with_both_clients(simulator_for) -> None:
    sim = simulator_for(scenario())

    async def run() -> bool:
        pools = ConnectionPools(MicrosoftEndpoints(authority=sim.url, graph=sim.graph_url, exchange=sim.url,
                                                   ca_bundle=sim.ca_path))
        await pools.exchange_http(T1).get(f"{sim.graph_url}/organization")
        graph = pools.http(T1)
        await pools.aclose()
        return graph.is_closed

    assert asyncio.run(run()) is True

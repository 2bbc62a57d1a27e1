"""Bounded waits on storage, and a fan-out that loses no tenant to one tenant's error.

A storage account that cannot be reached fails a call with StorageUnavailable (naming the endpoint and the cause,
never the key) within the bound the client settings give (computed here from the settings the SDK clients really
carry, not timed); the fan-out counts a tenant whose send failed as failed, gives its lease back and queues the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from azure.core.pipeline.policies import AsyncRetryPolicy

import shared.cycle.fleet as fleet_module
from shared.collect import MicrosoftEndpoints
from shared.collect.credentials import CredentialSpec
from shared.cycle.fleet import EVALUATIONS_QUEUE, EvaluationFailed, Fleet, evaluate_registered, fan_out
from shared.cycle.service import Monitor
from shared.storage import account as storage
from shared.storage.errors import StorageUnavailable, StorageUnavailablePolicy, scrub
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry
from simulator.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite

T = TypeVar("T")
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
GUARD_S = 60  # no pytest-timeout here: a regression to the SDKs' long waits fails instead of hanging
SPEC = CredentialSpec(mode="secret", client_id="5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a51",
                      secret_setting="AUTHWATCH_SECRET_UNREACHABLE")


def guarded(call: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(call, GUARD_S))  # type: ignore[arg-type]


def connection_to(port: int) -> str:
    """A connection string with the (public, documented) Azurite key, both endpoints on `port`."""
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint={endpoint};TableEndpoint={endpoint};")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def storage_calls(port: int) -> list[BaseException]:
    """One registry read and one queue send against `port`, at once; what each raised."""
    connection = connection_to(port)
    async with TenantRegistry.from_connection_string(connection) as registry, \
            JsonQueue.from_connection_string(connection, EVALUATIONS_QUEUE) as queue:
        results = await asyncio.gather(registry.get("00000000-0000-4000-8000-000000000001"),
                                       queue.send({"tenantId": "x"}), return_exceptions=True)
    return [result for result in results if isinstance(result, BaseException)]


def assert_named(errors: list[BaseException], port: int, cause: str) -> None:
    assert len(errors) == 2, errors
    for error in errors:
        assert isinstance(error, StorageUnavailable), repr(error)
        assert error.endpoint == f"http://127.0.0.1:{port}"
        assert f"http://127.0.0.1:{port}" in str(error) and cause in str(error), str(error)
        assert ACCOUNT_KEY not in str(error) and ACCOUNT_KEY[:20] not in repr(error)


# ----------------------------------------------------------------------------------------------------------------------
# Unreachable storage: a named error, in bounded time
# ----------------------------------------------------------------------------------------------------------------------

def test_a_closed_port_fails_each_call_with_storage_unavailable() -> None:
    port = closed_port()
    assert_named(guarded(storage_calls(port)), port, "could not connect")


def test_a_server_that_never_answers_fails_each_call_with_storage_unavailable() -> None:
    async def run() -> tuple[int, list[BaseException]]:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):  # read the request, never answer
                pass
            writer.close()

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return port, await storage_calls(port)

    port, errors = guarded(run())
    # The read timeout ends each attempt; with the retry, the 10 s backstop may end the call first.
    assert len(errors) == 2, errors
    for error in errors:
        reason = "no response in time" if "no response in time" in str(error) else "no answer within 10 s"
        assert_named([error, error], port, reason)


def test_the_configured_policies_end_a_call_within_ten_seconds() -> None:
    """The worst case, from the settings the built clients carry: every attempt waits out the whole connect and
    read timeouts, plus every backoff the retry policy would sleep."""
    account = storage.account(connection_to(closed_port()))
    table = account.table_service().get_table_client("AuthwatchRegistry")  # the client the stores really use
    policies = table._client._client._pipeline._impl_policies  # noqa: SLF001 - what the SDK took, not what we passed
    retry = next(policy for policy in policies if isinstance(policy, AsyncRetryPolicy))
    transport = table._client._client._pipeline._transport._transport  # noqa: SLF001 - the service's, shared
    assert isinstance(policies[0], StorageUnavailablePolicy)  # outermost: sees what the retries gave up on
    attempt = transport.connection_config.timeout + transport.connection_config.read_timeout
    backoffs = sum(retry.get_backoff_time({"history": [None] * n, "backoff": retry.backoff_factor,
                                           "max_backoff": retry.backoff_max}) for n in range(1, retry.total_retries + 1))
    table_worst = (1 + retry.total_retries) * attempt + backoffs

    queue = account.queue(EVALUATIONS_QUEUE)
    queue_retry = queue._config.retry_policy  # noqa: SLF001
    queue_transport = queue._pipeline._transport  # noqa: SLF001
    assert queue_retry.random_jitter_range == 0
    queue_attempt = queue_transport.connection_config.timeout + queue_transport.connection_config.read_timeout
    queue_worst = ((1 + queue_retry.total_retries) * queue_attempt
                   + sum(queue_retry.get_backoff_time({"count": n}) for n in range(1, queue_retry.total_retries + 1)))

    assert table_worst == storage.table_worst_case_s() and queue_worst == storage.queue_worst_case_s()
    # A refused or lost connection fails within the policy's attempts; anything slower is ended by the backstop.
    assert 2 * storage.CONNECT_TIMEOUT_S + storage.QUEUE_BACKOFF_S <= 10.0
    assert storage.worst_case_s() <= 10.0
    assert storage.CALL_DEADLINE_S <= 10.0  # the backstop for what the timeouts do not bound


def test_the_error_text_is_scrubbed_of_sas_and_keys() -> None:
    text = scrub("GET https://acct.queue.core.windows.net/q?sv=2024&sig=c2VjcmV0 failed; AccountKey=abc123==; x")
    assert "c2VjcmV0" not in text and "abc123" not in text and "acct.queue.core.windows.net/q" in text


def test_the_worker_fails_its_message_with_the_named_error(own_storage: str) -> None:
    """The queue worker's path: the tenant store unreachable → EvaluationFailed naming it (booked in the registry);
    the registry unreachable → StorageUnavailable itself. Either way the function raises and the host retries."""
    tenant = tenant_ids("dd", 1)[0]

    async def run() -> None:
        down = connection_to(closed_port())
        fleet = Fleet(TenantRegistry.from_connection_string(own_storage),
                      Monitor(TenantStore.from_connection_string(down),
                              JsonQueue.from_connection_string(down, ALERTS_QUEUE), MicrosoftEndpoints()),
                      JsonQueue.from_connection_string(own_storage, EVALUATIONS_QUEUE),
                      env={SPEC.secret_setting: "not-used"})
        lost = Fleet(TenantRegistry.from_connection_string(down), fleet.monitor, fleet.evaluations)
        try:
            await fleet.registry.create()
            await fleet.registry.upsert(TenantConfig(tenant_id=tenant, display_name=tenant, credential=SPEC))
            with pytest.raises(EvaluationFailed, match=r"StorageUnavailable: .*http://127\.0\.0\.1:\d+: could not "
                                                       r"connect") as failed:
                await evaluate_registered(fleet, tenant, now=NOW)
            assert ACCOUNT_KEY not in str(failed.value)
            booked = await fleet.registry.get(tenant)
            assert booked is not None and "could not connect" in (booked.last_error or "")
            with pytest.raises(StorageUnavailable, match="could not connect"):
                await evaluate_registered(lost, tenant, now=NOW)
        finally:
            await fleet.close()
            await lost.registry.close()

    guarded(run())


# ----------------------------------------------------------------------------------------------------------------------
# The fan-out: one tenant's failure loses no other
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module_azurite() -> Iterator[Azurite]:
    with Azurite() as azurite:
        yield azurite


@pytest.fixture
def own_storage(module_azurite: Azurite) -> str:
    """An empty registry and evaluations queue: the fan-out reads every registered tenant, so no other test's may be
    there (this module's own Azurite, emptied before each test)."""
    connection = module_azurite.connection_string

    async def empty() -> None:
        async with storage.account(connection).table_service() as service:
            await service.delete_table("AuthwatchRegistry")
        async with JsonQueue.from_connection_string(connection, EVALUATIONS_QUEUE) as queue:
            await queue.create()
            await queue.receive_all()

    guarded(empty())
    return connection


class FailingQueue(JsonQueue):
    """The evaluations queue, refusing the message of the tenants in `refuse`."""

    def __init__(self, client: Any, refuse: set[str], error: Exception) -> None:
        super().__init__(client)
        self.refuse, self.error, self.sent = refuse, error, []

    async def send(self, document: dict[str, Any], *, delay: timedelta | None = None) -> None:
        if document["tenantId"] in self.refuse:
            raise self.error
        await super().send(document, delay=delay)
        self.sent.append(document["tenantId"])


async def fleet_with(connection: str, tenants: list[str], queue: FailingQueue) -> Fleet:
    fleet = Fleet(TenantRegistry.from_connection_string(connection),
                  Monitor(TenantStore.from_connection_string(connection),
                          JsonQueue.from_connection_string(connection, ALERTS_QUEUE), MicrosoftEndpoints()), queue)
    await fleet.registry.create()
    await queue.create()
    for tenant in tenants:
        await fleet.registry.upsert(TenantConfig(tenant_id=tenant, display_name=tenant, credential=SPEC))
    return fleet


def tenant_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index:06x}-0000-4000-8000-000000000000" for index in range(count)]


def failing_queue(connection: str, refuse: set[str], error: Exception) -> FailingQueue:
    return FailingQueue(storage.account(connection).queue(EVALUATIONS_QUEUE), refuse, error)


def test_a_failed_send_releases_that_lease_and_queues_the_others(own_storage: str) -> None:
    tenants = tenant_ids("aa", 5)
    broken = tenants[2]

    async def run() -> None:
        queue = failing_queue(own_storage, {broken}, RuntimeError("queue said no"))
        fleet = await fleet_with(own_storage, tenants, queue)
        try:
            result = await fan_out(fleet, now=NOW)
            assert result.queued == [t for t in tenants if t != broken] == sorted(queue.sent)
            assert (result.failed, result.in_flight, result.not_due, result.disabled) == (1, 0, 0, 0)
            rows = {config.tenant_id: row for config, row in await fleet.registry.list_rows()}
            assert "InFlightUntil" not in rows[broken]  # given back: the next timer queues it
            assert all("InFlightUntil" in rows[t] for t in result.queued)
            queue.refuse.clear()
            again = await fan_out(fleet, now=NOW + timedelta(minutes=1))
            assert again.queued == [broken] and again.in_flight == 4 and again.failed == 0
        finally:
            await fleet.close()

    guarded(run())


def test_unreachable_storage_stops_the_fan_out_without_stranding_leases(own_storage: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Once storage is unavailable no further chunk is started (each call would wait ~10 s): the rest count as
    failed, and the one tenant whose lease was won gets it back."""
    monkeypatch.setattr(fleet_module, "CLAIM_CHUNK", 1)
    monkeypatch.setattr(fleet_module, "CLAIMERS", 1)
    tenants = tenant_ids("bb", 4)

    async def run() -> None:
        down = StorageUnavailable("http://127.0.0.1:1", "could not connect (test)")
        queue = failing_queue(own_storage, set(tenants), down)
        fleet = await fleet_with(own_storage, tenants, queue)
        try:
            result = await fan_out(fleet, now=NOW, concurrency=1)
            mine = [config for config in await fleet.registry.list() if config.tenant_id in tenants]
            assert result.queued == [] and result.failed == len(tenants) == len(mine)
            rows = {config.tenant_id: row for config, row in await fleet.registry.list_rows()}
            assert not any("InFlightUntil" in rows[t] for t in tenants)
        finally:
            await fleet.close()

    guarded(run())


def test_a_claim_transaction_refused_by_a_changed_row_falls_back_to_one_claim_each(own_storage: str) -> None:
    """The rows the fan-out read are stale (one tenant was updated since): its transaction is refused as a whole,
    and every tenant of it is claimed on its own, exactly once."""
    tenants = tenant_ids("cc", 4)

    async def run() -> None:
        queue = failing_queue(own_storage, set(), RuntimeError("unused"))
        fleet = await fleet_with(own_storage, tenants, queue)
        try:
            stale = await fleet.registry.list_rows()
            await fleet.registry.update(tenants[1], {"displayName": "renamed meanwhile"})
            fleet.registry.list_rows = lambda **_: _rows(stale)  # type: ignore[method-assign]
            result = await fan_out(fleet, now=NOW)
            assert set(tenants) <= set(result.queued) and result.failed == 0
            assert sorted(t for t in queue.sent if t in tenants) == tenants
        finally:
            await fleet.close()

    guarded(run())


async def _rows(rows: list[tuple[TenantConfig, dict[str, Any]]]) -> list[tuple[TenantConfig, dict[str, Any]]]:
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# A commit whose connection the service dropped is sent once more, and never written twice
# ----------------------------------------------------------------------------------------------------------------------

async def _dropping_proxy(target_port: int, drops: list[int]) -> tuple[asyncio.AbstractServer, int]:
    """A TCP proxy to Azurite that closes, unanswered, the connection on which the first `$batch` request arrives
    (as Azurite's Node server closes a keep-alive connection the client is about to reuse)."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: asyncio.StreamWriter,
                   watch: bool) -> None:
        try:
            while data := await reader.read(65536):
                if watch and not drops and data.startswith(b"POST ") and b"$batch" in data.split(b"\r\n", 1)[0]:
                    drops.append(1)
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            client.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, upstream_writer, client_writer, True),
                             pipe(upstream_reader, client_writer, client_writer, False))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_commit_whose_connection_was_dropped_is_sent_again_and_stored_once(azurite: Azurite) -> None:
    table_port = int(azurite.table_endpoint.rsplit(":", 1)[1].split("/")[0])
    tenant = "00000000-0000-4000-8000-0000000000d1"

    async def run() -> tuple[list[int], dict[str, Any], int]:
        drops: list[int] = []
        server, port = await _dropping_proxy(table_port, drops)
        try:
            async with TenantStore.from_connection_string(connection_to(port)) as store:
                await store.create()
                first = await store.commit(tenant, state={"cycle": 1}, expected_etag=None, evaluated_at=NOW,
                                           results=[], events=[])
                # A state row and an event: a $batch transaction (a lone state row is a PUT, retried by the SDK).
                event = {"id": "e-dropped", "at": "2026-11-23T08:00:00Z", "tenantId": tenant,
                         "type": "control.failed", "control": "exo_smtp_auth_disabled", "severity": "high",
                         "summary": "s", "details": {}}
                await store.commit(tenant, state={"cycle": 2}, expected_etag=first, evaluated_at=NOW,
                                   results=[], events=[event])
                record = await store.load(tenant)
                history = await store.history(tenant)
            return drops, record.state, len(history)
        finally:
            server.close()

    drops, state, events = guarded(run())
    assert drops == [1]  # the proxy did drop the transaction's first connection
    assert state.get("cycle") == 2
    assert events == 1

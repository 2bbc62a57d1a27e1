"""Which storage account authwatch uses, and how it signs in to it.

Locally and in tests: a connection string (Azurite). On Azure: no key anywhere — the Table and Queue endpoint URLs
(AUTHWATCH_STORAGE_TABLE_URL / AUTHWATCH_STORAGE_QUEUE_URL, set by infra/) and the app's managed identity through
DefaultAzureCredential (AZURE_CLIENT_ID picks the user-assigned identity).
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from typing import Any

from azure.data.tables.aio import TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

# The async retry policy the async QueueClient itself builds by default; the package exports only the sync one.
from azure.storage.queue._shared.policies_async import ExponentialRetry
from azure.storage.queue.aio import QueueClient

from shared.storage.errors import StorageUnavailablePolicy, guarded

_credentials: dict[int, Any] = {}

# Bounded waits: one storage call (retries included) ends within ~10 s, then raises StorageUnavailable
# (shared/storage/errors.py) and the queue message it serves is retried by the host. The SDK defaults wait far longer:
# azure-core's RetryPolicy (the Table client's) retries up to 10 times (3 for connection errors) with exponential
# backoff and 300 s connect/read timeouts; azure-storage-queue's ExponentialRetry retries 3 times with 20 s connect
# and 60 s read timeouts, sleeping initial_backoff + increment_base^n ± 3 s with its count already at n = 1 for the
# first retry, so 18 s, 24 s, 42 s (the docs' example says 15, 18, 24) — the ~86 s a refused connection used to take.
#   https://learn.microsoft.com/python/api/azure-core/azure.core.pipeline.policies.asyncretrypolicy
#   https://learn.microsoft.com/python/api/overview/azure/core-readme (connection_timeout, read_timeout)
#   https://learn.microsoft.com/python/api/azure-storage-queue/azure.storage.queue.exponentialretry
# A healthy account answers in milliseconds from the same region; the Table service may run a query page for up to
# 5 s before it returns a continuation (rare; such a page is retried once, then the call fails and is retried later):
#   https://learn.microsoft.com/rest/api/storageservices/setting-timeouts-for-table-service-operations
# The timeouts leave room for a busy account (or a loaded emulator: 2.5 s failed batch writes under Azurite with four
# worker processes on two cores); the backstop below, not the policy, is what ends a call at 10 s.
CONNECT_TIMEOUT_S = 3.0  # TCP + TLS handshake (aiohttp sock_connect); room for two lost SYNs (resent after 1 s, 2 s)
READ_TIMEOUT_S = 4.5  # waiting for the next bytes of an answer (aiohttp sock_read; below 5 s, so not rounded up)
# Three more attempts: a connection the service closed while idle in the pool ("Server disconnected"), or refused
# under load, fails at once and costs nothing to retry (1 of 1,000 evaluations failed that way with one retry, 16 with
# four worker processes, each then waiting out the queue's 30 s visibility timeout). Slow attempts are cut by the
# backstop below, so the worst case stays 10 s.
RETRIES = 3
TABLE_BACKOFF_FACTOR_S = 0.5  # azure-core: no sleep before the first retry, then factor × 2^(n-1)
QUEUE_BACKOFF_S = 1  # azure-storage-queue: initial_backoff + increment_base^n, here 1 + 0^n = 1 s, no jitter
# Backstop for what the settings above do not bound: DNS and waiting for a pooled connection (aiohttp's `connect`
# timeout, which azure-core leaves unset), a server trickling bytes, a Retry-After the service asks for.
CALL_DEADLINE_S = 10.0


def _attempt_s() -> float:
    """One attempt at worst: the connection takes the whole connect timeout, then the answer the whole read timeout."""
    return CONNECT_TIMEOUT_S + READ_TIMEOUT_S


def table_worst_case_s() -> float:
    """(1 + RETRIES) attempts + azure-core's backoffs: (3 + 4.5) × 4 + 0 + 1 + 2 = 33.0 s, cut at CALL_DEADLINE_S."""
    backoffs = sum(0 if n == 1 else TABLE_BACKOFF_FACTOR_S * 2 ** (n - 1) for n in range(1, RETRIES + 1))
    return (1 + RETRIES) * _attempt_s() + backoffs


def queue_worst_case_s() -> float:
    """(1 + RETRIES) attempts + the queue policy's backoffs: (3 + 4.5) × 4 + 3 = 33.0 s, cut at CALL_DEADLINE_S."""
    return (1 + RETRIES) * _attempt_s() + RETRIES * QUEUE_BACKOFF_S


def worst_case_s() -> float:
    """The longest one storage call can take: the slower policy, never past the backstop deadline."""
    return min(CALL_DEADLINE_S, max(table_worst_case_s(), queue_worst_case_s()))


def _trust_env() -> bool:
    """Whether the clients' aiohttp session reads proxy settings from the environment. Told to, aiohttp looks the
    proxy up again for every request, on a worker thread: about a third of the CPU a queue send costs (measured with
    benchmarks/fan_out.py). With no proxy configured there is nothing to find, so it is skipped; with one, it is
    honoured as before."""
    return bool(urllib.request.getproxies())


# Table writes made with POST (insert, batch) are never retried by azure-core on a transport error (it cannot know
# whether the service applied them); reads, updates (PUT) and deletes are.
TABLE_OPTIONS: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
                                 "retry_total": RETRIES, "retry_backoff_factor": TABLE_BACKOFF_FACTOR_S,
                                 "retry_backoff_max": CALL_DEADLINE_S}


class _TableService(TableServiceClient):
    """The Table service client with StorageUnavailablePolicy first in its pipeline. It is added where the SDK lists
    its policies, because the TableClients `get_table_client` hands out are built from that list (not from the
    service's pipeline: azure-core's `per_call_policies` would reach the service client only)."""

    def _configure_policies(self, **kwargs: Any) -> list[Any]:
        return [StorageUnavailablePolicy(CALL_DEADLINE_S), *super()._configure_policies(**kwargs)]


class _GuardedQueueRetry(ExponentialRetry):
    """The queue client's retry policy, bounded, turning what it gives up on into StorageUnavailable. (The queue
    pipeline has no per-call slot; nothing before the retry policy in it can fail in transport.)"""

    async def send(self, request: Any) -> Any:
        return await guarded(super().send, request, CALL_DEADLINE_S)


def _queue_options() -> dict[str, Any]:
    retry = _GuardedQueueRetry(initial_backoff=QUEUE_BACKOFF_S, increment_base=0, retry_total=RETRIES,
                               random_jitter_range=0)
    return {"connection_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S, "retry_policy": retry,
            "use_env_settings": _trust_env()}


def _identity() -> Any:
    """One DefaultAzureCredential per event loop (its HTTP session belongs to the loop), reused so its token cache
    serves every client the process builds."""
    from azure.identity.aio import DefaultAzureCredential

    try:
        loop = id(asyncio.get_running_loop())
    except RuntimeError:
        loop = 0
    if loop not in _credentials:
        _credentials[loop] = DefaultAzureCredential()
    return _credentials[loop]


@dataclass(frozen=True)
class StorageAccount:
    connection_string: str | None = None
    table_url: str | None = None
    queue_url: str | None = None

    def table_service(self) -> TableServiceClient:
        options = {**TABLE_OPTIONS, "use_env_settings": _trust_env()}
        if self.connection_string:
            return _TableService.from_connection_string(self.connection_string, **options)
        return _TableService(endpoint=str(self.table_url), credential=_identity(), **options)

    def queue(self, name: str) -> QueueClient:
        # Base64 text: what the Functions queue trigger expects by default (host.json messageEncoding).
        codecs = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy(),
                  **_queue_options()}
        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name, **codecs)
        return QueueClient(account_url=str(self.queue_url), queue_name=name, credential=_identity(), **codecs)


def account(connection: str | StorageAccount) -> StorageAccount:
    """Callers may still hand over a plain connection string (tests, the CLI against Azurite)."""
    return connection if isinstance(connection, StorageAccount) else StorageAccount(connection_string=connection)

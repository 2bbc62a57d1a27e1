"""Which storage account authwatch uses, and how it signs in to it.

Locally and in tests: a connection string (Azurite). On Azure: no key anywhere — the Table and Queue endpoint URLs
(AUTHWATCH_STORAGE_TABLE_URL / AUTHWATCH_STORAGE_QUEUE_URL, set by infra/) and the app's managed identity through
DefaultAzureCredential (AZURE_CLIENT_ID picks the user-assigned identity).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from azure.data.tables.aio import TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

_credentials: dict[int, Any] = {}


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
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string)
        return TableServiceClient(endpoint=str(self.table_url), credential=_identity())

    def queue(self, name: str) -> QueueClient:
        # Base64 text: what the Functions queue trigger expects by default (host.json messageEncoding).
        codecs = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name, **codecs)
        return QueueClient(account_url=str(self.queue_url), queue_name=name, credential=_identity(), **codecs)


def account(connection: str | StorageAccount) -> StorageAccount:
    """Callers may still hand over a plain connection string (tests, the CLI against Azurite)."""
    return connection if isinstance(connection, StorageAccount) else StorageAccount(connection_string=connection)

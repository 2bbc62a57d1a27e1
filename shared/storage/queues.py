"""Storage queues: `alerts` carries one message per event to deliver. Messages are base64 text, which is what the
Functions queue trigger expects by default (host.json messageEncoding)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from shared.storage.account import StorageAccount, account

ALERTS_QUEUE = "alerts"


class JsonQueue:
    """A queue of JSON documents. Delivery is at least once: consumers must be idempotent (events carry an id)."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount, name: str) -> JsonQueue:
        return cls(account(connection_string).queue(name))

    async def create(self) -> None:
        try:
            await self._client.create_queue()
        except ResourceExistsError:
            pass

    async def send(self, document: dict[str, Any], *, delay: timedelta | None = None) -> None:
        """Queue `document`; with `delay`, it becomes visible (to the queue trigger) only after that long."""
        await self._client.send_message(json.dumps(document, separators=(",", ":")),
                                        visibility_timeout=int(delay.total_seconds()) if delay else None)

    async def receive_all(self, *, visibility_timeout: int = 30, limit: int = 10_000) -> list[dict[str, Any]]:
        """Read and delete what is queued, up to `limit` (tests, the CLI demo, the benchmark). Workers in
        Functions use the queue trigger instead."""
        documents: list[dict[str, Any]] = []
        while len(documents) < limit:
            page = min(32, limit - len(documents))  # the SDK refuses a page larger than max_messages
            batch = [message async for message in self._client.receive_messages(
                messages_per_page=page, max_messages=page, visibility_timeout=visibility_timeout)]
            if not batch:
                break
            for message in batch:
                documents.append(json.loads(message.content))
                await self._client.delete_message(message)
        return documents

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> JsonQueue:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

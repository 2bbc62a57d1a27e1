"""The deployment's shared request budgets: one Table row per budget pool (an app registration's reports budget),
changed only with optimistic concurrency (If-Match on the row's ETag), in the deployment's own storage account.

The row holds a small JSON document (shared/collect/budget_share.py decides what it says): who holds how many slots
until when, and slots given back that are still cooling. It is bounded: one entry per live instance (a Functions app
has at most maximumInstanceCount of them) and the cooling entries of the last window, merged per second, far below
the 64 KiB a string property may hold
(https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model#property-types).
"""

from __future__ import annotations

import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.storage.account import StorageAccount, account

BUDGET_TABLE = "AuthwatchBudget"
PARTITION = "pool"
MAX_DOCUMENT_CHARS = 60_000


class LedgerConflict(RuntimeError):
    """Another instance changed the row since it was read: read again and decide again."""


class BudgetLedger:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._table = service.get_table_client(BUDGET_TABLE)
        self.transactions = 0  # storage transactions made (the benchmark reports the budget's cost)

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount) -> BudgetLedger:
        return cls(account(connection_string).table_service())

    async def create(self) -> None:
        self.transactions += 1
        try:
            await self._service.create_table(BUDGET_TABLE)
        except ResourceExistsError:
            pass

    async def read(self, pool: str) -> tuple[dict[str, Any], str | None]:
        """The pool's document and its ETag; an empty document and None when nobody has written it yet."""
        self.transactions += 1
        try:
            entity = await self._table.get_entity(PARTITION, pool)
        except ResourceNotFoundError:
            return {}, None
        try:
            document = json.loads(entity.get("Ledger") or "{}")
        except ValueError:
            document = None
        # Unreadable: said so (the budget fails closed on it) and rewritten whole by the next writer.
        return (document if isinstance(document, dict) else {"unreadable": True}), entity.metadata["etag"]

    async def write(self, pool: str, document: dict[str, Any], etag: str | None) -> str:
        """Replace the pool's document if nobody changed it since `etag` was read (None: if it does not exist yet).
        Raises LedgerConflict when somebody did."""
        text = json.dumps(document, separators=(",", ":"))
        if len(text) > MAX_DOCUMENT_CHARS:
            raise ValueError(f"budget ledger {pool!r}: {len(text)} characters is past its bound")
        entity = {"PartitionKey": PARTITION, "RowKey": pool, "Ledger": text}
        self.transactions += 1
        try:
            if etag is None:
                result = await self._table.create_entity(entity)
            else:
                result = await self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                         match_condition=MatchConditions.IfNotModified)
        except ResourceExistsError as error:
            raise LedgerConflict(f"budget ledger {pool!r} was created meanwhile") from error
        except HttpResponseError as error:
            if error.status_code == 412:  # Precondition Failed: the ETag no longer matches
                raise LedgerConflict(f"budget ledger {pool!r} changed meanwhile") from error
            raise
        return str(result.get("etag", ""))

    async def close(self) -> None:
        await self._table.close()
        await self._service.close()

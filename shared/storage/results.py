"""Each tenant's current control results, one Table entity per (tenant, control).

PartitionKey = tenant id and RowKey = control id, so "all results of one tenant" is a single-partition query and a
tenant's whole result set is written in one entity-group transaction (all rows or none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.model import ControlResult, Severity, Status

TABLE = "ControlResults"
# A Table property holds at most 64 KiB (32 K UTF-16 characters); stay well clear of it.
MAX_EVIDENCE_CHARS = 30_000


@dataclass(frozen=True)
class StoredResult:
    tenant_id: str
    result: ControlResult
    evaluated_at: datetime


def _evidence_json(evidence: dict[str, Any]) -> str:
    text = json.dumps(evidence, sort_keys=True, default=str)
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    # Too big for one property: keep every scalar and the size of every list so no count is lost.
    summary: dict[str, Any] = {"truncated": True}
    for key, value in evidence.items():
        if isinstance(value, list):
            summary[f"{key}Count"] = len(value)
            summary[key] = value[:20]
        elif isinstance(value, dict):
            summary[f"{key}Keys"] = len(value)
        else:
            summary[key] = value
    text = json.dumps(summary, sort_keys=True, default=str)
    return text if len(text) <= MAX_EVIDENCE_CHARS else json.dumps({"truncated": True})


def _entity(tenant_id: str, result: ControlResult, evaluated_at: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": tenant_id,
        "RowKey": result.control,
        "Status": str(result.status),
        "Severity": str(result.severity),
        "Summary": result.summary,
        "Evidence": _evidence_json(result.evidence),
        "Frameworks": json.dumps(list(result.frameworks)),
        "Remediation": result.remediation,
        "EvaluatedAt": evaluated_at,
    }


def _result(entity: dict[str, Any]) -> StoredResult:
    return StoredResult(
        tenant_id=entity["PartitionKey"],
        result=ControlResult(
            control=entity["RowKey"],
            status=Status(entity["Status"]),
            severity=Severity(entity["Severity"]),
            summary=entity.get("Summary", ""),
            evidence=json.loads(entity.get("Evidence") or "{}"),
            frameworks=tuple(json.loads(entity.get("Frameworks") or "[]")),
            remediation=entity.get("Remediation", ""),
        ),
        evaluated_at=entity["EvaluatedAt"],
    )


class ResultStore:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._table = service.get_table_client(TABLE)

    @classmethod
    def from_connection_string(cls, connection_string: str) -> ResultStore:
        return cls(TableServiceClient.from_connection_string(connection_string))

    async def create(self) -> None:
        try:
            await self._table.create_table()
        except ResourceExistsError:
            pass

    async def save(self, tenant_id: str, results: list[ControlResult], evaluated_at: datetime) -> None:
        """Replace the tenant's current results in one transaction (≤ 100 controls per partition batch)."""
        operations = [("upsert", _entity(tenant_id, result, evaluated_at), {"mode": UpdateMode.REPLACE}) for result in results]
        if operations:
            await self._table.submit_transaction(operations)

    async def load(self, tenant_id: str) -> list[StoredResult]:
        entities = self._table.query_entities("PartitionKey eq @tenant", parameters={"tenant": tenant_id})
        return [_result(entity) async for entity in entities]

    async def close(self) -> None:
        # The table client borrows the service client's transport; only closing the service frees the sockets.
        await self._table.close()
        await self._service.close()

    async def __aenter__(self) -> ResultStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

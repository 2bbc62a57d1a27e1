"""Where each MSP customer's onboarding stands: one row per customer, so a re-run knows what is left.

Table `AuthwatchRegistry` (the registry's own table), PartitionKey "onboarding", RowKey = the customer tenant id
(a lower-case GUID, validated before it reaches a key). A row holds the customer's name, its state, the one fix
for it, why (Microsoft's own words for a refusal, never a token), the steps done, and when. Rows are replaced
whole (the latest attempt is what counts); `EndedReportedAt` remembers that a customer's ended relationship was
reported, so it is reported once, not at every discovery.

States:
  ready                  consented, app roles granted, Exchange read role given, access checked: watched
  missing_exchange_role  consented and granted, but the Exchange read role (Global Reader) could not be given
                         or Exchange still refuses the app
  lacks_role             the GDAP relationship does not grant a role onboarding needs (which: in `fix`)
  failed                 a call failed for another reason (why: in `detail`)
  in_progress            an attempt started and has not finished (a crash leaves this; a re-run resumes)
  relationship_ended     a watched customer's GDAP relationships all ended (offboarding)
  removed                removed with `authwatch tenants remove`: `discover --add-all` leaves it alone (naming it in
                         `--select` or `onboard --tenant` watches it again)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.model import format_time, parse_time_or_none
from shared.storage.account import StorageAccount, account
from shared.tenants.config import as_utc, tenant_key
from shared.tenants.registry import TABLE

PARTITION = "onboarding"
STATES = ("ready", "missing_exchange_role", "lacks_role", "failed", "in_progress", "relationship_ended", "removed")
MAX_TEXT = 2_000  # a fix or a reason: Microsoft's messages are one or two sentences; bounded anyway
MAX_RECORDS = 50_000


@dataclass(frozen=True)
class OnboardingRecord:
    tenant_id: str
    name: str
    state: str
    fix: str = ""
    detail: str = ""
    steps: dict[str, str] = field(default_factory=dict)  # step -> "created" | "already" | "done" | "failed"
    updated_at: datetime | None = None
    ended_reported_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown onboarding state {self.state!r}; one of {', '.join(STATES)}")

    def to_json(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "name": self.name, "state": self.state, "fix": self.fix,
                "detail": self.detail, "steps": dict(self.steps),
                "updatedAt": format_time(self.updated_at) if self.updated_at else None,
                "endedReportedAt": format_time(self.ended_reported_at) if self.ended_reported_at else None}


def _entity(record: OnboardingRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": tenant_key(record.tenant_id),
                              "DisplayName": record.name[:256], "State": record.state, "Fix": record.fix[:MAX_TEXT],
                              "Detail": record.detail[:MAX_TEXT], "Steps": json.dumps(record.steps)[:MAX_TEXT]}
    if record.updated_at is not None:
        entity["UpdatedAt"] = record.updated_at
    if record.ended_reported_at is not None:
        entity["EndedReportedAt"] = record.ended_reported_at
    return entity


def _stored_time(value: Any) -> datetime | None:
    # The Tables SDK reads a date-time property back as a datetime (a subclass), not as the ISO text it was written as.
    return as_utc(value, "time") if isinstance(value, datetime) else parse_time_or_none(value)


def _record(entity: dict[str, Any]) -> OnboardingRecord:
    try:
        steps = json.loads(entity.get("Steps") or "{}")
    except ValueError:
        steps = {"record": "unreadable"}
    state = entity.get("State")
    return OnboardingRecord(
        tenant_id=str(entity["RowKey"]), name=str(entity.get("DisplayName") or ""),
        # Fail closed: a state this version does not know reads as failed, saying so, never as ready.
        state=state if state in STATES else "failed",
        fix=str(entity.get("Fix") or ""),
        detail=str(entity.get("Detail") or "") if state in STATES else f"unknown stored state {str(state)[:40]!r}",
        steps=steps if isinstance(steps, dict) else {}, updated_at=_stored_time(entity.get("UpdatedAt")),
        ended_reported_at=_stored_time(entity.get("EndedReportedAt")))


class OnboardingRecords:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._table = service.get_table_client(TABLE)

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount) -> OnboardingRecords:
        return cls(account(connection_string).table_service())

    async def __aenter__(self) -> OnboardingRecords:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def save(self, record: OnboardingRecord) -> None:
        await self._table.upsert_entity(_entity(record), mode=UpdateMode.REPLACE)

    async def get(self, tenant_id: str) -> OnboardingRecord | None:
        try:
            return _record(await self._table.get_entity(PARTITION, tenant_key(tenant_id)))
        except ResourceNotFoundError:
            return None

    async def all(self) -> list[OnboardingRecord]:
        found: list[OnboardingRecord] = []
        try:
            async for entity in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION}):
                found.append(_record(entity))
                if len(found) >= MAX_RECORDS:
                    break  # bounded: more customers than any partner has; the list says how many it shows
        except ResourceNotFoundError:
            return []  # no registry table yet: nothing was ever onboarded
        return sorted(found, key=lambda record: (record.name.lower(), record.tenant_id))

    async def forget(self, tenant_id: str) -> None:
        try:
            await self._table.delete_entity(PARTITION, tenant_key(tenant_id))
        except ResourceNotFoundError:
            pass

    async def close(self) -> None:
        # The table client borrows the service client's transport; only closing the service frees the sockets.
        await self._table.close()
        await self._service.close()

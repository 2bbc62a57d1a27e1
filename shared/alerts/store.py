"""The deliveries table: what was sent where, so a redelivered queue message never sends an alert twice.

Table `AuthwatchDeliveries`, PartitionKey = tenant id, RowKey = `<event id>:<channel>`: one row per event and
channel, with Status `sending` (claimed by the message `Holder` until `LeaseUntil`), `delivered` or `failed`, the
group it went out in (`GroupId` = the id of the message that carried it), `Tries`, `Attempts` (queue attempts),
`LastError` (a status code or an exception type: never a URL or a secret) and the event's type, severity, control
and time (`At`, which is also how a cycle's rows are found together). Digests live in PartitionKey `digest`,
RowKey `<hour slot>:<channel>`.

Claims are one entity-group transaction over all the events of a group (same tenant: same partition): creates for
rows that do not exist, ETag-conditional updates for rows this message may take over. Two messages racing for one
group: exactly one transaction succeeds, the other re-reads and finds the rows held.

It also reads the events of one cycle from the tenants table (`AuthwatchTenants`, the event rows of
shared.storage.tenant_store: public layout, read only), and holds the open-alert rows (`open`, open_store.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.alerts.open_store import OpenAlertStore
from shared.state.events import EVENT_TYPES
from shared.storage import event_rows, tenant_store
from shared.storage.account import StorageAccount, account

TABLE = "AuthwatchDeliveries"
DIGEST_PARTITION = "digest"
LEASE = timedelta(minutes=10)  # > one attempt (functionTimeout is 10 minutes): a live holder is never overtaken
SENDING, DELIVERED, FAILED = "sending", "delivered", "failed"
MAX_GROUP = 99  # one transaction holds 100 operations; one cycle commits fewer events than that anyway


def row_key(event_id: str, channel: str) -> str:
    return f"{event_id}:{channel}"


def event_time(at: Any) -> datetime:
    moment = datetime.fromisoformat(str(at))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Claim:
    """How a message stands towards one row: `free` (no row), `mine` (sending, and held by this message or its
    lease lapsed), `done` (delivered or failed) or `held` (another message is sending it)."""

    state: str
    row: dict[str, Any] | None


def standing(row: dict[str, Any] | None, *, holder: str, now: datetime) -> Claim:
    if row is None:
        return Claim("free", None)
    status = row.get("Status")
    if status in (DELIVERED, FAILED):
        return Claim("done", row)
    lease = _utc(row.get("LeaseUntil"))
    if row.get("Holder") == holder or lease is None or lease <= now:
        return Claim("mine", row)
    return Claim("held", row)


def _public(entity: dict[str, Any]) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        value = _utc(value)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {"eventId": entity.get("EventId"), "channel": entity.get("Channel"),
            "channelType": entity.get("ChannelType"), "status": entity.get("Status"), "kind": entity.get("Kind"),
            "type": entity.get("Type"), "control": entity.get("Control"), "severity": entity.get("Severity"),
            "at": moment(entity.get("At")), "groupId": entity.get("GroupId"), "tries": entity.get("Tries", 0),
            "attempts": entity.get("Attempts", 0), "error": entity.get("LastError"),
            "deliveredAt": moment(entity.get("DeliveredAt")), "failedAt": moment(entity.get("FailedAt"))}


class AlertTables:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._deliveries = service.get_table_client(TABLE)
        self._tenants = service.get_table_client(tenant_store.TABLE)
        self.open = OpenAlertStore(service)  # open alerts as their own state (open_store.py)

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount) -> AlertTables:
        """A connection string (Azurite, keys) or a StorageAccount (identity-based on Azure)."""
        return cls(account(connection_string).table_service())

    async def create(self) -> None:
        try:
            await self._deliveries.create_table()
        except ResourceExistsError:
            pass
        await self.open.create()

    # --- the events of one cycle ---------------------------------------------------------------------------------
    async def cycle_events(self, tenant_id: str, at: str) -> list[dict[str, Any]]:
        """Every alertable event the tenant's cycle at `at` committed (one transaction: all of them or none)."""
        query = "PartitionKey eq @tenant and RowKey gt @start and RowKey lt @end and At eq @at"
        parameters = {"tenant": tenant_id, "start": event_rows.EVENT_PREFIX, "end": event_rows.EVENT_END,
                      "at": event_time(at)}
        events = []
        try:
            async for entity in self._tenants.query_entities(query, parameters=parameters,
                                                             select=["Body", "Type", "EventId"]):
                if entity.get("Type") in EVENT_TYPES:
                    events.append(json.loads(entity["Body"]))
        except ResourceNotFoundError:
            return []  # no tenants table (yet): nothing to group with
        return events

    # --- delivery rows -----------------------------------------------------------------------------------------
    async def get(self, partition: str, key: str) -> dict[str, Any] | None:
        try:
            return await self._deliveries.get_entity(partition, key)
        except ResourceNotFoundError:
            return None

    async def cycle_rows(self, tenant_id: str, channel: str, at: str) -> dict[str, dict[str, Any]]:
        """The rows of one cycle for one channel, by event id."""
        rows = self._deliveries.query_entities("PartitionKey eq @tenant and Channel eq @channel and At eq @at",
                                               parameters={"tenant": tenant_id, "channel": channel,
                                                           "at": event_time(at)})
        return {entity["EventId"]: entity async for entity in rows}

    def _claim_entity(self, partition: str, key: str, *, holder: str, now: datetime, previous: dict | None,
                      **properties: Any) -> dict[str, Any]:
        return {"PartitionKey": partition, "RowKey": key, "Status": SENDING, "Holder": holder,
                "LeaseUntil": now + LEASE, "UpdatedAt": now,
                "Attempts": int((previous or {}).get("Attempts") or 0) + 1,
                **{name: value for name, value in properties.items() if value is not None}}

    async def claim(self, partition: str, items: list[tuple[str, Claim, dict[str, Any]]], *, holder: str,
                    now: datetime) -> bool:
        """Claim rows (key, standing, properties) in one transaction; False when another writer got there first."""
        operations: list[tuple[Any, ...]] = []
        for key, claim, properties in items:
            entity = self._claim_entity(partition, key, holder=holder, now=now, previous=claim.row, **properties)
            if claim.row is None:
                operations.append(("create", entity))
            else:
                operations.append(("update", entity, {"mode": UpdateMode.MERGE, "etag": claim.row.metadata["etag"],
                                                      "match_condition": MatchConditions.IfNotModified}))
        try:
            await self._deliveries.submit_transaction(operations)
        except TableTransactionError as error:
            if error.status_code in (404, 409, 412):
                return False
            raise
        except (ResourceExistsError, ResourceNotFoundError):
            return False
        return True

    async def settle(self, partition: str, keys: dict[str, int], *, status: str, now: datetime, tries: int,
                     error: str | None = None, **properties: Any) -> None:
        """Write the outcome of a send for the rows it covered (`keys`: row key → tries recorded before), keeping
        what else the rows hold: delivered, failed, or still sending after a failed attempt."""
        values: dict[str, Any] = {"Status": status, "UpdatedAt": now,
                                  **{name: value for name, value in properties.items() if value is not None}}
        if status == DELIVERED:
            values["DeliveredAt"] = now
        elif status == FAILED:
            values["FailedAt"] = now
        if error is not None:
            values["LastError"] = error[:500]
        items = list(keys.items())
        for start in range(0, len(items), 100):
            await self._deliveries.submit_transaction([
                ("upsert", {"PartitionKey": partition, "RowKey": key, **values, "Tries": before + tries},
                 {"mode": UpdateMode.MERGE}) for key, before in items[start:start + 100]])

    async def failed(self, tenant_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """Recorded failed deliveries of a tenant, newest first (for the API and the dashboard)."""
        rows = self._deliveries.query_entities("PartitionKey eq @tenant and Status eq @status",
                                               parameters={"tenant": tenant_id, "status": FAILED})
        found = [_public(entity) async for entity in rows]
        found.sort(key=lambda row: row.get("failedAt") or "", reverse=True)
        return found[:limit]

    async def rows(self, partition: str) -> list[dict[str, Any]]:
        """Every row of a partition (tests, support)."""
        return [dict(entity) async for entity in self._deliveries.query_entities(
            "PartitionKey eq @p", parameters={"p": partition})]

    async def close(self) -> None:
        # The table clients borrow the service client's transport; only closing the service frees the sockets.
        await self._deliveries.close()
        await self._tenants.close()
        await self.open.close()
        await self._service.close()

    async def __aenter__(self) -> AlertTables:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

"""The tenant registry: which tenants authwatch watches, how it signs in to each, and how each is doing.

Table `AuthwatchRegistry`, PartitionKey "tenant", RowKey = the tenant id (a lower-case GUID, validated before any
query, so no input ever reaches an OData filter). One row per tenant:

    DisplayName, Enabled, Credential (JSON: mode, client id, NAMES of app settings — never a secret),
    ScheduleMinutes, ApprovedExclusions (JSON), Routing (JSON), Tags (JSON), CreatedAt, UpdatedAt,  ← configuration
    Exceptions (JSON list; absent: none), MaxExceptionDays, ExceptionReminderDays (absent: the defaults)
    LastSuccessAt, LastAttemptAt, ConsecutiveFailures, LastError, VerifiedDomains (JSON)            ← outcomes
    InFlightUntil                                                                                    ← fan-out lease
    ConfigVersion                                                              ← raised by changes the worker sees

Every write is read-modify-write with the row's ETag (retried on a conflict), so configuration changes, outcomes
and leases written concurrently never overwrite each other, and properties this version does not know are kept. A
tenant is never deleted: `disable` keeps the row and its history. What a row holds, validated, is a TenantConfig
(shared/tenants/config.py).

The queue worker does not read this row for every message: the fan-out's message carries the tenant's configuration
as listed, with its ConfigVersion. Every change the worker must act on (add, upsert, update — disable and enable
among them — and a recorded failure) raises ConfigVersion, and FIRST raises the tenant's change marker (a row in the
tenant's own state partition, which the worker reads anyway with its state: shared/storage/tenant_store.py) to the
same version, THEN writes this row. A worker whose message carries an older version than the marker reads this row
again. Marker first means a crash between the two writes costs a needless read (the marker is ahead of the row),
never a stale configuration (the row ahead of the marker).

Exceptions change one at a time (`change_exceptions`), each with its history row in the tenant's partition of the
state table (type exception.changed, history only: written as already sent, so no alert goes out), written after the
marker and BEFORE the registry row: an exception is never in force without its record. Should the registry write
then fail (another writer won: it is tried again from a fresh read), the history row is taken back; only a crash
between the two leaves a record of a change that did not happen, never a change without its record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.collect.credentials import CredentialError, CredentialSpec
from shared.exceptions import DEFAULT_MAX_DAYS, DEFAULT_REMINDER_DAYS
from shared.storage.account import StorageAccount, account
from shared.storage.event_rows import event_entity
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.storage.tenant_store import mark_registry_change
from shared.tenants.config import (
    ALL_FIELDS,
    CONFIG_FIELDS,
    MANAGED_FIELDS,
    MAX_DOMAINS,
    STATUS_FIELDS,
    RegistryError,
    TenantConfig,
    TenantExists,
    as_utc,
    bounded_json,
    clean_error,
    managed_message,
    tenant_key,
)

log = logging.getLogger("authwatch.registry")

TABLE = "AuthwatchRegistry"
PARTITION = "tenant"
WRITE_ATTEMPTS = 5
CHANGE_ATTEMPTS = 10  # change_exceptions: people editing one tenant's exceptions at once all get through
TRANSACTION_ROWS = 100  # an entity group transaction's limits: 100 entities, 4 MiB (kept under, with room)
TRANSACTION_BYTES = 3 * 1024 * 1024


_TIME_COLUMNS = {"LastSuccessAt": "last_success_at", "LastAttemptAt": "last_attempt_at",
                 "CreatedAt": "created_at", "UpdatedAt": "updated_at"}


def _config_columns(config: TenantConfig) -> dict[str, Any]:
    """The configuration properties of a row; None means "remove the property"."""
    return {
        "DisplayName": config.display_name,
        "Enabled": config.enabled,
        "Credential": json.dumps(config.credential.to_json(), sort_keys=True),
        "ScheduleMinutes": config.schedule_minutes,
        "ApprovedExclusions": bounded_json(config.approved_exclusions, "approvedExclusions"),
        "Routing": None if config.routing is None else bounded_json(config.routing, "routing"),
        "Tags": json.dumps(list(config.tags)),
        "Exceptions": bounded_json(config.exceptions, "exceptions") if config.exceptions else None,
        "MaxExceptionDays": config.max_exception_days,
        "ExceptionReminderDays": config.exception_reminder_days,
    }


def _status_columns(config: TenantConfig) -> dict[str, Any]:
    return {
        "LastSuccessAt": config.last_success_at,
        "LastAttemptAt": config.last_attempt_at,
        "ConsecutiveFailures": config.consecutive_failures,
        "LastError": config.last_error,
        "CreatedAt": config.created_at,
        "UpdatedAt": config.updated_at,
    }


def _from_entity(entity: Mapping[str, Any]) -> TenantConfig:
    tenant_id = entity.get("RowKey")
    try:
        return TenantConfig(
            tenant_id=tenant_id,
            display_name=entity.get("DisplayName", ""),
            credential=CredentialSpec.from_json(json.loads(entity.get("Credential") or "null")),
            enabled=bool(entity.get("Enabled", True)),
            schedule_minutes=entity.get("ScheduleMinutes"),
            approved_exclusions=json.loads(entity.get("ApprovedExclusions") or "{}"),
            routing=json.loads(entity["Routing"]) if entity.get("Routing") else None,
            tags=tuple(json.loads(entity.get("Tags") or "[]")),
            verified_domains=tuple(json.loads(entity.get("VerifiedDomains") or "[]")),
            consecutive_failures=int(entity.get("ConsecutiveFailures") or 0),
            last_error=entity.get("LastError") or None,
            config_version=int(entity.get("ConfigVersion") or 0),
            exceptions=json.loads(entity.get("Exceptions") or "[]"),
            max_exception_days=_number(entity.get("MaxExceptionDays"), DEFAULT_MAX_DAYS),
            exception_reminder_days=_number(entity.get("ExceptionReminderDays"), DEFAULT_REMINDER_DAYS),
            **{python: entity.get(column) for column, python in _TIME_COLUMNS.items()},
        )
    except (CredentialError, ValueError, TypeError) as error:
        raise RegistryError(f"tenant {tenant_id}: the stored registry row is unreadable ({error})") from None


def _number(value: Any, default: int) -> int:
    return default if value is None else int(value)  # the Table service may hand back an Int64 wrapper


def _take_lease(entity: dict[str, Any] | None, now: datetime, lease: timedelta) -> dict[str, Any] | None:
    """The row with the fan-out lease taken until now + lease; None when there is no row or another claim still
    holds the lease. The fan-out is the attempt: `due` measures the next one from here."""
    held = entity.get("InFlightUntil") if entity is not None else None
    if entity is None or (held is not None and as_utc(held, "InFlightUntil") > now):
        return None
    return _apply(entity, {"InFlightUntil": now + lease, "LastAttemptAt": now})


def _apply(entity: dict[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in columns.items():
        if value is None:
            entity.pop(name, None)
        else:
            entity[name] = value
    return entity


class TenantRegistry:
    def __init__(self, service: TableServiceClient, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._service = service
        self._table = service.get_table_client(TABLE)
        self._markers = service.get_table_client(STATE_TABLE)  # the tenants' change markers (see the docstring)
        self._clock = clock

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount, **kwargs: Any) -> TenantRegistry:
        return cls(account(connection_string).table_service(), **kwargs)

    async def create(self) -> None:
        try:
            await self._table.create_table()
        except ResourceExistsError:
            pass

    async def list(self, *, enabled_only: bool = False) -> list[TenantConfig]:
        """Every registered tenant (one query over the partition), sorted by display name. A row that cannot be read
        is logged as an error and left out rather than stopping the whole fleet."""
        return [config for config, _ in await self.list_rows(enabled_only=enabled_only)]

    async def list_rows(self, *, enabled_only: bool = False) -> list[tuple[TenantConfig, dict[str, Any]]]:
        """`list()` with each tenant's row as read, for a conditional write that needs no second read."""
        query = "PartitionKey eq @pk" + (" and Enabled eq true" if enabled_only else "")
        found = []
        async for entity in self._table.query_entities(query, parameters={"pk": PARTITION}):
            try:
                found.append((_from_entity(entity), entity))
            except RegistryError as error:
                log.error("unreadable registry row", extra={"tenant_id": entity.get("RowKey"), "error": str(error)})
        return sorted(found, key=lambda pair: (pair[0].display_name.lower(), pair[0].tenant_id))

    async def get(self, tenant_id: str) -> TenantConfig | None:
        entity = await self._read(tenant_key(tenant_id))
        return None if entity is None else _from_entity(entity)

    async def upsert(self, config: TenantConfig, *, now: datetime | None = None) -> TenantConfig:
        """Create or replace a tenant's configuration. created_at is kept (or set), updated_at set to now; the
        outcome fields of an existing row are kept (only record_outcome writes them)."""
        now = as_utc(now or self._clock(), "now")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                entity = {"PartitionKey": PARTITION, "RowKey": config.tenant_id, **_status_columns(config)}
                entity["CreatedAt"] = config.created_at or now
            return _apply(entity, {**_config_columns(config), "UpdatedAt": now})

        return _from_entity(await self._write(config.tenant_id, change, create=True, raise_version=True))

    async def add(self, config: TenantConfig, *, now: datetime | None = None) -> TenantConfig:
        """Register a new tenant; TenantExists (a RegistryError) when it is already registered — atomic, so two
        concurrent onboardings of one tenant cannot both succeed."""
        now = as_utc(now or self._clock(), "now")
        entity = _apply({"PartitionKey": PARTITION, "RowKey": config.tenant_id, **_status_columns(config)},
                        {**_config_columns(config), "CreatedAt": config.created_at or now, "UpdatedAt": now,
                         "ConfigVersion": 1})
        await mark_registry_change(self._markers, config.tenant_id, 1)  # the marker first (see the docstring)
        try:
            await self._table.create_entity(entity)
        except ResourceExistsError:
            raise TenantExists(f"tenantId: tenant {config.tenant_id} is already registered; update it instead") \
                from None
        return _from_entity(entity)

    async def update(self, tenant_id: str, changes: dict[str, Any], *, now: datetime | None = None) -> TenantConfig:
        """Change some configuration fields (JSON names, e.g. {"scheduleMinutes": 60}), validated like from_json.
        LookupError when the tenant is unknown; outcome fields and tenantId cannot be changed this way."""
        key = tenant_key(tenant_id)
        if not isinstance(changes, dict):
            raise RegistryError(f"(body): expected a JSON object, got {type(changes).__name__}")
        for name in changes:
            if name in STATUS_FIELDS:
                raise RegistryError(f"{name}: written by authwatch itself, not by an update")
            if name == "tenantId" and changes[name] is not None and tenant_key(changes[name]) != key:
                raise RegistryError("tenantId: a tenant's id cannot change (register the other tenant instead)")
            if name not in ALL_FIELDS:
                raise RegistryError(f"{name}: unknown field (allowed: {', '.join(CONFIG_FIELDS)})")
            if name in MANAGED_FIELDS:
                raise RegistryError(managed_message(name))
        now = as_utc(now or self._clock(), "now")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                raise LookupError(f"tenant {key} is not registered")
            merged = {**_from_entity(entity).to_json(), **changes, "tenantId": key}
            config = TenantConfig.from_json(merged)
            return _apply(entity, {**_config_columns(config), "UpdatedAt": now})

        return _from_entity(await self._write(key, change, raise_version=True))

    async def disable(self, tenant_id: str, *, now: datetime | None = None) -> TenantConfig:
        """Stop evaluating a tenant; its row, results and history stay (a tenant is never dropped silently)."""
        return await self.update(tenant_id, {"enabled": False}, now=now)

    async def change_exceptions(self, tenant_id: str,
                                change: Callable[[TenantConfig, int], tuple[list[dict[str, Any]], dict[str, Any]]],
                                *, now: datetime | None = None) -> TenantConfig:
        """Change a tenant's exceptions and record the change in its history (see the module docstring).
        `change(config, version)` gets the tenant as stored and the ConfigVersion the change will have, and returns
        the new list and the history event (a record: id, at, type, …); it validates, and raises (ExceptionError,
        RegistryError) before anything is written. It is called again after a concurrent write, on a fresh read.
        LookupError when the tenant is unknown."""
        key = tenant_key(tenant_id)
        now = as_utc(now or self._clock(), "now")
        for attempt in range(CHANGE_ATTEMPTS):
            if attempt:  # lost a race: let the winners finish before reading again
                await asyncio.sleep(random.uniform(0, 0.02 * attempt))
            entity = await self._read(key)
            if entity is None:
                raise LookupError(f"no tenant {key} is registered")
            version = int(entity.get("ConfigVersion") or 0) + 1
            exceptions, event = change(_from_entity(entity), version)
            config = replace(_from_entity(entity), exceptions=exceptions)  # validated again, as a whole
            row = _apply(dict(entity), {**_config_columns(config), "UpdatedAt": now, "ConfigVersion": version})
            # History only: never an alert. An event's time is whole seconds; its Seq (the order within one time)
            # is the change's microsecond, so two changes within one second keep their order.
            history = {**event_entity(key, event, now.microsecond), "Pending": False}
            await mark_registry_change(self._markers, key, version)
            try:
                await self._markers.create_entity(history)  # never over another change's row
            except ResourceExistsError:
                continue
            try:
                await self._table.update_entity(row, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
                return _from_entity(row)
            except ResourceModifiedError:
                await self._forget(key, history["RowKey"])
            except BaseException:
                await self._forget(key, history["RowKey"])
                raise
        raise RuntimeError(f"tenant {key}: the registry row kept changing; gave up after {CHANGE_ATTEMPTS} attempts")

    async def _forget(self, key: str, row_key: str) -> None:
        """Take back the history row of a change that was not written."""
        try:
            await self._markers.delete_entity(key, row_key)
        except Exception as error:  # noqa: BLE001 - the change itself failed; that is what the caller hears
            log.error("history row of an unwritten change left behind", extra={"tenant_id": key, "error": str(error)})

    async def record_outcome(self, tenant_id: str, *, success: bool, at: datetime, error: str | None = None) -> None:
        """Book one evaluation. LookupError when the tenant is unknown."""
        key = tenant_key(tenant_id)
        at = as_utc(at, "at")

        def change(entity: dict[str, Any] | None) -> dict[str, Any]:
            if entity is None:
                raise LookupError(f"tenant {key} is not registered")
            if success:
                columns = {"LastSuccessAt": at, "ConsecutiveFailures": 0, "LastError": None}
            else:
                columns = {"ConsecutiveFailures": int(entity.get("ConsecutiveFailures") or 0) + 1,
                           "LastError": clean_error(error) or "evaluation failed"}
            return _apply(entity, {**columns, "LastAttemptAt": at})

        # A failure is news to a worker holding an older copy (it clears the failures on its next success); a
        # success after failures is not: a worker that still sees them only writes the success once more.
        await self._write(key, change, raise_version=not success)

    async def record_domains(self, tenant_id: str, domains: tuple[str, ...]) -> None:
        """Remember the tenant's verified domains (what `--tenant contoso.onmicrosoft.com` matches)."""
        key = tenant_key(tenant_id)
        text = json.dumps(list(domains[:MAX_DOMAINS]))

        def change(entity: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if entity is None else _apply(entity, {"VerifiedDomains": text})

        await self._write(key, change)

    async def claim_in_flight(self, tenant_id: str, *, now: datetime, lease: timedelta,
                              row: dict[str, Any] | None = None) -> bool:
        """Take the tenant's fan-out lease until now + lease; False when another claim still holds it (or the tenant
        is unknown). Two timers racing on one tenant: exactly one wins (ETag-conditional write). `row` (from
        `list_rows`) saves reading the row again: one transaction per tenant, unless someone wrote it meanwhile."""
        key = tenant_key(tenant_id)
        now = as_utc(now, "now")
        won = True

        def change(entity: dict[str, Any] | None) -> dict[str, Any] | None:
            nonlocal won
            new = _take_lease(entity, now, lease)
            won = new is not None
            return new

        await self._write(key, change, known=row)
        return won

    async def claim_in_flight_rows(self, claims: Sequence[tuple[dict[str, Any], timedelta]], *,
                                   now: datetime) -> list[bool | None]:
        """`claim_in_flight` for many rows from `list_rows` ((row, lease) pairs), in Table transactions of up to 100
        rows instead of one write each: the registry is one partition, and an entity group transaction may update up
        to 100 entities of one partition, up to 4 MiB, all or nothing.
        https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
        Per row: True (claimed), False (another claim holds it: not written) or None — undecided, because the
        transaction it was in was refused (a row in it changed since it was read, so nothing in it was written):
        claim that one with claim_in_flight, which reads it again."""
        now = as_utc(now, "now")
        decided: list[bool | None] = [False] * len(claims)
        chunk: list[tuple[int, dict[str, Any], str]] = []
        size = 0
        for position, (row, lease) in enumerate(claims):
            new = _take_lease(dict(row), now, lease)
            if new is None:
                continue
            new = {name: value for name, value in new.items() if value is not None}
            weight = sum(len(str(value)) for value in new.values()) * 2 + 1024  # UTF-16, plus the part's headers
            if chunk and (len(chunk) == TRANSACTION_ROWS or size + weight > TRANSACTION_BYTES):
                await self._claim_chunk(chunk, decided)
                chunk, size = [], 0
            chunk.append((position, new, row.metadata["etag"]))  # type: ignore[attr-defined]
            size += weight
        if chunk:
            await self._claim_chunk(chunk, decided)
        return decided

    async def _claim_chunk(self, chunk: list[tuple[int, dict[str, Any], str]], decided: list[bool | None]) -> None:
        operations = [("update", new, {"mode": UpdateMode.REPLACE, "etag": etag,
                                       "match_condition": MatchConditions.IfNotModified}) for _, new, etag in chunk]
        try:
            await self._table.submit_transaction(operations)  # type: ignore[arg-type]
            won: bool | None = True
        except TableTransactionError:
            won = None
        for position, _, _ in chunk:
            decided[position] = won

    async def release_in_flight(self, tenant_id: str) -> None:
        """Drop the fan-out lease (the evaluation finished). Unknown tenants are ignored."""
        key = tenant_key(tenant_id)
        await self._write(key, lambda entity: _apply(entity, {"InFlightUntil": None})
                          if entity is not None and "InFlightUntil" in entity else None)

    async def _read(self, key: str) -> dict[str, Any] | None:
        try:
            return await self._table.get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return None

    async def _write(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None], *,
                     create: bool = False, known: dict[str, Any] | None = None,
                     raise_version: bool = False) -> dict[str, Any]:
        """Read the row (or start from `known`, a row read earlier), let `change` return the new row (None: nothing
        to write), write it if the row is still the one read (ETag) — else read again and retry. Returns the row as
        written (or as read). `raise_version`: a change the queue worker must see, announced by the tenant's change
        marker before the row is written (see the module docstring)."""
        for attempt in range(WRITE_ATTEMPTS):
            current = known if attempt == 0 and known is not None else await self._read(key)
            etag = current.metadata["etag"] if current is not None else None
            new = change(dict(current) if current is not None else None)
            if new is None:
                return current or {}
            if current is None and not create:
                raise LookupError(f"tenant {key} is not registered")
            new = {name: value for name, value in new.items() if value is not None}
            if raise_version:
                new["ConfigVersion"] = int((current or {}).get("ConfigVersion") or 0) + 1
                # Marker first: should this process die before the row is written, the marker is ahead of the row
                # and workers read the registry once too often; the other order could leave them a stale copy.
                await mark_registry_change(self._markers, key, new["ConfigVersion"])
            try:
                if current is None:
                    await self._table.create_entity(new)
                else:
                    await self._table.update_entity(new, mode=UpdateMode.REPLACE, etag=etag,
                                                    match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
                continue  # someone else wrote (or created, or deleted) it meanwhile: read again
            return new
        raise RuntimeError(f"tenant {key}: the registry row kept changing; gave up after {WRITE_ATTEMPTS} attempts")

    async def close(self) -> None:
        # The table client borrows the service client's transport; only closing the service frees the sockets.
        await self._table.close()
        await self._markers.close()
        await self._service.close()

    async def __aenter__(self) -> TenantRegistry:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

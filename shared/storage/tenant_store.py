"""Everything authwatch keeps about one tenant, in one Table partition, written one evaluation cycle at a time.

Table `AuthwatchTenants`, PartitionKey = tenant id. RowKeys sort so the rows a cycle needs come first:

    a:registry                      the registry's change marker (ConfigVersion): see `mark_registry_change`
    a:state                         the tenant's state document (compare layer), chunked JSON, carries the ETag;
                                    ResultsAt/ResultsFor: when the listed controls were last evaluated
    a:baseline                      the approved baseline document, chunked JSON
    b:result:<control id>           current result per control (same properties as ResultStore rows)
    e:<inverted ms>:<event id>      event history, newest first; Pending=True until the alert reached the queue

Every row below "c" is current, so `load` is one range query, and `commit` writes state, results, new events (and
the baseline when it changes) in ONE entity-group transaction: all or nothing, ≤ 100 operations, ≤ 4 MiB. A result
row whose content is unchanged is not rewritten (its evaluation time rides on the state row: ResultsAt), so an
unchanged tenant's commit is the state row alone, sent as a plain Update Entity with If-Match instead of a $batch:
just as atomic and conditional, and without the SDK's multipart build and parse (~15 % of a steady tenant's CPU).
  https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
  https://learn.microsoft.com/rest/api/storageservices/update-entity2 (If-Match: 412 when the ETag moved on)
The state
row is written with the ETag read by `load` (or created when there was none), so two workers racing on the same
tenant cannot both win: the loser gets `ConcurrencyConflict` and nothing of its cycle is stored. Because event rows
are inserted in that same transaction with Pending=True, the event rows double as the alert outbox: an alert is
handed to the queue after the commit and then `mark_sent`; a crash in between leaves it pending, to be sent again
(with the same idempotency key) rather than lost.

Why the failing operation can be told apart: a rejected transaction answers with the status of the first failing
operation, and its message starts with that operation's index ("1:The update condition specified in the request was
not satisfied."), which azure-data-tables exposes as `TableTransactionError.index`. The state row is always
operation 0, so 412 (stale ETag), 409 (created meanwhile) or 404 (deleted meanwhile) at index 0 is a state
conflict; 409 at an event row is an event id that is already stored. Both become `ConcurrencyConflict`.

An event's RowKey holds its time as well as its id, so "already stored" is detected for the same id at the same
millisecond — which is what a retried cycle produces, since the id is an idempotency key derived from the event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.model import ControlResult
from shared.storage.account import StorageAccount, account
from shared.storage.errors import conditional_write
from shared.storage.event_amend import amend_event_details
from shared.storage.entities import (
    MAX_DOCUMENT_CHARS,
    DocumentCorrupt,
    DocumentTooLarge,
    StoredResult,
    document_properties,
    read_document,
    result_properties,
    results_stamp,
    same_result,
    stored_result,
)
from shared.storage.event_rows import (
    EVENT_END,
    EVENT_PREFIX,
    annotations,
    check_key,
    event_entity,
    event_order,
    events_before,
    stored_event,
)

__all__ = ["MAX_DOCUMENT_CHARS", "TABLE", "ConcurrencyConflict", "DocumentCorrupt", "DocumentTooLarge", "TenantRecord",
           "TenantStore"]

TABLE = "AuthwatchTenants"
STATE_ROW = "a:state"
REGISTRY_ROW = "a:registry"
BASELINE_ROW = "a:baseline"
RESULT_PREFIX = "b:result:"
CURRENT_END = "c"  # every current row (state, baseline, results) sorts below this

MAX_TRANSACTION_OPERATIONS = 100
# The service rejects a transaction over 4 MiB; the estimate below is of the JSON sent, so keep some headroom.
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024 - 64 * 1024
_OPERATION_OVERHEAD_BYTES = 1024  # MIME part headers, URL and boundary of one operation inside the $batch body

# Characters the Table service refuses in PartitionKey / RowKey values.


class ConcurrencyConflict(Exception):
    """Another writer changed the tenant first (HTTP 412 / 409), or an event id is already stored: nothing of the
    commit was written; reload, re-compare and try again."""

    def __init__(self, message: str, *, tenant_id: str | None = None, row_key: str | None = None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.row_key = row_key  # the row the service refused: "a:state" or an event row


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    state: dict[str, Any] | None  # None: never evaluated
    state_etag: str | None  # ETag of the a:state row (None when absent)
    baseline: dict[str, Any] | None
    results: list[StoredResult]
    registry_version: int = 0  # the registry's change marker (0: none written): see `mark_registry_change`
    # When the listed controls were last evaluated (ResultsAt, ResultsFor), for `commit` to carry over.
    results_stamp: tuple[datetime, frozenset[str]] | None = None


def _document_entity(tenant_id: str, row_key: str, kind: str, document: dict[str, Any]) -> dict[str, Any]:
    return {"PartitionKey": tenant_id, "RowKey": row_key, **document_properties(tenant_id, kind, document)}


def _transaction_bytes(operations: Sequence[tuple[Any, ...]]) -> int:
    return sum(len(json.dumps(operation[1], default=str)) + _OPERATION_OVERHEAD_BYTES for operation in operations)


def _batches(items: list[Any], size: int = MAX_TRANSACTION_OPERATIONS) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _conflict(tenant_id: str, operations: list[tuple[Any, ...]], error: TableTransactionError,
              expected_etag: str | None) -> ConcurrencyConflict | None:
    """The ConcurrencyConflict a refused commit stands for, or None when the failure is something else."""
    status = error.status_code
    index = error.index if 0 <= error.index < len(operations) else 0
    row_key: str = operations[index][1]["RowKey"]
    code = getattr(error, "error_code", None)
    if row_key == STATE_ROW and (status in (409, 412) or (status == 404 and code == "ResourceNotFound")):
        if expected_etag is None:
            message = f"tenant {tenant_id}: another writer created the state first"
        elif status == 404:
            message = f"tenant {tenant_id}: the state read with ETag {expected_etag} has been deleted since"
        else:
            message = f"tenant {tenant_id}: the state changed since it was read (ETag {expected_etag})"
    elif row_key.startswith(EVENT_PREFIX) and status == 409:
        event_id = row_key.split(":", 2)[2]
        message = f"tenant {tenant_id}: event {event_id} is already stored"
    elif status in (409, 412):
        message = f"tenant {tenant_id}: row {row_key} was changed by another writer ({code})"
    else:
        return None
    return ConcurrencyConflict(f"{message}; nothing of this commit was written", tenant_id=tenant_id, row_key=row_key)


async def mark_registry_change(table: Any, tenant_id: str, version: int, attempts: int = 5) -> None:
    """Raise the tenant's registry change marker (row a:registry of its partition in this table) to `version`.

    The registry writes it BEFORE each change the queue worker must see (shared/tenants/registry.py), and the worker
    reads it with the state in `load`'s one query: a marker above the version its message carries means "read the
    registry again". It only ever grows (ETag-conditional, retried), so a slow writer cannot lower it."""
    check_key(tenant_id, "tenant id")
    row = {"PartitionKey": tenant_id, "RowKey": REGISTRY_ROW, "ConfigVersion": version}
    for _ in range(attempts):
        try:
            current = await table.get_entity(tenant_id, REGISTRY_ROW)
        except ResourceNotFoundError:
            current = None
        if current is not None and int(current.get("ConfigVersion") or 0) >= version:
            return
        try:
            if current is None:
                await table.create_entity(row)
            else:
                await table.update_entity(row, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
            return
        except ResourceNotFoundError:  # no table yet (a registry used before the monitor), or the row went
            await _create_table(table)
        except (ResourceExistsError, ResourceModifiedError):
            pass  # another writer moved it meanwhile: read again
    raise RuntimeError(f"tenant {tenant_id}: the registry change marker kept changing; gave up after {attempts}")


async def _create_table(table: Any) -> None:
    try:
        await table.create_table()
    except ResourceExistsError:
        pass


class TenantStore:
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._table = service.get_table_client(TABLE)

    @classmethod
    def from_connection_string(cls, connection_string: str | StorageAccount) -> TenantStore:
        return cls(account(connection_string).table_service())

    async def create(self) -> None:
        await _create_table(self._table)

    async def load(self, tenant_id: str) -> TenantRecord:
        """State (with its ETag), baseline, current results and the registry's change marker: one range query over
        the tenant's partition."""
        state = state_etag = baseline = stamp = None
        results: list[StoredResult] = []
        registry_version = 0
        rows = self._table.query_entities("PartitionKey eq @tenant and RowKey lt @end",
                                          parameters={"tenant": tenant_id, "end": CURRENT_END})
        async for entity in rows:
            row_key = entity["RowKey"]
            if row_key == STATE_ROW:
                state, state_etag = read_document(tenant_id, entity), entity.metadata["etag"]
                stamp = results_stamp(entity)
            elif row_key == REGISTRY_ROW:
                registry_version = int(entity.get("ConfigVersion") or 0)
            elif row_key == BASELINE_ROW:
                baseline = read_document(tenant_id, entity)
            elif row_key.startswith(RESULT_PREFIX):
                results.append(stored_result(tenant_id, row_key[len(RESULT_PREFIX):], entity))
        if stamp is not None:  # rows left unchanged by later cycles were evaluated then too
            results = [replace(item, evaluated_at=stamp[0]) if item.result.control in stamp[1]
                       and stamp[0] > item.evaluated_at else item for item in results]
        return TenantRecord(tenant_id=tenant_id, state=state, state_etag=state_etag, baseline=baseline, results=results,
                            registry_version=registry_version, results_stamp=stamp)

    async def commit(self, tenant_id: str, *, state: dict[str, Any], expected_etag: str | None,
                     results: list[ControlResult], evaluated_at: datetime, events: list[dict[str, Any]],
                     baseline: dict[str, Any] | None = None, stored: TenantRecord | None = None) -> str:
        """Write one evaluation cycle in one transaction and return the new state ETag.

        `stored` is the record `expected_etag` was read with: its result rows that would be written unchanged are
        left as they are (any result row is only ever written in a commit conditional on the state's ETag, so they
        are still as read when that ETag holds), and with no results (an unreachable tenant) its ResultsAt is kept.

        The state row is created (expected_etag None) or replaced only if its ETag is still expected_etag; result
        rows are upserted, event rows inserted with Pending=True, the baseline replaced when given. Raises
        ConcurrencyConflict — and writes nothing — when the state changed meanwhile or an event id is already stored;
        ValueError when the cycle does not fit in one transaction (> 100 operations or > 4 MiB).
        """
        check_key(tenant_id, "tenant id")
        state_entity = _document_entity(tenant_id, STATE_ROW, "state", state)
        stamp = (evaluated_at, frozenset(result.control for result in results)) if results else (
            stored.results_stamp if stored is not None else None)
        # Bounded so the state row stays under 1 MiB (MAX_DOCUMENT_CHARS leaves ~4 KB); 9 controls take 251.
        if stamp is not None and len(text := json.dumps(sorted(stamp[1]))) <= 1_500:
            state_entity.update(ResultsAt=stamp[0], ResultsFor=text)
        else:
            stored = None  # no room for the stamp: every result row is written with its time
        known = {item.result.control: item for item in stored.results} if stored is not None else {}
        if expected_etag is None:
            # "return-no-content": the service still answers with the ETag but does not echo a 1 MiB entity back.
            operations: list[tuple[Any, ...]] = [("create", state_entity, {"response_preference": "return-no-content"})]
        else:
            operations = [("update", state_entity, {"mode": UpdateMode.REPLACE, "etag": expected_etag,
                                                    "match_condition": MatchConditions.IfNotModified})]

        controls = [result.control for result in results]
        if len(set(controls)) != len(controls):
            raise ValueError(f"tenant {tenant_id}: the same control appears twice in one commit")
        for result in results:
            check_key(result.control, "control id")
            if same_result(result, known.get(result.control)):
                continue
            entity = {"PartitionKey": tenant_id, "RowKey": f"{RESULT_PREFIX}{result.control}",
                      **result_properties(result, evaluated_at)}
            operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))

        event_ids = [event.get("id") for event in events]
        if len(set(event_ids)) != len(event_ids):
            raise ValueError(f"tenant {tenant_id}: the same event id appears twice in one commit")
        for position, event in enumerate(events):
            operations.append(("create", event_entity(tenant_id, event, position),
                               {"response_preference": "return-no-content"}))

        if baseline is not None:
            operations.append(("upsert", _document_entity(tenant_id, BASELINE_ROW, "baseline", baseline),
                               {"mode": UpdateMode.REPLACE}))

        if len(operations) > MAX_TRANSACTION_OPERATIONS:
            raise ValueError(
                f"tenant {tenant_id}: one commit can hold {MAX_TRANSACTION_OPERATIONS} rows, this one has "
                f"{len(operations)} (state + {len(results)} results + {len(events)} events"
                f"{' + baseline' if baseline is not None else ''}); cap the events"
            )
        size = _transaction_bytes(operations)
        if size > MAX_TRANSACTION_BYTES:
            raise ValueError(f"tenant {tenant_id}: this commit is about {size:,} bytes, over the 4 MiB a transaction "
                             f"may carry; keep state, baseline and event details smaller")

        if len(operations) == 1:
            return await self._write_state_alone(tenant_id, operations[0], expected_etag)
        try:
            outcome = await conditional_write(lambda: self._table.submit_transaction(operations))
        except TableTransactionError as error:
            conflict = _conflict(tenant_id, operations, error, expected_etag)
            if conflict is None:
                raise
            raise conflict from error
        return outcome[0]["etag"]  # the state row is operation 0; results come back in operation order

    async def _write_state_alone(self, tenant_id: str, operation: tuple[Any, ...], expected_etag: str | None) -> str:
        """The state row alone, as one single-entity request (not a $batch): the same condition, the same conflict."""
        kind, entity, options = operation
        try:
            write = self._table.create_entity if kind == "create" else self._table.update_entity
            outcome = await write(entity, **options)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
            if isinstance(error, ResourceNotFoundError) and getattr(error, "error_code", None) == "TableNotFound":
                raise
            message = (f"tenant {tenant_id}: another writer created the state first" if expected_etag is None else
                       f"tenant {tenant_id}: the state read with ETag {expected_etag} has been deleted since"
                       if isinstance(error, ResourceNotFoundError) else
                       f"tenant {tenant_id}: the state changed since it was read (ETag {expected_etag})")
            raise ConcurrencyConflict(f"{message}; nothing of this commit was written", tenant_id=tenant_id,
                                      row_key=STATE_ROW) from error
        return outcome["etag"]

    async def save_baseline(self, tenant_id: str, baseline: dict[str, Any]) -> None:
        """Replace the approved baseline (the "accept baseline" path), outside an evaluation cycle."""
        check_key(tenant_id, "tenant id")
        await self._table.upsert_entity(_document_entity(tenant_id, BASELINE_ROW, "baseline", baseline),
                                        mode=UpdateMode.REPLACE)

    def _events(self, tenant_id: str, extra_filter: str = "", **kwargs: Any) -> Any:
        """A query over the tenant's event rows (their RowKey range), optionally narrowed further."""
        query = "PartitionKey eq @tenant and RowKey gt @start and RowKey lt @end" + extra_filter
        parameters = {"tenant": tenant_id, "start": EVENT_PREFIX, "end": EVENT_END, **kwargs.pop("parameters", {})}
        return self._table.query_entities(query, parameters=parameters, **kwargs)

    async def pending_events(self, tenant_id: str) -> list[dict[str, Any]]:
        """Events not yet handed to the alert queue (the outbox), oldest first, as event dicts."""
        rows = [entity async for entity in self._events(tenant_id, " and Pending eq true")]
        return [stored_event(entity) for entity in sorted(rows, key=event_order)]

    async def claim_pending(self, tenant_id: str, *, now: datetime,
                            lease: timedelta = timedelta(minutes=5)) -> list[dict[str, Any]]:
        """Claim the pending events nobody else holds, oldest first, for `lease`: one conditional transaction on
        the rows' ETags, so when two workers flush one tenant at once only one of them gets (and sends) them. A
        claim that is never followed by mark_sent (the worker died) lapses and the next run sends the events."""
        rows = [entity async for entity in self._events(tenant_id, " and Pending eq true")
                if not entity.get("ClaimedUntil") or entity["ClaimedUntil"] <= now]
        rows.sort(key=event_order)
        claimed: list[dict[str, Any]] = []
        for batch in _batches(rows):
            operations = [("update", {"PartitionKey": tenant_id, "RowKey": entity["RowKey"],
                                      "ClaimedUntil": now + lease},
                           {"mode": UpdateMode.MERGE, "etag": entity.metadata["etag"],
                            "match_condition": MatchConditions.IfNotModified}) for entity in batch]
            try:
                await self._table.submit_transaction(operations)
            except TableTransactionError as error:
                if error.status_code in (404, 409, 412):
                    break  # another worker claimed (or sent) them first: they are its to send
                raise
            claimed.extend(stored_event(entity) for entity in batch)
        return claimed

    async def mark_sent(self, tenant_id: str, event_ids: list[str]) -> None:
        """Pending=False for these events; ids already sent, pruned or never stored are ignored."""
        wanted = set(event_ids)
        if not wanted:
            return
        rows = self._events(tenant_id, " and Pending eq true", select=["RowKey", "EventId"])
        operations = [("update", {"PartitionKey": tenant_id, "RowKey": entity["RowKey"], "Pending": False},
                       {"mode": UpdateMode.MERGE}) async for entity in rows if entity["EventId"] in wanted]
        for batch in _batches(operations):
            await self._submit_skipping_missing(batch)

    async def history(self, tenant_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest `limit` events, newest first, each with "pending": whether its alert is still to be sent."""
        if limit <= 0:
            return []
        rows: list[dict[str, Any]] = []
        async for entity in self._events(tenant_id, results_per_page=min(limit + 10, 1000)):
            # RowKey order is newest millisecond first; finish the millisecond at the cut so Seq can order it.
            if len(rows) >= limit and event_order(entity)[0] != event_order(rows[-1])[0]:
                break
            rows.append(entity)
        rows.sort(key=event_order, reverse=True)
        return [{**stored_event(entity), "pending": bool(entity.get("Pending")), **annotations(entity)}
                for entity in rows[:limit]]

    async def annotate_event(self, tenant_id: str, event_id: str, *, acknowledged_at: datetime | None = None,
                             acknowledged_by: str | None = None, snoozed_until: datetime | None = None) -> dict:
        """Record a person's decision on one event's alert (acknowledge, snooze); LookupError if it is unknown."""
        rows = [entity async for entity in self._events(tenant_id, " and EventId eq @event",
                                                        parameters={"event": event_id})]
        if not rows:
            raise LookupError(f"tenant {tenant_id} has no event {event_id}")
        changes: dict[str, Any] = {"PartitionKey": tenant_id, "RowKey": rows[0]["RowKey"]}
        if acknowledged_at is not None:
            changes.update(AckedAt=acknowledged_at, AckedBy=acknowledged_by or "")
        if snoozed_until is not None:
            changes["SnoozedUntil"] = snoozed_until
        await self._table.update_entity(changes, mode=UpdateMode.MERGE)
        return {**stored_event(rows[0]), **annotations({**rows[0], **changes})}

    async def amend_event_details(self, tenant_id: str, event_id: str, at: datetime, details: dict) -> dict:
        return await amend_event_details(self._table, tenant_id, event_id, at, details)  # storage/event_amend.py

    async def prune_history(self, tenant_id: str, older_than: datetime) -> int:
        """Delete the events whose time is before `older_than` (millisecond precision); returns how many.

        Pending events go too: an alert that old is no longer worth sending, and the partition must not grow forever.
        """
        start = events_before(older_than)
        if start is None:
            return 0
        rows = self._table.query_entities("PartitionKey eq @tenant and RowKey gt @start and RowKey lt @end",
                                          parameters={"tenant": tenant_id, "start": start, "end": EVENT_END},
                                          select=["RowKey"])
        operations = [("delete", {"PartitionKey": tenant_id, "RowKey": entity["RowKey"]}) async for entity in rows]
        deleted = 0
        for batch in _batches(operations):
            deleted += await self._submit_skipping_missing(batch)
        return deleted

    async def tenant_ids(self) -> list[str]:
        """Every tenant that has a state row (a table scan that reads only the keys)."""
        rows = self._table.query_entities("RowKey eq @row", parameters={"row": STATE_ROW}, select=["PartitionKey"])
        return sorted({entity["PartitionKey"] async for entity in rows})

    async def _submit_skipping_missing(self, operations: list[tuple[Any, ...]]) -> int:
        """Submit; when a row has vanished meanwhile (404 at a known index) drop that operation and retry the rest.

        For mark_sent and prune, a row deleted concurrently is the desired outcome anyway. Returns how many applied.
        """
        operations = list(operations)
        while operations:
            try:
                await self._table.submit_transaction(operations)
                return len(operations)
            except TableTransactionError as error:
                if error.status_code != 404 or getattr(error, "error_code", None) != "ResourceNotFound" \
                        or not 0 <= error.index < len(operations):
                    raise
                del operations[error.index]
        return 0

    async def close(self) -> None:
        # The table client borrows the service client's transport; only closing the service frees the sockets.
        await self._table.close()
        await self._service.close()

    async def __aenter__(self) -> TenantStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

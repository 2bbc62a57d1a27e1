"""Open alerts kept as their own state, so an old open alert never drops out of a window of recent history.

Table `AuthwatchOpenAlerts`, PartitionKey = tenant id:

    a:meta              Through: the newest event time read from history (absent: history never read yet);
                        Omitted: JSON {event id: [key, at]} of open alerts past the per-tenant bound; OmittedMore
    o:<event id>        one open alert: the event (Body), its lifecycle key, time, severity, and a person's
                        decisions (AckedAt, AckedBy, SnoozedUntil)
    r:<key hash>        the latest resolution of one lifecycle key (ResolvedAt), kept TOMBSTONE_DAYS

Rows change event by event with lifecycle.py's rules: an opening event writes its `o:` row, unless its key was
resolved at or after it; a resolving event removes the key's rows at or before it and records `r:`. Applying an
event twice, or events in any order, gives the same rows (the `r:` rows are what make the order not matter), so
every writer may apply whatever it sees:
- the alert worker applies each alert as it arrives (shared/alerts/service.py: the row exists when the alert opens);
- reading (the API's openAlerts, the daily digest) first catches up from history: every event since `Through` less
  OVERLAP (late commits from a skewed clock), however many — never a window of the newest N. A tenant with no
  meta row (a deployment from before these rows existed) reads its whole history once: nothing open is lost.
Acknowledge and snooze update the `o:` row (and the event row while history still holds it); resolution removes it.

Bound: at most MAX_OPEN rows per tenant. Past it (far beyond what one tenant's controls, settings and Conditional
Access policies can have open), repeats of an already open key go first, then the lowest severity; what is left out
is counted in a:meta, answered as `openAlertsOmitted` by the API and logged as an ERROR: never silent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.alerts.content import severity_rank
from shared.alerts.lifecycle import OPENING, RESOLVING, alert_key
from shared.model import format_time, parse_time_or_none
from shared.storage import event_rows, tenant_store
from shared.storage.entities import MAX_PROPERTY_CHARS

log = logging.getLogger("authwatch.alerts")

TABLE = "AuthwatchOpenAlerts"
META_ROW = "a:meta"
OPEN_PREFIX, OPEN_END = "o:", "o;"
RESOLVED_PREFIX = "r:"
MAX_OPEN = 500
MAX_OMITTED_LISTED = 200  # ids kept in a:meta (≈ 20,000 characters); past that only OmittedMore counts
OVERLAP = timedelta(hours=24)
TOMBSTONE_DAYS = 7  # > the alert worker's outage allowance (24 h) and OVERLAP: no older opening event comes late
ATTEMPTS = 4
_ANNOTATIONS = ("pending", "acknowledgedAt", "acknowledgedBy", "snoozedUntil", "acknowledged", "snoozed")
_LIFECYCLE = OPENING + RESOLVING


def key_hash(key: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]


def _moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else parse_time_or_none(value) if isinstance(value, str) else None


def _body(event: dict[str, Any]) -> str:
    """The event as stored for display, without a person's decisions (those are columns), within one property."""
    plain = {name: value for name, value in event.items() if name not in _ANNOTATIONS}
    text = json.dumps(plain, default=str)
    if len(text) > MAX_PROPERTY_CHARS:
        text = json.dumps({**plain, "details": {"truncated": True}, "summary": str(plain.get("summary"))[:2000]},
                          default=str)
    return text


@dataclass
class Stored:
    """One tenant's partition as read: meta (None: no row), open rows by event id, resolutions by key hash."""

    meta: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolved: dict[str, datetime] = field(default_factory=dict)

    @property
    def omitted(self) -> dict[str, list[Any]]:
        return json.loads((self.meta or {}).get("Omitted") or "{}")

    @property
    def omitted_count(self) -> int:
        return len(self.omitted) + int((self.meta or {}).get("OmittedMore") or 0)


@dataclass
class OpenAlerts:
    alerts: list[dict[str, Any]]  # newest first, each with acknowledged / snoozed
    omitted: int  # open alerts past the per-tenant bound, not listed


def plan(stored: Stored, events: list[dict[str, Any]], tenant_id: str, *,
         now: datetime) -> tuple[dict[str, dict[str, Any]], dict[str, datetime], dict[str, list[Any]], int]:
    """Pure: the rows, resolutions, omitted alerts and extra omitted count after applying `events`."""
    rows = {event_id: dict(row) for event_id, row in stored.rows.items()}
    resolved, omitted = dict(stored.resolved), stored.omitted
    more = int((stored.meta or {}).get("OmittedMore") or 0)
    for event in sorted(events, key=lambda e: str(e.get("at") or "")):
        key = alert_key(event)
        at = _moment(event.get("at"))
        if key is None or at is None or not event.get("id"):
            continue
        digest = key_hash(key)
        if event.get("type") in RESOLVING:
            closed = resolved[digest] = max(at, resolved.get(digest, at))
            rows = {i: row for i, row in rows.items() if not (row["KeyHash"] == digest and row["At"] <= closed)}
            omitted = {i: item for i, item in omitted.items()
                       if not (item[0] == digest and _moment(item[1]) <= closed)}
            continue
        if event.get("type") not in OPENING or (digest in resolved and at <= resolved[digest]) \
                or event["id"] in omitted:
            continue
        row = rows.get(event["id"]) or {}
        acked = row.get("AckedAt") or _moment(event.get("acknowledgedAt"))
        by = row.get("AckedBy")  # "" is an acknowledgement by nobody in particular: kept as it is
        if by is None and acked:
            by = event.get("acknowledgedBy")
        snoozes = [moment for moment in (row.get("SnoozedUntil"), _moment(event.get("snoozedUntil"))) if moment]
        rows[event["id"]] = {
            "PartitionKey": tenant_id, "RowKey": OPEN_PREFIX + event["id"], "EventId": event["id"],
            "KeyHash": digest, "At": at, "Type": str(event.get("type")), "Severity": str(event.get("severity") or ""),
            "Control": event.get("control"), "Body": _body(event), "AckedAt": acked,
            "AckedBy": by,
            "SnoozedUntil": max(snoozes) if snoozes else None}
    resolved = {digest: at for digest, at in resolved.items() if at >= now - timedelta(days=TOMBSTONE_DAYS)}
    for event_id in _over_bound(rows):
        row = rows.pop(event_id)
        if len(omitted) < MAX_OMITTED_LISTED:
            omitted[event_id] = [row["KeyHash"], format_time(row["At"])]
        else:
            more += 1
    return rows, resolved, omitted, more


def _over_bound(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The rows past MAX_OPEN: repeats of a key that stays open through its oldest row first, then the lowest
    severity, then the newest (an old open alert is the one people lose track of)."""
    if len(rows) <= MAX_OPEN:
        return []
    oldest: dict[str, datetime] = {}
    for row in rows.values():
        oldest[row["KeyHash"]] = min(row["At"], oldest.get(row["KeyHash"], row["At"]))

    def keep(row: dict[str, Any]) -> tuple[bool, int, float]:
        return row["At"] == oldest[row["KeyHash"]], severity_rank(row["Severity"]), -row["At"].timestamp()

    ranked = sorted(rows, key=lambda event_id: keep(rows[event_id]))
    return ranked[:len(rows) - MAX_OPEN]


def _public(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    event = json.loads(row["Body"])
    acked, snoozed = _moment(row.get("AckedAt")), _moment(row.get("SnoozedUntil"))
    return {**event, "acknowledgedAt": format_time(acked) if acked else None,
            "acknowledgedBy": row.get("AckedBy") or None,
            "snoozedUntil": format_time(snoozed) if snoozed else None,
            "acknowledged": acked is not None, "snoozed": snoozed is not None and snoozed > now}


class OpenAlertStore:
    def __init__(self, service: TableServiceClient) -> None:
        self._table = service.get_table_client(TABLE)
        self._history = service.get_table_client(tenant_store.TABLE)

    async def create(self) -> None:
        try:
            await self._table.create_table()
        except ResourceExistsError:
            pass

    async def close(self) -> None:
        await self._table.close()
        await self._history.close()

    async def load(self, tenant_id: str) -> Stored:
        stored = Stored()
        async for entity in self._table.query_entities("PartitionKey eq @tenant", parameters={"tenant": tenant_id}):
            key = entity["RowKey"]
            if key == META_ROW:
                stored.meta = entity
            elif key.startswith(OPEN_PREFIX):
                stored.rows[entity["EventId"]] = entity
            elif key.startswith(RESOLVED_PREFIX):
                stored.resolved[key[len(RESOLVED_PREFIX):]] = entity["ResolvedAt"]
        return stored

    # --- writing ---------------------------------------------------------------------------------------------------
    async def apply(self, tenant_id: str, events: list[dict[str, Any]], *, now: datetime,
                    through: datetime | None = None, stored: Stored | None = None) -> Stored:
        """Apply events (any order, any repeat) to the tenant's rows; `through`: history has been read up to it.
        Concurrent writers: the meta row is written last, conditionally; the loser reloads and applies again."""
        events = [event for event in events if event.get("type") in _LIFECYCLE]
        for attempt in range(ATTEMPTS):
            if stored is None or attempt:
                stored = await self.load(tenant_id)
            rows, resolved, omitted, more = plan(stored, events, tenant_id, now=now)
            written = await self._write(tenant_id, stored, rows, resolved)
            meta = {"PartitionKey": tenant_id, "RowKey": META_ROW, "Omitted": json.dumps(omitted),
                    "OmittedMore": more}
            kept = _moment((stored.meta or {}).get("Through"))
            if through is not None or kept is not None:
                meta["Through"] = max(moment for moment in (through, kept) if moment is not None)
            if not written and stored.meta is not None and all(stored.meta.get(name) == value
                                                               for name, value in meta.items()):
                return Stored(meta=stored.meta, rows=rows, resolved=resolved)  # nothing changed: nothing written
            if await self._write_meta(stored.meta, meta):
                dropped = len(omitted) + more - stored.omitted_count
                if dropped > 0:
                    log.error("open alerts past the per-tenant bound are left out of openAlerts and the digest",
                              extra={"tenant_id": tenant_id, "bound": MAX_OPEN, "omitted": len(omitted) + more})
                return Stored(meta=meta, rows=rows, resolved=resolved)
        raise ResourceModifiedError(f"tenant {tenant_id}: open-alert rows kept changing during {ATTEMPTS} attempts")

    async def _write(self, tenant_id: str, stored: Stored, rows: dict[str, dict[str, Any]],
                     resolved: dict[str, datetime]) -> int:
        """Write what differs from `stored`; returns how many rows changed."""
        operations: list[tuple[Any, ...]] = []
        for event_id, row in rows.items():
            old = stored.rows.get(event_id)
            if old is None or any(old.get(name) != value for name, value in row.items()):
                # MERGE: a person's decision written meanwhile (annotate) is kept, never overwritten by nothing.
                operations.append(("upsert", {name: value for name, value in row.items() if value is not None},
                                   {"mode": UpdateMode.MERGE}))
        operations += [("delete", {"PartitionKey": tenant_id, "RowKey": OPEN_PREFIX + event_id})
                       for event_id in stored.rows if event_id not in rows]
        operations += [("upsert", {"PartitionKey": tenant_id, "RowKey": RESOLVED_PREFIX + digest, "ResolvedAt": at},
                        {"mode": UpdateMode.REPLACE})
                       for digest, at in resolved.items() if stored.resolved.get(digest) != at]
        operations += [("delete", {"PartitionKey": tenant_id, "RowKey": RESOLVED_PREFIX + digest})
                       for digest in stored.resolved if digest not in resolved]
        batch: list[tuple[Any, ...]] = []
        size = 0
        for operation in operations:  # one transaction: ≤ 100 operations, ≤ 4 MiB (estimated with headroom)
            weight = len(json.dumps(operation[1], default=str)) * 2 + 1024
            if batch and (len(batch) == 100 or size + weight > 3_000_000):
                await self._submit(batch)
                batch, size = [], 0
            batch.append(operation)
            size += weight
        if batch:
            await self._submit(batch)
        return len(operations)

    async def _submit(self, operations: list[tuple[Any, ...]]) -> None:
        try:
            await self._table.submit_transaction(operations)
        except TableTransactionError:
            for operation in operations:  # one of them raced (a row deleted meanwhile): each on its own
                try:
                    if operation[0] == "delete":
                        await self._table.delete_entity(operation[1]["PartitionKey"], operation[1]["RowKey"])
                    else:
                        await self._table.upsert_entity(operation[1], mode=operation[2]["mode"])
                except ResourceNotFoundError:
                    pass

    async def _write_meta(self, old: dict[str, Any] | None, meta: dict[str, Any]) -> bool:
        try:
            if old is None:
                await self._table.create_entity(meta)
            else:
                await self._table.update_entity(meta, mode=UpdateMode.REPLACE, etag=old.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def annotate(self, tenant_id: str, event_id: str, *, acknowledged_at: datetime | None = None,
                       acknowledged_by: str | None = None, snoozed_until: datetime | None = None,
                       now: datetime) -> dict[str, Any] | None:
        """A person's decision on an open alert; None when no such alert is open (nothing is written then)."""
        changes: dict[str, Any] = {"PartitionKey": tenant_id, "RowKey": OPEN_PREFIX + event_id}
        if acknowledged_at is not None:
            changes.update(AckedAt=acknowledged_at, AckedBy=acknowledged_by or "")
        if snoozed_until is not None:
            changes["SnoozedUntil"] = snoozed_until
        try:
            await self._table.update_entity(changes, mode=UpdateMode.MERGE)  # never creates: 404 when not open
            return _public(await self._table.get_entity(tenant_id, OPEN_PREFIX + event_id), now)
        except ResourceNotFoundError:
            return None  # not open (or resolved this very moment)

    # --- reading ---------------------------------------------------------------------------------------------------
    async def catch_up(self, tenant_id: str, *, now: datetime) -> Stored:
        """Apply every lifecycle event history holds since the last catch-up (less OVERLAP), or all of it the first
        time; returns the tenant's rows."""
        stored = await self.load(tenant_id)
        through = _moment((stored.meta or {}).get("Through"))
        end = event_rows.events_before(min(through, now) - OVERLAP) if through else None
        types = " or ".join(f"Type eq @t{index}" for index in range(len(_LIFECYCLE)))
        # The spaces inside the brackets matter: the SDK finds the @names between spaces.
        query = f"PartitionKey eq @tenant and RowKey gt @start and RowKey lt @end and ( {types} )"
        parameters = {"tenant": tenant_id, "start": event_rows.EVENT_PREFIX, "end": end or event_rows.EVENT_END,
                      **{f"t{index}": kind for index, kind in enumerate(_LIFECYCLE)}}
        events = []
        try:
            async for entity in self._history.query_entities(query, parameters=parameters, select=[
                    "RowKey", "Body", "AckedAt", "AckedBy", "SnoozedUntil"]):
                events.append({**event_rows.stored_event(entity), **event_rows.annotations(entity)})
        except ResourceNotFoundError:
            pass  # no tenants table yet: no history
        if not events and stored.meta is not None and through is not None:
            return stored  # nothing new: no write
        newest = max((moment for event in events if (moment := _moment(event.get("at")))), default=None)
        # Never ahead of the clock: an event stamped in the future (a skewed worker) must not hide later ones.
        return await self.apply(tenant_id, events, now=now, stored=stored,
                                through=min(newest or through or now, now))

    async def open_alerts(self, tenant_id: str, *, now: datetime) -> OpenAlerts:
        """The tenant's open alerts, newest first, caught up with history first."""
        stored = await self.catch_up(tenant_id, now=now)
        alerts = [_public(row, now) for row in stored.rows.values()
                  if not (row["KeyHash"] in stored.resolved and row["At"] <= stored.resolved[row["KeyHash"]])]
        alerts.sort(key=lambda alert: (alert.get("at") or "", alert.get("id") or ""), reverse=True)
        return OpenAlerts(alerts=alerts, omitted=stored.omitted_count)

"""The cycle's part in "who changed it" for Exchange and SharePoint (shared/state/attribution_pending.py says why it
comes late): start one audit log query per tenant when a change is due, read it on a later cycle once Microsoft has
run it, fill the actor into the change's event row in place (no second alert), give up after 24 hours.

Runs before the commit, so what it learnt (the query it started, what is still pending) goes into the same state
write. Every Microsoft call here is bounded by its own deadline (AUDIT_DEADLINE_S, inside the tenant's); a refusal
(403: the app lacks AuditLogsQuery-*.Read.All, or the tenant has no audit log) leaves the change "not yet known"
with the reason, never a guessed actor.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.collect.audit_query import AuditQueryClient, AuditQueryError, QueryFilters, QueryHandle, token_getter
from shared.collect.connection import ConnectionPools, TenantAccess
from shared.collect.deadline import Deadline
from shared.collect.errors import IncompleteRead
from shared.model import format_time, parse_time_or_none
from shared.state import attribution_pending as pending_rules
from shared.state.attribution_audit import attribute, query_plans
from shared.storage.tenant_store import TenantStore

log = logging.getLogger("authwatch.attribution")

AUDIT_DEADLINE_S = 20.0


async def follow_up(access: TenantAccess, pools: ConnectionPools, graph_url: str, store: TenantStore,
                    attribution: dict[str, Any] | None, *, now: datetime) -> dict[str, Any] | None:
    """The tenant's attribution state after this cycle's step (None: nothing pending)."""
    state = dict(attribution or {})
    pending: list[dict[str, Any]] = list(state.get("pending") or [])
    if not pending:
        return None
    queries = [QueryHandle.from_json(q) for q in state.get("queries") or []]
    client = AuditQueryClient(pools.http(access.tenant_id), graph_url,
                              token_getter(pools.credential(access)), deadline=Deadline.after(AUDIT_DEADLINE_S))
    try:
        if queries:
            queries, records = await _read_finished(client, queries)
            if records is not None:
                pending = await _apply(store, access.tenant_id, pending, records)
        elif pending_rules.due(pending, parse_time_or_none(state.get("lastQueryAt")), now):
            plans = query_plans([pending_rules.observed(entry) for entry in pending])
            queries = [await client.start_query(QueryFilters(plan.start, plan.end, plan.record_types, plan.operations,
                                                             keyword=plan.keyword)) for plan in plans]
            state["lastQueryAt"] = format_time(now)
        state.pop("lastError", None)
    except (AuditQueryError, IncompleteRead) as error:
        reason = error.error if isinstance(error, AuditQueryError) else error
        state["lastError"] = str(getattr(reason, "message", reason))[:300]
        queries = []  # a refused or broken query is started again at the next due time
        log.warning("audit log query failed", extra={"tenant_id": access.tenant_id, "error": state["lastError"]})
    kept: list[dict[str, Any]] = []
    for entry in pending:
        if pending_rules.expired(entry, now):
            await _amend(store, access.tenant_id, entry, {"actor": pending_rules.GIVEN_UP,
                                                          "attributionError": state.get("lastError")})
        else:
            kept.append(entry)
    if not kept:
        return None
    state.update(pending=kept, queries=[q.to_json() for q in queries])
    return state


async def _read_finished(client: AuditQueryClient,
                         queries: list[QueryHandle]) -> tuple[list[QueryHandle], list[dict[str, Any]] | None]:
    """(queries still running, records of them all once every one has finished; None while any runs)."""
    polled = [await client.query_status(query) for query in queries]
    if not all(query.finished for query in polled):
        return polled, None
    records: list[dict[str, Any]] = []
    for query in polled:
        if query.succeeded:
            records.extend(await client.read_records(query))
    return [], records


async def _apply(store: TenantStore, tenant_id: str, pending: list[dict[str, Any]],
                 records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    left = []
    for entry in pending:
        found = attribute(pending_rules.observed(entry), records)
        if found is None:
            left.append(entry)
        else:
            await _amend(store, tenant_id, entry, pending_rules.attributed_details(found))
    return left


async def _amend(store: TenantStore, tenant_id: str, entry: dict[str, Any], details: dict[str, Any]) -> None:
    at = parse_time_or_none(entry.get("at"))
    if at is None:
        return
    try:
        await store.amend_event_details(tenant_id, str(entry["eventId"]), at, details)
    except LookupError:
        log.info("attributed event no longer in history", extra={"tenant_id": tenant_id})

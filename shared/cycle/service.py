"""Service functions: the one place that strings collect → compare → persist → enqueue together.

The Functions entry points, the CLI and the demo all call these, so every run mode does exactly the same work.

Crash safety (the outbox): a cycle's events are written in the SAME Table transaction as the new state, marked
pending; only then are they put on the `alerts` queue and marked sent. A crash before the commit loses nothing (the
retry collects and compares again); a crash after it leaves pending events that the next run of this tenant (the
retry, or the next cycle) enqueues first. A crash between enqueue and marking sent can enqueue an event twice; its
stable id lets delivery drop the copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.collect import MicrosoftEndpoints, TenantAccess, collect_tenant
from shared.collect.budget import RequestBudget
from shared.collect.connection import ConnectionPools
from shared.collect.deadline import DEFAULT_TENANT_DEADLINE_S, Deadline
from shared.collect.snapshot import CollectionHints
from shared.model import ControlResult, TenantSnapshot, format_time, parse_time_or_none
from shared.cycle.attribution import follow_up
from shared.state.attribution_pending import merged, pending_from
from shared.state.compare import DEFAULT_SIGNIN_OVERLAP, Comparison, compare, unread_signins, watermark
from shared.state.events import EVENT_TYPES, Event
from shared.storage.budget_ledger import BudgetLedger
from shared.storage.queues import JsonQueue
from shared.storage.tenant_store import ConcurrencyConflict, TenantRecord, TenantStore

log = logging.getLogger("authwatch")

# Two workers on one tenant: the loser reloads and compares again; more than this means something is wrong.
COMMIT_ATTEMPTS = 3


@dataclass
class Monitor:
    """Everything a cycle needs, built once (see shared.bootstrap)."""

    store: TenantStore
    alerts: JsonQueue
    endpoints: MicrosoftEndpoints
    history_days: int = 90
    signin_overlap: timedelta = DEFAULT_SIGNIN_OVERLAP  # see shared.state.compare.watermark
    # One deadline per tenant collection, inside functionTimeout (see shared.collect.deadline).
    tenant_deadline_s: float = DEFAULT_TENANT_DEADLINE_S
    # Shared by every collection in this process so a concurrent fleet stays under Microsoft's limits; built by
    # shared.bootstrap with this instance's share of the deployment's per-app budget (collect/budget_share.py).
    budget: RequestBudget | None = field(default_factory=RequestBudget)
    # Where the deployment's shared budgets are kept (None: this process has the whole budget).
    ledger: BudgetLedger | None = None
    # Likewise the connection pools to Microsoft (made on first use, per event loop). Given ones (the process's, see
    # ConnectionPools.for_process) outlive this monitor; its own are closed with it.
    pools: ConnectionPools | None = None

    def __post_init__(self) -> None:
        self._owns_pools = self.pools is None
        if self.pools is None:
            self.pools = ConnectionPools(self.endpoints)

    async def create(self) -> None:
        await self.store.create()
        await self.alerts.create()
        if self.ledger is not None:
            await self.ledger.create()

    async def close(self) -> None:
        if self.budget is not None:
            await self.budget.aclose()  # give this instance's share back at once rather than at its lease's end
        if self.ledger is not None:
            await self.ledger.close()
        await self.store.close()
        await self.alerts.close()
        if self.pools is not None and self._owns_pools:
            await self.pools.aclose()


@dataclass
class TenantOutcome:
    tenant_id: str
    display_name: str
    snapshot: TenantSnapshot | None = None
    results: list[ControlResult] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    enqueued: int = 0  # alerts handed to the queue by this run (its own and any left pending by a crash)
    failure: str | None = None  # what stopped this tenant's evaluation (storage down, a bug); never a secret

    @property
    def unreachable(self) -> bool:
        return self.snapshot is not None and self.snapshot.unreachable


async def _commit(monitor: Monitor, tenant_id: str, snapshot: TenantSnapshot, now: datetime,
                  record: TenantRecord, *, outbox_owed: bool = False,
                  attribution: dict | None = None) -> Comparison:
    """Compare against the stored state and commit atomically; on a conflict, start again from the winner's state
    (whose newer lastCollectedAt usually makes this snapshot stale: exactly one set of events survives).
    `outbox_owed`: earlier events are still pending (claimed by a run that never marked them sent)."""
    for attempt in range(COMMIT_ATTEMPTS):
        if attempt:
            record = await monitor.store.load(tenant_id)
        comparison = compare(record.state, record.baseline, snapshot, now=now)
        if comparison.stale:
            return comparison
        if comparison.clock_ahead is not None:
            log.warning("the stored state's time is %s ahead of this clock: ignored and replaced (check the clock of "
                        "whatever wrote it); sign-ins are read again over the whole evidence window",
                        comparison.clock_ahead, extra={"tenant_id": tenant_id, "outcome": "clock skew"})
        # An unreachable tenant keeps its last results on display; its state says why they are old.
        results = [] if snapshot.unreachable else comparison.results
        prune = _history_due(record.state, now)
        pruned_at = format_time(now) if prune else (record.state or {}).get("historyPrunedAt")
        if pruned_at:  # carried over: compare builds a new state, and without it every other cycle pruned again
            comparison.state["historyPrunedAt"] = pruned_at
        _remember_attribution(comparison, attribution, parse_time_or_none((record.state or {}).get("lastCollectedAt")))
        # Tells the next run whether an outbox flush may be owed, so a quiet cycle costs no extra query.
        comparison.state["outboxPending"] = bool(comparison.events or comparison.notes or outbox_owed)
        try:
            await monitor.store.commit(
                tenant_id, state=comparison.state, expected_etag=record.state_etag, results=results,
                evaluated_at=now, events=[e.to_record() for e in comparison.events + comparison.notes],
                baseline=comparison.baseline, stored=record)  # unchanged result rows are not rewritten
            if prune:
                await monitor.store.prune_history(tenant_id, now - timedelta(days=monitor.history_days))
            return comparison
        except ConcurrencyConflict:
            log.info("state changed under us; comparing again", extra={"tenant_id": tenant_id})
    raise ConcurrencyConflict(f"tenant {tenant_id}: state kept changing during {COMMIT_ATTEMPTS} attempts")


def _remember_attribution(comparison: Comparison, attribution: dict | None, since: datetime | None) -> None:
    """This cycle's Exchange/SharePoint changes whose actor is not yet known join those still pending."""
    new = pending_from(comparison.events, since)
    kept, _dropped = merged((attribution or {}).get("pending"), new)  # dropped: past MAX_PENDING, stays unknown
    if kept:
        comparison.state["attribution"] = {**(attribution or {}), "pending": kept}


async def _attribution_step(monitor: Monitor, access: TenantAccess, state: dict | None, now: datetime) -> dict | None:
    """Who made the Exchange/SharePoint changes still pending (cycle/attribution.py); a failure here never stops the
    tenant's evaluation: what was pending stays pending."""
    previous = (state or {}).get("attribution")
    if not previous or monitor.pools is None:
        return previous
    try:
        return await follow_up(access, monitor.pools, monitor.endpoints.graph, monitor.store, previous, now=now)
    except Exception as error:  # noqa: BLE001 - attribution is extra; the verdicts must still be stored
        log.warning("attribution step failed", extra={"tenant_id": access.tenant_id, "error": type(error).__name__})
        return previous


def hints_from(state: dict | None) -> CollectionHints | None:
    """What the stored configuration tells the collector (which audits are worth reading)."""
    config = (state or {}).get("config") or {}
    if "conditionalAccess" not in config:
        return None
    return CollectionHints(
        known_block_policy_ids=frozenset(key.removeprefix("ca:") for key in config["conditionalAccess"]),
        security_defaults=(config.get("securityDefaults") or {}).get("securityDefaults.isEnabled"))


def _history_due(state: dict | None, now: datetime) -> bool:
    """Old history is pruned at most once a day per tenant, riding on a cycle that writes anyway."""
    last = parse_time_or_none((state or {}).get("historyPrunedAt"))
    return state is not None and (last is None or now - last >= timedelta(days=1))


async def flush_outbox(monitor: Monitor, tenant_id: str, *, now: datetime) -> int:
    """Hand the tenant's pending events to the alerts queue, then mark them sent. Returns how many alerts went.

    Events are claimed first (a short lease on their rows), so two workers flushing one tenant never both send."""
    claimed = await monitor.store.claim_pending(tenant_id, now=now)
    alerts = [record for record in claimed if record.get("type") in EVENT_TYPES]  # notes are history only
    for record in alerts:
        await monitor.alerts.send(record)
    if claimed:
        await monitor.store.mark_sent(tenant_id, [record["id"] for record in claimed])
    return len(alerts)


async def evaluate_tenant(access: TenantAccess, monitor: Monitor, *, now: datetime,
                          record: TenantRecord | None = None) -> TenantOutcome:
    """Collect, compare, persist and enqueue one tenant. Failures become part of the outcome; nothing escapes.
    `record`: the tenant's stored record when the caller has just loaded it (the queue worker does)."""
    outcome = TenantOutcome(tenant_id=access.tenant_id, display_name=access.display_name or access.tenant_id)
    started = time.monotonic()
    stage = "load"
    try:
        record = record or await monitor.store.load(access.tenant_id)
        owed = False
        if (record.state or {}).get("outboxPending"):
            # Events an earlier run persisted but may not have queued (it crashed): they go first.
            outcome.enqueued += await flush_outbox(monitor, access.tenant_id, now=now)
            # Any left are still claimed by a run that failed or died after claiming them (a queue retry comes
            # sooner than the claim lapses): keep the flag, or no later run would ever send them.
            owed = bool(await monitor.store.pending_events(access.tenant_id))
        stage = "collect"
        outcome.snapshot = await collect_tenant(access, monitor.endpoints, now=now,
                                                since=watermark(record.state, monitor.signin_overlap),
                                                backlog=unread_signins(record.state),
                                                budget=monitor.budget, hints=hints_from(record.state),
                                                pools=monitor.pools,
                                                deadline=Deadline.after(monitor.tenant_deadline_s))
        stage = "attribute"
        attribution = await _attribution_step(monitor, access, record.state, now)
        stage = "persist"
        comparison = await _commit(monitor, access.tenant_id, outcome.snapshot, now, record, outbox_owed=owed,
                                   attribution=attribution)
        outcome.results, outcome.events = comparison.results, comparison.events
        stage = "enqueue"
        if comparison.events or comparison.notes:
            outcome.enqueued += await flush_outbox(monitor, access.tenant_id, now=now)
        stage = "done"
    except Exception as error:  # noqa: BLE001 - one tenant's failure must not stop the fleet
        outcome.failure = f"{stage} failed: {type(error).__name__}: {error}"
    log.info(
        "tenant evaluated",
        extra={"tenant_id": access.tenant_id, "stage": stage, "outcome": "failed" if outcome.failure else "ok",
               "events": len(outcome.events), "unreachable": outcome.unreachable,
               "duration_ms": round((time.monotonic() - started) * 1000)},
    )
    return outcome


async def run_cycle(tenants: list[TenantAccess], monitor: Monitor, *, now: datetime,
                    concurrency: int = 16) -> list[TenantOutcome]:
    """Evaluate a fleet concurrently over the monitor's shared connection pools; results keep the input order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(access: TenantAccess) -> TenantOutcome:
        async with gate:
            return await evaluate_tenant(access, monitor, now=now)

    await monitor.create()
    return list(await asyncio.gather(*(one(access) for access in tenants)))


async def accept_baseline(store: TenantStore, tenant_id: str) -> dict:
    """Adopt the tenant's current configuration as its approved baseline (after a deliberate change)."""
    record = await store.load(tenant_id)
    if not record.state or not record.state.get("config"):
        raise LookupError(f"tenant {tenant_id} has not been evaluated yet: there is no configuration to accept")
    await store.save_baseline(tenant_id, record.state["config"])
    return record.state["config"]


async def prune_history(store: TenantStore, tenant_id: str, *, now: datetime, keep_days: int) -> int:
    return await store.prune_history(tenant_id, now - timedelta(days=keep_days))

"""The fleet: the timer's fan-out (one queue message per due tenant) and the queue worker's path for one
registered tenant. Azure Functions with Storage queues is the scale-out engine; this only decides what to queue.

Overlapping timers never double the work: a tenant is queued only after its in-flight lease (a conditional update
on its registry row) is won, and the lease lapses on its own if the worker dies.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from shared.cycle.service import Monitor, TenantOutcome, evaluate_tenant
from shared.model import format_time
from shared.storage.queues import JsonQueue
from shared.tenants.config import TenantConfig, domain_names, due
from shared.tenants.registry import TenantRegistry

log = logging.getLogger("authwatch.fleet")

EVALUATIONS_QUEUE = "evaluations"
# How long a queued evaluation may take before another timer may queue the tenant again. The lease is never
# released early (that would cost a write per tenant per cycle): it is shorter than the interval instead.
IN_FLIGHT_LEASE = timedelta(minutes=10)


def in_flight_lease(interval_minutes: int) -> timedelta:
    return min(IN_FLIGHT_LEASE, timedelta(minutes=interval_minutes) / 2)


@dataclass
class Fleet:
    registry: TenantRegistry
    monitor: Monitor
    evaluations: JsonQueue
    default_minutes: int = 15
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    async def create(self) -> None:
        await self.registry.create()
        await self.monitor.create()
        await self.evaluations.create()

    async def close(self) -> None:
        await self.registry.close()
        await self.monitor.close()
        await self.evaluations.close()


@dataclass(frozen=True)
class FanOut:
    queued: list[str]
    not_due: int
    in_flight: int
    disabled: int


async def fan_out(fleet: Fleet, *, now: datetime, reason: str = "schedule") -> FanOut:
    """Queue one evaluation per enabled, due tenant whose lease this call wins."""
    queued: list[str] = []
    not_due = in_flight = disabled = 0
    for config, row in await fleet.registry.list_rows():
        if not config.enabled:
            disabled += 1
            continue
        if not due(config, now, fleet.default_minutes):
            not_due += 1
            continue
        lease = in_flight_lease(config.schedule_minutes or fleet.default_minutes)
        if not await fleet.registry.claim_in_flight(config.tenant_id, now=now, lease=lease, row=row):
            in_flight += 1
            continue
        await fleet.evaluations.send(evaluation_message(config, now, reason))
        queued.append(config.tenant_id)
    log.info("fan-out", extra={"queued": len(queued), "not_due": not_due, "in_flight": in_flight,
                               "disabled": disabled})
    return FanOut(queued, not_due, in_flight, disabled)


def evaluation_message(config: TenantConfig, now: datetime, reason: str) -> dict:
    """The queue message names the tenant, not its settings: a message can wait (retries, a backlog) while the tenant
    is disabled or its credential fixed, and the worker must act on the registry as it is then."""
    return {"tenantId": config.tenant_id, "requestedAt": format_time(now), "reason": reason}


class EvaluationFailed(RuntimeError):
    """The worker could not finish (storage down, a bug): raised so the queue retries the message."""


async def evaluate_registered(fleet: Fleet, tenant_id: str, *, now: datetime) -> TenantOutcome | None:
    """The queue worker's job for one message. A disabled or unknown tenant is logged and skipped (never
    retried forever); an unreachable tenant is a result, not a failure; anything else raises for a retry.
    The registry's current row decides (one point read), never a copy a message carried from when it was queued:
    a tenant disabled, or its credential fixed, since then is treated as it is now."""
    config = await fleet.registry.get(tenant_id)
    if config is None or not config.enabled:
        log.warning("evaluation skipped", extra={"tenant_id": tenant_id,
                                                 "outcome": "unknown tenant" if config is None else "disabled"})
        return None
    outcome = await evaluate_tenant(config.access(fleet.env), fleet.monitor, now=now)
    if outcome.failure:
        await fleet.registry.record_outcome(tenant_id, success=False, at=now, error=outcome.failure)
        raise EvaluationFailed(f"tenant {tenant_id}: {outcome.failure}")
    error = None
    if outcome.unreachable and outcome.snapshot:
        first = next(iter(outcome.snapshot.errors.values()))
        error = f"unreachable: {first.code}: {first.message}"
    # The state row already records every success; the registry is written only when its story changes
    # (a failure, or the first success after failures), so a quiet cycle adds no registry write.
    if error is not None or config.consecutive_failures or config.last_error:
        await fleet.registry.record_outcome(tenant_id, success=error is None, at=now, error=error)
    # Its domain names, so people can name it by them; written only when they change (the first cycle, mostly).
    if outcome.snapshot is not None and outcome.snapshot.collected("graph.organization"):
        domains = domain_names(outcome.snapshot.get("graph.organization"))
        if domains and domains != config.verified_domains:
            await fleet.registry.record_domains(tenant_id, domains)
    return outcome


async def record_poison(fleet: Fleet, tenant_id: str | None, *, now: datetime, body: str) -> None:
    """A message that failed every retry: recorded against its tenant (visible in the API), never dropped quietly."""
    if tenant_id is None:
        log.error("poison evaluation message without a tenant id", extra={"body": body[:200]})
        return
    try:
        await fleet.registry.record_outcome(tenant_id, success=False, at=now,
                                            error="evaluation failed on every retry (poison message); see the logs")
    except (LookupError, ValueError):
        log.error("poison evaluation message for an unknown tenant", extra={"tenant_id": str(tenant_id)[:64]})
        return
    await fleet.registry.release_in_flight(tenant_id)
    log.error("poison evaluation message", extra={"tenant_id": tenant_id})

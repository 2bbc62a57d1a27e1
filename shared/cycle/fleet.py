"""The fleet: the timer's fan-out (one queue message per due tenant) and the queue worker's path for one
registered tenant. Azure Functions with Storage queues is the scale-out engine; this only decides what to queue.

Overlapping timers never double the work: a tenant is queued only after its in-flight lease (a conditional update
on its registry row) is won, and the lease lapses on its own if the worker dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from shared.cycle.service import Monitor, TenantOutcome, evaluate_tenant
from shared.model import format_time
from shared.storage.errors import StorageUnavailable
from shared.storage.queues import JsonQueue
from shared.tenants.config import RegistryError, TenantConfig, domain_names, due
from shared.tenants.registry import TenantRegistry

log = logging.getLogger("authwatch.fleet")

EVALUATIONS_QUEUE = "evaluations"
# How long a queued evaluation may take before another timer may queue the tenant again. The lease is never
# released early (that would cost a write per tenant per cycle): it is shorter than the interval instead. (Only a
# fan-out whose queue send failed gives its lease back: no message will ever finish that evaluation.)
IN_FLIGHT_LEASE = timedelta(minutes=10)
# How many storage calls the fan-out has in flight at once: queue sends, and the claims that fall back to one tenant
# at a time. (In sequence, 10,000 tenants were 20,000 round trips end to end.) Every send goes to one queue, which
# Azure targets at up to 2,000 messages a second; at the few to ~20 ms a call takes within a region, 48 in flight
# reach about that rate, and more would buy 503 Server Busy answers, not speed. 48 also stays below aiohttp's 100
# connections per client, so no call waits for a pooled connection. Against Azurite the fan-out is bound by the
# SDK's CPU per send (~2 ms), not by waiting: benchmarks/fan_out.py.
#   https://learn.microsoft.com/azure/storage/queues/scalability-targets
FAN_OUT_CONCURRENCY = 48
# Leases are claimed CLAIM_CHUNK tenants to one registry transaction (its maximum: 100 entities of one partition), so
# 10,000 tenants cost 100 Table requests, not 10,000 (still 10,000 entity writes against the partition's target of
# 2,000 a second: https://learn.microsoft.com/azure/storage/tables/scalability-targets); CLAIMERS chunks at a time,
# so one chunk's claim overlaps the previous chunk's sends.
CLAIM_CHUNK = 100
CLAIMERS = 2


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
    failed: int = 0  # due, but not queued because of an error (logged); the next timer tries them again


@dataclass
class _Tally:
    queued: list[tuple[int, str]] = field(default_factory=list)  # (position in the registry's order, tenant id)
    not_due: int = 0
    in_flight: int = 0
    disabled: int = 0
    failed: int = 0
    unavailable: StorageUnavailable | None = None

    def due_chunks(self, rows: list[tuple[TenantConfig, dict[str, Any]]], now: datetime,
                   default_minutes: int) -> Iterator[list[tuple[int, TenantConfig, dict[str, Any]]]]:
        chunk: list[tuple[int, TenantConfig, dict[str, Any]]] = []
        for index, (config, row) in enumerate(rows):
            if not config.enabled:
                self.disabled += 1
            elif not due(config, now, default_minutes):
                self.not_due += 1
            else:
                chunk.append((index, config, row))
                if len(chunk) == CLAIM_CHUNK:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def fail(self, tenant_ids: list[str], step: str, error: Exception) -> None:
        self.failed += len(tenant_ids)
        if isinstance(error, StorageUnavailable) and self.unavailable is None:
            self.unavailable = error
        log.error("fan-out: tenant not queued" if len(tenant_ids) == 1 else "fan-out: tenants not queued",
                  extra={"tenant_id": ",".join(tenant_ids[:3]) + (",…" if len(tenant_ids) > 3 else ""),
                         "tenants": len(tenant_ids), "step": step,
                         "error": f"{type(error).__name__}: {error}"[:300]})


async def fan_out(fleet: Fleet, *, now: datetime, reason: str = "schedule",
                  concurrency: int = FAN_OUT_CONCURRENCY) -> FanOut:
    """Queue one evaluation per enabled, due tenant whose lease this call wins.

    The due tenants go in chunks of CLAIM_CHUNK: each chunk's leases are claimed in one registry transaction, then
    its won tenants are sent, at most `concurrency` storage calls at a time; CLAIMERS chunks are worked on at once,
    so one chunk's claim overlaps another's sends. Tasks and connections stay bounded at any fleet size. A message
    is sent only once its lease is won. One tenant's error is counted in `failed` and logged, and never stops the
    others: a failed claim leaves the lease to itself (whether it was written is unknown; if it was, it lapses after
    `in_flight_lease`); a send that fails after the claim won gives the lease back, so the next timer queues the
    tenant again (should the send have reached the queue after all, the tenant is evaluated twice, which the
    worker's ETag-guarded commit tolerates). Once a call finds the storage account unreachable (StorageUnavailable,
    after up to ~10 s: shared/storage/account.py) no further chunk is started, as each would wait as long; its
    tenants count as failed and the next timer tries them. `queued` keeps the registry's order."""
    tally = _Tally()
    chunks = tally.due_chunks(await fleet.registry.list_rows(), now, fleet.default_minutes)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def claimer() -> None:
        for chunk in chunks:  # a plain generator shared by the claimers: each next() runs through, no await inside
            if tally.unavailable is not None:
                tally.failed += len(chunk)
                continue
            await _queue_chunk(fleet, tally, gate, chunk, now=now, reason=reason)

    await asyncio.gather(*(claimer() for _ in range(CLAIMERS)))
    queued = [tenant_id for _, tenant_id in sorted(tally.queued)]
    counts = {"queued": len(queued), "not_due": tally.not_due, "in_flight": tally.in_flight,
              "disabled": tally.disabled, "failed": tally.failed}
    if tally.failed:
        log.error("fan-out: some due tenants were not queued; the next timer tries them again",
                  extra={**counts, "storage": str(tally.unavailable) if tally.unavailable else "reachable"})
    log.info("fan-out", extra=counts)
    return FanOut(queued, tally.not_due, tally.in_flight, tally.disabled, tally.failed)


async def _queue_chunk(fleet: Fleet, tally: _Tally, gate: asyncio.Semaphore,
                       chunk: list[tuple[int, TenantConfig, dict[str, Any]]], *, now: datetime, reason: str) -> None:
    leases = [in_flight_lease(config.schedule_minutes or fleet.default_minutes) for _, config, _ in chunk]
    try:
        async with gate:
            decided = await fleet.registry.claim_in_flight_rows(
                [(row, lease) for (_, _, row), lease in zip(chunk, leases)], now=now)
    except Exception as error:  # noqa: BLE001 - one chunk's failure must not stop the fan-out
        tally.fail([config.tenant_id for _, config, _ in chunk], "lease claim", error)
        return
    await asyncio.gather(*(_queue_one(fleet, tally, gate, index, config, row, lease, won, now=now, reason=reason)
                           for (index, config, row), lease, won in zip(chunk, leases, decided)))


async def _queue_one(fleet: Fleet, tally: _Tally, gate: asyncio.Semaphore, index: int, config: TenantConfig,
                     row: dict[str, Any], lease: timedelta, won: bool | None, *, now: datetime, reason: str) -> None:
    tenant_id = config.tenant_id
    async with gate:
        try:
            if won is None:  # its transaction was refused (a row changed meanwhile): claim it on its own
                won = await fleet.registry.claim_in_flight(tenant_id, now=now, lease=lease, row=row)
            if not won:
                tally.in_flight += 1
                return
        except Exception as error:  # noqa: BLE001 - one tenant's failure must not stop the fan-out
            tally.fail([tenant_id], "lease claim", error)
            return
        try:
            await fleet.evaluations.send(evaluation_message(config, now, reason))
        except Exception as error:  # noqa: BLE001 - as above; the lease is ours and no message will finish it
            tally.fail([tenant_id], "queue send", error)
            try:
                await fleet.registry.release_in_flight(tenant_id)
            except Exception as release_error:  # noqa: BLE001
                log.warning("fan-out: lease not given back; it lapses on its own",
                            extra={"tenant_id": tenant_id, "lapses_at": format_time(now + lease),
                                   "error": f"{type(release_error).__name__}: {release_error}"[:300]})
            return
    tally.queued.append((index, tenant_id))


# A queue message holds at most 64 KiB, base64-encoded here (shared/storage/queues.py), so 48 KiB of JSON; a
# configuration bigger than this (approvedExclusions may take 32,000 characters) is left out of the message.
#   https://learn.microsoft.com/rest/api/storageservices/put-message
MESSAGE_CONFIG_CHARS = 16_000


def evaluation_message(config: TenantConfig, now: datetime, reason: str) -> dict:
    """The queue message: the tenant, and what the worker needs of its configuration as it was read for this message
    (TenantConfig.worker_json: no secrets, the credential names app settings) with the registry version it was read
    at. A message can wait (retries, a backlog) while the tenant is disabled or its credential fixed; the worker uses
    the copy only when the tenant's change marker shows no change since (see evaluate_registered)."""
    message: dict[str, Any] = {"tenantId": config.tenant_id, "requestedAt": format_time(now), "reason": reason}
    carried = config.worker_json()
    if len(json.dumps(carried, separators=(",", ":"))) <= MESSAGE_CONFIG_CHARS:
        message["config"] = carried
    return message


def _carried(message: Mapping[str, Any] | None, tenant_id: str) -> TenantConfig | None:
    """The configuration a message carries for this tenant; None when it carries none (an older message, one too
    big to carry it) or one that does not read back."""
    data = message.get("config") if isinstance(message, Mapping) else None
    if not isinstance(data, dict) or "configVersion" not in data:
        return None
    try:
        config = TenantConfig.from_worker_json(data)
    except RegistryError:
        log.warning("evaluation message with an unreadable config; reading the registry",
                    extra={"tenant_id": tenant_id})
        return None
    return config if config.tenant_id == tenant_id.lower() else None


class EvaluationFailed(RuntimeError):
    """The worker could not finish (storage down, a bug): raised so the queue retries the message."""


async def evaluate_registered(fleet: Fleet, tenant_id: str, *, now: datetime,
                              message: Mapping[str, Any] | None = None) -> TenantOutcome | None:
    """The queue worker's job for one message. A disabled or unknown tenant is logged and skipped (never
    retried forever); an unreachable tenant is a result, not a failure; anything else raises for a retry.

    The registry as it is now decides, never as it was when the message was queued: a tenant disabled, or its
    credential fixed, since then is treated as it is now. A steady tenant costs two Table transactions: the state
    load, whose one query also returns the tenant's registry change marker, and the commit. The configuration the
    `message` carries is used when the marker is no newer than it (shared/tenants/registry.py raises the marker
    before every change that matters here); otherwise, or when the message carries none, the registry row is read
    (one point read more)."""
    carried = _carried(message, tenant_id)
    record = failure = None
    if carried is None:
        config = await fleet.registry.get(tenant_id)
    else:
        try:
            record = await fleet.monitor.store.load(tenant_id)
        except Exception as error:  # noqa: BLE001 - booked and retried as evaluate_tenant's own load failure is
            failure = f"load failed: {type(error).__name__}: {error}"
        fresh = record is not None and record.registry_version <= carried.config_version
        config = carried if fresh else await fleet.registry.get(tenant_id)
    if config is None or not config.enabled:
        log.warning("evaluation skipped", extra={"tenant_id": tenant_id,
                                                 "outcome": "unknown tenant" if config is None else "disabled"})
        return None
    if failure is not None:
        log.info("tenant evaluated", extra={"tenant_id": tenant_id, "stage": "load", "outcome": "failed"})
        outcome = TenantOutcome(tenant_id=tenant_id, display_name=config.display_name, failure=failure)
    else:
        outcome = await evaluate_tenant(config.access(fleet.env), fleet.monitor, now=now, record=record)
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

"""Service functions: the one place that strings collect → evaluate → persist together.

The Functions entry points, the CLI and the demo all call these, so every run mode does exactly the same work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from shared.collect import MicrosoftEndpoints, TenantAccess, collect_tenant
from shared.collect.connection import http_client
from shared.evaluate import evaluate
from shared.model import ControlResult, TenantSnapshot
from shared.storage.results import ResultStore

log = logging.getLogger("authwatch")


@dataclass
class TenantOutcome:
    tenant_id: str
    display_name: str
    snapshot: TenantSnapshot | None = None
    results: list[ControlResult] = field(default_factory=list)
    failure: str | None = None  # what stopped this tenant's evaluation (storage down, a bug); never a secret

    @property
    def unreachable(self) -> bool:
        return self.snapshot is not None and self.snapshot.unreachable


async def evaluate_tenant(access: TenantAccess, endpoints: MicrosoftEndpoints, store: ResultStore, *,
                          now: datetime, http=None) -> TenantOutcome:
    """Collect, evaluate and persist one tenant. Failures become part of the outcome; nothing escapes."""
    outcome = TenantOutcome(tenant_id=access.tenant_id, display_name=access.display_name or access.tenant_id)
    started = time.monotonic()
    stage = "collect"
    try:
        outcome.snapshot = await collect_tenant(access, endpoints, now=now, http=http)
        stage = "evaluate"
        outcome.results = evaluate(outcome.snapshot)
        stage = "persist"
        await store.save(access.tenant_id, outcome.results, now)
        stage = "done"
    except Exception as error:  # noqa: BLE001 - one tenant's failure must not stop the fleet
        outcome.failure = f"{stage} failed: {type(error).__name__}: {error}"
    log.info(
        "tenant evaluated",
        extra={"tenant_id": access.tenant_id, "stage": stage, "outcome": "failed" if outcome.failure else "ok",
               "unreachable": outcome.unreachable, "duration_ms": round((time.monotonic() - started) * 1000)},
    )
    return outcome


async def run_cycle(tenants: list[TenantAccess], endpoints: MicrosoftEndpoints, store: ResultStore, *,
                    now: datetime, concurrency: int = 16) -> list[TenantOutcome]:
    """Evaluate a fleet concurrently over one shared connection pool; results keep the input order."""
    gate = asyncio.Semaphore(concurrency)
    http = http_client(endpoints)

    async def one(access: TenantAccess) -> TenantOutcome:
        async with gate:
            return await evaluate_tenant(access, endpoints, store, now=now, http=http)

    try:
        await store.create()
        return list(await asyncio.gather(*(one(access) for access in tenants)))
    finally:
        await http.aclose()

"""The one wiring point: real adapters built from settings (Cosmic Python's bootstrap)."""

from __future__ import annotations

import asyncio
import os
import weakref
from datetime import timedelta
from collections.abc import AsyncGenerator
from typing import Mapping

from shared.collect.budget import RequestBudget
from shared.collect.budget_share import SharedShare
from shared.collect.connection import ConnectionPools
from shared.cycle.fleet import EVALUATIONS_QUEUE, Fleet
from shared.cycle.service import Monitor
from shared.logs import configure_observability
from shared.settings import Settings
from shared.storage.budget_ledger import BudgetLedger
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from shared.tenants.registry import TenantRegistry


def shared_budget(ledger: BudgetLedger) -> RequestBudget:
    """The Microsoft limits with this instance's share of each app registration's budget, kept in `ledger`."""
    return RequestBudget(app_budget=lambda app, limit: SharedShare(ledger, f"reports.{app or 'none'}", limit))


def build_monitor(settings: Settings) -> Monitor:
    ledger = BudgetLedger.from_connection_string(settings.storage)
    return Monitor(
        budget=shared_budget(ledger),
        ledger=ledger,
        store=TenantStore.from_connection_string(settings.storage),
        alerts=JsonQueue.from_connection_string(settings.storage, ALERTS_QUEUE),
        endpoints=settings.endpoints,
        history_days=settings.history_days,
        signin_overlap=timedelta(hours=settings.signin_overlap_hours),
        tenant_deadline_s=float(settings.tenant_deadline_seconds),
        pools=ConnectionPools.for_process(settings.endpoints),
    )


def build_fleet(env: Mapping[str, str] | None = None) -> Fleet:
    """Everything the Functions entry points need. Storage clients are cheap: each invocation builds and closes its
    own. The connections to Microsoft (TLS, token sessions) are the process's, reused by every invocation on the
    same event loop and rebuilt on a new one (see ConnectionPools)."""
    env = os.environ if env is None else env
    configure_observability()
    settings = Settings.from_env(env)
    return Fleet(
        registry=TenantRegistry.from_connection_string(settings.storage),
        monitor=build_monitor(settings),
        evaluations=JsonQueue.from_connection_string(settings.storage, EVALUATIONS_QUEUE),
        default_minutes=settings.interval_minutes,
        env=env,
    )


_PROCESS_FLEETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Settings, asyncio.Future[Fleet]]] = (
    weakref.WeakKeyDictionary())


async def process_fleet(env: Mapping[str, str] | None = None) -> Fleet:
    """The fleet of this process and event loop, built and created once and reused by every queue invocation.

    Why: a Functions instance runs many invocations on one event loop. Building a fleet per message cost a round of
    table/queue creates (storage transactions) and, worse, a request budget per message; this instance's share of
    the deployment's budget (its ledger lease) must live as long as the instance does. It is never closed: it goes
    with the process (its budget share leaves the ledger when idle, or lapses within seconds if the process dies)."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    fleets = _PROCESS_FLEETS.setdefault(asyncio.get_running_loop(), {})
    if settings not in fleets or (fleets[settings].done() and fleets[settings].exception() is not None):
        fleets[settings] = asyncio.ensure_future(_created(build_fleet(env)))
    return await asyncio.shield(fleets[settings])


async def _created(fleet: Fleet) -> Fleet:
    await fleet.create()
    closer = _closed_with_loop(fleet)
    await anext(closer)
    # Kept referenced with the loop: the loop holds async generators weakly.
    _CLOSERS.setdefault(asyncio.get_running_loop(), []).append(closer)
    return fleet


_CLOSERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[AsyncGenerator[None, None]]] = (
    weakref.WeakKeyDictionary())


async def _closed_with_loop(fleet: Fleet) -> AsyncGenerator[None, None]:
    # When the event loop shuts down (asyncio.run() finalises every suspended async generator), the fleet's storage
    # clients are closed there instead of leaving unclosed sessions behind.
    try:
        yield
    finally:
        await fleet.close()

"""The state service over real storage and real HTTP: concurrency, crash safety (the outbox) and incremental
evidence. Azurite plays Table + Queue storage, the simulator plays Microsoft."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from shared.collect import TenantAccess
from shared.cycle.service import Monitor, evaluate_tenant
from shared.storage.queues import JsonQueue
from shared.storage.tenant_store import TenantStore
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "state-secret"}
T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def scenario(tenant_id: str, *, smtp_disabled=True) -> dict:
    return {"app": dict(APP), "tenants": [{
        "tenantId": tenant_id, "displayName": "Contoso",
        "graph": {"conditionalAccessPolicies": [block_policy(modifiedDateTime="2025-01-01T00:00:00Z")]},
        "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                         "SmtpClientAuthenticationDisabled": smtp_disabled}}}]}


@pytest.fixture
def queue_name() -> str:
    return f"alerts{uuid.uuid4().hex[:12]}"  # each test reads only its own alerts


def monitor_for(connection: str, sim, queue: str) -> Monitor:
    return Monitor(TenantStore.from_connection_string(connection), JsonQueue.from_connection_string(connection, queue),
                   endpoints_for(sim))


def access(tenant_id: str) -> TenantAccess:
    return TenantAccess(tenant_id, APP["clientId"], APP["clientSecret"])


async def cycle(connection: str, sim, queue: str, tenant_id: str, now: datetime, workers: int = 1):
    monitor = monitor_for(connection, sim, queue)
    try:
        await monitor.create()
        return await asyncio.gather(*(evaluate_tenant(access(tenant_id), monitor, now=now) for _ in range(workers)))
    finally:
        await monitor.close()


async def inspect(connection: str, queue: str, tenant_id: str):
    async with TenantStore.from_connection_string(connection) as store, \
            JsonQueue.from_connection_string(connection, queue) as alerts:
        return await store.history(tenant_id, limit=500), await store.pending_events(tenant_id), \
            await alerts.receive_all()


def test_two_workers_on_one_tenant_leave_exactly_one_set_of_events(simulator_for, storage_connection_string,
                                                                   queue_name):
    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant))
    asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1))
    sim.update_tenant(tenant, lambda t: t["exchange"]["transportConfig"].update(SmtpClientAuthenticationDisabled=False))
    later = T1 + timedelta(minutes=15)
    outcomes = asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, later, workers=2))
    assert [o.failure for o in outcomes] == [None, None]
    history, pending, alerts = asyncio.run(inspect(storage_connection_string, queue_name, tenant))
    raised = [(e["type"], e["control"]) for e in history if e["at"] == "2026-11-23T08:15:00Z"]
    assert sorted(raised) == [("basic_auth.reenabled", "exo_smtp_auth_disabled"),
                              ("control.failed", "exo_smtp_auth_disabled")]
    assert pending == []
    later_alerts = [a for a in alerts if a["at"] == "2026-11-23T08:15:00Z"]
    assert sorted((a["type"], a["control"]) for a in later_alerts) == sorted(raised)
    assert len({a["id"] for a in alerts}) == len(alerts)


def run_child(config: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.integration.worker_child", json.dumps(config)],
                          capture_output=True, text=True, timeout=120)


def child_config(connection: str, sim, tenant: str, now: datetime, crash_at: str | None) -> dict:
    return {"connection": connection, "url": sim.url, "graph": sim.graph_url, "ca": sim.ca_path, "tenant": tenant,
            "clientId": APP["clientId"], "secret": APP["clientSecret"], "now": now.isoformat(), "crashAt": crash_at}


def test_worker_killed_between_persist_and_enqueue_loses_and_duplicates_nothing(
        simulator_for, storage_connection_string):
    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant, smtp_disabled=False))  # first sight: control.failed to deliver
    crashed = run_child(child_config(storage_connection_string, sim, tenant, T1, "enqueue"))
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup ran
    history, pending, _ = asyncio.run(inspect(storage_connection_string, "alerts", tenant))
    assert pending and {e["id"] for e in pending} == {e["id"] for e in history}  # persisted, not yet enqueued

    retry = run_child(child_config(storage_connection_string, sim, tenant, T1 + timedelta(minutes=5), None))
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout)["failure"] is None
    history, pending, alerts = asyncio.run(inspect(storage_connection_string, "alerts", tenant))
    mine = [a for a in alerts if a["tenantId"] == tenant]
    assert pending == []
    assert Counter(a["id"] for a in mine) == Counter(e["id"] for e in history)  # each exactly once
    assert ("control.failed", "exo_smtp_auth_disabled") in {(a["type"], a["control"]) for a in mine}


def test_worker_killed_after_enqueue_resends_with_the_same_ids(simulator_for, storage_connection_string):
    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant, smtp_disabled=False))
    crashed = run_child(child_config(storage_connection_string, sim, tenant, T1, "mark_sent"))
    assert crashed.returncode == -9
    retry = run_child(child_config(storage_connection_string, sim, tenant, T1 + timedelta(minutes=5), None))
    assert retry.returncode == 0, retry.stderr
    history, pending, alerts = asyncio.run(inspect(storage_connection_string, "alerts", tenant))
    mine = [a for a in alerts if a["tenantId"] == tenant]
    assert pending == []
    # At least once: nothing lost; a copy carries the same idempotency id, so delivery can drop it.
    assert {a["id"] for a in mine} == {e["id"] for e in history}


def test_signins_are_fetched_since_the_watermark_with_an_overlap(simulator_for, storage_connection_string,
                                                                queue_name):
    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant))
    asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1))
    asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1 + timedelta(minutes=15)))
    queries = [json.dumps(entry["query"]) for entry in sim.requests_log if entry["endpoint"] == "graph.signIns"]
    assert "createdDateTime ge 2026-11-21T08:00:00Z" in queries[0]  # first look: 48 hours back
    assert "createdDateTime ge 2026-11-23T05:00:00Z" in queries[1]  # then: last success minus the 3-hour overlap


def test_same_cycle_delivered_twice_raises_nothing_new(simulator_for, storage_connection_string, queue_name):
    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant, smtp_disabled=False))
    first = asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1))
    again = asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1))  # a redelivered message
    assert first[0].events and again[0].events == []
    history, _, alerts = asyncio.run(inspect(storage_connection_string, queue_name, tenant))
    assert len(alerts) == len(history) == len(first[0].events)


def test_accepting_a_baseline_moves_the_reference(simulator_for, storage_connection_string, queue_name):
    from shared.cycle.service import accept_baseline

    tenant = str(uuid.uuid4())
    sim = simulator_for(scenario(tenant))
    asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1))
    sim.update_tenant(tenant, lambda t: t["exchange"]["transportConfig"].update(SmtpClientAuthenticationDisabled=False))
    asyncio.run(cycle(storage_connection_string, sim, queue_name, tenant, T1 + timedelta(minutes=15)))

    async def accept():
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            await accept_baseline(store, tenant)
            return (await store.load(tenant)).baseline

    baseline = asyncio.run(accept())
    assert baseline["transport"]["transport.SmtpClientAuthenticationDisabled"] is False

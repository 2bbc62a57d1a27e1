"""The queue worker's cost per steady tenant (issue 19, item 5): the fan-out's message carries the tenant's
configuration and registry version, so an unchanged tenant costs two Table transactions (state load, which also
returns the registry change marker, and the commit: the state row alone, no $batch) and no token request while its
tokens live. The registry still decides: a tenant disabled, or its credential changed, after its message was queued
is treated as it is now; an old message without a configuration still works.

Real Azurite and the simulator over HTTPS; Table transactions are counted as HTTP requests to the Table endpoint,
as benchmarks/fleet.py's TableCounter does."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport

from shared.collect.credentials import CredentialSpec
from shared.cycle.fleet import MESSAGE_CONFIG_CHARS, Fleet, evaluate_registered, evaluation_message, fan_out
from shared.storage.tenant_store import mark_registry_change
from shared.tenants.config import TenantConfig
from tests.conftest import fleet_for

APP = {"clientId": "7d1e9b2c-3a4f-4e5d-8c6b-0a1b2c3d4e5f", "clientSecret": "worker-secret"}
GOOD, MISSING = "AUTHWATCH_WORKER_SECRET", "AUTHWATCH_WORKER_SECRET_NOT_SET"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def spec(setting: str = GOOD) -> CredentialSpec:
    return CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=setting)


class TableRequests:
    """HTTP requests to the Table endpoint (one each: a $batch counts once), while installed."""

    def __init__(self, connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
        endpoint = next(part.split("=", 1)[1] for part in connection_string.split(";")
                        if part.startswith("TableEndpoint="))
        self.prefix, self.seen = endpoint.rstrip("/"), []
        original = AioHttpTransport.send
        counter = self

        async def send(transport: Any, request: Any, **kwargs: Any) -> Any:
            if request.url.startswith(counter.prefix):
                counter.seen.append(f"{request.method} {request.url[len(counter.prefix):].split('?')[0]}")
            return await original(transport, request, **kwargs)

        monkeypatch.setattr(AioHttpTransport, "send", send)


@pytest.fixture
def world(simulator_for, storage_connection_string, monkeypatch):
    tenants = [str(uuid.uuid4()) for _ in range(2)]
    sim = simulator_for({"app": dict(APP), "tenants": [{"tenantId": tenant, "displayName": f"Tenant {n}"}
                                                      for n, tenant in enumerate(tenants)]})
    queue = f"evaluations{uuid.uuid4().hex[:8]}"
    connection = storage_connection_string

    def fleet() -> Fleet:
        return fleet_for(connection, sim, {GOOD: APP["clientSecret"]}, evaluations=queue)

    return {"tenants": tenants, "sim": sim, "fleet": fleet, "tables": TableRequests(connection, monkeypatch)}


async def queued(fleet: Fleet, now: datetime) -> dict[str, dict[str, Any]]:
    await fan_out(fleet, now=now)
    return {message["tenantId"]: message for message in await fleet.evaluations.receive_all(limit=1000)}


def test_a_steady_tenant_costs_two_table_transactions_and_no_token(world):
    tenant = world["tenants"][0]
    tables, sim = world["tables"], world["sim"]

    async def run() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name="Steady", credential=spec()))
            for cycle in range(3):  # the first look, the first daily history prune, then steady
                now = T0 + timedelta(minutes=15 * cycle)
                message = (await queued(fleet, now))[tenant]
                assert message["config"]["configVersion"] == 1 and "routing" not in message["config"]
                tables.seen.clear()
                sim.reset_stats()
                outcome = await evaluate_registered(fleet, tenant, now=now, message=message)
                assert outcome is not None and outcome.failure is None and not outcome.unreachable
            # The steady cycle: the state load (marker included) and the state row written alone, not a $batch.
            assert len(tables.seen) == 2, tables.seen
            assert tables.seen[0].startswith("GET ") and tables.seen[1].startswith("PUT ") \
                and "a%3Astate" in tables.seen[1], tables.seen
            assert sim.request_counts.get("token", 0) == 0  # the kept credential's tokens still live
            # Result rows left unwritten still read as evaluated in this cycle.
            record = await fleet.monitor.store.load(tenant)
            assert record.results and {item.evaluated_at for item in record.results} == {now}
        finally:
            await fleet.close()

    asyncio.run(run())


def test_a_tenant_disabled_after_queueing_is_skipped(world):
    tenant = world["tenants"][0]

    async def run() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name="Soon off", credential=spec()))
            message = (await queued(fleet, T0))[tenant]
            assert message["config"]["enabled"] is True
            await fleet.registry.disable(tenant)
            assert await evaluate_registered(fleet, tenant, now=T0, message=message) is None
            assert (await fleet.monitor.store.load(tenant)).state is None  # nothing was evaluated or written
        finally:
            await fleet.close()

    asyncio.run(run())


def test_a_credential_changed_after_queueing_is_used(world):
    tenant = world["tenants"][1]

    async def run() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            # Registered with a setting that holds nothing: as queued, the tenant could not sign in.
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name="Fixed", credential=spec(MISSING)))
            message = (await queued(fleet, T0))[tenant]
            assert message["config"]["credential"]["secretSetting"] == MISSING
            await fleet.registry.update(tenant, {"credential": spec(GOOD).to_json()})
            outcome = await evaluate_registered(fleet, tenant, now=T0, message=message)
            assert outcome is not None and not outcome.unreachable and not outcome.snapshot.errors
            # ... and the other way round, within one process: the kept credential is not reused for a new spec.
            await fleet.registry.update(tenant, {"credential": spec(MISSING).to_json()})
            later = T0 + timedelta(minutes=15)
            outcome = await evaluate_registered(fleet, tenant, now=later, message=(await queued(fleet, later))[tenant])
            assert outcome is not None and outcome.unreachable
        finally:
            await fleet.close()

    asyncio.run(run())


def test_an_old_message_without_config_and_a_marker_ahead_read_the_registry(world):
    tenant = world["tenants"][0]
    tables = world["tables"]

    async def run() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name="Old", credential=spec()))
            message = (await queued(fleet, T0))[tenant]
            old = {name: message[name] for name in ("tenantId", "requestedAt", "reason")}
            tables.seen.clear()
            outcome = await evaluate_registered(fleet, tenant, now=T0, message=old)
            assert outcome is not None and outcome.failure is None and not outcome.unreachable
            assert any("AuthwatchRegistry" in request for request in tables.seen)  # the registry was read
            # Without a message at all (the CLI, older callers) too.
            later = T0 + timedelta(minutes=15)
            assert (await evaluate_registered(fleet, tenant, now=later)).failure is None
            # A registry writer that died after raising the marker and before writing the row: the worker reads the
            # registry once more (the marker is ahead), and finds the configuration as it is.
            later += timedelta(minutes=15)
            message = (await queued(fleet, later))[tenant]
            await mark_registry_change(fleet.registry._markers, tenant, message["config"]["configVersion"] + 1)
            tables.seen.clear()
            assert (await evaluate_registered(fleet, tenant, now=later, message=message)).failure is None
            assert sum("AuthwatchRegistry" in request for request in tables.seen) == 1
        finally:
            await fleet.close()

    asyncio.run(run())


def test_a_failure_recorded_after_queueing_is_cleared_by_the_next_success(world):
    """record_outcome(failure) raises the marker: a worker holding the older copy (no failures) reads the registry,
    sees the failure and books the success that clears it."""
    tenant = world["tenants"][0]

    async def run() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name="Flaky", credential=spec()))
            message = (await queued(fleet, T0))[tenant]
            await fleet.registry.record_outcome(tenant, success=False, at=T0, error="load failed: boom")
            assert (await evaluate_registered(fleet, tenant, now=T0, message=message)).failure is None
            config = await fleet.registry.get(tenant)
            assert config.consecutive_failures == 0 and config.last_error is None
        finally:
            await fleet.close()

    asyncio.run(run())


def test_the_message_carries_no_routing_and_no_config_too_big_for_a_queue_message():
    tenant = str(uuid.uuid4())
    config = TenantConfig(tenant_id=tenant, display_name="Big", credential=spec(),
                          routing={"rules": [{"channel": "ops"}]}, tags=("prod",), config_version=4,
                          approved_exclusions={"users": [f"user{n}@contoso.example" for n in range(50)]})
    message = evaluation_message(config, T0, "schedule")
    assert set(message["config"]) == {"tenantId", "displayName", "credential", "enabled", "approvedExclusions",
                                      "consecutiveFailures", "lastError", "verifiedDomains", "configVersion"}
    back = TenantConfig.from_worker_json(message["config"])
    assert back.config_version == 4 and back.credential == config.credential and back.routing is None
    assert back.approved_exclusions == config.approved_exclusions
    huge = TenantConfig(tenant_id=tenant, display_name="Huge", credential=spec(),
                        approved_exclusions={"users": [f"u{n:05d}@contoso.example" for n in range(1_000)]})
    assert len(str(huge.approved_exclusions)) > MESSAGE_CONFIG_CHARS
    assert "config" not in evaluation_message(huge, T0, "schedule")

"""The tenant registry on real Table storage (Azurite): round trip, partial updates, disable, outcomes, leases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared.tenants.config import RegistryError, TenantConfig, TenantExists, due
from shared.tenants.registry import TenantRegistry

APP_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
MI_ID = "0b0b0b0b-1111-4222-8333-944445555777"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
FEDERATED = {"mode": "federated", "clientId": APP_ID, "managedIdentityClientId": MI_ID}


def new_tenant(name: str, **extra) -> TenantConfig:
    return TenantConfig.from_json({"tenantId": str(uuid.uuid4()), "displayName": name,
                                   "credential": dict(FEDERATED), **extra})


def run(storage_connection_string, scenario):
    async def go():
        async with TenantRegistry.from_connection_string(storage_connection_string) as registry:
            await registry.create()
            await registry.create()  # idempotent
            return await scenario(registry)

    return asyncio.run(go())


@pytest.fixture
def registry_cs(storage_connection_string):
    # The table is shared with other tests (and may be a real account): each test uses fresh tenant ids and only
    # looks at its own rows.
    return storage_connection_string


def mine(configs, *tenants):
    ids = {tenant.tenant_id for tenant in tenants}
    return [config for config in configs if config.tenant_id in ids]


def test_round_trip_list_get_and_enabled_only(registry_cs):
    contoso = new_tenant("Contoso", scheduleMinutes=60, tags=["gold"],
                         approvedExclusions={"users": ["breakglass-1"], "locations": ["trusted"]},
                         routing={"teams": {"webhookSetting": "AUTHWATCH_TEAMS"}})
    fabrikam = new_tenant("Fabrikam", enabled=False,
                          credential={"mode": "secret", "clientId": APP_ID, "secretSetting": "AUTHWATCH_SECRET_F"})
    adatum = new_tenant("adatum")

    async def scenario(registry):
        stored = await registry.upsert(contoso, now=NOW)
        await registry.upsert(fabrikam, now=NOW)
        await registry.upsert(adatum, now=NOW)
        return stored, await registry.list(), await registry.list(enabled_only=True), \
            await registry.get(contoso.tenant_id.upper()), await registry.get(str(uuid.uuid4()))

    stored, everyone, enabled, got, unknown = run(registry_cs, scenario)
    everyone, enabled = mine(everyone, contoso, fabrikam, adatum), mine(enabled, contoso, fabrikam, adatum)
    assert stored.created_at == stored.updated_at == NOW
    assert [c.display_name for c in everyone] == ["adatum", "Contoso", "Fabrikam"]
    assert [c.display_name for c in enabled] == ["adatum", "Contoso"]
    assert unknown is None
    assert got == stored
    assert got.schedule_minutes == 60 and got.tags == ("gold",) and got.routing == contoso.routing
    assert got.approved_exclusions == {"users": ["breakglass-1"], "locations": ["trusted"]}
    assert got.credential == contoso.credential
    assert type(got.created_at) is datetime and got.created_at.tzinfo is not None
    by_id = {c.tenant_id: c for c in everyone}
    assert by_id[fabrikam.tenant_id].credential.secret_setting == "AUTHWATCH_SECRET_F"


def test_upsert_keeps_created_at_and_outcomes(registry_cs):
    tenant = new_tenant("Contoso")

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        await registry.record_outcome(tenant.tenant_id, success=True, at=NOW + timedelta(minutes=1))
        renamed = TenantConfig.from_json({**tenant.to_json(), "displayName": "Contoso Ltd"})
        return await registry.upsert(renamed, now=NOW + timedelta(hours=1))

    again = run(registry_cs, scenario)
    assert again.display_name == "Contoso Ltd"
    assert again.created_at == NOW and again.updated_at == NOW + timedelta(hours=1)
    assert again.last_success_at == NOW + timedelta(minutes=1)


def test_add_registers_once(registry_cs):
    tenant = new_tenant("Contoso")

    async def scenario(registry):
        results = await asyncio.gather(*(registry.add(tenant, now=NOW) for _ in range(3)), return_exceptions=True)
        return results, await registry.get(tenant.tenant_id)

    results, stored = run(registry_cs, scenario)
    added = [r for r in results if isinstance(r, TenantConfig)]
    refused = [r for r in results if isinstance(r, TenantExists)]
    assert len(added) == 1 and len(refused) == 2
    assert str(refused[0]).startswith(f"tenantId: tenant {tenant.tenant_id} is already registered")
    assert added[0] == stored and stored.created_at == stored.updated_at == NOW


def test_update_is_partial_validated_and_needs_a_known_tenant(registry_cs):
    tenant = new_tenant("Contoso", scheduleMinutes=60, tags=["gold"])

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        later = NOW + timedelta(minutes=5)
        updated = await registry.update(tenant.tenant_id, {"approvedExclusions": {"users": ["u1"]},
                                                           "scheduleMinutes": None}, now=later)
        with pytest.raises(RegistryError, match="^scheduleMinutes: expected whole minutes"):
            await registry.update(tenant.tenant_id, {"scheduleMinutes": 2})
        with pytest.raises(RegistryError, match="^credential.mode: expected one of"):
            await registry.update(tenant.tenant_id, {"credential": {"mode": "x", "clientId": APP_ID}})
        with pytest.raises(RegistryError, match="^lastSuccessAt: written by authwatch"):
            await registry.update(tenant.tenant_id, {"lastSuccessAt": "2026-11-23T08:00:00Z"})
        with pytest.raises(RegistryError, match="^tenantId: a tenant's id cannot change"):
            await registry.update(tenant.tenant_id, {"tenantId": str(uuid.uuid4())})
        with pytest.raises(RegistryError, match="^nickname: unknown field"):
            await registry.update(tenant.tenant_id, {"nickname": "c"})
        with pytest.raises(LookupError):
            await registry.update(str(uuid.uuid4()), {"enabled": False})
        with pytest.raises(RegistryError, match="^tenantId: expected a GUID"):
            await registry.update("' or RowKey ne '", {"enabled": False})
        return updated, await registry.get(tenant.tenant_id)

    updated, stored = run(registry_cs, scenario)
    assert updated == stored
    assert stored.schedule_minutes is None and stored.tags == ("gold",)
    assert stored.approved_exclusions == {"users": ["u1"]}
    assert stored.updated_at == NOW + timedelta(minutes=5) and stored.created_at == NOW


def test_disable_keeps_the_tenant(registry_cs):
    tenant = new_tenant("Contoso")

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        disabled = await registry.disable(tenant.tenant_id, now=NOW + timedelta(days=1))
        return disabled, await registry.list(), await registry.list(enabled_only=True)

    disabled, everyone, enabled = run(registry_cs, scenario)
    everyone, enabled = mine(everyone, tenant), mine(enabled, tenant)
    assert not disabled.enabled and disabled.updated_at == NOW + timedelta(days=1)
    assert [c.tenant_id for c in everyone] == [tenant.tenant_id] and enabled == []
    assert not due(disabled, NOW + timedelta(days=2), 15)


def test_record_outcome_counts_failures_and_resets_on_success(registry_cs):
    tenant = new_tenant("Contoso")

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        seen = []
        await registry.record_outcome(tenant.tenant_id, success=False, at=NOW,
                                      error="unreachable: AADSTS7000229: no service principal; Bearer eyJa.eyJb.c2ln")
        seen.append(await registry.get(tenant.tenant_id))
        await registry.record_outcome(tenant.tenant_id, success=False, at=NOW + timedelta(minutes=15), error="x" * 900)
        seen.append(await registry.get(tenant.tenant_id))
        await registry.record_outcome(tenant.tenant_id, success=True, at=NOW + timedelta(minutes=30))
        seen.append(await registry.get(tenant.tenant_id))
        with pytest.raises(LookupError):
            await registry.record_outcome(str(uuid.uuid4()), success=True, at=NOW)
        return seen

    first, second, third = run(registry_cs, scenario)
    assert first.consecutive_failures == 1 and first.last_success_at is None and first.last_attempt_at == NOW
    assert first.last_error.startswith("unreachable: AADSTS7000229") and "eyJa" not in first.last_error
    assert second.consecutive_failures == 2 and len(second.last_error) <= 500
    assert third.consecutive_failures == 0 and third.last_error is None
    assert third.last_success_at == third.last_attempt_at == NOW + timedelta(minutes=30)
    assert third.updated_at == NOW  # outcomes are not configuration changes
    assert not due(third, NOW + timedelta(minutes=35), 15) and due(third, NOW + timedelta(minutes=45), 15)


def test_concurrent_writers_never_lose_an_update(registry_cs):
    tenant = new_tenant("Contoso")

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        await asyncio.gather(*(registry.record_outcome(tenant.tenant_id, success=False, at=NOW, error=f"e{i}")
                               for i in range(4)),
                             registry.update(tenant.tenant_id, {"tags": ["busy"]}, now=NOW))
        return await registry.get(tenant.tenant_id)

    stored = run(registry_cs, scenario)
    assert stored.consecutive_failures == 4 and stored.tags == ("busy",)


def test_in_flight_lease_is_won_once_and_lapses(registry_cs):
    tenant = new_tenant("Contoso")
    lease = timedelta(minutes=10)

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        racing = await asyncio.gather(*(registry.claim_in_flight(tenant.tenant_id, now=NOW, lease=lease)
                                        for _ in range(3)))
        held = await registry.claim_in_flight(tenant.tenant_id, now=NOW + timedelta(minutes=5), lease=lease)
        lapsed = await registry.claim_in_flight(tenant.tenant_id, now=NOW + timedelta(minutes=11), lease=lease)
        await registry.release_in_flight(tenant.tenant_id)
        released = await registry.claim_in_flight(tenant.tenant_id, now=NOW + timedelta(minutes=12), lease=lease)
        await registry.release_in_flight(str(uuid.uuid4()))  # unknown: ignored
        unknown = await registry.claim_in_flight(str(uuid.uuid4()), now=NOW, lease=lease)
        # a configuration write keeps the lease
        await registry.update(tenant.tenant_id, {"displayName": "Contoso Ltd"}, now=NOW)
        still_held = await registry.claim_in_flight(tenant.tenant_id, now=NOW + timedelta(minutes=13), lease=lease)
        return racing, held, lapsed, released, unknown, still_held

    racing, held, lapsed, released, unknown, still_held = run(registry_cs, scenario)
    assert sorted(racing) == [False, False, True]
    assert (held, lapsed, released, unknown, still_held) == (False, True, True, False, False)


def test_an_unreadable_row_is_left_out_of_list_but_named(registry_cs, caplog):
    tenant = new_tenant("Contoso")

    broken = str(uuid.uuid4())

    async def scenario(registry):
        await registry.upsert(tenant, now=NOW)
        await registry._table.upsert_entity({"PartitionKey": "tenant", "RowKey": broken,
                                             "DisplayName": "Broken", "Credential": "{not json"})
        listed = await registry.list()
        with pytest.raises(RegistryError, match=f"tenant {broken}: the stored registry row is unreadable"):
            await registry.get(broken)
        await registry._table.delete_entity("tenant", broken)
        return listed

    listed = run(registry_cs, scenario)
    assert tenant.tenant_id in {c.tenant_id for c in listed} and broken not in {c.tenant_id for c in listed}
    assert any("unreadable registry row" in record.message and record.tenant_id == broken
               for record in caplog.records)


def test_verified_domains_are_recorded_and_read_back(storage_connection_string):
    """The worker records a tenant's domains (from Graph's organization) so people can name it by them; the initial
    domain first, lower-case, bounded."""
    from shared.tenants.config import MAX_DOMAINS, domain_names

    organization = [{"verifiedDomains": [{"name": "Contoso.com", "isInitial": False},
                                         {"name": "contoso.onmicrosoft.com", "isInitial": True},
                                         *({"name": f"d{i}.contoso.com"} for i in range(200))]}]
    names = domain_names(organization)
    assert names[:2] == ("contoso.onmicrosoft.com", "contoso.com") and len(names) == MAX_DOMAINS

    async def go():
        async with TenantRegistry.from_connection_string(storage_connection_string) as registry:
            await registry.create()
            tenant_id = str(uuid.uuid4())
            await registry.add(TenantConfig.from_json({"tenantId": tenant_id, "displayName": "Contoso", "credential": FEDERATED}))
            await registry.record_domains(tenant_id, names)
            return await registry.get(tenant_id)

    stored = asyncio.run(go())
    assert stored.verified_domains == names and stored.to_json()["verifiedDomains"][0] == "contoso.onmicrosoft.com"

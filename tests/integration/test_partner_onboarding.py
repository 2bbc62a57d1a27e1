"""MSP onboarding through GDAP end to end: the real azure-identity device-code sign-in, Graph's delegated-admin
relationships, Partner Center consent, app role and directory role grants, the app-only access check, the registry
and the onboarding records — all over real HTTPS against the simulator's partner side and real Azurite."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from shared.collect.operator import OperatorSignInError
from shared.collect.credentials import CredentialSpec
from shared.storage.account import account
from shared.tenants import onboarding
from shared.tenants.config import TenantConfig
from shared.tenants.onboarding_records import OnboardingRecords
from shared.tenants.partner_service import discover, onboard, partner_session
from simulator.msp_fleet import (
    CUSTOMER_IDS,
    EXPIRING_ID,
    LACKS_ROLE_ID,
    MISSING_EXCHANGE_ROLE_ID,
    PARTNER_TENANT_ID,
    TERMINATED_ID,
    msp_scenario,
)
from tests.conftest import endpoints_for

SECRET_SETTING = "AUTHWATCH_MSP_TEST_SECRET"


class World:
    """The MSP scenario's simulator, the test storage, and how the CLI wires the onboarding service over them."""

    def __init__(self, sim: Any, connection: str, scenario: dict[str, Any]) -> None:
        self.sim, self.scenario = sim, scenario
        self.endpoints = replace(endpoints_for(sim), partner_center=sim.url)
        self.storage = account(connection)
        self.app_id = scenario["app"]["clientId"]
        self.env = {SECRET_SETTING: scenario["app"]["clientSecret"]}
        self.prompts: list[str] = []

    def config_for(self, customer: Any) -> TenantConfig:
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": self.app_id, "secretSetting": SECRET_SETTING})
        return TenantConfig(tenant_id=customer.tenant_id, display_name=customer.name, credential=spec, tags=("gdap",))

    async def run(self, body: Any) -> Any:
        async with partner_session(self.app_id, PARTNER_TENANT_ID, self.endpoints, self.storage,
                                   lambda uri, code, expires: self.prompts.append(code)) as session:
            return await body(session.client, session.registry, session.records)

    async def onboard(self, client: Any, registry: Any, records: Any, selected: list[Any]) -> list[Any]:
        now = datetime.now(timezone.utc)
        return await onboard(selected, client, registry, records, app_id=self.app_id, app_name="authwatch",
                             config_for=self.config_for, now=now, concurrency=4,
                             check=lambda config: onboarding.check_access(config.tenant_id, config.credential,
                                                                          self.endpoints, self.env, now=now))


async def _forget(connection: str) -> None:
    """This scenario's tenant ids are fixed (uuid5): forget what an earlier test registered or recorded for them."""
    from azure.core.exceptions import ResourceNotFoundError

    service = account(connection).table_service()
    table = service.get_table_client("AuthwatchRegistry")
    try:
        for tenant_id in [*CUSTOMER_IDS, TERMINATED_ID]:
            for partition in ("tenant", "onboarding"):
                try:
                    await table.delete_entity(partition, tenant_id)
                except ResourceNotFoundError:
                    pass
    finally:
        await table.close()
        await service.close()


@pytest.fixture
def make_world(simulator_for: Any, storage_connection_string: str) -> Any:
    def make(mutate: Any = None) -> World:
        scenario = msp_scenario()
        if mutate is not None:
            mutate(scenario)
        asyncio.run(_forget(storage_connection_string))
        return World(simulator_for(scenario), storage_connection_string, scenario)

    return make


@pytest.fixture
def world(make_world: Any) -> World:
    return make_world()


def test_discover_twelve_onboard_ten_two_need_a_fix(world: World) -> None:
    async def body(client: Any, registry: Any, records: Any) -> tuple[Any, list[Any], list[str]]:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        selected = [customer for customer in found.customers if customer.active and not customer.watched]
        outcomes = await world.onboard(client, registry, records, selected)
        watched = [config.tenant_id for config in await registry.list()]
        return found, outcomes, watched

    found, outcomes, watched = asyncio.run(world.run(body))
    assert len(world.prompts) == 1  # one sign-in for the partner and every customer
    active = [customer for customer in found.customers if customer.active]
    assert len(active) == 12 and {customer.tenant_id for customer in active} == set(CUSTOMER_IDS)
    by_id = {customer.tenant_id: customer for customer in found.customers}
    assert by_id[TERMINATED_ID].ended and not by_id[TERMINATED_ID].active
    assert by_id[EXPIRING_ID].ends_soon
    assert by_id[LACKS_ROLE_ID].missing_roles == ("Privileged Role Administrator",)

    states = {record.tenant_id: record for record in outcomes}
    assert len(outcomes) == 12
    ready = [tenant_id for tenant_id, record in states.items() if record.state == "ready"]
    assert len(ready) == 10, {record.name: (record.state, record.detail) for record in outcomes}
    assert states[LACKS_ROLE_ID].state == "lacks_role"
    assert "Privileged Role Administrator" in states[LACKS_ROLE_ID].fix
    assert states[LACKS_ROLE_ID].steps == {}  # nothing half-done: no call was made for it
    assert states[MISSING_EXCHANGE_ROLE_ID].state == "missing_exchange_role"
    assert "Global Reader" in states[MISSING_EXCHANGE_ROLE_ID].fix
    assert states[MISSING_EXCHANGE_ROLE_ID].steps["consent"] == "created"
    assert states[MISSING_EXCHANGE_ROLE_ID].steps["Global Reader"] == "failed"
    # A ready customer keeps read-only app roles and Global Reader, and none of onboarding's delegated write grants.
    assert all(states[tenant_id].steps["withdraw delegated grants"] == "done" for tenant_id in ready)
    now_in = {tenant["tenantId"]: tenant for tenant in world.sim.scenario["tenants"]}
    assert all(not now_in[tenant_id]["delegatedGrants"] for tenant_id in ready)
    assert now_in[MISSING_EXCHANGE_ROLE_ID]["delegatedGrants"]  # kept there: the re-run after the fix needs them
    # Only what was checked end to end is watched.
    assert set(ready) <= set(watched) and LACKS_ROLE_ID not in watched and MISSING_EXCHANGE_ROLE_ID not in watched


def test_a_rerun_finishes_what_a_partial_failure_left(make_world: Any) -> None:
    first, second = CUSTOMER_IDS[0], CUSTOMER_IDS[1]

    def faults(scenario: dict[str, Any]) -> None:
        # first: Partner Center fails four times in a row (the call and its three retries); second: Graph throttles
        # the app role grant once, which the retry after Retry-After absorbs.
        scenario["partner"]["faults"][first] = {"partnerCenter.consent": {
            "status": 500, "times": 4, "retryAfter": 0,
            "body": {"code": "5000", "description": "Internal error", "data": [], "source": "PartnerFD"}}}
        tenant = next(item for item in scenario["tenants"] if item["tenantId"] == second)
        tenant.setdefault("faults", {})["graph.appRoleAssignments"] = {
            "status": 429, "times": 1, "retryAfter": 0, "method": "POST",
            "body": {"error": {"code": "TooManyRequests", "message": "Too many requests"}}}

    world = make_world(faults)

    async def attempt(client: Any, registry: Any, records: Any) -> list[Any]:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        chosen = [customer for customer in found.customers if customer.tenant_id in (first, second)]
        return await world.onboard(client, registry, records, chosen)

    outcomes = {record.tenant_id: record for record in asyncio.run(world.run(attempt))}
    assert outcomes[first].state == "failed" and "Partner Center consent" in outcomes[first].detail
    assert "HTTP 500" in outcomes[first].detail
    statuses = [(entry["endpoint"], entry["tenant"], entry["status"]) for entry in world.sim.requests_log]
    assert statuses.count(("partnerCenter.consent", first, 500)) == 4  # sent, then retried three times
    assert ("graph.appRoleAssignments", second, 429) in statuses  # throttled once, retried: no harm done
    assert outcomes[second].state == "ready"
    again = {record.tenant_id: record for record in asyncio.run(world.run(attempt))}
    assert again[first].state == "ready"
    # The consent is given again (the first run withdrew its delegated grants at the end, as it does for every ready
    # customer), and withdrawn again; every role was already there: nothing granted twice.
    assert again[second].state == "ready" and again[second].steps.pop("consent") == "created"
    assert again[second].steps.pop("withdraw delegated grants") == "done"
    assert set(again[second].steps.values()) == {"already"}

    async def stored(client: Any, registry: Any, records: Any) -> dict[str, str]:
        return {record.tenant_id: record.state for record in await records.all()}

    assert {first: "ready", second: "ready"}.items() <= asyncio.run(world.run(stored)).items()


def test_an_ended_relationship_of_a_watched_customer_is_reported_once(world: World) -> None:
    async def twice(client: Any, registry: Any, records: Any) -> tuple[Any, Any, Any]:
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": world.app_id, "secretSetting": SECRET_SETTING})
        if await registry.get(TERMINATED_ID) is None:
            await registry.add(TenantConfig(tenant_id=TERMINATED_ID, display_name="Trey Research", credential=spec))
        first = await discover(client, registry, records, now=datetime.now(timezone.utc))
        second = await discover(client, registry, records, now=datetime.now(timezone.utc))
        return first, second, await records.get(TERMINATED_ID)

    first, second, record = asyncio.run(world.run(twice))
    assert [customer.tenant_id for customer in first.ended_now] == [TERMINATED_ID]
    assert second.ended_now == []
    assert record.state == "relationship_ended" and record.ended_reported_at is not None
    assert f"authwatch tenants remove {TERMINATED_ID}" in record.fix


def test_a_declined_sign_in_is_a_named_error(make_world: Any) -> None:
    world = make_world(lambda scenario: scenario["partner"]["operator"].update(signIn="decline"))

    async def nothing(*_: Any) -> None:
        raise AssertionError("no call may follow a declined sign-in")

    with pytest.raises(OperatorSignInError, match="sign-in to the partner tenant failed"):
        asyncio.run(world.run(nothing))


def test_exchange_still_refusing_after_the_grants_is_missing_exchange_role(make_world: Any) -> None:
    slow = CUSTOMER_IDS[3]

    def exchange_not_yet(scenario: dict[str, Any]) -> None:
        # Global Reader is given, but Exchange Online has not seen it yet: it answers a bare 403 (no body), as it does
        # for an app with no Exchange role (simulator/exchange.py), until the role reaches it.
        tenant = next(item for item in scenario["tenants"] if item["tenantId"] == slow)
        tenant.setdefault("faults", {})["exchange.Get-OrganizationConfig"] = {"status": 403, "rawBody": ""}

    world = make_world(exchange_not_yet)

    async def body(client: Any, registry: Any, records: Any) -> tuple[Any, list[str]]:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        [outcome] = await world.onboard(client, registry, records,
                                        [customer for customer in found.customers if customer.tenant_id == slow])
        return outcome, [config.tenant_id for config in await registry.list()]

    outcome, watched = asyncio.run(world.run(body))
    assert outcome.state == "missing_exchange_role", (outcome.state, outcome.detail)
    assert outcome.steps["Global Reader"] == "created"  # granted; the check is what still fails
    assert "up to an hour" in outcome.fix and slow not in watched


def test_a_run_that_died_part_way_is_resumed(world: World) -> None:
    """A process killed mid-onboarding leaves its customers `in_progress`: the overview shows them, and running the
    onboarding again takes them to their end state."""
    from shared.tenants.onboarding_records import OnboardingRecord

    stuck = CUSTOMER_IDS[4]

    async def body(client: Any, registry: Any, records: Any) -> tuple[str, Any]:
        await records.save(OnboardingRecord(stuck, "Graphic Design Institute", "in_progress",
                                            updated_at=datetime.now(timezone.utc)))
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        before = found.records[stuck].state
        [outcome] = await world.onboard(client, registry, records,
                                        [customer for customer in found.customers if customer.tenant_id == stuck])
        return before, (outcome, await records.get(stuck))

    before, (outcome, stored) = asyncio.run(world.run(body))
    assert before == "in_progress"
    assert outcome.state == "ready" and stored.state == "ready"


def test_the_cli_discovers_onboards_the_selected_and_lists_the_states(
        world: World, storage_connection_string: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    for name, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                        "AUTHWATCH_AUTHORITY_HOST": world.sim.url, "AUTHWATCH_GRAPH_URL": world.sim.graph_url,
                        "AUTHWATCH_EXCHANGE_URL": world.sim.url, "AUTHWATCH_PARTNER_CENTER_URL": world.sim.url,
                        "AUTHWATCH_CA_BUNDLE": world.sim.ca_path, **world.env}.items():
        monkeypatch.setenv(name, value)
    common = ["--partner-tenant", PARTNER_TENANT_ID, "--client-id", world.app_id, "--credential-mode", "secret",
              "--secret-setting", SECRET_SETTING]
    assert main(["tenants", "discover", *common]) == 0  # listing only: nothing onboarded, nothing failed
    listing = capsys.readouterr()
    assert "13 customer(s) through GDAP: 12 with an active relationship" in listing.out
    assert "microsoft.com/devicelogin" in listing.err  # the one prompt goes to stderr

    assert main(["tenants", "discover", *common, "--select", CUSTOMER_IDS[0], LACKS_ROLE_ID]) == 1
    out = capsys.readouterr().out
    assert "1 lacks role, 1 ready" in out and "fix: Add Privileged Role Administrator" in out

    assert main(["tenants", "onboarding", "-o", "json"]) == 0
    states = {row["tenantId"]: row["state"] for row in json.loads(capsys.readouterr().out)}
    assert states[CUSTOMER_IDS[0]] == "ready" and states[LACKS_ROLE_ID] == "lacks_role"
    assert main(["tenants", "list", "-o", "json"]) == 0
    rows = {row["tenantId"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[CUSTOMER_IDS[0]]["onboarding"]["state"] == "ready"  # the fleet listing shows the record

    assert main(["tenants", "discover", *common, "--select", "00000000-0000-0000-0000-000000000001"]) == 2
    assert "not a customer of this partner tenant" in capsys.readouterr().err


def test_a_customer_refusing_the_operators_sign_in_fails_alone_with_why(make_world: Any) -> None:
    blocked = CUSTOMER_IDS[5]

    def conditional_access(scenario: dict[str, Any]) -> None:
        # The customer's Conditional Access blocks the partner's sign-in to it: Entra answers the refresh-token
        # exchange for that tenant with AADSTS53003 (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
        scenario["partner"]["faults"][blocked] = {"token": {"status": 400, "times": 1, "body": {
            "error": "invalid_grant", "error_codes": [53003],
            "error_description": "AADSTS53003: Access has been blocked by Conditional Access policies."}}}

    world = make_world(conditional_access)

    async def body(client: Any, registry: Any, records: Any) -> tuple[dict[str, Any], list[str]]:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        chosen = [customer for customer in found.customers if customer.tenant_id in (blocked, CUSTOMER_IDS[6])]
        outcomes = await world.onboard(client, registry, records, chosen)
        return {record.tenant_id: record for record in outcomes}, [c.tenant_id for c in await registry.list()]

    outcomes, watched = asyncio.run(world.run(body))
    assert outcomes[blocked].state == "failed" and "AADSTS53003" in outcomes[blocked].detail
    assert "Conditional Access" in outcomes[blocked].fix and blocked not in watched
    assert outcomes[CUSTOMER_IDS[6]].state == "ready"  # the others go on


def test_a_removed_gdap_customer_stays_out_of_add_all_and_is_told_how_to_withdraw_from_your_side(
        world: World, storage_connection_string: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    target = CUSTOMER_IDS[7]

    async def body(client: Any, registry: Any, records: Any) -> str:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        [outcome] = await world.onboard(client, registry, records,
                                        [customer for customer in found.customers if customer.tenant_id == target])
        return outcome.state

    assert asyncio.run(world.run(body)) == "ready"
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    assert main(["tenants", "remove", target, "--yes", "-o", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    commands = [command for step in answer["withdraw"] for command in step["commands"]]
    steps = {step["title"]: step for step in answer["withdraw"]}
    revoke = next(step for title, step in steps.items() if title.startswith("Or, from your partner tenant"))
    assert revoke["commands"][0].startswith("az login --tenant")  # a Partner Center token is the partner tenant's
    assert f"/v1/customers/{target}/applicationconsents/{world.app_id}" in revoke["commands"][1]
    assert any(title.startswith("The Entra role Global Reader") for title in steps)
    assert any("only if you moved it to the role group" in title for title in steps)

    async def after(client: Any, registry: Any, records: Any) -> tuple[Any, list[str]]:
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        from shared.cli.tenants_partner import _selection

        return await records.get(target), [customer.tenant_id for customer in _selection(found, [], True)]

    record, add_all = asyncio.run(world.run(after))
    assert record.state == "removed" and f"onboard --tenant {target}" in record.fix  # not "ready, watched"
    assert target not in add_all and CUSTOMER_IDS[8] in add_all  # --add-all leaves it alone, takes the others


def test_onboarding_an_ended_customer_again_does_not_report_it_twice(world: World) -> None:
    async def body(client: Any, registry: Any, records: Any) -> tuple[Any, Any, Any]:
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": world.app_id, "secretSetting": SECRET_SETTING})
        await registry.add(TenantConfig(tenant_id=TERMINATED_ID, display_name="Trey Research", credential=spec))
        first = await discover(client, registry, records, now=datetime.now(timezone.utc))
        ended = [customer for customer in first.customers if customer.tenant_id == TERMINATED_ID]
        [outcome] = await world.onboard(client, registry, records, ended)
        again = await discover(client, registry, records, now=datetime.now(timezone.utc))
        return first, outcome, again

    first, outcome, again = asyncio.run(world.run(body))
    assert [customer.tenant_id for customer in first.ended_now] == [TERMINATED_ID]
    assert outcome.state == "relationship_ended"
    assert again.ended_now == [] and again.records[TERMINATED_ID].ended_reported_at is not None


def test_a_renewed_relationship_clears_the_ended_report(make_world: Any, simulator_for: Any,
                                                        storage_connection_string: str) -> None:
    """Ended (reported once), then renewed: the record no longer says ended, so a later ending is reported again."""
    world = make_world()

    async def ended(client: Any, registry: Any, records: Any) -> Any:
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": world.app_id, "secretSetting": SECRET_SETTING})
        await registry.add(TenantConfig(tenant_id=TERMINATED_ID, display_name="Trey Research", credential=spec))
        return await discover(client, registry, records, now=datetime.now(timezone.utc))

    assert [customer.tenant_id for customer in asyncio.run(world.run(ended)).ended_now] == [TERMINATED_ID]

    renewed = msp_scenario()  # the same partner the next day: the relationship with Trey Research is active again
    for relationship in renewed["partner"]["relationships"]:
        if relationship["customerTenantId"] == TERMINATED_ID:
            relationship["status"] = "active"
            relationship["endDateTime"] = "2028-12-06T00:00:00Z"
    later = World(simulator_for(renewed), storage_connection_string, renewed)

    async def again(client: Any, registry: Any, records: Any) -> Any:
        return await discover(client, registry, records, now=datetime.now(timezone.utc))

    found = asyncio.run(later.run(again))
    record = found.records[TERMINATED_ID]
    assert found.ended_now == [] and record.state == "ready" and record.ended_reported_at is None
    assert record.detail == "the GDAP relationship was renewed"


def test_a_disabled_customer_is_ready_with_the_fix_to_enable_it(world: World) -> None:
    disabled = CUSTOMER_IDS[9]

    async def body(client: Any, registry: Any, records: Any) -> Any:
        spec = CredentialSpec.from_json({"mode": "secret", "clientId": world.app_id, "secretSetting": SECRET_SETTING})
        await registry.add(TenantConfig(tenant_id=disabled, display_name="Relecloud", credential=spec, enabled=False))
        found = await discover(client, registry, records, now=datetime.now(timezone.utc))
        [outcome] = await world.onboard(client, registry, records,
                                        [customer for customer in found.customers if customer.tenant_id == disabled])
        return outcome

    outcome = asyncio.run(world.run(body))
    assert outcome.state == "ready" and f"authwatch tenants enable {disabled}" in outcome.fix


def test_your_own_partner_center_sign_in_failing_stops_the_run_before_any_customer(
        make_world: Any, storage_connection_string: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    def no_partner_center(scenario: dict[str, Any]) -> None:
        # The device-code sign-in works (the first token request); the Partner Center token that follows is refused,
        # as Entra does when its user_impersonation was never consented in the partner tenant.
        scenario["partner"]["faults"][PARTNER_TENANT_ID] = {"token": {"skip": 1, "times": 5, "status": 400, "body": {
            "error": "invalid_grant", "error_codes": [65001],
            "error_description": "AADSTS65001: The user or administrator has not consented to use the application."}}}

    world = make_world(no_partner_center)
    for name, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                        "AUTHWATCH_AUTHORITY_HOST": world.sim.url, "AUTHWATCH_GRAPH_URL": world.sim.graph_url,
                        "AUTHWATCH_PARTNER_CENTER_URL": world.sim.url, "AUTHWATCH_CA_BUNDLE": world.sim.ca_path,
                        **world.env}.items():
        monkeypatch.setenv(name, value)
    assert main(["tenants", "discover", "--partner-tenant", PARTNER_TENANT_ID, "--client-id", world.app_id,
                 "--credential-mode", "secret", "--secret-setting", SECRET_SETTING, "--add-all"]) == 2
    assert "sign-in to the partner tenant failed: AADSTS65001" in capsys.readouterr().err
    statuses = [(entry["endpoint"], entry["status"]) for entry in world.sim.requests_log]
    assert ("partnerCenter.consent", 201) not in statuses and not any(
        endpoint == "partnerCenter.consent" for endpoint, _ in statuses)  # no customer was touched

    async def stored() -> list[Any]:
        records = OnboardingRecords(world.storage.table_service())
        try:
            return [record for record in await records.all() if record.tenant_id in CUSTOMER_IDS]
        finally:
            await records.close()

    assert asyncio.run(stored()) == []  # no record half-written either

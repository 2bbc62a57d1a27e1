"""The real azure-identity and msgraph-sdk collect snapshots from the simulator over HTTPS (no SDK patching)."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime, timedelta, timezone

from shared.collect import TenantAccess, collect_tenant
from shared.controls.evaluate import evaluate
from shared.cycle.service import Monitor, run_cycle
from shared.model import SOURCES
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "the-right-secret"}
HEALTHY = "0a000000-0000-4000-8000-000000000001"
SMTP_ON = "0a000000-0000-4000-8000-000000000002"
NO_EXO_ROLE = "0a000000-0000-4000-8000-000000000003"
NO_CONSENT = "0a000000-0000-4000-8000-000000000004"
POLICY = block_policy()


def tenant(tenant_id: str, name: str, **extra) -> dict:
    return {
        "tenantId": tenant_id,
        "displayName": name,
        "graph": {"securityDefaults": {"id": "00000000-0000-0000-0000-000000000005", "isEnabled": False},
                  "conditionalAccessPolicies": [copy.deepcopy(POLICY)]},
        "exchange": {"transportConfig": {"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": True}},
        **extra,
    }


def scenario() -> dict:
    smtp_on = tenant(SMTP_ON, "Fabrikam")
    smtp_on["exchange"]["transportConfig"]["SmtpClientAuthenticationDisabled"] = "False"
    return {"app": dict(APP), "tenants": [
        tenant(HEALTHY, "Contoso"), smtp_on, tenant(NO_EXO_ROLE, "Adatum", exchangeRole=False),
        tenant(NO_CONSENT, "Woodgrove", consent=False)]}


def access(tenant_id: str, secret: str = APP["clientSecret"]) -> TenantAccess:
    return TenantAccess(tenant_id=tenant_id, client_id=APP["clientId"], client_secret=secret)


def collect(sim, *accesses: TenantAccess):
    async def go():
        return await asyncio.gather(*(collect_tenant(a, endpoints_for(sim), now=NOW) for a in accesses))

    return asyncio.run(go())


def test_snapshot_holds_what_the_tenant_has(simulator_for):
    sim = simulator_for(scenario())
    [snap] = collect(sim, access(HEALTHY))
    assert snap.errors == {}
    assert snap.tenant_id == HEALTHY and snap.collected_at == NOW
    assert snap.graph["organization"]["displayName"] == "Contoso"
    assert snap.graph["securityDefaults"]["isEnabled"] is False
    assert snap.graph["conditionalAccessPolicies"] == [POLICY]
    assert snap.exchange["transportConfig"]["SmtpClientAuthenticationDisabled"] is True
    counts = sim.request_counts
    assert counts["graph.conditionalAccessPolicies"] == 1
    assert counts["exchange.Get-TransportConfig"] == 1
    assert counts["token"] >= 2  # one Graph token, one Exchange token
    verdicts = {r.control: r.status for r in evaluate(snap)}
    assert verdicts["entra_legacy_auth_blocked"] == "pass" and verdicts["exo_smtp_auth_disabled"] == "pass"


def test_string_booleans_from_exchange_survive_collection(simulator_for):
    sim = simulator_for(scenario())
    [snap] = collect(sim, access(SMTP_ON))
    assert snap.exchange["transportConfig"]["SmtpClientAuthenticationDisabled"] == "False"
    assert {r.control: r.status for r in evaluate(snap)}["exo_smtp_auth_disabled"] == "fail"


def test_wrong_secret_is_recorded_while_other_tenants_are_collected(simulator_for):
    sim = simulator_for(scenario())
    bad, good = collect(sim, access(HEALTHY, secret="an-old-secret"), access(SMTP_ON))
    assert bad.unreachable
    assert bad.graph == {} and bad.exchange == {}
    error = bad.errors["graph.conditionalAccessPolicies"]
    assert error.code == "AADSTS7000215" and "secret" in error.message.lower()
    assert "an-old-secret" not in str(bad.to_json())
    assert set(bad.errors) == set(SOURCES)  # every source says why it is missing
    assert good.errors == {} and good.graph["conditionalAccessPolicies"]
    assert {r.status for r in evaluate(bad)} == {"unknown"}


def test_a_missing_service_principal_names_the_cause(simulator_for):
    sim = simulator_for(scenario())
    [snap] = collect(sim, access(NO_CONSENT))
    assert snap.unreachable
    assert snap.errors["graph.securityDefaults"].code == "AADSTS7000229"
    assert "not installed in this tenant" in snap.errors["graph.securityDefaults"].message


def test_revoked_consent_with_the_service_principal_kept_fails_every_source_saying_why(simulator_for):
    """Tokens come without roles: Graph refuses each source (SharePoint with its 401), Exchange with 401; every error
    says a permission is missing or consent was revoked, none looks like a passing read."""
    sim = simulator_for(scenario())
    sim.update_tenant(HEALTHY, lambda t: t.update(consent="revoked"))
    [snap] = collect(sim, access(HEALTHY))
    sharepoint = snap.errors["graph.sharepointSettings"]
    assert (sharepoint.status, sharepoint.code) == (401, "accessDenied")
    assert "permission" in sharepoint.message and "revoked" in sharepoint.message
    for source in ("graph.conditionalAccessPolicies", "graph.securityDefaults", "graph.signIns"):
        assert snap.errors[source].status == 403 and "revoked" in snap.errors[source].message, source
    assert snap.errors["exchange.transportConfig"].status == 401


def test_missing_exchange_role_fails_only_exchange(simulator_for):
    sim = simulator_for(scenario())
    [snap] = collect(sim, access(NO_EXO_ROLE))
    assert not snap.unreachable
    assert snap.errors["exchange.transportConfig"].status == 403
    assert "graph.conditionalAccessPolicies" not in snap.errors
    verdicts = {r.control: r.status for r in evaluate(snap)}
    assert verdicts["entra_legacy_auth_blocked"] == "pass" and verdicts["exo_smtp_auth_disabled"] == "unknown"


def test_failing_graph_source_is_recorded_not_raised(simulator_for):
    broken = scenario()
    broken["tenants"][0]["faults"] = {"graph.conditionalAccessPolicies": {
        "status": 403, "body": {"error": {"code": "Authorization_RequestDenied",
                                          "message": "Insufficient privileges to complete the operation."}}}}
    sim = simulator_for(broken)
    [snap] = collect(sim, access(HEALTHY))
    error = snap.errors["graph.conditionalAccessPolicies"]
    assert (error.status, error.code) == (403, "Authorization_RequestDenied")
    assert "Insufficient privileges" in error.message
    assert snap.graph["securityDefaults"]["isEnabled"] is False  # the other sources still arrived


def test_policies_are_paged_through(simulator_for):
    many = scenario()
    many["pageSize"] = {"graph": 7}
    policies = [block_policy(f"{i:08d}-0000-4000-8000-000000000000", displayName=f"p{i}") for i in range(23)]
    many["tenants"][0]["graph"]["conditionalAccessPolicies"] = policies
    sim = simulator_for(many)
    [snap] = collect(sim, access(HEALTHY))
    assert [p["displayName"] for p in snap.graph["conditionalAccessPolicies"]] == [f"p{i}" for i in range(23)]
    assert sim.request_counts["graph.conditionalAccessPolicies"] == 4


def test_a_cycle_persists_every_reachable_tenant(simulator_for, storage_connection_string):
    sim = simulator_for(scenario())
    tenants = [access(HEALTHY), access(SMTP_ON), access(NO_CONSENT)]

    async def go():
        monitor = Monitor(TenantStore.from_connection_string(storage_connection_string),
                          JsonQueue.from_connection_string(storage_connection_string, ALERTS_QUEUE), endpoints_for(sim))
        try:
            outcomes = await run_cycle(tenants, monitor, now=NOW)
            records = {t.tenant_id: await monitor.store.load(t.tenant_id) for t in tenants}
            return outcomes, records, await monitor.alerts.receive_all()
        finally:
            await monitor.close()

    outcomes, records, alerts = asyncio.run(go())
    stored = {tenant_id: record.results for tenant_id, record in records.items()}
    assert [o.failure for o in outcomes] == [None, None, None]
    assert [o.unreachable for o in outcomes] == [False, False, True]
    statuses = {tid: {s.result.control: s.result.status for s in items} for tid, items in stored.items()}
    assert statuses[SMTP_ON]["exo_smtp_auth_disabled"] == "fail"
    assert statuses[HEALTHY]["entra_legacy_auth_blocked"] == "pass"
    assert statuses[HEALTHY]["exo_smtp_auth_disabled"] == "pass"
    assert len(statuses[HEALTHY]) == 9
    # The unreachable tenant is recorded as such and alerted on; its (absent) verdicts are not overwritten.
    assert statuses[NO_CONSENT] == {}
    assert records[NO_CONSENT].state["unreachable"] is True
    # The alerts queue is shared by the whole test session: look only at this test's tenants.
    alerts = [a for a in alerts if a["tenantId"] in {HEALTHY, SMTP_ON, NO_CONSENT}]
    queued = {(a["tenantId"], a["type"]) for a in alerts}
    assert (NO_CONSENT, "tenant.unreachable") in queued
    assert (SMTP_ON, "control.failed") in queued
    assert all(a["id"] and a["at"] == "2026-11-23T08:00:00Z" for a in alerts)


def test_signins_are_read_without_select_and_keep_only_the_fields_authwatch_uses(simulator_for):
    # Graph refuses $select on List signIns (400), so a collector that sends one never reads a sign-in.
    signin = {"id": "s1", "createdDateTime": "2026-11-23T07:00:00Z", "userId": "u1",
              "userPrincipalName": "scanner@contoso.example", "userDisplayName": "Scanner", "appDisplayName": "Office",
              "clientAppUsed": "Authenticated SMTP", "ipAddress": "203.0.113.9",
              "status": {"errorCode": 0, "failureReason": None}, "conditionalAccessStatus": "notApplied",
              "location": {"city": "Oslo", "countryOrRegion": "NO"}, "deviceDetail": {"browser": "Other"},
              "appliedConditionalAccessPolicies": [{"id": "p", "displayName": "x" * 500, "result": "notApplied"}]}
    healthy = tenant(HEALTHY, "Contoso")
    healthy["graph"]["signIns"] = [signin]
    sim = simulator_for({"app": dict(APP), "tenants": [healthy]})
    [snap] = collect(sim, access(HEALTHY))
    assert "graph.signIns" not in snap.errors
    [kept] = snap.graph["signIns"]
    assert kept["userPrincipalName"] == "scanner@contoso.example" and kept["status"] == {"errorCode": 0,
                                                                                       "failureReason": None}
    assert "location" not in kept and "appliedConditionalAccessPolicies" not in kept


def test_inheriting_mailboxes_arrive_as_null_not_as_missing(simulator_for):
    """SmtpClientAuthenticationDisabled null means "inherits the organisation"; a missing property means "not read".
    OData drops nulls only when asked (Prefer: omit-values=nulls); the collector never asks, so inheriting mailboxes
    stay readable and the overrides control can pass instead of saying unknown for every one of them."""
    sim = simulator_for(scenario())
    boxes = [{"Identity": f"user{n}", "PrimarySmtpAddress": f"user{n}@contoso.example",
              "ExternalDirectoryObjectId": f"0b000000-0000-4000-8000-00000000000{n}",
              "SmtpClientAuthenticationDisabled": None, "PopEnabled": False, "ImapEnabled": False,
              "ActiveSyncEnabled": True} for n in range(3)]
    sim.update_tenant(HEALTHY, lambda t: t["exchange"].update(casMailboxes=boxes))
    [snap] = collect(sim, access(HEALTHY))
    assert [box["SmtpClientAuthenticationDisabled"] for box in snap.exchange["casMailboxes"]] == [None] * 3
    verdict = {r.control: r for r in evaluate(snap)}["exo_smtp_auth_mailbox_overrides"]
    assert verdict.status.value == "pass" and verdict.evidence["inheriting"] == 3

    # The simulator plays the OData preference, so asking for it would have lost the nulls (what the test guards).
    import ssl

    import httpx

    trust = ssl.create_default_context(cafile=sim.ca_path)
    token = httpx.post(f"{sim.url}/{HEALTHY}/oauth2/v2.0/token", verify=trust, data={
        "client_id": APP["clientId"], "client_secret": APP["clientSecret"], "grant_type": "client_credentials",
        "scope": "https://outlook.office365.com/.default"}).json()["access_token"]
    answer = httpx.post(f"{endpoints_for(sim).exchange}/adminapi/beta/{HEALTHY}/InvokeCommand", verify=trust,
                        headers={"Authorization": f"Bearer {token}", "Prefer": "omit-values=nulls"},
                        json={"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {}}})
    assert answer.headers["Preference-Applied"] == "omit-values=nulls"
    assert all("SmtpClientAuthenticationDisabled" not in box for box in answer.json()["value"])


def test_a_tenant_with_25000_smtp_auth_mailboxes_is_evaluated_and_its_state_stays_bounded(simulator_for,
                                                                                      storage_connection_string):
    """Issue 22 #1: the state used to keep every overriding address, so a big tenant failed every cycle with
    DocumentTooLarge (no state, no results, no alert). Now the worker's whole path (collect over HTTP, evaluate,
    compare, persist) goes through, the state stays small, and a new override the next cycle is still a re-enable."""
    big = scenario()
    tenant = "0a000000-0000-4000-8000-0000000025ff"  # its own tenant: other tests leave state behind for HEALTHY
    big["tenants"][0]["tenantId"] = tenant
    boxes = [{"Identity": f"user{n}", "PrimarySmtpAddress": f"user{n:05d}@contoso.example",
              "ExternalDirectoryObjectId": f"0c000000-0000-4000-8000-{n:012d}", "SmtpClientAuthenticationDisabled": False,
              "PopEnabled": False, "ImapEnabled": False, "ActiveSyncEnabled": True} for n in range(25_000)]
    big["tenants"][0]["exchange"]["casMailboxes"] = boxes
    sim = simulator_for(big)

    async def cycle(now):
        monitor = Monitor(TenantStore.from_connection_string(storage_connection_string),
                          JsonQueue.from_connection_string(storage_connection_string, ALERTS_QUEUE), endpoints_for(sim))
        try:
            [outcome] = await run_cycle([access(tenant)], monitor, now=now)
            return outcome, await monitor.store.load(tenant)
        finally:
            await monitor.close()

    outcome, record = asyncio.run(cycle(NOW))
    assert outcome.failure is None
    statuses = {stored.result.control: stored.result.status for stored in record.results}
    assert statuses["exo_smtp_auth_mailbox_overrides"] == "fail" and len(statuses) == 9
    assert len(json.dumps(record.state)) < 100_000
    assert record.state["config"]["mailboxOverrides"]["smtpAuthEnabledMailboxes"]["count"] == 25_000

    sim.update_tenant(tenant, lambda t: t["exchange"]["casMailboxes"].append(
        {**boxes[0], "Identity": "printer", "PrimarySmtpAddress": "zz-printer@contoso.example",
         "ExternalDirectoryObjectId": "0c000000-0000-4000-8000-999999999999"}))
    outcome, record = asyncio.run(cycle(NOW + timedelta(minutes=15)))
    assert outcome.failure is None
    [drift] = [event.to_json() for event in outcome.events if event.type == "basic_auth.reenabled"]
    [change] = drift["details"]["changes"]
    assert (change["before"], change["after"]) == (25_000, 25_001) and "past the first 100" in change["note"]

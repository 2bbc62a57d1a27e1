"""The simulator plays the MSP partner side over real HTTPS: the operator signs in once with the real azure-identity
DeviceCodeCredential (MSAL), discovers customers through GDAP, grants the app its consent through Partner Center and
its app roles and directory role through GDAP-delegated Graph, after which the app's own app-only token works."""
from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DeviceCodeCredential

from simulator import Simulator, load_scenario
from simulator.customer_graph import EXCHANGE_APP_ID, GRAPH_APP_ID, RESOURCES
from simulator.defaults import DEFAULT_PERMISSIONS

OFFERED = [name for _, (_, roles) in RESOURCES.items() for name in roles]  # every app role the resources offer
from simulator.msp_fleet import (APP, CUSTOMER_IDS, EXPIRING_ID, LACKS_ROLE_ID, MISSING_EXCHANGE_ROLE_ID,
                                 OPERATOR_ID, OPERATOR_UPN, PARTNER_TENANT_ID, TERMINATED_ID, msp_scenario)
from simulator.partner import GLOBAL_READER

pytestmark = pytest.mark.integration

GRAPH = "https://graph.microsoft.com/.default"
PC = "https://api.partnercenter.microsoft.com/user_impersonation"
RELATIONSHIPS = "/tenantRelationships/delegatedAdminRelationships"
CUSTOMERS = "/tenantRelationships/delegatedAdminCustomers"
# What an onboarding client asks Partner Center for (CIPP's Set-CIPPCPVConsent.ps1 and Microsoft's Exchange sample).
CONSENT_SCOPES = "Application.ReadWrite.All,AppRoleAssignment.ReadWrite.All,RoleManagement.ReadWrite.Directory"
GOOD = CUSTOMER_IDS[0]


@pytest.fixture
def sim(simulator_for: Any) -> Simulator:
    return simulator_for(msp_scenario())


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as client:
        yield client


class Operator:
    """The MSP operator signed in once (device code) with the real azure-identity, as the client side does."""

    def __init__(self, sim: Simulator) -> None:
        self.prompts: list[tuple[str, str]] = []
        self.credential = DeviceCodeCredential(
            client_id=APP["clientId"], tenant_id=PARTNER_TENANT_ID, authority=sim.url,
            additionally_allowed_tenants=["*"], connection_verify=sim.ca_path, disable_instance_discovery=True,
            prompt_callback=lambda uri, code, expires: self.prompts.append((uri, code)))

    def token(self, scope: str = GRAPH, tenant: str | None = None) -> str:
        return self.credential.get_token(scope, tenant_id=tenant).token


def claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def consent(http: httpx.Client, sim: Simulator, token: str, customer: str, body: Any = None) -> httpx.Response:
    body = body if body is not None else {
        "applicationId": APP["clientId"],
        "applicationGrants": [{"enterpriseApplicationId": GRAPH_APP_ID, "scope": CONSENT_SCOPES},
                              {"enterpriseApplicationId": EXCHANGE_APP_ID, "scope": "Exchange.Manage"}]}
    return http.post(f"{sim.url}/v1/customers/{customer}/applicationconsents", json=body, headers=auth(token))


def app_only(http: httpx.Client, sim: Simulator, tenant: str, scope: str = GRAPH) -> httpx.Response:
    return http.post(f"{sim.url}/{tenant}/oauth2/v2.0/token",
                     data={"client_id": APP["clientId"], "client_secret": APP["clientSecret"],
                           "grant_type": "client_credentials", "scope": scope})


# -- sign-in ----------------------------------------------------------------------------------------------------------
def test_one_device_code_sign_in_serves_the_partner_partner_center_and_a_customer(sim: Simulator,
                                                                                 http: httpx.Client) -> None:
    op = Operator(sim)
    graph_token = op.token(GRAPH)
    assert len(op.prompts) == 1 and op.prompts[0][0] == "https://microsoft.com/devicelogin"
    c = claims(graph_token)
    assert (c["tid"], c["oid"], c["upn"], c["idtyp"], c["aud"]) == (
        PARTNER_TENANT_ID, OPERATOR_ID, OPERATOR_UPN, "user", "https://graph.microsoft.com")
    assert c["scp"] == "DelegatedAdminRelationship.Read.All" and "roles" not in c
    pc = claims(op.token(PC))
    assert pc["aud"] == "https://api.partnercenter.microsoft.com" and pc["scp"] == "user_impersonation"

    # Not consented in a customer yet: Entra's AADSTS65001, and no second device flow succeeds there. (Another
    # customer than the one consented below: MSAL replays an identical request's HTTP 400 for 60 s, msal
    # throttled_http_client.py, so a retry right after consenting would get the old answer without asking.)
    with pytest.raises(ClientAuthenticationError, match="AADSTS65001"):
        op.token(GRAPH, tenant=CUSTOMER_IDS[5])
    assert consent(http, sim, op.token(PC), GOOD).status_code == 201
    customer = claims(op.token(GRAPH, tenant=GOOD))
    assert customer["tid"] == GOOD and customer["oid"] == OPERATOR_ID
    assert customer["scp"].split() == CONSENT_SCOPES.split(",")
    assert "wids" not in customer and "roles" not in customer  # GDAP roles are looked up per call, not carried
    # One prompt, one device flow: the customer tenants were reached with the refresh token (azure-identity's
    # fallback flow for the unconsented customer was refused at its start, before any prompt).
    started = [e["status"] for e in sim.requests_log if e["endpoint"] == "devicecode"]
    assert len(op.prompts) == 1 and started == [200, 400]

    # A former customer (terminated relationship): the foreign-user refusal, AADSTS50020.
    with pytest.raises(ClientAuthenticationError, match="AADSTS50020"):
        op.token(GRAPH, tenant=TERMINATED_ID)


@pytest.mark.parametrize("outcome, text", [("decline", "AADSTS70000"), ("expire", "AADSTS70019")])
def test_a_declined_or_expired_device_code_fails_sign_in(simulator_for: Any, outcome: str, text: str) -> None:
    scenario = msp_scenario()
    scenario["partner"]["operator"]["signIn"] = outcome
    sim = simulator_for(scenario)
    op = Operator(sim)
    with pytest.raises(ClientAuthenticationError, match=text):
        op.token(GRAPH)
    assert len(op.prompts) == 1
    assert [e["status"] for e in sim.requests_log if e["endpoint"] == "token"] == [400]


def test_client_credentials_still_work_beside_the_partner(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(GOOD, lambda t: t.update(consent=True))
    r = app_only(http, sim, GOOD)
    assert r.status_code == 200 and claims(r.json()["access_token"])["idtyp"] == "app"
    assert app_only(http, sim, PARTNER_TENANT_ID).json()["error_codes"] == [90002]  # not a scenario tenant


# -- discovery --------------------------------------------------------------------------------------------------------
def test_relationships_have_microsofts_shape_filters_and_paging(sim: Simulator, http: httpx.Client) -> None:
    token = Operator(sim).token(GRAPH)
    r = http.get(f"{sim.graph_url}{RELATIONSHIPS}", headers=auth(token))
    assert r.status_code == 200, r.text
    rels = r.json()["value"]
    assert len(rels) == 13
    assert set(rels[0]) == {"@odata.type", "@odata.etag", "id", "displayName", "duration", "customer",
                            "accessDetails", "status", "autoExtendDuration", "createdDateTime",
                            "lastModifiedDateTime", "activatedDateTime", "endDateTime"}
    assert rels[0]["customer"] == {"tenantId": GOOD, "displayName": "Alpine Ski House"}
    expiring = next(x for x in rels if x["customer"]["tenantId"] == EXPIRING_ID)
    assert expiring["autoExtendDuration"] == "PT0S"
    lacking = next(x for x in rels if x["customer"]["tenantId"] == LACKS_ROLE_ID)
    assert "e8611ab8-c189-46e8-94e1-60213ab1f814" not in {u["roleDefinitionId"]
                                                         for u in lacking["accessDetails"]["unifiedRoles"]}

    def listed(query: str) -> list[dict[str, Any]]:
        r = http.get(f"{sim.graph_url}{RELATIONSHIPS}?{query}", headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()["value"]
    assert len(listed("$filter=status eq 'active'")) == 12
    assert [x["status"] for x in listed(f"$filter=customer/tenantId eq '{TERMINATED_ID}'")] == ["terminated"]
    assert listed(f"$filter=(status eq 'active') AND (customer/tenantId eq '{TERMINATED_ID}')") == []  # CIPP's form

    seen, url, pages = [], f"{sim.graph_url}{RELATIONSHIPS}?$top=5&$filter=status eq 'active'", 0
    while url and pages < 10:
        body = http.get(url, headers=auth(token)).json()
        seen += [x["id"] for x in body["value"]]
        url, pages = body.get("@odata.nextLink"), pages + 1
    assert pages == 3 and len(seen) == len(set(seen)) == 12
    for bad in ("$top=301", "$top=0", "$filter=displayName eq 'x'", "$orderby=status"):
        assert http.get(f"{sim.graph_url}{RELATIONSHIPS}?{bad}", headers=auth(token)).status_code == 400


def test_customers_are_those_with_an_active_relationship(sim: Simulator, http: httpx.Client) -> None:
    token = Operator(sim).token(GRAPH)
    r = http.get(f"{sim.graph_url}{CUSTOMERS}", headers=auth(token))
    assert r.status_code == 200, r.text
    ids = [c["tenantId"] for c in r.json()["value"]]
    assert ids == CUSTOMER_IDS and TERMINATED_ID not in ids
    assert r.json()["value"][0] == {"@odata.type": "#microsoft.graph.delegatedAdminCustomer",
                                    "@odata.etag": r.json()["value"][0]["@odata.etag"], "id": GOOD, "tenantId": GOOD,
                                    "displayName": "Alpine Ski House"}
    assert sim.request_counts["graph.delegatedAdminCustomers"] == 1


def test_discovery_plays_the_partners_faults(simulator_for: Any) -> None:
    scenario = msp_scenario()
    scenario["partner"]["faults"] = {PARTNER_TENANT_ID: {"graph.delegatedAdminRelationships": {
        "status": 503, "times": 1, "retryAfter": 2}}}
    sim = simulator_for(scenario)
    token = Operator(sim).token(GRAPH)
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        first = http.get(f"{sim.graph_url}{RELATIONSHIPS}", headers=auth(token))
        second = http.get(f"{sim.graph_url}{RELATIONSHIPS}", headers=auth(token))
    assert (first.status_code, first.headers["Retry-After"], second.status_code) == (503, "2", 200)
    assert first.json()["error"]["code"] == "serviceNotAvailable"


def test_discovery_needs_the_delegated_scope(simulator_for: Any) -> None:
    scenario = msp_scenario()
    scenario["partner"]["delegatedScopes"] = ["User.Read"]
    sim = simulator_for(scenario)
    token = Operator(sim).token(GRAPH)
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        r = http.get(f"{sim.graph_url}{RELATIONSHIPS}", headers=auth(token))
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"


def test_app_only_discovery_needs_the_app_role_in_the_partner_tenant(simulator_for: Any) -> None:
    # The live Learn page lists Application permissions for both lists (research20 §1-2).
    scenario = msp_scenario()
    scenario["tenants"].append({"tenantId": PARTNER_TENANT_ID, "displayName": "Fabrikam MSP",
                                "permissions": ["DelegatedAdminRelationship.Read.All"]})
    sim = simulator_for(scenario)
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        token = app_only(http, sim, PARTNER_TENANT_ID).json()["access_token"]
        assert len(http.get(f"{sim.graph_url}{CUSTOMERS}", headers=auth(token)).json()["value"]) == 12
        sim.update_tenant(PARTNER_TENANT_ID, lambda t: t.update(permissions=["Policy.Read.All"]))
        r = http.get(f"{sim.graph_url}{CUSTOMERS}", headers=auth(token))
        assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"
        assert http.get(f"{sim.graph_url}/servicePrincipals(appId='{GRAPH_APP_ID}')",
                        headers=auth(token)).status_code == 403  # app-only onboarding calls: not simulated


# -- Partner Center consent -------------------------------------------------------------------------------------------
def test_partner_center_consent_and_its_errors(sim: Simulator, http: httpx.Client) -> None:
    op = Operator(sim)
    pc = op.token(PC)
    r = consent(http, sim, pc, GOOD)
    assert r.status_code == 201, r.text
    tenant = next(t for t in sim.scenario["tenants"] if t["tenantId"] == GOOD)
    assert tenant["consent"] == "revoked" and tenant["permissions"] == []
    assert tenant["delegatedGrants"][GRAPH_APP_ID] == CONSENT_SCOPES.split(",")
    again = consent(http, sim, pc, GOOD)
    assert again.status_code == 409 and again.json()["description"] == "Permission entry already exists."

    pascal = {"ApplicationId": APP["clientId"], "ApplicationGrants": [
        {"EnterpriseApplicationId": GRAPH_APP_ID, "Scope": "Application.ReadWrite.All"}]}
    assert consent(http, sim, pc, CUSTOMER_IDS[1], pascal).status_code == 201  # CIPP's PascalCase
    denied = consent(http, sim, pc, TERMINATED_ID)
    assert denied.status_code == 403 and set(denied.json()) == {"code", "description", "data", "source"}
    assert consent(http, sim, pc, str(uuid.uuid4())).status_code == 404
    wrong_app = {"applicationId": str(uuid.uuid4()), "applicationGrants": pascal["ApplicationGrants"]}
    assert consent(http, sim, pc, CUSTOMER_IDS[2], wrong_app).status_code == 400
    assert consent(http, sim, pc, CUSTOMER_IDS[2], {"applicationId": APP["clientId"]}).status_code == 400
    assert consent(http, sim, op.token(GRAPH), CUSTOMER_IDS[2]).status_code == 401  # a Graph token
    assert sim.request_counts["partnerCenter.consent"] == 8

    gone = http.delete(f"{sim.url}/v1/customers/{GOOD}/applicationconsents/{APP['clientId']}", headers=auth(pc))
    assert gone.status_code == 200
    assert next(t for t in sim.scenario["tenants"] if t["tenantId"] == GOOD)["consent"] is False


def test_partner_center_consent_needs_a_consenting_role_and_plays_faults(simulator_for: Any) -> None:
    scenario = msp_scenario()
    scenario["partner"]["relationships"][0]["roles"] = [GLOBAL_READER]
    scenario["partner"]["faults"] = {CUSTOMER_IDS[1]: {"partnerCenter.consent": {"status": 500, "times": 1}}}
    sim = simulator_for(scenario)
    pc = Operator(sim).token(PC)
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as http:
        assert consent(http, sim, pc, GOOD).status_code == 403
        first, second = consent(http, sim, pc, CUSTOMER_IDS[1]), consent(http, sim, pc, CUSTOMER_IDS[1])
    assert (first.status_code, second.status_code) == (500, 201)
    assert first.json()["description"] == "Callers can retry the request."


# -- GDAP-delegated Graph in the customer tenant ----------------------------------------------------------------------
def onboard(http: httpx.Client, sim: Simulator, op: Operator, tenant: str) -> dict[str, Any]:
    """The CIPP-like sequence (research20 "Suggested onboarding sequence"); returns each step's statuses."""
    assert consent(http, sim, op.token(PC), tenant).status_code == 201
    h = auth(op.token(GRAPH, tenant=tenant))
    g = sim.graph_url
    ours = http.get(f"{g}/servicePrincipals(appId='{APP['clientId']}')", headers=h)
    assert ours.status_code == 200, ours.text
    sp = ours.json()["id"]
    steps: dict[str, Any] = {"createSp": http.post(f"{g}/servicePrincipals", json={"appId": APP["clientId"]},
                                                   headers=h).status_code, "appRoles": {}}
    for resource in (GRAPH_APP_ID, EXCHANGE_APP_ID):
        res = http.get(f"{g}/servicePrincipals(appId='{resource}')", headers=h).json()
        for role in res["appRoles"]:
            r = http.post(f"{g}/servicePrincipals/{res['id']}/appRoleAssignedTo", headers=h,
                          json={"principalId": sp, "resourceId": res["id"], "appRoleId": role["id"]})
            steps["appRoles"][role["value"]] = r.status_code
            if r.status_code == 201:
                assert r.json()["principalId"] == sp and r.json()["appRoleId"] == role["id"]
    r = http.post(f"{g}/roleManagement/directory/roleAssignments", headers=h,
                  json={"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": GLOBAL_READER,
                        "principalId": sp, "directoryScopeId": "/"})
    steps["globalReader"] = r.status_code
    steps["sp"], steps["headers"] = sp, h
    return steps


def test_full_onboarding_makes_the_apps_own_token_work(sim: Simulator, http: httpx.Client) -> None:
    op = Operator(sim)
    steps = onboard(http, sim, op, GOOD)
    assert steps["createSp"] == 409
    assert steps["appRoles"] == {p: 201 for p in OFFERED} and steps["globalReader"] == 201
    g, h, sp = sim.graph_url, steps["headers"], steps["sp"]

    graph_sp = http.get(f"{g}/servicePrincipals(appId='{GRAPH_APP_ID}')", headers=h).json()
    role = graph_sp["appRoles"][0]
    dup = http.post(f"{g}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo", headers=h,
                    json={"principalId": sp, "resourceId": graph_sp["id"], "appRoleId": role["id"]})
    assert dup.status_code == 400 and dup.json()["error"]["message"] == \
        "Permission being assigned already exists on the object"
    dup = http.post(f"{g}/roleManagement/directory/roleAssignments", headers=h,
                    json={"roleDefinitionId": GLOBAL_READER, "principalId": sp, "directoryScopeId": "/"})
    assert dup.status_code == 400 and "conflicting object" in dup.json()["error"]["message"]
    listed = http.get(f"{g}/roleManagement/directory/roleAssignments?$filter=principalId eq '{sp}'", headers=h)
    assert [a["roleDefinitionId"] for a in listed.json()["value"]] == [GLOBAL_READER]
    held = http.get(f"{g}/servicePrincipals/{sp}/appRoleAssignments", headers=h).json()["value"]
    assert len(held) == len(OFFERED)
    assert http.get(f"{g}/servicePrincipals(appId='{uuid.uuid4()}')", headers=h).status_code == 404

    token = app_only(http, sim, GOOD).json()["access_token"]
    assert set(claims(token)["roles"]) == set(OFFERED) - {"Exchange.ManageAsApp"}
    assert claims(token)["oid"] == sp  # the principal the assignments were made to
    exo = app_only(http, sim, GOOD, "https://outlook.office365.com/.default").json()["access_token"]
    r = http.post(f"{sim.url}/adminapi/beta/{GOOD}/InvokeCommand", headers=auth(exo),
                  json={"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}})
    assert r.status_code == 200, r.text
    assert sim.request_counts["graph.roleAssignments"] == 3 and sim.request_counts["graph.appRoleAssignments"] >= 6


def test_a_relationship_without_privileged_role_administrator_gets_consent_but_not_graph_roles(
        sim: Simulator, http: httpx.Client) -> None:
    steps = onboard(http, sim, Operator(sim), LACKS_ROLE_ID)
    assert steps["appRoles"]["Exchange.ManageAsApp"] == 201  # Cloud Application Administrator suffices
    assert {v for p, v in steps["appRoles"].items() if p != "Exchange.ManageAsApp"} == {403}
    assert steps["globalReader"] == 403
    tenant = next(t for t in sim.scenario["tenants"] if t["tenantId"] == LACKS_ROLE_ID)
    assert tenant["permissions"] == ["Exchange.ManageAsApp"] and tenant["exchangeRole"] is False


def test_customer_twelve_is_consented_but_misses_the_exchange_role(sim: Simulator, http: httpx.Client) -> None:
    steps = onboard(http, sim, Operator(sim), MISSING_EXCHANGE_ROLE_ID)
    assert set(steps["appRoles"].values()) == {201} and steps["globalReader"] == 403
    listed = http.get(f"{sim.graph_url}/roleManagement/directory/roleAssignments", headers=steps["headers"])
    assert listed.status_code == 200 and listed.json()["value"] == []  # the fault hits the POST only
    exo = app_only(http, sim, MISSING_EXCHANGE_ROLE_ID, "https://outlook.office365.com/.default").json()
    r = http.post(f"{sim.url}/adminapi/beta/{MISSING_EXCHANGE_ROLE_ID}/InvokeCommand",
                  headers=auth(exo["access_token"]),
                  json={"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}})
    assert r.status_code == 403


def test_delegated_tokens_are_not_served_on_app_only_endpoints(sim: Simulator, http: httpx.Client) -> None:
    token = Operator(sim).token(GRAPH)
    assert http.get(f"{sim.graph_url}/organization", headers=auth(token)).status_code == 403


# -- scenario ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, field", [
    (lambda p: p.update(tenantID="x"), "partner.tenantID"),
    (lambda p: p["operator"].update(signIn="maybe"), "partner.operator.signIn"),
    (lambda p: p["relationships"][0].update(customerTenantId=str(uuid.uuid4())),
     "partner.relationships[0].customerTenantId"),
    (lambda p: p["relationships"][1].update(status="pending"), "partner.relationships[1].status"),
    (lambda p: p["relationships"][1].update(autoExtendDuration="P30D"), "partner.relationships[1].autoExtendDuration"),
    (lambda p: p["relationships"][1].update(duration="P3Y"), "partner.relationships[1].duration"),
    (lambda p: p["relationships"][1].update(displayName=p["relationships"][0]["displayName"]),
     "partner.relationships[1].displayName"),
    (lambda p: p.update(faults={GOOD: {"graph.nope": {"status": 500}}}), f"partner.faults.{GOOD}.graph.nope"),
])
def test_partner_scenario_errors_name_the_field(change: Any, field: str) -> None:
    scenario = copy.deepcopy(msp_scenario())
    change(scenario["partner"])
    with pytest.raises(ValueError, match="scenario: " + re.escape(field)):
        load_scenario(scenario)


def test_known_app_roles_cover_the_default_permissions() -> None:
    known = {value for _, roles in RESOURCES.values() for value in roles}
    assert set(DEFAULT_PERMISSIONS) <= known

"""The local Microsoft cloud (simulator/) over real HTTPS, with plain httpx and with the real SDKs."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from simulator import Simulator, load_scenario

pytestmark = pytest.mark.integration

APP = "11111111-1111-1111-1111-111111111111"
SECRET = "s3cret-value-never-logged"
T1 = "84841066-274d-4ec0-a5c1-276be684bdd3"  # licensed, everything on
T2 = "22222222-aaaa-bbbb-cccc-000000000002"  # unlicensed, no Exchange role, own app
T3 = "33333333-aaaa-bbbb-cccc-000000000003"  # consent revoked
T4 = "44444444-aaaa-bbbb-cccc-000000000004"  # all defaults
APP2 = "99999999-0000-0000-0000-000000000009"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXO_SCOPE = "https://outlook.office365.com/.default"


def _policy(i: int, state: str = "enabled") -> dict[str, Any]:
    return {"id": f"{i:08d}-0000-0000-0000-000000000000", "displayName": f"Policy {i}", "state": state,
            "createdDateTime": "2025-01-01T00:00:00Z", "modifiedDateTime": None,
            "conditions": {"clientAppTypes": ["exchangeActiveSync", "other"],
                           "applications": {"includeApplications": ["All"]},
                           "users": {"includeUsers": ["All"]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}


def _signin(i: int, when: str, client: str) -> dict[str, Any]:
    return {"id": f"signin-{i}", "createdDateTime": when, "userPrincipalName": f"user{i}@contoso.com",
            "clientAppUsed": client, "status": {"errorCode": 0}}


def scenario() -> dict[str, Any]:
    signins = [
        _signin(1, "2026-01-05T10:00:00Z", "IMAP4"),
        _signin(2, "2026-01-07T10:00:00.1234567Z", "Authenticated SMTP"),
        _signin(3, "2025-12-30T10:00:00Z", "IMAP4"),
        _signin(4, "2026-01-06T10:00:00Z", "Browser"),
        _signin(5, "2026-01-08T10:00:00Z", "imap4"),
    ]
    audits = [
        {"id": "a1", "activityDateTime": "2026-01-05T02:15:00Z", "loggedByService": "Conditional Access",
         "activityDisplayName": "Update conditional access policy", "category": "Policy"},
        {"id": "a2", "activityDateTime": "2026-01-06T02:15:00Z", "loggedByService": "Core Directory",
         "activityDisplayName": "Add user", "category": "UserManagement"},
        {"id": "a3", "activityDateTime": "2025-12-01T00:00:00Z", "loggedByService": "conditional access",
         "activityDisplayName": "Add conditional access policy", "category": "Policy"},
    ]
    mailboxes = [
        {"Identity": f"user{i}", "PrimarySmtpAddress": f"user{i}@contoso.com",
         "ExternalDirectoryObjectId": f"00000000-0000-0000-0000-{i:012d}",
         "SmtpClientAuthenticationDisabled": [True, False, None, "False"][i % 4],
         "PopEnabled": i % 5 == 0, "ImapEnabled": "True" if i % 7 == 0 else "False", "ActiveSyncEnabled": True}
        for i in range(1, 13)
    ]
    return {
        "app": {"clientId": APP, "clientSecret": SECRET},
        "pageSize": {"graph": 2, "exchange": 1000},
        "tenants": [
            {"tenantId": T1, "displayName": "Contoso",
             "graph": {"conditionalAccessPolicies": [_policy(i) for i in range(1, 6)],
                       "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False,
                                              "sharingCapability": "externalUserSharingOnly"},
                       "signIns": signins, "directoryAudits": audits},
             "exchange": {
                 "organizationConfig": {"Name": "contoso.onmicrosoft.com", "DefaultAuthenticationPolicy": "Block Basic",
                                        "OAuth2ClientProfileEnabled": True},
                 "authenticationPolicies": [{"Name": "Block Basic", "AllowBasicAuthSmtp": False,
                                             "AllowBasicAuthPop": False}],
                 "casMailboxes": mailboxes,
                 "users": [{"UserPrincipalName": "user1@contoso.com", "AuthenticationPolicy": None}]}},
            {"tenantId": T2, "displayName": "Fabrikam", "licensed": False, "exchangeRole": False,
             "app": {"clientId": APP2, "clientSecret": "other-secret"}},
            {"tenantId": T3, "displayName": "Revoked", "consent": False},
            {"tenantId": T4},
        ],
    }


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(scenario()) as s:
        yield s


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sim.ssl_context(), timeout=10) as c:
        yield c


def get_token(http: httpx.Client, sim: Simulator, tenant: str = T1, scope: str = GRAPH_SCOPE,
              client_id: str = APP, secret: str = SECRET) -> str:
    r = http.post(f"{sim.url}/{tenant}/oauth2/v2.0/token",
                  data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
                        "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def exo(http: httpx.Client, sim: Simulator, token: str, cmdlet: str, params: dict[str, Any] | None = None,
        tenant: str = T1, query: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}}
    return http.post(f"{sim.url}/adminapi/beta/{tenant}/InvokeCommand{query}", json=body,
                     headers={**(bearer(token) if token else {}), **(headers or {})})


# -- token endpoint ---------------------------------------------------------------------------------
def test_token_success_is_a_jwt_with_tenant_audience_app_and_roles(sim: Simulator, http: httpx.Client) -> None:
    r = http.post(f"{sim.url}/{T1}/oauth2/v2.0/token",
                  data={"client_id": APP, "client_secret": SECRET, "grant_type": "client_credentials",
                        "scope": GRAPH_SCOPE})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["ext_expires_in"] == 3599
    claims = jwt_claims(body["access_token"])
    assert claims["tid"] == T1 and claims["aud"] == "https://graph.microsoft.com" and claims["appid"] == APP
    assert "Policy.Read.All" in claims["roles"] and "Exchange.ManageAsApp" not in claims["roles"]
    assert claims["exp"] > time.time() + 3000
    exo_claims = jwt_claims(get_token(http, sim, scope=EXO_SCOPE))
    assert exo_claims["aud"] == "https://outlook.office365.com" and exo_claims["roles"] == ["Exchange.ManageAsApp"]
    # Per-tenant app override: T2 only accepts its own app.
    assert jwt_claims(get_token(http, sim, T2, client_id=APP2, secret="other-secret"))["tid"] == T2


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error", "code"),
    [
        ("00000000-dead-beef-0000-000000000000", {}, 400, "invalid_request", 90002),
        (T1, {"client_secret": "wrong-secret"}, 401, "invalid_client", 7000215),
        (T1, {"client_id": "44444444-4444-4444-4444-444444444444"}, 400, "unauthorized_client", 700016),
        (T2, {}, 400, "unauthorized_client", 700016),  # T2 accepts only its own app
        (T3, {}, 401, "invalid_client", 7000229),  # no service principal: never consented, or deleted
        (T1, {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        (T1, {"scope": "https://management.azure.com/.default"}, 400, "invalid_scope", 70011),
        (T1, {"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 70011),
        (T1, {"client_secret": ""}, 401, "invalid_client", 7000218),
    ],
)
def test_token_errors_have_entra_shape(sim: Simulator, http: httpx.Client, tenant: str, form: dict[str, str],
                                       status: int, error: str, code: int) -> None:
    data = {"client_id": APP, "client_secret": SECRET, "grant_type": "client_credentials", "scope": GRAPH_SCOPE,
            **form}
    r = http.post(f"{sim.url}/{tenant}/oauth2/v2.0/token", data=data)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
                         "error_uri"}
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert SECRET not in r.text and "wrong-secret" not in r.text
    if code == 90002:
        assert f"Tenant '{tenant}' not found" in body["error_description"]
    if code == 700016:
        assert "was not found in the directory" in body["error_description"]
    if code == 7000229:
        assert f"The client application {APP} is missing service principal in the tenant {T3}" \
            in body["error_description"]


def test_openid_configuration_and_tenant_lookup_by_domain(sim: Simulator, http: httpx.Client) -> None:
    r = http.get(f"{sim.url}/{T1}/v2.0/.well-known/openid-configuration")
    assert r.json()["token_endpoint"] == f"{sim.url}/{T1}/oauth2/v2.0/token"
    # Entra also accepts the initial domain in place of the tenant GUID.
    assert jwt_claims(get_token(http, sim, "contoso.onmicrosoft.com"))["tid"] == T1


# -- Graph ------------------------------------------------------------------------------------------
def test_graph_endpoints_answer_reference_shapes(sim: Simulator, http: httpx.Client) -> None:
    h = bearer(get_token(http, sim))
    org = http.get(f"{sim.graph_url}/organization", headers=h).json()
    assert org["@odata.context"] == f"{sim.graph_url}/$metadata#organization"
    assert org["value"][0]["id"] == T1 and org["value"][0]["displayName"] == "Contoso"
    assert org["value"][0]["verifiedDomains"][0]["name"] == "contoso.onmicrosoft.com"

    sd = http.get(f"{sim.graph_url}/policies/identitySecurityDefaultsEnforcementPolicy", headers=h).json()
    assert sd["isEnabled"] is False and sd["id"] == "00000000-0000-0000-0000-000000000005"
    assert "@odata.context" in sd

    sp = http.get(f"{sim.graph_url}/admin/sharepoint/settings", headers=h).json()
    assert "isLegacyAuthProtocolsEnabled" in sp and "value" not in sp  # top-level entity

    sel = http.get(f"{sim.graph_url}/organization?$select=id,displayName", headers=h).json()
    assert sel["@odata.context"].endswith("#organization(id,displayName)")
    assert set(sel["value"][0]) == {"id", "displayName"}

    one = http.get(f"{sim.graph_url}/identity/conditionalAccess/policies/00000003-0000-0000-0000-000000000000",
                   headers=h)
    assert one.status_code == 200 and one.json()["displayName"] == "Policy 3"

    # Tenant defaults when the scenario omits everything (T2 with its own app).
    h2 = bearer(get_token(http, sim, T2, client_id=APP2, secret="other-secret"))
    assert http.get(f"{sim.graph_url}/identity/conditionalAccess/policies", headers=h2).json()["value"] == []
    assert http.get(f"{sim.graph_url}/admin/sharepoint/settings", headers=h2).json()[
        "isLegacyAuthProtocolsEnabled"] is False  # off by default since 2026-02-16 (MC1184649)

    missing = http.get(f"{sim.graph_url}/users/nobody/mailFolders", headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_graph_rejects_missing_invalid_expired_and_exchange_tokens(sim: Simulator, http: httpx.Client) -> None:
    url = f"{sim.graph_url}/organization"
    exo_token = get_token(http, sim, scope=EXO_SCOPE)
    graph_token = get_token(http, sim)
    forged = graph_token.rsplit(".", 1)[0] + ".AAAA"
    for headers in ({}, bearer("not-a-jwt"), bearer(exo_token), bearer(forged), {"Authorization": graph_token}):
        r = http.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "InvalidAuthenticationToken"

    with Simulator({**scenario(), "tokenLifetime": 1}) as short:
        with httpx.Client(verify=short.ssl_context()) as c:
            tok = get_token(c, short)
            time.sleep(1.1)
            r = c.get(f"{short.graph_url}/organization", headers=bearer(tok))
            assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_graph_paging_follows_absolute_next_links_across_three_pages(sim: Simulator, http: httpx.Client) -> None:
    h = bearer(get_token(http, sim))
    url: str | None = f"{sim.graph_url}/identity/conditionalAccess/policies"
    pages: list[list[str]] = []
    while url:
        body = http.get(url, headers=h).json()
        pages.append([p["displayName"] for p in body["value"]])
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{sim.graph_url}/identity/conditionalAccess/policies?") and "$skiptoken=" in url
    assert pages == [["Policy 1", "Policy 2"], ["Policy 3", "Policy 4"], ["Policy 5"]]
    assert sim.request_counts["graph.conditionalAccessPolicies"] == 3

    top = http.get(f"{sim.graph_url}/identity/conditionalAccess/policies?$top=4", headers=h).json()
    assert len(top["value"]) == 4 and "$top=4" in top["@odata.nextLink"]
    bad = http.get(f"{sim.graph_url}/identity/conditionalAccess/policies?$skiptoken=garbage", headers=h)
    assert bad.status_code == 400


def test_signins_are_newest_first_and_filtered(sim: Simulator, http: httpx.Client) -> None:
    h = bearer(get_token(http, sim))
    base = f"{sim.graph_url}/auditLogs/signIns"

    def ids(query: str) -> list[str]:
        out: list[str] = []
        url: str | None = f"{base}?{query}"
        while url:
            r = http.get(url, headers=h)
            assert r.status_code == 200, r.text
            out += [s["id"] for s in r.json()["value"]]
            url = r.json().get("@odata.nextLink")
        return out

    assert ids("$top=1000") == ["signin-5", "signin-2", "signin-4", "signin-1", "signin-3"]
    assert ids("$filter=createdDateTime ge 2026-01-01T00:00:00Z") == ["signin-5", "signin-2", "signin-4",
                                                                       "signin-1"]
    # eq is case-insensitive; the nextLink keeps the filter (page size 2 -> two pages).
    assert ids("$filter=createdDateTime ge 2026-01-01T00:00:00Z and clientAppUsed eq 'IMAP4'") == ["signin-5",
                                                                                                  "signin-1"]
    assert ids("$filter=clientAppUsed eq 'Authenticated SMTP' and createdDateTime ge 2026-01-07T10:00:00.1234567Z"
               "&$top=1") == ["signin-2"]
    first = http.get(f"{base}?$filter=createdDateTime ge 2026-01-01T00:00:00Z", headers=h).json()
    assert "$filter=createdDateTime%20ge%202026-01-01T00%3A00%3A00Z" in first["@odata.nextLink"]

    for bad in ("createdDateTime ge '2026-01-01T00:00:00Z'",  # quoted date
                "createdDateTime ge 2026-01-01T00:00:00Z or clientAppUsed eq 'IMAP4'",
                "startswith(clientAppUsed,'IMAP')",
                "clientAppUsed ne 'Browser'",
                "status/errorCode eq 0",
                "createdDateTime ge yesterday"):
        r = http.get(base, params={"$filter": bad}, headers=h)
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == "BadRequest" and "Invalid filter clause" in r.json()["error"]["message"]


def test_signins_list_refuses_select_as_graph_does(sim: Simulator, http: httpx.Client) -> None:
    # List signIns takes $top, $skiptoken and $filter only; $select is a 400 (Learn signin-list, observed answer).
    h = bearer(get_token(http, sim))
    r = http.get(f"{sim.graph_url}/auditLogs/signIns", params={"$select": "id,createdDateTime"}, headers=h)
    assert r.status_code == 400
    assert "Query option 'Select' is not allowed" in r.json()["error"]["message"]


def test_directory_audits_filter_on_service_case_insensitively(sim: Simulator, http: httpx.Client) -> None:
    h = bearer(get_token(http, sim))
    r = http.get(f"{sim.graph_url}/auditLogs/directoryAudits",
                 params={"$filter": "loggedByService eq 'Conditional Access' and activityDateTime ge "
                                    "2025-01-01T00:00:00Z", "$top": "1000"}, headers=h)
    assert [a["id"] for a in r.json()["value"]] == ["a1", "a3"]
    assert r.json()["@odata.context"].endswith("#auditLogs/directoryAudits")


def test_unlicensed_tenant_gets_403_on_sign_ins_only(sim: Simulator, http: httpx.Client) -> None:
    """Sign-ins need Entra ID P1/P2; the audit log is in every edition (7 days on Free)."""
    h = bearer(get_token(http, sim, T2, client_id=APP2, secret="other-secret"))
    r = http.get(sim.graph_url + "/auditLogs/signIns", headers=h)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert http.get(sim.graph_url + "/auditLogs/directoryAudits", headers=h).status_code == 200
    assert http.get(f"{sim.graph_url}/organization", headers=h).status_code == 200


def test_missing_permission_is_authorization_request_denied(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(T1, lambda t: t["permissions"].remove("Policy.Read.All"))
    h = bearer(get_token(http, sim))
    r = http.get(f"{sim.graph_url}/identity/conditionalAccess/policies", headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"


@pytest.mark.parametrize(("missing", "path", "status", "code", "text"), [
    ("SharePointTenantSettings.Read.All", "/admin/sharepoint/settings", 401, "accessDenied",
     "There has been an error authenticating the request."),
    ("AuditLog.Read.All", "/auditLogs/signIns", 403, "Authentication_MSGraphPermissionMissing",
     "Calling principal does not have required MSGraph permissions AuditLog.Read.All"),
    ("AuditLog.Read.All", "/auditLogs/directoryAudits", 403, "Authentication_MSGraphPermissionMissing",
     "Calling principal does not have required MSGraph permissions AuditLog.Read.All"),
    ("Directory.Read.All", "/auditLogs/directoryAudits", 403, "Authentication_ApplicationHasNoDirectoryReadAccess",
     "Failed to do premium license check from ADGraph"),
])
def test_a_missing_permission_is_refused_the_way_graph_refuses_it_there(sim: Simulator, http: httpx.Client,
                                                                       missing, path, status, code, text) -> None:
    sim.update_tenant(T1, lambda t: t["permissions"].remove(missing))
    r = http.get(sim.graph_url + path, headers=bearer(get_token(http, sim)))
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]) == (status, code, text)


def test_revoked_consent_issues_tokens_without_roles_and_every_source_refuses(sim: Simulator,
                                                                             http: httpx.Client) -> None:
    """The service principal stays, its app role assignments are gone: Entra still issues the token (no roles
    claim), Graph and Exchange refuse it."""
    sim.update_tenant(T1, lambda t: t.update(consent="revoked"))
    token = get_token(http, sim)
    assert jwt_claims(token)["roles"] == [] and jwt_claims(get_token(http, sim, scope=EXO_SCOPE))["roles"] == []
    for path in ("/organization", "/identity/conditionalAccess/policies", "/admin/sharepoint/settings",
                 "/auditLogs/signIns"):
        assert http.get(sim.graph_url + path, headers=bearer(token)).status_code in (401, 403), path


def test_batch_mixed_results_each_counted_under_its_own_key(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(T1, lambda t: t["faults"].update(
        {"graph.conditionalAccessPolicies": {"status": 429, "times": 1, "retryAfter": 7}}))
    sim.update_tenant(T1, lambda t: t.update(licensed=False))
    h = bearer(get_token(http, sim))
    reqs = [{"id": "1", "method": "GET", "url": "/organization?$select=id,displayName"},
            {"id": "2", "method": "GET", "url": "/policies/identitySecurityDefaultsEnforcementPolicy"},
            {"id": "3", "method": "GET", "url": "/identity/conditionalAccess/policies"},
            {"id": "4", "method": "GET", "url": "auditLogs/signIns?$top=1"},
            {"id": "5", "method": "GET", "url": "/no/such/thing"},
            {"id": "6", "method": "GET", "url": "/admin/sharepoint/settings", "dependsOn": ["3"]}]
    r = http.post(f"{sim.graph_url}/$batch", json={"requests": reqs}, headers=h)
    assert r.status_code == 200
    by_id = {item["id"]: item for item in r.json()["responses"]}
    assert {k: v["status"] for k, v in by_id.items()} == {"1": 200, "2": 200, "3": 429, "4": 403, "5": 404,
                                                          "6": 424}
    assert by_id["1"]["body"]["value"][0]["displayName"] == "Contoso"
    assert by_id["3"]["headers"]["Retry-After"] == "7"
    assert by_id["3"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["4"]["body"]["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    counts = sim.request_counts
    assert counts["graph.batch"] == 1 and counts["graph.organization"] == 1
    assert counts["graph.conditionalAccessPolicies"] == 1 and counts["graph.signIns"] == 1
    # The fault was consumed by the batch item: a direct request now succeeds.
    assert http.get(f"{sim.graph_url}/identity/conditionalAccess/policies", headers=h).status_code == 200

    for bad in ([{"id": "1", "method": "GET", "url": "/organization"}] * 2,
                [{"id": str(i), "method": "GET", "url": "/organization"} for i in range(21)],
                [{"id": "1", "method": "GET", "url": f"{sim.graph_url}/organization"}],
                []):
        rb = http.post(f"{sim.graph_url}/$batch", json={"requests": bad}, headers=h)
        assert rb.status_code == 400 and rb.json()["error"]["code"] == "BadRequest"


def test_fault_injection_times_and_retry_after(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(T1, lambda t: t["faults"].update({
        "graph.organization": {"status": 503, "times": 2, "retryAfter": 1},
        "exchange.Get-TransportConfig": {"status": 429, "times": 1, "body": {"error": {"code": "Throttled"}}},
        "token": {"status": 500, "times": 1},
    }))
    r = http.post(f"{sim.url}/{T1}/oauth2/v2.0/token",
                  data={"client_id": APP, "client_secret": SECRET, "grant_type": "client_credentials",
                        "scope": GRAPH_SCOPE})
    assert r.status_code == 500 and r.json()["error"] == "temporarily_unavailable"
    h = bearer(get_token(http, sim))
    statuses = []
    for _ in range(3):
        resp = http.get(f"{sim.graph_url}/organization", headers=h)
        statuses.append(resp.status_code)
        if resp.status_code == 503:
            assert resp.headers["Retry-After"] == "1"
    assert statuses == [503, 503, 200]
    tok = get_token(http, sim, scope=EXO_SCOPE)
    first, second = exo(http, sim, tok, "Get-TransportConfig"), exo(http, sim, tok, "Get-TransportConfig")
    assert (first.status_code, first.json(), second.status_code) == (429, {"error": {"code": "Throttled"}}, 200)
    assert sim.scenario["tenants"][0]["faults"] == {}  # all cleared
    assert sim.request_counts["graph.organization"] == 3 and sim.request_counts["token"] == 3


def test_fault_delay_slows_requests(sim: Simulator, http: httpx.Client) -> None:
    sim.update_tenant(T1, lambda t: t["faults"].update({"graph.organization": {"delay": 0.3, "times": 1}}))
    h = bearer(get_token(http, sim))
    t0 = time.monotonic()
    assert http.get(f"{sim.graph_url}/organization", headers=h).status_code == 200
    assert time.monotonic() - t0 >= 0.3


def test_update_tenant_is_visible_on_next_request_and_atomic(sim: Simulator, http: httpx.Client) -> None:
    h = bearer(get_token(http, sim))
    url = f"{sim.graph_url}/policies/identitySecurityDefaultsEnforcementPolicy"
    assert http.get(url, headers=h).json()["isEnabled"] is False
    sim.update_tenant(T1, lambda t: t["graph"]["securityDefaults"].update(isEnabled=True))
    assert http.get(url, headers=h).json()["isEnabled"] is True

    sim.update_tenant(T1, lambda t: t["graph"]["signIns"].append(
        _signin(9, "2027-01-01T00:00:00Z", "POP3")))
    assert http.get(f"{sim.graph_url}/auditLogs/signIns", headers=h).json()["value"][0]["id"] == "signin-9"

    def broken(t: dict[str, Any]) -> None:
        t["graph"]["securityDefaults"]["isEnabled"] = False
        t["consent"] = "yes"  # invalid -> whole update rejected

    with pytest.raises(ValueError, match="consent"):
        sim.update_tenant(T1, broken)
    assert http.get(url, headers=h).json()["isEnabled"] is True
    with pytest.raises(KeyError):
        sim.update_tenant("12345678-1234-1234-1234-123456789012", lambda t: None)

    # Revoking consent bites immediately, even for an already issued token.
    sim.update_tenant(T1, lambda t: t.update(consent=False))
    assert http.get(url, headers=h).status_code == 401

    sim.set_scenario(scenario())
    assert http.get(url, headers=bearer(get_token(http, sim))).json()["isEnabled"] is False


# -- Exchange ---------------------------------------------------------------------------------------
def test_exchange_cmdlets_paging_select_and_filter(sim: Simulator, http: httpx.Client) -> None:
    tok = get_token(http, sim, scope=EXO_SCOPE)
    tc = exo(http, sim, tok, "Get-TransportConfig", headers={
        "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{T1}",
        "X-CmdletName": "Get-TransportConfig", "client-request-id": "abc"})
    assert tc.status_code == 200
    assert tc.json()["@odata.context"].endswith("$metadata#Collection(Exchange.GenericHashTable)")
    assert tc.json()["value"] == [{"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": True}]
    assert exo(http, sim, tok, "Get-OrganizationConfig").json()["value"][0]["DefaultAuthenticationPolicy"] == \
        "Block Basic"
    assert exo(http, sim, tok, "get-authenticationpolicy").json()["value"][0]["AllowBasicAuthSmtp"] is False
    assert exo(http, sim, tok, "Get-CASMailboxPlan").json()["value"] == []
    assert exo(http, sim, tok, "Get-User", {"Identity": "user1@contoso.com"}).json()["value"][0][
        "AuthenticationPolicy"] is None

    # Paging: Prefer maxpagesize, same body POSTed to the absolute nextLink, $select kept.
    params = {"ResultSize": "Unlimited"}
    url: str | None = f"{sim.url}/adminapi/beta/{T1}/InvokeCommand?$select=Identity,SmtpClientAuthenticationDisabled"
    body = {"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": params}}
    rows: list[dict[str, Any]] = []
    pages = 0
    while url:
        r = http.post(url, json=body, headers={**bearer(tok), "Prefer": "odata.maxpagesize=5"})
        assert r.status_code == 200, r.text
        assert r.headers["Preference-Applied"] == "odata.maxpagesize=5"
        rows += r.json()["value"]
        url = r.json().get("@odata.nextLink")
        if url:
            assert url.startswith(f"{sim.url}/adminapi/beta/{T1}/InvokeCommand?")
        pages += 1
    assert pages == 3 and len(rows) == 12
    assert all(set(row) == {"Identity", "SmtpClientAuthenticationDisabled"} for row in rows)

    # A different body on a nextLink is a client bug.
    first = exo(http, sim, tok, "Get-CASMailbox", params, headers={"Prefer": "odata.maxpagesize=5"})
    nxt = http.post(first.json()["@odata.nextLink"], headers=bearer(tok),
                    json={"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {}}})
    assert nxt.status_code == 400

    def idents(flt: str) -> list[str]:
        r = exo(http, sim, tok, "Get-CASMailbox", {"Filter": flt, "ResultSize": "Unlimited"},
                query="?$select=Identity")
        assert r.status_code == 200, r.text
        return [row["Identity"] for row in r.json()["value"]]

    # JSON false and the string "False" are both $false; null is neither.
    assert idents("SmtpClientAuthenticationDisabled -eq $false") == ["user1", "user3", "user5", "user7", "user9",
                                                                     "user11"]
    assert idents("SmtpClientAuthenticationDisabled -eq $null") == ["user2", "user6", "user10"]
    assert idents("PopEnabled -eq $true -or ImapEnabled -eq $true") == ["user5", "user7", "user10"]
    assert idents("PopEnabled -eq $true -and SmtpClientAuthenticationDisabled -eq $false") == ["user5"]


@pytest.mark.parametrize(
    ("cmdlet", "params", "needle"),
    [
        ("Get-Mailboxx", {}, "The term 'Get-Mailboxx' is not recognized as a name of a cmdlet"),
        ("Get-CASMailbox", {"Filter": "PopEnabled -like '*'"}, "Cannot bind parameter 'Filter'"),
        ("Get-CASMailbox", {"Filter": "NoSuchProp -eq $true"}, "Cannot bind parameter 'Filter'"),
        ("Get-CASMailbox", {"Filter": "PopEnabled -eq $true -xor ImapEnabled -eq $true"},
         "Cannot bind parameter 'Filter'"),
        ("Get-TransportConfig", {"Identity": "x"}, "A parameter cannot be found that matches parameter name"),
    ],
)
def test_exchange_errors_carry_details(sim: Simulator, http: httpx.Client, cmdlet: str, params: dict[str, Any],
                                       needle: str) -> None:
    r = exo(http, sim, get_token(http, sim, scope=EXO_SCOPE), cmdlet, params)
    assert r.status_code == 400
    assert needle in r.json()["error"]["details"][0]["message"]


def test_exchange_auth_failures_and_missing_role(sim: Simulator, http: httpx.Client) -> None:
    graph_tok = get_token(http, sim)
    exo_tok = get_token(http, sim, scope=EXO_SCOPE)
    assert exo(http, sim, "", "Get-TransportConfig").status_code == 401
    assert exo(http, sim, graph_tok, "Get-TransportConfig").status_code == 401
    wrong = exo(http, sim, exo_tok, "Get-TransportConfig", tenant=T2)  # token tid != path tenant
    assert wrong.status_code == 401 and "error" in wrong.json()

    t2_tok = get_token(http, sim, T2, scope=EXO_SCOPE, client_id=APP2, secret="other-secret")
    r = exo(http, sim, t2_tok, "Get-TransportConfig", tenant=T2)
    assert r.status_code == 403 and r.content == b""
    assert sim.request_counts["exchange.Get-TransportConfig"] == 4


# -- statistics, validation, CLI ------------------------------------------------------------------
def test_request_counts_and_log_hold_no_secrets(sim: Simulator, http: httpx.Client) -> None:
    tok = get_token(http, sim)
    http.get(f"{sim.graph_url}/organization", headers=bearer(tok))
    http.get(f"{sim.graph_url}/organization")
    counts = sim.request_counts
    assert counts["token"] == 1 and counts["graph.organization"] == 2
    counts["token"] = 99  # a snapshot: mutating it does not touch the simulator
    assert sim.request_counts["token"] == 1
    log = sim.requests_log
    assert log[1] == {"endpoint": "graph.organization", "tenant": T1, "method": "GET", "path": "/v1.0/organization",
                      "query": "", "status": 200}
    assert log[2]["tenant"] is None and log[2]["status"] == 401
    dumped = json.dumps(log)
    assert SECRET not in dumped and tok not in dumped
    sim.reset_stats()
    assert sim.request_counts == {} and sim.requests_log == []


def test_send_mail_is_recorded_for_a_sender_in_the_apps_exchange_scope_only(sim: Simulator,
                                                                             http: httpx.Client) -> None:
    """RBAC for Applications: the app may send as the mailboxes of its scope (no Graph permission needed), and only
    those; an Entra Mail.Send app role lets it send as anyone (the two are a union)."""
    sim.update_tenant(T1, lambda t: t.update(mailSenders=["Alerts@contoso.com"]))
    h = bearer(get_token(http, sim))
    msg = {"subject": "alert", "toRecipients": [{"emailAddress": {"address": "ops@contoso.com"}}]}
    r = http.post(f"{sim.graph_url}/users/alerts@contoso.com/sendMail", json={"message": msg}, headers=h)
    assert r.status_code == 202
    assert sim.sent_mail == [{"tenant": T1, "sender": "alerts@contoso.com", "message": msg, "saveToSentItems": True}]
    r = http.post(f"{sim.graph_url}/users/ceo@contoso.com/sendMail", json={"message": msg}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    sim.update_tenant(T1, lambda t: t["permissions"].append("Mail.Send"))
    r = http.post(f"{sim.graph_url}/users/ceo@contoso.com/sendMail", json={"message": msg},
                  headers=bearer(get_token(http, sim)))
    assert r.status_code == 202 and len(sim.sent_mail) == 2


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["tenants"][0].update(tenantId="not-a-guid"), "tenants[0].tenantId"),
        (lambda s: s["tenants"][1].update(tenantId=T1), "tenants[1].tenantId"),
        (lambda s: s["tenants"][0].update(licenced=False), "tenants[0].licenced"),
        (lambda s: s["tenants"][0]["graph"].update(signIns=[{"id": "x"}]),
         "tenants[0].graph.signIns[0].createdDateTime"),
        (lambda s: s["tenants"][0].update(faults={"graph.nope": {"status": 500}}), "tenants[0].faults.graph.nope"),
        (lambda s: s["tenants"][0].update(faults={"token": {"status": 500, "times": 0}}),
         "tenants[0].faults.token.times"),
        (lambda s: s.update(pageSize={"graph": 0}), "pageSize.graph"),
        (lambda s: s.pop("app"), "tenants[0].app"),
        (lambda s: s["tenants"][0]["exchange"].update(casMailboxes={"Identity": "x"}),
         "tenants[0].exchange.casMailboxes"),
    ],
)
def test_load_scenario_names_the_bad_field(mutate: Any, field: str) -> None:
    sc = scenario()
    mutate(sc)
    with pytest.raises(ValueError, match=re.escape(f"scenario: {field}: ")):
        load_scenario(sc)


def test_load_scenario_fills_defaults_and_reads_files(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"app": {"clientId": APP, "clientSecret": "x"},
                                "tenants": [{"tenantId": T2.upper(), "story": "caller metadata is kept"}]}))
    sc = load_scenario(path)
    t = sc["tenants"][0]
    assert t["story"] == "caller metadata is kept"
    assert t["tenantId"] == T2 and t["consent"] and t["exchangeRole"] and t["licensed"]
    assert t["exchange"]["transportConfig"]["SmtpClientAuthenticationDisabled"] is True
    assert t["graph"]["securityDefaults"]["isEnabled"] is False and t["graph"]["conditionalAccessPolicies"] == []
    assert sc["pageSize"] == {"graph": 100, "exchange": 1000}
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_scenario(tmp_path / "bad.json")


def test_cli_prints_url_and_ca(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario()))
    ca_out = tmp_path / "ca.pem"
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--scenario", str(path), "--ca-out", str(ca_out)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        assert proc.stdout.readline().split()[1] == str(ca_out)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_out))) as c:
            assert c.get(f"{url}/{T1}/v2.0/.well-known/openid-configuration").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_startup_is_fast() -> None:
    t0 = time.perf_counter()
    with Simulator(scenario()) as s:
        assert s.url.startswith("https://127.0.0.1:")
        assert time.perf_counter() - t0 < 0.5


# -- the real SDKs ----------------------------------------------------------------------------------
def test_real_azure_identity_async_credential_gets_tokens(sim: Simulator) -> None:
    from azure.identity.aio import ClientSecretCredential

    async def main() -> tuple[str, str, str]:
        # One credential for a whole fleet: get_token(..., tenant_id=X) needs additionally_allowed_tenants.
        async with ClientSecretCredential(T1, APP, SECRET, authority=sim.url, connection_verify=sim.ca_path,
                                          additionally_allowed_tenants=["*"]) as cred:
            graph = await cred.get_token(GRAPH_SCOPE)
            exo_tok = await cred.get_token(EXO_SCOPE)
            other = await cred.get_token(GRAPH_SCOPE, tenant_id=T4)
            assert graph.expires_on > time.time() + 3000
            return graph.token, exo_tok.token, other.token

    graph_token, exo_token, t4_token = asyncio.run(main())
    assert jwt_claims(graph_token)["aud"] == "https://graph.microsoft.com"
    assert jwt_claims(exo_token)["aud"] == "https://outlook.office365.com"
    assert jwt_claims(t4_token)["tid"] == T4
    with httpx.Client(verify=sim.ssl_context()) as c:
        assert c.get(f"{sim.graph_url}/organization", headers=bearer(graph_token)).status_code == 200
        assert exo(c, sim, exo_token, "Get-TransportConfig").status_code == 200
    assert sim.request_counts["token"] == 3
    assert [e["tenant"] for e in sim.requests_log if e["endpoint"] == "token"] == [T1, T1, T4]


def test_real_azure_identity_surfaces_entra_errors(sim: Simulator) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import ClientSecretCredential

    async def main() -> str:
        async with ClientSecretCredential(T1, APP, "wrong-secret-XYZ", authority=sim.url,
                                          connection_verify=sim.ca_path) as cred:
            try:
                await cred.get_token(GRAPH_SCOPE)
            except ClientAuthenticationError as exc:
                return str(exc)
        return ""

    message = asyncio.run(main())
    assert "AADSTS7000215" in message and "wrong-secret-XYZ" not in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # msgraph-sdk's own generated request builders
def test_real_msgraph_sdk_lists_ca_policies_and_retries_faults(sim: Simulator) -> None:
    from azure.identity.aio import ClientSecretCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory

    sim.update_tenant(T1, lambda t: t["faults"].update(
        {"graph.sharepointSettings": {"status": 429, "times": 1, "retryAfter": 1}}))

    async def main() -> tuple[list[str], bool | None]:
        cred = ClientSecretCredential(T1, APP, SECRET, authority=sim.url, connection_verify=sim.ca_path)
        ssl_ctx = ssl.create_default_context(cafile=sim.ca_path)
        http_client = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=ssl_ctx))
        auth = AzureIdentityAuthenticationProvider(cred, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
        adapter = GraphRequestAdapter(auth, client=http_client)
        adapter.base_url = sim.graph_url
        client = GraphServiceClient(request_adapter=adapter)
        try:
            names: list[str] = []
            page = await client.identity.conditional_access.policies.get()
            while page is not None:
                names += [p.display_name for p in page.value or []]
                if not page.odata_next_link:
                    break
                page = await client.identity.conditional_access.policies.with_url(page.odata_next_link).get()
            settings = await client.admin.sharepoint.settings.get()  # 429 once, RetryHandler retries
            return names, settings.is_legacy_auth_protocols_enabled if settings else None
        finally:
            await http_client.aclose()
            await cred.close()

    names, legacy = asyncio.run(main())
    assert names == [f"Policy {i}" for i in range(1, 6)]
    assert legacy is False
    counts = sim.request_counts
    assert counts["graph.conditionalAccessPolicies"] == 3 and counts["graph.sharepointSettings"] == 2
    assert counts["token"] == 1


def test_demo_scenario_is_valid() -> None:
    demo = load_scenario(Path(__file__).resolve().parents[2] / "simulator" / "scenarios" / "demo.json")
    assert [t["displayName"] for t in demo["tenants"]] == ["Contoso", "Fabrikam", "Northwind"]

"""Partner Center's application consent API ("CPV consent"), served on the simulator's base URL with the paths of
api.partnercenter.microsoft.com (https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis):

* ``POST /v1/customers/{customerTenantId}/applicationconsents`` ``{applicationId, applicationGrants:
  [{enterpriseApplicationId, scope: "A,B,C"}], displayName?}`` — keys in camelCase (Microsoft's table) or PascalCase
  (CIPP's Set-CIPPCPVConsent.ps1); ``displayName`` is optional (the REST table omits it, the PowerShell cmdlet
  requires it, CIPP omits it). It creates the app's service principal in the customer with tenant-wide DELEGATED
  grants only (research20 §4): the tenant's ``consent`` becomes ``"revoked"`` (present, no app roles) unless it was
  already ``true``, and the Graph scopes land in its ``delegatedGrants``.
* ``DELETE /v1/customers/{customerTenantId}/applicationconsents/{applicationId}`` — removes it (``consent: false``).

Answers (the page's table): 201 created, 400 invalid input, 401 "The client needs to pass a valid access token for
valid audience." (an App+User token of the partner tenant for https://api.partnercenter.microsoft.com), 403 no
rights (no ACTIVE relationship with the customer grants Global Administrator, Privileged Role Administrator or Cloud
Application Administrator — https://learn.microsoft.com/en-us/powershell/partnercenter/exchange-online-gdap-app), 404
unknown customer, 500 retryable. Already consented: 409 "Permission entry already exists." — the text CIPP matches
(observed; the status is undocumented). Error body: ``{code, description, data, source}``
(https://learn.microsoft.com/partner-center/developer/error-codes); codes other than 800001/800002 are the
simulator's choice. Faults: ``partner.faults[<customer id>]["partnerCenter.consent"]``.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from .customer_graph import RESOURCES
from .delegated import PARTNER_CENTER_AUD
from .graph import fault_response
from .partner import CONSENT_ROLES, GUID, effective_roles
from .state import SimResponse, SimState
from .tokens import TokenError, TokenIssuer

KEY = "partnerCenter.consent"
_PATH = re.compile(r"^/v1/customers/(?P<customer>[^/]+)/applicationconsents(?:/(?P<app>[^/]+))?/?$", re.IGNORECASE)
_BODY_KEYS = {"applicationid", "applicationgrants", "displayname"}
_GRANT_KEYS = {"enterpriseapplicationid", "scope"}


def pc_error(status: int, code: str, description: str) -> SimResponse:
    return SimResponse(status, {"code": code, "description": description, "data": [], "source": "PartnerFD"},
                       {"Content-Type": "application/json"})


def _lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()}


def _grants(body: Any, app_id: str) -> list[tuple[str, list[str]]] | str:
    """[(resource appId, [scope, ...])] from a consent body, or what is wrong with it."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object {applicationId, applicationGrants}."
    b = _lower_keys(body)
    unknown = sorted(set(b) - _BODY_KEYS)
    if unknown:
        return f"Unknown property '{unknown[0]}' (applicationId, applicationGrants, displayName)."
    if not isinstance(b.get("applicationid"), str) or b["applicationid"].lower() != app_id.lower():
        return "applicationId must be the Application ID of the CPV partner's application."
    if "displayname" in b and not isinstance(b["displayname"], str):
        return "displayName must be a string."
    grants = b.get("applicationgrants")
    if not isinstance(grants, list) or not grants:
        return "applicationGrants must be a non-empty list of {enterpriseApplicationId, scope}."
    out: list[tuple[str, list[str]]] = []
    for i, grant in enumerate(grants):
        g = _lower_keys(grant) if isinstance(grant, dict) else {}
        resource, scope = g.get("enterpriseapplicationid"), g.get("scope")
        if not g or set(g) - _GRANT_KEYS or not isinstance(resource, str) or not GUID.match(resource):
            return f"applicationGrants[{i}] must be {{enterpriseApplicationId: <resource app GUID>, scope}}."
        if resource.lower() not in RESOURCES:
            return f"applicationGrants[{i}].enterpriseApplicationId {resource} is not a resource the simulator knows."
        scopes = [s.strip() for s in scope.split(",")] if isinstance(scope, str) else []
        if not scopes or not all(scopes):
            return f"applicationGrants[{i}].scope must be comma separated scope names."
        out.append((resource.lower(), scopes))
    return out


async def handle(state: SimState, issuer: TokenIssuer, method: str, path: str, authorization: str | None,
                 raw: bytes) -> tuple[str, str | None, SimResponse]:
    """Serve one Partner Center request: (endpoint key, customer tenant id or None, response)."""
    m = _PATH.match(path)
    if m is None:
        return "unknown", None, pc_error(404, "404", f"The simulator's Partner Center does not serve '{path[:100]}'.")
    customer = m.group("customer").lower()
    if (method, bool(m.group("app"))) not in (("POST", False), ("DELETE", True)):
        return KEY, None, pc_error(405, "405", "The HTTP method is not allowed for this resource.")
    with state.lock:
        partner = state.scenario.get("partner")
        app_id = (state.scenario.get("app") or {}).get("clientId", "")
    try:
        claims = issuer.verify(authorization, PARTNER_CENTER_AUD)
    except TokenError:
        claims = {}
    if partner is None or claims.get("idtyp") != "user" or claims.get("tid") != partner["tenantId"]:
        # App+User only, and from the partner tenant (enable-secure-app-model).
        return KEY, None, pc_error(401, "800001", "The client needs to pass a valid access token for valid audience.")
    fault = state.take_partner_fault(customer, KEY, method)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            default = pc_error(fault.status, str(fault.status),
                               "Callers can retry the request." if fault.status >= 500 else "Injected fault.")
            return KEY, customer, fault_response(fault, default)
    grants: list[tuple[str, list[str]]] | str = []
    if method == "POST":
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        grants = _grants(body, app_id)
        if isinstance(grants, str):
            return KEY, customer, pc_error(400, "800002", f"Invalid request input: {grants}")
    with state.lock:
        tenant = state.tenant(customer) if GUID.match(customer) and customer != partner["tenantId"] else None
        roles = effective_roles(partner, customer)
    if tenant is None:
        return KEY, None, pc_error(404, "404", f"Customer '{customer[:64]}' was not found.")
    if not roles & CONSENT_ROLES:
        return KEY, customer, pc_error(403, "403", "The request was authenticated but was refused because the caller "
                                       "doesn't have the rights: no active GDAP relationship with this customer grants "
                                       "Global Administrator, Privileged Role Administrator or Cloud Application "
                                       "Administrator.")
    if method == "DELETE":
        return KEY, customer, _delete(state, tenant, customer, m.group("app"), app_id)
    assert not isinstance(grants, str)
    held = tenant["delegatedGrants"]
    if tenant["consent"] is not False and all(
            {s.lower() for s in scopes} <= {h.lower() for h in held.get(resource, [])} for resource, scopes in grants):
        return KEY, customer, pc_error(409, "409", "Permission entry already exists.")

    def consent(t: dict[str, Any]) -> None:
        if t["consent"] is not True:
            t["consent"], t["permissions"] = "revoked", []  # service principal present, delegated grants only
        for resource, scopes in grants:
            have = t["delegatedGrants"].setdefault(resource, [])
            have.extend(s for s in scopes if s.lower() not in {h.lower() for h in have})
    state.update_tenant(customer, consent)
    return KEY, customer, SimResponse(201, {
        "applicationId": app_id,
        "applicationGrants": [{"enterpriseApplicationId": r, "scope": ",".join(s)} for r, s in grants]},
        {"Content-Type": "application/json"})


def _delete(state: SimState, tenant: dict[str, Any], customer: str, app: str, app_id: str) -> SimResponse:
    if app.lower() != app_id.lower() or tenant["consent"] is False:
        return pc_error(404, "404", f"No application consent for '{app[:64]}' in customer '{customer}'.")

    def remove(t: dict[str, Any]) -> None:
        # The service principal goes, and with it its grants, app role assignments and directory roles.
        t.update(consent=False, permissions=[], delegatedGrants={}, directoryRoles=[], exchangeRole=False)
    state.update_tenant(customer, remove)
    return SimResponse(200, None, {})


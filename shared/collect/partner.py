"""What an MSP's operator, signed in once, reads and grants to onboard customers (the only delegated calls).

Partner tenant (Graph): the delegated-admin relationships and customers.
  https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadminrelationships
  https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadmincustomers
Partner Center: the app's admin consent in a customer ("CPV consent"): its service principal and delegated grants.
  https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis
Customer tenant (Graph, the operator's GDAP roles): app role assignments and a directory role for the app.
  https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto
  https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments

"Already there" is success, so every grant can be repeated: Microsoft documents no code for it, so it is recognised
by the message open-source MSP tools match (CIPP: "Permission entry already exists" for Partner Center consent;
"Permission being assigned already exists on the object" for an app role; "A conflicting object with one or more of
the specified property values is present in the directory" for a role assignment).

Every call has the endpoints' timeout; paging ends with a PartnerCallError (IncompleteRead) past MAX_PAGES or on a
nextLink that leaves Graph: a partial list of customers is never taken for the whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.collect.endpoints import MicrosoftEndpoints

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Partner Center's delegated permission (https://learn.microsoft.com/partner-center/developer/partner-center-authentication)
PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
MAX_PAGES = 100  # 300 relationships a page (the documented $top maximum): 30,000 relationships
PAGE_SIZE = 300
RETRIED = frozenset({429, 500, 502, 503, 504})
RETRIES, MAX_RETRY_WAIT_S = 3, 30.0  # at most ~90 s of waiting for one call
ALREADY = ("permission entry already exists", "permission being assigned already exists",
           "a conflicting object with one or more of the specified property values is present")

# (scope, tenant id or None for the partner tenant) -> access token
TokenSource = Callable[[str, "str | None"], Awaitable[str]]


class PartnerCallError(Exception):
    """Microsoft refused or failed an onboarding call; `step` says which, `status`/`code` what Microsoft said."""

    def __init__(self, step: str, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{step}: {f'HTTP {status} ' if status else ''}{code}: {message}".strip())
        self.step, self.status, self.code, self.message = step, status, code, message

    @property
    def refused(self) -> bool:
        return self.status in (401, 403)


@dataclass(frozen=True)
class Granted:
    """A grant made now (`created`) or found already in place."""

    created: bool


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from Graph's `{"error": {code, message}}` or Partner Center's `{code, description}`."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP{response.status_code}", response.text[:300]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")[:500]
    if isinstance(body, dict):
        return str(body.get("code") or ""), str(body.get("description") or body.get("message") or "")[:500]
    return f"HTTP{response.status_code}", str(body)[:300]


def _json(step: str, response: httpx.Response) -> Any:
    """A 200's body as JSON, or a named error: a page authwatch cannot read is never taken as an empty one."""
    try:
        return response.json()
    except ValueError:
        raise PartnerCallError(step, response.status_code, "UnexpectedShape", "the answer is not JSON") from None


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """The answer's Retry-After in seconds (capped), else 1, 2, 4 s."""
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        wait = float(2 ** attempt)
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)


def _already(response: httpx.Response) -> bool:
    return 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404) and any(
        marker in _error_of(response)[1].lower() for marker in ALREADY)


class PartnerClient:
    """Onboarding calls over one pooled HTTP client; `tokens` gives the operator's delegated tokens."""

    def __init__(self, endpoints: MicrosoftEndpoints, tokens: TokenSource,
                 http: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.endpoints = endpoints
        self._tokens = tokens
        self._sleep = sleep
        self._http = http or httpx.AsyncClient(verify=endpoints.ssl_context(), timeout=endpoints.timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, step: str, method: str, url: str, scope: str, tenant_id: str | None,
                    body: Any = None) -> httpx.Response:
        """One call; a 429 or a 5xx is sent again after its Retry-After (Graph's throttling guidance,
        https://learn.microsoft.com/graph/throttling; Partner Center: "500 … Callers can retry the request"), at
        most RETRIES times and MAX_RETRY_WAIT_S each: every step is repeatable, a grant already made answers
        "already exists"."""
        for attempt in range(RETRIES + 1):
            response = await self._send_once(step, method, url, scope, tenant_id, body)
            if response.status_code not in RETRIED or attempt == RETRIES:
                return response
            await self._sleep(_retry_after(response, attempt))
        raise AssertionError("unreachable")  # the loop returns on its last attempt

    async def _send_once(self, step: str, method: str, url: str, scope: str, tenant_id: str | None,
                         body: Any) -> httpx.Response:
        token = await self._tokens(scope, tenant_id)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            return await self._http.request(method, url, headers=headers,
                                            content=None if body is None else json.dumps(body).encode())
        except httpx.TimeoutException:
            raise PartnerCallError(step, None, "Timeout", f"no answer within {self.endpoints.timeout_s:g} s") from None
        except httpx.TransportError as error:
            raise PartnerCallError(step, None, type(error).__name__, "the connection failed") from None

    def _fail(self, step: str, response: httpx.Response) -> PartnerCallError:
        code, message = _error_of(response)
        return PartnerCallError(step, response.status_code, code or f"HTTP{response.status_code}", message)

    async def _pages(self, step: str, path: str, tenant_id: str | None) -> list[dict[str, Any]]:
        base = self.endpoints.graph.rstrip("/")
        url: str | None = f"{base}{path}{'&' if '?' in path else '?'}$top={PAGE_SIZE}"
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            assert url is not None
            response = await self._send(step, "GET", url, GRAPH_SCOPE, tenant_id)
            if response.status_code != 200:
                raise self._fail(step, response)
            body = _json(step, response)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise PartnerCallError(step, 200, "UnexpectedShape", "the answer has no 'value' list")
            items += [item for item in body["value"] if isinstance(item, dict)]
            url = body.get("@odata.nextLink")
            if not url:
                return items
            if not isinstance(url, str) or not url.startswith(base + "/"):
                raise PartnerCallError(step, 200, "IncompleteRead",
                                       f"the next page's link leaves Graph ({str(url)[:80]!r}); stopped")
        raise PartnerCallError(step, 200, "IncompleteRead", f"more than {MAX_PAGES} pages of {PAGE_SIZE}; stopped")

    # -- partner tenant ------------------------------------------------------------------------------------------
    async def relationships(self) -> list[dict[str, Any]]:
        """Every delegated-admin relationship of the partner (all statuses: ended ones tell of offboarding)."""
        return await self._pages("list GDAP relationships", "/tenantRelationships/delegatedAdminRelationships",
                                 None)

    async def customers(self) -> list[dict[str, Any]]:
        return await self._pages("list GDAP customers", "/tenantRelationships/delegatedAdminCustomers", None)

    async def grant_consent(self, customer_id: str, app_id: str, grants: dict[str, str], display_name: str) -> Granted:
        """Partner Center application consent: the app's service principal in the customer, with these delegated
        grants ({resource app id: "Scope.A,Scope.B"}); "already exists" is success."""
        url = f"{self.endpoints.partner_center.rstrip('/')}/v1/customers/{quote(customer_id)}/applicationconsents"
        body = {"applicationId": app_id, "displayName": display_name,
                "applicationGrants": [{"enterpriseApplicationId": resource, "scope": scope}
                                      for resource, scope in grants.items()]}
        response = await self._send("Partner Center consent", "POST", url, PARTNER_CENTER_SCOPE, None, body)
        if response.status_code in (200, 201):
            return Granted(True)
        if _already(response):
            return Granted(False)
        raise self._fail("Partner Center consent", response)

    # -- customer tenant -----------------------------------------------------------------------------------------
    async def service_principal(self, customer_id: str, app_id: str) -> dict[str, Any] | None:
        url = (f"{self.endpoints.graph.rstrip('/')}/servicePrincipals(appId='{quote(app_id)}')"
               "?$select=id,appId,displayName,appRoles")
        response = await self._send("find service principal", "GET", url, GRAPH_SCOPE, customer_id)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("find service principal", response)
        found = _json("find service principal", response)
        if not isinstance(found, dict):
            raise PartnerCallError("find service principal", 200, "UnexpectedShape", "the answer is not an object")
        return found

    async def app_role_assignments(self, customer_id: str, principal_id: str) -> list[dict[str, Any]]:
        return await self._pages("list app role assignments", f"/servicePrincipals/{quote(principal_id)}/"
                                  "appRoleAssignments", customer_id)

    async def assign_app_role(self, customer_id: str, principal_id: str, resource_id: str, app_role_id: str,
                              name: str) -> Granted:
        url = f"{self.endpoints.graph.rstrip('/')}/servicePrincipals/{quote(resource_id)}/appRoleAssignedTo"
        body = {"principalId": principal_id, "resourceId": resource_id, "appRoleId": app_role_id}
        return await self._grant(f"grant {name}", url, customer_id, body)

    async def withdraw_delegated_grants(self, customer_id: str, principal_id: str) -> int:
        """Delete the app's tenant-wide delegated grants (what the Partner Center consent gave the onboarding):
        https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete. Returns how many were deleted."""
        step = "withdraw onboarding's delegated grants"
        grants = await self._pages(step, f"/oauth2PermissionGrants?$filter=clientId eq '{quote(principal_id)}'",
                                   customer_id)
        deleted = 0
        for grant in grants:
            if grant.get("clientId") != principal_id or not isinstance(grant.get("id"), str):
                continue  # fail closed: never delete a grant that is not the app's own
            url = f"{self.endpoints.graph.rstrip('/')}/oauth2PermissionGrants/{quote(grant['id'])}"
            response = await self._send(step, "DELETE", url, GRAPH_SCOPE, customer_id)
            if response.status_code not in (204, 404):  # 404: gone already
                raise self._fail(step, response)
            deleted += response.status_code == 204
        return deleted

    async def assign_directory_role(self, customer_id: str, principal_id: str, role_id: str, name: str) -> Granted:
        url = f"{self.endpoints.graph.rstrip('/')}/roleManagement/directory/roleAssignments"
        body = {"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": role_id,
                "principalId": principal_id, "directoryScopeId": "/"}
        return await self._grant(f"assign {name}", url, customer_id, body)

    async def _grant(self, step: str, url: str, customer_id: str, body: dict[str, Any]) -> Granted:
        response = await self._send(step, "POST", url, GRAPH_SCOPE, customer_id, body)
        if response.status_code in (200, 201):
            return Granted(True)
        if _already(response):
            return Granted(False)
        raise self._fail(step, response)

"""Microsoft Graph in a CUSTOMER tenant for the MSP operator's GDAP-delegated token: the onboarding calls that give the
multi-tenant app its application permissions and directory role (research20 §5).

A delegated call needs both a delegated scope in the token's ``scp`` and a directory role of the signed-in user; for a
GDAP partner user the roles are those of the ACTIVE relationships with the customer, looked up at each call (they
are not in the token). Missing either: 403 Authorization_RequestDenied "Insufficient privileges to complete the
operation." (https://learn.microsoft.com/en-us/graph/errors, https://learn.microsoft.com/en-us/graph/permissions-overview).

The app's service principal id in a tenant is the ``oid`` its app-only tokens carry (tokens.TokenIssuer.mint), so
an assignment made here is the principal those tokens speak for.
"""
from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from . import partner as p
from .graph import GraphCall, GraphContext, _page, graph_error, not_found, ok
from .odata import ODataError, matches, parse_filter, parse_select, select
from .state import SimResponse

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
#: The resource service principals and the app roles (application permissions) the simulator knows, with Microsoft's
#: ids: Graph's from the permissions reference (https://learn.microsoft.com/en-us/graph/permissions-reference),
#: Exchange.ManageAsApp from the app-only auth page's manifest
#: (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2). Covers defaults.DEFAULT_PERMISSIONS and the audit query roles.
RESOURCES: dict[str, tuple[str, dict[str, str]]] = {
    GRAPH_APP_ID: ("Microsoft Graph", {
        "Policy.Read.All": "246dd0d5-5bd0-4def-940b-0421030a5b68",
        "SharePointTenantSettings.Read.All": "83d4163d-a2d8-4d3b-9695-4ae3ca98f888",
        "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
        "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
        # The audit log query API's per-service roles
        # (https://learn.microsoft.com/graph/api/security-auditlogquery-list-records#permissions); ids as in public
        # copies of Graph's appRoles (not listed on Learn's permissions reference).
        "AuditLogsQuery-Exchange.Read.All": "6b0d2622-d34e-4470-935b-b96550e5ca8d",
        "AuditLogsQuery-SharePoint.Read.All": "91c64a47-a524-4fce-9bf3-3d569a344ecf",
    }),
    EXCHANGE_APP_ID: ("Office 365 Exchange Online", {
        "Exchange.ManageAsApp": "dc50a0fb-09a3-484d-be87-e023b12c6440",
    }),
}
APP_DISPLAY_NAME = "authwatch"

# Roles per operation (research20 §3: the rbac includes of the Graph pages and Entra's role descriptions).
READERS = frozenset({p.GLOBAL_ADMINISTRATOR, p.PRIVILEGED_ROLE_ADMINISTRATOR, p.CLOUD_APPLICATION_ADMINISTRATOR,
                     p.APPLICATION_ADMINISTRATOR, p.GLOBAL_READER})
SP_WRITERS = frozenset({p.GLOBAL_ADMINISTRATOR, p.CLOUD_APPLICATION_ADMINISTRATOR, p.APPLICATION_ADMINISTRATOR})
# "Privileged Role Administrator - the least privileged role supported for Microsoft Graph and Azure AD Graph app
# roles" (rbac-approleassignments-apis-write); other resources' app roles: Application Administrator and Cloud
# Application Administrator too ("with the exception of application permissions for … Microsoft Graph").
GRAPH_ROLE_GRANTERS = frozenset({p.GLOBAL_ADMINISTRATOR, p.PRIVILEGED_ROLE_ADMINISTRATOR})
APP_ROLE_GRANTERS = frozenset({p.GLOBAL_ADMINISTRATOR, p.PRIVILEGED_ROLE_ADMINISTRATOR,
                               p.CLOUD_APPLICATION_ADMINISTRATOR, p.APPLICATION_ADMINISTRATOR})
# "Privileged Role Administrator is the least privileged role supported for this operation" (rbac-directory-role-apis-write)
DIRECTORY_ROLE_WRITERS = frozenset({p.GLOBAL_ADMINISTRATOR, p.PRIVILEGED_ROLE_ADMINISTRATOR})

# Delegated scopes per operation (each Graph page's permissions table).
SP_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
SP_WRITE = ("Application.ReadWrite.All", "Directory.ReadWrite.All")
ASSIGN_APP_ROLE = ("AppRoleAssignment.ReadWrite.All",)
ASSIGNMENTS_READ = (*SP_READ, "AppRoleAssignment.ReadWrite.All")
ROLE_WRITE = ("RoleManagement.ReadWrite.Directory",)
ROLE_READ = ("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "RoleManagement.Read.All",
             "Directory.Read.All", "Directory.ReadWrite.All")


def sp_id(tenant_id: str, app_id: str) -> str:
    """A service principal's object id in a tenant (the same formula as the app-only token's ``oid``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}"))


def _object_id(*parts: str) -> str:
    """Graph-like opaque id (43 base64url characters) that stays the same for the same object."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:43]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Caller:
    """The operator in this customer tenant: the token's scopes and the roles of the active relationships."""

    def __init__(self, ctx: GraphContext, call: GraphCall, claims: dict[str, Any]) -> None:
        self.ctx, self.call = ctx, call
        self.scopes = {s.lower() for s in str(claims.get("scp", "")).split()}
        with ctx.state.lock:
            self.partner = ctx.state.scenario.get("partner")
            self.tenant = ctx.state.tenant(call.tenant_id)
            self.roles = p.effective_roles(self.partner, call.tenant_id)
            self.app_id = ctx.state.scenario["app"]["clientId"]
        self.app_sp = sp_id(call.tenant_id, self.app_id)

    def denied(self, scopes: tuple[str, ...], roles: frozenset[str]) -> SimResponse | None:
        if not self.scopes.intersection(s.lower() for s in scopes) or not self.roles & roles:
            return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.",
                               self.call.client_request_id)
        return None

    @property
    def has_app_sp(self) -> bool:
        return self.tenant is not None and self.tenant["consent"] is not False

    def resource_of(self, object_id: str) -> str | None:
        return next((a for a in RESOURCES if sp_id(self.call.tenant_id, a) == object_id.lower()), None)

    def bad(self, message: str) -> SimResponse:
        return graph_error(400, "Request_BadRequest", message, self.call.client_request_id)

    def update(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.ctx.state.update_tenant(self.call.tenant_id, fn)


def _service_principal(caller: Caller, app_id: str) -> dict[str, Any] | None:
    tid = caller.call.tenant_id
    if app_id.lower() == caller.app_id.lower():
        if not caller.has_app_sp:
            return None
        name, roles = APP_DISPLAY_NAME, {}
    elif app_id.lower() in RESOURCES:
        name, roles = RESOURCES[app_id.lower()]
    else:
        return None
    return {"id": sp_id(tid, app_id.lower()), "appId": app_id.lower(), "displayName": name, "accountEnabled": True,
            "servicePrincipalType": "Application",
            "appRoles": [{"allowedMemberTypes": ["Application"], "description": value, "displayName": value,
                          "id": role_id, "isEnabled": True, "origin": "Application", "value": value}
                         for value, role_id in roles.items()]}


def h_get_sp(caller: Caller, call: GraphCall) -> SimResponse:
    """``GET /servicePrincipals(appId='{appId}')`` (serviceprincipal-get: "alternate key" appId)."""
    refused = caller.denied(SP_READ, READERS)
    if refused:
        return refused
    fields = parse_select(call.query.get("$select"))
    sp = _service_principal(caller, call.params["appId"])
    if sp is None:
        return not_found(call, call.params["appId"])
    return ok({"@odata.context": f"{caller.ctx.graph_url}/$metadata#servicePrincipals/$entity", **select(sp, fields)})


def h_create_sp(caller: Caller, call: GraphCall) -> SimResponse:
    """``POST /servicePrincipals {appId}`` (serviceprincipal-post-serviceprincipals); present → 409
    Request_MultipleObjectsWithSameKeyValue (observed: Azure/reliable-web-app-pattern-java#185, research §5.1)."""
    refused = caller.denied(SP_WRITE, SP_WRITERS)
    if refused:
        return refused
    app_id = call.body.get("appId") if isinstance(call.body, dict) else None
    if not isinstance(app_id, str) or not app_id:
        return caller.bad("Property 'appId' is required to create a service principal.")
    if _service_principal(caller, app_id) is not None:
        return graph_error(409, "Request_MultipleObjectsWithSameKeyValue",
                           "The service principal cannot be created, updated, or restored because the service "
                           f"principal name {app_id} is already in use.", call.client_request_id)
    if app_id.lower() != caller.app_id.lower():
        return caller.bad(f"The appId '{app_id}' of the service principal does not reference a valid application "
                          "object.")

    def create(t: dict[str, Any]) -> None:
        t["consent"], t["permissions"] = "revoked", []  # present, no app role assignments yet
    caller.update(create)
    caller.tenant = {**(caller.tenant or {}), "consent": "revoked"}
    return ok({"@odata.context": f"{caller.ctx.graph_url}/$metadata#servicePrincipals/$entity",
               **(_service_principal(caller, app_id) or {})}, 201)


def h_assign_app_role(caller: Caller, call: GraphCall) -> SimResponse:
    """``POST /servicePrincipals/{resource id}/appRoleAssignedTo {principalId, resourceId, appRoleId}``
    (serviceprincipal-post-approleassignedto). Duplicate: 400 Request_BadRequest "Permission being assigned already
    exists on the object" (observed, research §5.2)."""
    refused = caller.denied(ASSIGN_APP_ROLE, APP_ROLE_GRANTERS)  # the resource's own role rule follows below
    if refused:
        return refused
    resource = caller.resource_of(call.params["id"])
    if resource is None:
        return not_found(call, call.params["id"])
    body = call.body if isinstance(call.body, dict) else {}
    for field in ("principalId", "resourceId", "appRoleId"):
        if not isinstance(body.get(field), str) or not body[field]:
            return caller.bad(f"Property '{field}' is required (principalId, resourceId, appRoleId).")
    if body["resourceId"].lower() != call.params["id"].lower():
        return caller.bad("The resourceId in the body must be the service principal the request is sent to.")
    if body["principalId"].lower() != caller.app_sp or not caller.has_app_sp:
        return not_found(call, body["principalId"])
    name, roles = RESOURCES[resource]
    value = next((v for v, rid in roles.items() if rid == body["appRoleId"].lower()), None)
    if value is None:
        # Observed text when the role id is not one of the resource's appRoles (research §5.2 scripts).
        return caller.bad(f"Permission being assigned was not found on application '{resource}'.")
    refused = caller.denied(ASSIGN_APP_ROLE, GRAPH_ROLE_GRANTERS if resource == GRAPH_APP_ID else APP_ROLE_GRANTERS)
    if refused:
        return refused
    held = caller.tenant["permissions"] if caller.tenant["consent"] is True else []  # type: ignore[index]
    if value in held:
        return caller.bad("Permission being assigned already exists on the object")

    def grant(t: dict[str, Any]) -> None:
        t["permissions"] = [*(t["permissions"] if t["consent"] is True else []), value]
        t["consent"] = True  # the service principal now holds an app role: app-only tokens carry it
    caller.update(grant)
    return ok({"@odata.context": f"{caller.ctx.graph_url}/$metadata#servicePrincipals('{call.params['id']}')/"
                                 "appRoleAssignedTo/$entity",
               **_assignment(caller, resource, value)}, 201)


def _assignment(caller: Caller, resource: str, value: str) -> dict[str, Any]:
    name, roles = RESOURCES[resource]
    rsp = sp_id(caller.call.tenant_id, resource)
    return {"id": _object_id(caller.call.tenant_id, caller.app_sp, rsp, roles[value]), "deletedDateTime": None,
            "appRoleId": roles[value], "createdDateTime": _now(), "principalDisplayName": APP_DISPLAY_NAME,
            "principalId": caller.app_sp, "principalType": "ServicePrincipal", "resourceDisplayName": name,
            "resourceId": rsp}


def h_list_app_role_assignments(caller: Caller, call: GraphCall) -> SimResponse:
    """``GET /servicePrincipals/{id}/appRoleAssignments``: the app roles the principal holds (paged). Permissions the
    simulator has no Microsoft id for (outside RESOURCES) are not listed."""
    refused = caller.denied(ASSIGNMENTS_READ, READERS)
    if refused:
        return refused
    sid = call.params["id"].lower()
    if sid == caller.app_sp and caller.has_app_sp:
        held = caller.tenant["permissions"] if caller.tenant["consent"] is True else []  # type: ignore[index]
        items = [_assignment(caller, resource, value) for value in held
                 for resource, (_, roles) in RESOURCES.items() if value in roles]
    elif caller.resource_of(sid) is not None:
        items = []
    else:
        return not_found(call, call.params["id"])
    return _page(caller.ctx, call, items, 999, f"servicePrincipals('{sid}')/appRoleAssignments")


def _role_assignment(caller: Caller, role: str) -> dict[str, Any]:
    return {"id": _object_id(caller.call.tenant_id, caller.app_sp, role) + "-1", "roleDefinitionId": role,
            "principalId": caller.app_sp, "directoryScopeId": "/"}


def h_assign_role(caller: Caller, call: GraphCall) -> SimResponse:
    """``POST /roleManagement/directory/roleAssignments {roleDefinitionId, principalId, directoryScopeId}``
    (rbacapplication-post-roleassignments). Duplicate: 400 "A conflicting object with one or more of the specified
    property values is present in the directory." (observed: dod-ccpo/atat#1554, research §5.4)."""
    refused = caller.denied(ROLE_WRITE, DIRECTORY_ROLE_WRITERS)
    if refused:
        return refused
    body = call.body if isinstance(call.body, dict) else {}
    role, principal = body.get("roleDefinitionId"), body.get("principalId")
    if not isinstance(role, str) or not p.GUID.match(role):
        return caller.bad("Property 'roleDefinitionId' is required: a role template id or role definition id.")
    if not isinstance(principal, str) or not principal:
        return caller.bad("Property 'principalId' is required.")
    if body.get("directoryScopeId") != "/":
        return caller.bad("The simulator assigns roles tenant-wide only: 'directoryScopeId' must be '/'.")
    if principal.lower() != caller.app_sp or not caller.has_app_sp:
        return not_found(call, principal)
    role = role.lower()
    if role in caller.tenant["directoryRoles"]:  # type: ignore[index]
        return caller.bad("A conflicting object with one or more of the specified property values is present in the "
                          "directory.")

    def assign(t: dict[str, Any]) -> None:
        t["directoryRoles"] = [*t["directoryRoles"], role]
        if role in p.EXCHANGE_APP_ONLY_ROLES:
            t["exchangeRole"] = True  # an Entra role Exchange accepts for app-only access
    caller.update(assign)
    return ok({"@odata.context": f"{caller.ctx.graph_url}/$metadata#roleManagement/directory/roleAssignments/$entity",
               **_role_assignment(caller, role)}, 201)


def h_list_roles(caller: Caller, call: GraphCall) -> SimResponse:
    """``GET /roleManagement/directory/roleAssignments[?$filter=principalId eq '…' and roleDefinitionId eq '…']``:
    the directory roles the app's service principal holds (others' assignments are not simulated)."""
    refused = caller.denied(ROLE_READ, READERS)
    if refused:
        return refused
    roles = caller.tenant["directoryRoles"] if caller.has_app_sp else []  # type: ignore[index]
    items = [_role_assignment(caller, role) for role in roles]
    if "$filter" in call.query:
        clauses = parse_filter(call.query["$filter"], {"principalId": "string", "roleDefinitionId": "string",
                                                       "directoryScopeId": "string"})
        items = [i for i in items if matches(i, clauses, {})]
    return _page(caller.ctx, call, items, 999, "roleManagement/directory/roleAssignments")


# oauth2PermissionGrant: list needs Directory.Read.All-level scopes, delete DelegatedPermissionGrant.ReadWrite.All
# (https://learn.microsoft.com/graph/api/oauth2permissiongrant-list#permissions,
#  https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete#permissions); roles that may manage delegated
# grants: Application Administrator, Cloud Application Administrator, Privileged Role Administrator (research §5.3,
# rbac-oauth2permissiongrant-apis-write), and Global Administrator.
GRANT_READ = ("Directory.Read.All", "DelegatedPermissionGrant.ReadWrite.All", "Directory.ReadWrite.All")
GRANT_WRITE = ("DelegatedPermissionGrant.ReadWrite.All",)
GRANT_WRITERS = APP_ROLE_GRANTERS


def _grant(caller: Caller, resource: str, scopes: list[str]) -> dict[str, Any]:
    """Microsoft's oauth2PermissionGrant shape (resources/oauth2permissiongrant): one tenant-wide (AllPrincipals)
    grant per resource, `scope` space-separated."""
    return {"id": _object_id(caller.call.tenant_id, caller.app_sp, "grant", resource), "clientId": caller.app_sp,
            "consentType": "AllPrincipals", "principalId": None, "resourceId": sp_id(caller.call.tenant_id, resource),
            "scope": " ".join(scopes)}


def _grants(caller: Caller) -> list[tuple[str, dict[str, Any]]]:
    held = caller.tenant["delegatedGrants"] if caller.has_app_sp else {}  # type: ignore[index]
    return [(resource, _grant(caller, resource, scopes)) for resource, scopes in held.items() if scopes]


def h_list_grants(caller: Caller, call: GraphCall) -> SimResponse:
    """``GET /oauth2PermissionGrants[?$filter=clientId eq '…']``: the app's tenant-wide delegated grants."""
    refused = caller.denied(GRANT_READ, READERS)
    if refused:
        return refused
    items = [grant for _, grant in _grants(caller)]
    if "$filter" in call.query:
        clauses = parse_filter(call.query["$filter"], {"clientId": "string", "resourceId": "string",
                                                       "consentType": "string"})
        items = [i for i in items if matches(i, clauses, {})]
    return _page(caller.ctx, call, items, 999, "oauth2PermissionGrants")


def h_delete_grant(caller: Caller, call: GraphCall) -> SimResponse:
    """``DELETE /oauth2PermissionGrants/{id}`` → 204 No Content; unknown id → 404."""
    refused = caller.denied(GRANT_WRITE, GRANT_WRITERS)
    if refused:
        return refused
    wanted = call.params["id"]
    resource = next((resource for resource, grant in _grants(caller) if grant["id"] == wanted), None)
    if resource is None:
        return not_found(call, wanted)

    def drop(t: dict[str, Any]) -> None:
        t["delegatedGrants"] = {key: value for key, value in t["delegatedGrants"].items() if key != resource}
    caller.update(drop)
    return SimResponse(204, None, {})


Handler = Callable[[Caller, GraphCall], SimResponse]
#: (pattern, endpoint key, method, handler, query options allowed)
ROUTES: tuple[tuple[re.Pattern[str], str, str, Handler, frozenset[str]], ...] = tuple(
    (re.compile(f"^{pattern}/?$", re.IGNORECASE), key, method, handler, frozenset(options))
    for pattern, key, method, handler, options in (
        (r"/servicePrincipals\(appId='(?P<appId>[^'/]+)'\)", "graph.servicePrincipals", "GET", h_get_sp,
         {"$select"}),
        (r"/servicePrincipals", "graph.servicePrincipals", "POST", h_create_sp, set()),
        (r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignedTo", "graph.appRoleAssignments", "POST",
         h_assign_app_role, set()),
        (r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignments", "graph.appRoleAssignments", "GET",
         h_list_app_role_assignments, {"$select", "$top", "$skiptoken"}),
        (r"/roleManagement/directory/roleAssignments", "graph.roleAssignments", "POST", h_assign_role, set()),
        (r"/roleManagement/directory/roleAssignments", "graph.roleAssignments", "GET", h_list_roles,
         {"$select", "$top", "$skiptoken", "$filter"}),
        (r"/oauth2PermissionGrants", "graph.oauth2PermissionGrants", "GET", h_list_grants,
         {"$select", "$top", "$skiptoken", "$filter"}),
        (r"/oauth2PermissionGrants/(?P<id>[^/]+)", "graph.oauth2PermissionGrants", "DELETE", h_delete_grant, set()),
    ))


def check_options(call: GraphCall, allowed: frozenset[str]) -> None:
    for name in call.query:
        if name.startswith("$") and name.lower() not in allowed:
            raise ODataError(f"Query option '{name}' is not supported on {call.path} by the simulator.")

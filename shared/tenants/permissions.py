"""What authwatch needs in a Microsoft 365 tenant, as data: the permissions manifest.

Three views of one fact, kept consistent by tests/unit/test_permissions.py:

- `PERMISSIONS`: every permission authwatch asks for — Microsoft Graph and Exchange Online *application*
  permissions (app roles, granted by admin consent), the two Exchange *management roles* the Exchange admin API
  checks for the Get-* cmdlets (given to the app's service principal through an Exchange role group: least
  privilege), the Entra *directory role* Global Reader (the documented fallback for those two), and the operator's
  Exchange *application role* for alert e-mail — with the ids an app registration and `az` need, where it is granted
  (`customer`: every monitored tenant; `operator`: only the tenant that runs authwatch) and why.
- `ENDPOINTS`: every request the collectors make (one per snapshot source: `shared/collect/graph.py`
  GRAPH_SOURCES, `shared/collect/exchange.py` EXCHANGE_SOURCES) and the e-mail alert channel, with the
  permissions and the licence each needs.
- `control_permissions()`: per control, derived from the sources its metadata says it reads.

Everything is read-only in a customer tenant: Graph `*.Read.All` roles, Exchange `Get-*` cmdlets under the
View-Only roles. Exchange app-only access needs Exchange.ManageAsApp plus either an Exchange role group that holds
the app's service principal ("Option 2: Assign custom role groups to the application using service principals",
https://learn.microsoft.com/en-us/powershell/exchange/app-only-auth-powershell-v2) or one of the Entra roles that
page lists (Global Reader being the read-only one); the role group limits the app to the cmdlets of View-Only
Configuration and View-Only Recipients, where Global Reader reads every workload.

The only write, sending alert e-mail, happens in the operator's own tenant from one mailbox, and is granted by
Exchange RBAC for Applications alone ("Application Mail.Send" scoped to that mailbox,
https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac), never by an Entra Mail.Send consent:
the two are a union, so an unscoped Entra consent would let the app send as any mailbox whatever the scope says.
It is never part of the multi-tenant app, so no customer ever consents to anything that writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Where = Literal["customer", "operator"]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
SIGNIN_LICENCE = "Microsoft Entra ID P1 or P2"


Kind = Literal["application", "directoryRole", "exchangeRole", "exchangeApplicationRole"]
LABEL_PREFIX: dict[str, str] = {"application": "", "directoryRole": "Entra role: ", "exchangeRole": "Exchange role: ",
                                "exchangeApplicationRole": "Exchange application role: "}
KIND_TEXT: dict[str, str] = {"application": "app role", "directoryRole": "Entra role",
                             "exchangeRole": "Exchange role (role group)",
                             "exchangeApplicationRole": "Exchange RBAC for Applications"}


@dataclass(frozen=True)
class Permission:
    name: str  # "Policy.Read.All", "View-Only Configuration", "Global Reader"
    # an app role on a resource API (admin consent), an Entra directory role, an Exchange management role held
    # through an Exchange role group, or an Exchange application role assigned with a scope (RBAC for Applications)
    kind: Kind
    resource: str  # the API, "Microsoft Entra ID", or "Exchange Online" for Exchange's own RBAC
    resource_app_id: str | None  # the API's well-known app id; None where nothing is consented
    id: str | None  # the app role id or the directory role's template id; Exchange roles are known by name
    where: Where
    purpose: str
    fallback_for: tuple[str, ...] = ()  # the labels this one replaces where they cannot be given

    @property
    def label(self) -> str:
        """How controls and endpoints name it: the app role's name, or "<kind>: <name>"."""
        return LABEL_PREFIX[self.kind] + self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "resource": self.resource,
                "resourceAppId": self.resource_app_id, "id": self.id, "where": self.where, "purpose": self.purpose,
                "fallbackFor": list(self.fallback_for)}


def _graph(name: str, role_id: str, purpose: str, where: Where = "customer") -> Permission:
    return Permission(name, "application", "Microsoft Graph", GRAPH_APP_ID, role_id, where, purpose)


POLICY_READ = _graph("Policy.Read.All", "246dd0d5-5bd0-4def-940b-0421030a5b68",
                     "Conditional Access policies, security defaults")
SHAREPOINT_READ = _graph("SharePointTenantSettings.Read.All", "83d4163d-a2d8-4d3b-9695-4ae3ca98f888",
                         "SharePoint's legacy-protocol setting")
AUDIT_LOG_READ = _graph("AuditLog.Read.All", "b0afded3-3588-46d8-8b3d-9842eff778da",
                        "legacy sign-ins (enforcement evidence), Conditional Access audit (who changed it)")
# List directoryAudits documents "AuditLog.Read.All and Directory.Read.All" for applications, both required
# (https://learn.microsoft.com/en-us/graph/api/directoryaudit-list#permissions); List signIns lists AuditLog.Read.All
# alone today (https://learn.microsoft.com/en-us/graph/api/signin-list#permissions), but without Directory.Read.All
# the reports' premium-licence check has been seen to fail with 403 Authentication_ApplicationHasNoDirectoryReadAccess
# (microsoftgraph/microsoft-graph-docs#2789). Directory.Read.All reads no more than Global Reader did, which the
# Exchange role group below now replaces, so the documented pair is the choice. It also reads the organization
# object (https://learn.microsoft.com/en-us/graph/api/organization-get#permissions), so Organization.Read.All, which
# earlier versions asked for, would add nothing.
DIRECTORY_READ = _graph("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
                        "the directory audit log (documented as needing it beside AuditLog.Read.All); the tenant's "
                        "name and verified domains")
# Who changed an Exchange or SharePoint setting (shared/cycle/attribution.py): the Graph audit log query API, one
# permission per Microsoft 365 service's records; AuditLogsQuery.Read.All would read every service's audit log.
# https://learn.microsoft.com/en-us/graph/api/security-auditlogquery-list-records#permissions
AUDIT_QUERY_EXCHANGE = _graph("AuditLogsQuery-Exchange.Read.All", "6b0d2622-d34e-4470-935b-b96550e5ca8d",
                              "who changed an Exchange setting (the unified audit log's Exchange admin records); "
                              "optional: without it the actor stays unknown")
AUDIT_QUERY_SHAREPOINT = _graph("AuditLogsQuery-SharePoint.Read.All", "91c64a47-a524-4fce-9bf3-3d569a344ecf",
                                "who changed SharePoint's legacy-protocol setting (its audit records); optional")
EXCHANGE_MANAGE_AS_APP = Permission(
    "Exchange.ManageAsApp", "application", "Office 365 Exchange Online", EXCHANGE_APP_ID,
    "dc50a0fb-09a3-484d-be87-e023b12c6440", "customer",
    "call the Exchange Online admin API as the app; its rights there come from the Exchange roles below")


def _exchange_role(name: str, purpose: str) -> Permission:
    return Permission(name, "exchangeRole", "Exchange Online", None, None, "customer", purpose)


# Which built-in role holds which Get-* cmdlet: Microsoft's Microsoft365DSC settings.json per resource ("read"
# roles); Learn documents no mapping and says to ask the tenant (Get-ManagementRoleEntry "<role>\<cmdlet>",
# https://learn.microsoft.com/en-us/powershell/exchange/find-exchange-cmdlet-permissions).
VIEW_ONLY_CONFIGURATION = _exchange_role(
    "View-Only Configuration", "Get-OrganizationConfig, Get-TransportConfig, Get-AuthenticationPolicy, "
    "Get-CASMailboxPlan (organisation-wide settings, read-only)")
VIEW_ONLY_RECIPIENTS = _exchange_role("View-Only Recipients",
                                      "Get-CASMailbox, Get-User (mailboxes and users, read-only)")
EXCHANGE_ROLES = (VIEW_ONLY_CONFIGURATION, VIEW_ONLY_RECIPIENTS)
EXCHANGE_ROLE_GROUP = "authwatch readers"  # the custom role group the onboarding commands create
GLOBAL_READER = Permission(
    "Global Reader", "directoryRole", "Microsoft Entra ID", None, "f2ef992c-3afb-46b9-b7cf-a126ee74c451", "customer",
    "fallback for the two Exchange roles, where a role group cannot be set up: read-only, but over every workload",
    fallback_for=tuple(role.label for role in EXCHANGE_ROLES))
MAIL_SEND = Permission(
    "Application Mail.Send", "exchangeApplicationRole", "Exchange Online", None, None, "operator",
    "e-mail alerts from one mailbox of your own tenant, scoped to it by a management scope; on a separate "
    "single-tenant app, never the multi-tenant one, and with no Entra Mail.Send consent")

PERMISSIONS: tuple[Permission, ...] = (POLICY_READ, SHAREPOINT_READ, AUDIT_LOG_READ, DIRECTORY_READ,
                                       AUDIT_QUERY_EXCHANGE, AUDIT_QUERY_SHAREPOINT, EXCHANGE_MANAGE_AS_APP, *EXCHANGE_ROLES, GLOBAL_READER, MAIL_SEND)
BY_LABEL = {permission.label: permission for permission in PERMISSIONS}


@dataclass(frozen=True)
class Endpoint:
    """One request authwatch makes, and what it needs."""

    source: str  # the snapshot source ("graph.signIns", "exchange.casMailboxes"), or "alerts.email"
    method: str
    path: str  # Graph: relative to /v1.0; Exchange: the InvokeCommand URL
    permissions: tuple[str, ...]  # labels (Permission.label)
    cmdlet: str | None = None  # Exchange only
    licence: str | None = None  # a licence the tenant needs, or the source answers 403 without it
    where: Where = "customer"

    @property
    def request(self) -> str:
        return f"{self.method} {self.path}" + (f" {self.cmdlet}" if self.cmdlet else "")

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "request": self.request, "method": self.method, "path": self.path,
                "cmdlet": self.cmdlet, "permissions": list(self.permissions), "licence": self.licence,
                "where": self.where}


_INVOKE = "/adminapi/beta/{tenantId}/InvokeCommand"


def _exchange(name: str, cmdlet: str, role: Permission) -> Endpoint:
    return Endpoint(f"exchange.{name}", "POST", _INVOKE, (EXCHANGE_MANAGE_AS_APP.label, role.label), cmdlet=cmdlet)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("graph.organization", "GET", "/organization", (DIRECTORY_READ.label,)),
    Endpoint("graph.securityDefaults", "GET", "/policies/identitySecurityDefaultsEnforcementPolicy",
             (POLICY_READ.label,)),
    Endpoint("graph.conditionalAccessPolicies", "GET", "/identity/conditionalAccess/policies", (POLICY_READ.label,)),
    Endpoint("graph.sharepointSettings", "GET", "/admin/sharepoint/settings", (SHAREPOINT_READ.label,)),
    Endpoint("graph.signIns", "GET", "/auditLogs/signIns", (AUDIT_LOG_READ.label,), licence=SIGNIN_LICENCE),
    # The audit log is in every edition of Entra ID (7 days on Free): no licence
    # (https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-reports-data-retention).
    Endpoint("graph.directoryAudits", "GET", "/auditLogs/directoryAudits",
             (AUDIT_LOG_READ.label, DIRECTORY_READ.label)),
    _exchange("organizationConfig", "Get-OrganizationConfig", VIEW_ONLY_CONFIGURATION),
    _exchange("transportConfig", "Get-TransportConfig", VIEW_ONLY_CONFIGURATION),
    _exchange("authenticationPolicies", "Get-AuthenticationPolicy", VIEW_ONLY_CONFIGURATION),
    _exchange("casMailboxes", "Get-CASMailbox", VIEW_ONLY_RECIPIENTS),
    _exchange("casMailboxPlans", "Get-CASMailboxPlan", VIEW_ONLY_CONFIGURATION),
    _exchange("users", "Get-User", VIEW_ONLY_RECIPIENTS),
    # An audit log query is created with POST, but it is a search: it reads the audit log and changes nothing in the
    # tenant (https://learn.microsoft.com/en-us/graph/api/security-auditcoreroot-post-auditlogqueries).
    Endpoint("attribution.auditLogQueries", "POST", "/security/auditLog/queries",
             (AUDIT_QUERY_EXCHANGE.label, AUDIT_QUERY_SHAREPOINT.label)),
    Endpoint("attribution.auditLogRecords", "GET", "/security/auditLog/queries/{id}/records",
             (AUDIT_QUERY_EXCHANGE.label, AUDIT_QUERY_SHAREPOINT.label)),
    Endpoint("alerts.email", "POST", "/users/{sender}/sendMail", (MAIL_SEND.label,), where="operator"),
)
BY_SOURCE = {endpoint.source: endpoint for endpoint in ENDPOINTS}
# `POST /$batch` carries the one-shot Graph reads above in one round trip; it needs nothing of its own (each item
# is authorised as if sent alone), so it has no entry.


def permissions_for(sources: Iterable[str]) -> tuple[str, ...]:
    """The permission labels the given snapshot sources need, in manifest order. KeyError for an unknown source."""
    needed = {label for source in sources for label in BY_SOURCE[source].permissions}
    return tuple(permission.label for permission in PERMISSIONS if permission.label in needed)


def licences_for(sources: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({BY_SOURCE[source].licence for source in sources if BY_SOURCE[source].licence}))


def control_permissions() -> dict[str, dict[str, Any]]:
    """Per control (catalogue order): the sources it reads, the permissions and licences they need."""
    from shared.controls import controls

    return {control.id: {"sources": list(control.metadata.sources),
                         "permissions": list(permissions_for(control.metadata.sources)),
                         "licences": list(licences_for(control.metadata.sources))}
            for control in controls()}


def customer_permissions() -> tuple[Permission, ...]:
    return tuple(permission for permission in PERMISSIONS if permission.where == "customer")


def required_resource_access() -> list[dict[str, Any]]:
    """The multi-tenant app registration's `requiredResourceAccess` (what admin consent grants in a customer tenant):
    the customer-side application permissions only. Roles (Entra or Exchange) are assigned, not consented; alert
    e-mail is the operator's and never part of it."""
    by_resource: dict[str, list[dict[str, str]]] = {}
    for permission in customer_permissions():
        if permission.kind == "application" and permission.resource_app_id:
            by_resource.setdefault(permission.resource_app_id, []).append({"id": permission.id, "type": "Role"})
    return [{"resourceAppId": app_id, "resourceAccess": access} for app_id, access in by_resource.items()]


def manifest() -> dict[str, Any]:
    """Everything above as one JSON document (`authwatch permissions --format json`)."""
    return {
        "resources": {"Microsoft Graph": GRAPH_APP_ID, "Office 365 Exchange Online": EXCHANGE_APP_ID},
        "permissions": [permission.to_json() for permission in PERMISSIONS],
        "endpoints": [endpoint.to_json() for endpoint in ENDPOINTS],
        "controls": control_permissions(),
        "requiredResourceAccess": required_resource_access(),
    }

"""What authwatch needs in a Microsoft 365 tenant, as data: the permissions manifest.

Three views of one fact, kept consistent by tests/unit/test_permissions.py:

- `PERMISSIONS`: every permission authwatch asks for — Microsoft Graph and Exchange Online *application*
  permissions (app roles, granted by admin consent) and the one Entra *directory role* the Exchange admin API
  checks — with the ids an app registration and `az` need, where it is granted (`customer`: every monitored tenant;
  `operator`: only the tenant that runs authwatch) and why.
- `ENDPOINTS`: every request the collectors make (one per snapshot source: `shared/collect/graph.py`
  GRAPH_SOURCES, `shared/collect/exchange.py` EXCHANGE_SOURCES) and the e-mail alert channel, with the
  permissions and the licence each needs.
- `control_permissions()`: per control, derived from the sources its metadata says it reads.

Everything is read-only in a customer tenant: Graph `*.Read.All` roles, Exchange `Get-*` cmdlets under Global
Reader. The only write, Mail.Send, sends alert e-mail from one mailbox of the operator's own tenant: it goes on a
separate single-tenant app registration there (the e-mail channel's credential; the same managed identity can be
its federated credential), limited to the sender mailbox with Exchange RBAC for Applications. It is never part of
the multi-tenant app, so no customer ever consents to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Where = Literal["customer", "operator"]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
SIGNIN_LICENCE = "Microsoft Entra ID P1 or P2"


@dataclass(frozen=True)
class Permission:
    name: str  # "Policy.Read.All", "Global Reader"
    kind: Literal["application", "directoryRole"]  # an app role on a resource API, or an Entra directory role
    resource: str  # the API (or "Microsoft Entra ID" for a directory role)
    resource_app_id: str | None  # the API's well-known app id; None for a directory role
    id: str  # the app role id, or the directory role's template id
    where: Where
    purpose: str

    @property
    def label(self) -> str:
        """How controls and endpoints name it: the app role's name, or "Entra role: <name>"."""
        return f"Entra role: {self.name}" if self.kind == "directoryRole" else self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "resource": self.resource,
                "resourceAppId": self.resource_app_id, "id": self.id, "where": self.where, "purpose": self.purpose}


def _graph(name: str, role_id: str, purpose: str, where: Where = "customer") -> Permission:
    return Permission(name, "application", "Microsoft Graph", GRAPH_APP_ID, role_id, where, purpose)


ORGANIZATION_READ = _graph("Organization.Read.All", "498476ce-e0fe-48b0-b801-37ba7e2685c6",
                           "the tenant's name and verified domains")
POLICY_READ = _graph("Policy.Read.All", "246dd0d5-5bd0-4def-940b-0421030a5b68",
                     "Conditional Access policies, security defaults")
SHAREPOINT_READ = _graph("SharePointTenantSettings.Read.All", "83d4163d-a2d8-4d3b-9695-4ae3ca98f888",
                         "SharePoint's legacy-protocol setting")
AUDIT_LOG_READ = _graph("AuditLog.Read.All", "b0afded3-3588-46d8-8b3d-9842eff778da",
                        "legacy sign-ins (enforcement evidence), Conditional Access audit (who changed it)")
EXCHANGE_MANAGE_AS_APP = Permission(
    "Exchange.ManageAsApp", "application", "Office 365 Exchange Online", EXCHANGE_APP_ID,
    "dc50a0fb-09a3-484d-be87-e023b12c6440", "customer",
    "call the Exchange Online admin API as the app; its rights there come from the Entra role")
GLOBAL_READER = Permission(
    "Global Reader", "directoryRole", "Microsoft Entra ID", None, "f2ef992c-3afb-46b9-b7cf-a126ee74c451", "customer",
    "read-only role the Exchange admin API requires for Get-* cmdlets (without it: 403)")
MAIL_SEND = _graph(
    "Mail.Send", "b633e1c5-b582-4048-a93e-9f11b44c7e96",
    "e-mail alerts from one mailbox of your own tenant; on a separate single-tenant app, never the multi-tenant one",
    where="operator")

PERMISSIONS: tuple[Permission, ...] = (ORGANIZATION_READ, POLICY_READ, SHAREPOINT_READ, AUDIT_LOG_READ,
                                       EXCHANGE_MANAGE_AS_APP, GLOBAL_READER, MAIL_SEND)
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


_EXCHANGE = (EXCHANGE_MANAGE_AS_APP.label, GLOBAL_READER.label)
_INVOKE = "/adminapi/beta/{tenantId}/InvokeCommand"


def _exchange(name: str, cmdlet: str) -> Endpoint:
    return Endpoint(f"exchange.{name}", "POST", _INVOKE, _EXCHANGE, cmdlet=cmdlet)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("graph.organization", "GET", "/organization", (ORGANIZATION_READ.label,)),
    Endpoint("graph.securityDefaults", "GET", "/policies/identitySecurityDefaultsEnforcementPolicy",
             (POLICY_READ.label,)),
    Endpoint("graph.conditionalAccessPolicies", "GET", "/identity/conditionalAccess/policies", (POLICY_READ.label,)),
    Endpoint("graph.sharepointSettings", "GET", "/admin/sharepoint/settings", (SHAREPOINT_READ.label,)),
    Endpoint("graph.signIns", "GET", "/auditLogs/signIns", (AUDIT_LOG_READ.label,), licence=SIGNIN_LICENCE),
    Endpoint("graph.directoryAudits", "GET", "/auditLogs/directoryAudits", (AUDIT_LOG_READ.label,),
             licence=SIGNIN_LICENCE),
    _exchange("organizationConfig", "Get-OrganizationConfig"),
    _exchange("transportConfig", "Get-TransportConfig"),
    _exchange("authenticationPolicies", "Get-AuthenticationPolicy"),
    _exchange("casMailboxes", "Get-CASMailbox"),
    _exchange("casMailboxPlans", "Get-CASMailboxPlan"),
    _exchange("users", "Get-User"),
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
    the customer-side application permissions only. Directory roles are assigned, not consented; Mail.Send is the
    operator's and never part of it."""
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

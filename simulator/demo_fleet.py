"""The scripted fleet behind `authwatch demo`: a handful of tenants, each with a story worth monitoring.

Tenant ids are fixed so that the demo's output, the tests and the docs can all name the same tenants.
"""

from __future__ import annotations

import copy
import zlib
from typing import Any

from simulator.defaults import DEFAULT_PERMISSIONS

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "demo-fleet-secret"}

BLOCK_POLICY: dict[str, Any] = {
    "id": "11111111-1111-1111-1111-111111111111",
    "displayName": "Block legacy authentication",
    "createdDateTime": "2024-03-01T10:00:00Z",
    "modifiedDateTime": "2025-11-02T08:15:00Z",
    "state": "enabled",
    # Every property Graph v1.0 returns for a policy's conditions, nulls and empty lists included (the shape of
    # conditionalAccessConditionSet: https://learn.microsoft.com/en-us/graph/api/resources/conditionalaccessconditionset).
    "conditions": {
        "userRiskLevels": [], "signInRiskLevels": [], "servicePrincipalRiskLevels": [], "insiderRiskLevels": None,
        "clientAppTypes": ["exchangeActiveSync", "other"],
        "platforms": None, "devices": None, "locations": None, "clientApplications": None, "authenticationFlows": None,
        "applications": {"includeApplications": ["All"], "excludeApplications": [], "includeUserActions": [],
                         "includeAuthenticationContextClassReferences": [], "applicationFilter": None},
        "users": {"includeUsers": ["All"], "excludeUsers": [], "includeGroups": [], "excludeGroups": [],
                  "includeRoles": [], "excludeRoles": [], "includeGuestsOrExternalUsers": None,
                  "excludeGuestsOrExternalUsers": None},
    },
    "grantControls": {"operator": "OR", "builtInControls": ["block"]},
}

# Microsoft's recommended "Block device code flow" policy: all client apps, block — but only for the device code
# flow (authenticationFlows.transferMethods), so it is no legacy-auth block.
# https://learn.microsoft.com/en-us/entra/identity/conditional-access/policy-block-authentication-flows
DEVICE_CODE_POLICY: dict[str, Any] = {
    "id": "33333333-3333-3333-3333-333333333333",
    "displayName": "Block device code flow",
    "createdDateTime": "2025-06-01T10:00:00Z",
    "modifiedDateTime": None,
    "state": "enabled",
    "conditions": {
        **copy.deepcopy(BLOCK_POLICY["conditions"]),
        "clientAppTypes": ["all"],
        "authenticationFlows": {"transferMethods": "deviceCodeFlow"},
    },
    "grantControls": {"operator": "OR", "builtInControls": ["block"]},
}

# Microsoft's own "Block legacy authentication", created report-only in eligible tenants and turned on no less than
# 45 days later unless set to Off; Graph marks it only by its display name, which admins cannot change.
# https://learn.microsoft.com/en-us/entra/identity/conditional-access/managed-policies
MANAGED_BLOCK_POLICY: dict[str, Any] = {
    **copy.deepcopy(BLOCK_POLICY),
    "id": "44444444-4444-4444-4444-444444444444",
    "displayName": "Microsoft-managed: Block legacy authentication",
    "createdDateTime": "2026-11-10T03:00:00Z",
    "modifiedDateTime": None,
    "state": "enabledForReportingButNotEnforced",
}

MFA_POLICY: dict[str, Any] = {
    "id": "22222222-2222-2222-2222-222222222222",
    "displayName": "Require MFA for admins",
    "createdDateTime": "2024-03-01T10:00:00Z",
    "modifiedDateTime": None,
    "state": "enabled",
    "conditions": {
        "clientAppTypes": ["browser", "mobileAppsAndDesktopClients"],
        "applications": {"includeApplications": ["All"]},
        "users": {"includeUsers": [], "includeRoles": ["62e90394-69f5-4237-9190-012177145e10"]},
    },
    "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
}

BREAK_GLASS = "aaaaaaaa-0000-0000-0000-000000000001"
CONTRACTOR = "cccccccc-0000-0000-0000-000000000003"


def _policy(**changes: Any) -> dict[str, Any]:
    policy = copy.deepcopy(BLOCK_POLICY)
    users = changes.pop("excludeUsers", None)
    if users is not None:
        policy["conditions"]["users"]["excludeUsers"] = users
    policy.update(changes)
    return policy


def _mailboxes(count: int, domain: str, **special: dict[str, Any]) -> list[dict[str, Any]]:
    """`count` ordinary mailboxes (inheriting SMTP AUTH, POP/IMAP off) plus named special ones."""
    boxes = [{"Identity": f"user{i:03d}", "PrimarySmtpAddress": f"user{i:03d}@{domain}",
              "ExternalDirectoryObjectId": f"0000{i:04d}-0000-4000-8000-{zlib.crc32(domain.encode()):012d}",
              "SmtpClientAuthenticationDisabled": None, "PopEnabled": False, "ImapEnabled": False,
              "ActiveSyncEnabled": True} for i in range(count)]
    for identity, fields in special.items():
        boxes.append({"Identity": identity, "PrimarySmtpAddress": f"{identity}@{domain}",
                      "ExternalDirectoryObjectId": fields.pop("objectId", f"{identity[:8]:0<8}-0000-4000-8000-000000000099"),
                      "SmtpClientAuthenticationDisabled": None, "PopEnabled": False, "ImapEnabled": False,
                      "ActiveSyncEnabled": True, **fields})
    return boxes


def _signin(at: str, user: str, app: str, error_code: int = 0) -> dict[str, Any]:
    return {"id": f"{user}-{app}-{at}", "createdDateTime": at, "userPrincipalName": user, "userId": user,
            "clientAppUsed": app, "ipAddress": "203.0.113.7", "appDisplayName": "Office 365 Exchange Online",
            "status": {"errorCode": error_code, "failureReason": None if error_code == 0 else "Blocked"}}


BLOCK_BASIC = {"Name": "Block Basic Auth", "Identity": "Block Basic Auth",
               **{f"AllowBasicAuth{p}": False for p in ("ActiveSync", "Autodiscover", "Imap", "Mapi",
                                                          "OfflineAddressBook", "OutlookService", "Pop", "Powershell",
                                                          "ReportingWebServices", "Rpc", "Smtp", "WebServices")}}


def _auth_policy(name: str, **allow: bool) -> dict[str, Any]:
    return {**BLOCK_BASIC, "Name": name, "Identity": name, **{f"AllowBasicAuth{k}": v for k, v in allow.items()}}


def _tenant(tenant_id: str, name: str, story: str, *, policies: list[dict[str, Any]], security_defaults: bool = False,
            smtp_auth_disabled: Any = True, domain: str = "", mailboxes: list[dict[str, Any]] | None = None,
            auth_policies: list[dict[str, Any]] | None = None, default_policy: str = "Block Basic Auth",
            users: list[dict[str, Any]] | None = None, signins: list[dict[str, Any]] | None = None,
            oauth2: Any = True, spo_legacy: bool = False, **extra: Any) -> dict[str, Any]:
    domain = domain or f"{name.split()[0].lower()}.example"
    return {
        "tenantId": tenant_id,
        "displayName": name,
        "story": story,
        "graph": {
            "organization": {"id": tenant_id, "displayName": name,
                             "verifiedDomains": [{"name": domain, "isDefault": True, "type": "Managed"}]},
            "securityDefaults": {"id": "00000000-0000-0000-0000-000000000005", "displayName": "Security Defaults",
                                 "isEnabled": security_defaults},
            "conditionalAccessPolicies": policies,
            "sharepointSettings": {"isLegacyAuthProtocolsEnabled": spo_legacy, "sharingCapability": "disabled"},
            "signIns": signins or [],
        },
        "exchange": {
            "organizationConfig": {"Name": domain, "Identity": domain, "DefaultAuthenticationPolicy": default_policy,
                                   "OAuth2ClientProfileEnabled": oauth2},
            "transportConfig": {"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": smtp_auth_disabled},
            "authenticationPolicies": auth_policies if auth_policies is not None else [dict(BLOCK_BASIC)],
            "casMailboxes": mailboxes if mailboxes is not None else _mailboxes(25, domain),
            "casMailboxPlans": [{"Name": "ExchangeOnlineEnterprise", "PopEnabled": False, "ImapEnabled": False,
                                 "ActiveSyncEnabled": True}],
            "users": users or [],
        },
        **extra,
    }


SCANNER_ID = "5ca22e70-0000-4000-8000-000000000001"


def demo_fleet() -> dict[str, Any]:
    """A fresh copy of the demo scenario (callers may mutate it). Together the tenants fail and pass every control."""
    tenants = [
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000001", "Contoso", "healthy: CA blocks legacy auth, SMTP AUTH off",
                policies=[copy.deepcopy(BLOCK_POLICY), copy.deepcopy(MFA_POLICY), copy.deepcopy(DEVICE_CODE_POLICY)],
                signins=[_signin("2026-11-23T07:10:00Z", "kiosk@contoso.example", "IMAP4", error_code=53003)]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000002", "Fabrikam",
                "someone switched the legacy-auth block to report-only; a scanner still sends with a password",
                policies=[_policy(state="enabledForReportingButNotEnforced", modifiedDateTime="2026-11-22T21:40:00Z"),
                          copy.deepcopy(MANAGED_BLOCK_POLICY)],
                mailboxes=_mailboxes(25, "fabrikam.example", scanner={"objectId": SCANNER_ID,
                                                                      "SmtpClientAuthenticationDisabled": False},
                                     frontdesk={"PopEnabled": True}),
                auth_policies=[dict(BLOCK_BASIC), _auth_policy("Allow SMTP for scanner", Smtp=True)],
                users=[{"Identity": "scanner", "UserPrincipalName": "scanner@fabrikam.example",
                        "ExternalDirectoryObjectId": SCANNER_ID, "AuthenticationPolicy": "Allow SMTP for scanner"}],
                signins=[_signin("2026-11-23T07:30:00Z", "scanner@fabrikam.example", "Authenticated SMTP"),
                         _signin("2026-11-23T06:30:00Z", "scanner@fabrikam.example", "Authenticated SMTP")]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000003", "Northwind Traders",
                "SMTP AUTH re-enabled tenant-wide and the default policy allows basic SMTP (security defaults hold)",
                policies=[], security_defaults=True, smtp_auth_disabled="False",
                auth_policies=[_auth_policy("Legacy printers", Smtp=True)], default_policy="Legacy printers"),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000004", "Tailspin Toys",
                "new block policy switched on last night: inside its 24-hour window, the CRM still sends with SMTP AUTH",
                policies=[_policy(createdDateTime="2026-11-22T20:00:00Z", modifiedDateTime="2026-11-22T20:00:00Z")],
                # Basic auth still succeeds only for SMTP AUTH in 2026: Microsoft retired it for IMAP, POP, EAS, EWS
                # and the rest in 2022 (a successful IMAP4 Basic sign-in cannot happen any more).
                signins=[_signin("2026-11-23T06:00:00Z", "sales@tailspin.example", "Authenticated SMTP"),
                         _signin("2026-11-22T19:00:00Z", "sales@tailspin.example", "Authenticated SMTP")]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000005", "Woodgrove Bank",
                "the enterprise app was deleted (no service principal): authwatch can no longer sign in",
                policies=[copy.deepcopy(BLOCK_POLICY)], consent=False),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000006", "Litware",
                "small business on security defaults (no Entra P1); a printer mailbox has SMTP AUTH back on",
                policies=[], security_defaults=True, licensed=False,
                mailboxes=_mailboxes(8, "litware.example", printer={"SmtpClientAuthenticationDisabled": "False"}),
                # Consented to the audit log query permission too: who turns SMTP AUTH on is named (see STORY).
                permissions=[*DEFAULT_PERMISSIONS, "AuditLogsQuery-Exchange.Read.All"],
                auditRecords=[], auditQuery={"now": "2026-11-23T08:00:00Z"}),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000007", "Adatum",
                "block policy excludes a contractor nobody approved; Exchange role missing",
                policies=[_policy(excludeUsers=[BREAK_GLASS, CONTRACTOR])], exchangeRole=False,
                settings={"approvedExclusions": {"users": [BREAK_GLASS]}}),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000008", "Proseware",
                "an old tenant nobody touched: modern auth off in Exchange, SharePoint legacy protocols on",
                policies=[copy.deepcopy(BLOCK_POLICY)], oauth2="False", spo_legacy=True),
    ]
    return {"app": dict(APP), "tenants": tenants}


# --- The story the demo tells as simulated hours pass --------------------------------------------------------------

CONTOSO = "8c1d0f4e-1a2b-4c3d-8e9f-000000000001"
FABRIKAM = "8c1d0f4e-1a2b-4c3d-8e9f-000000000002"
TAILSPIN = "8c1d0f4e-1a2b-4c3d-8e9f-000000000004"
WOODGROVE = "8c1d0f4e-1a2b-4c3d-8e9f-000000000005"
LITWARE = "8c1d0f4e-1a2b-4c3d-8e9f-000000000006"


def _audit(at: str, who: str, policy_id: str, activity: str = "Update conditional access policy") -> dict[str, Any]:
    return {"id": f"audit-{at}", "activityDateTime": at, "activityDisplayName": activity, "category": "Policy",
            "loggedByService": "Conditional Access", "result": "success",
            "initiatedBy": {"user": {"userPrincipalName": who}, "app": None},
            "targetResources": [{"id": policy_id, "displayName": "Block legacy authentication", "type": "Policy"}]}


def _set_block_state(state: str, at: str) -> Any:
    def change(tenant: dict[str, Any]) -> None:
        policy = next(p for p in tenant["graph"]["conditionalAccessPolicies"] if p["id"] == BLOCK_POLICY["id"])
        policy.update(state=state, modifiedDateTime=at)
        tenant["graph"].setdefault("directoryAudits", []).append(_audit(at, "admin@contoso.example", policy["id"]))
    return change


def _printer_override(tenant: dict[str, Any]) -> None:
    tenant["exchange"]["casMailboxes"].append({
        "Identity": "scanner2", "PrimarySmtpAddress": "scanner2@litware.example",
        "ExternalDirectoryObjectId": "5ca22e70-0000-4000-8000-000000000002", "SmtpClientAuthenticationDisabled": False,
        "PopEnabled": False, "ImapEnabled": False, "ActiveSyncEnabled": True})
    # The unified audit log's record of it (auditLogRecord, Exchange admin auditData: Operation, Parameters,
    # ResultStatus; https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogrecord,
    # https://learn.microsoft.com/en-us/office/office-365-management-api/office-365-management-activity-api-schema),
    # searchable 70 minutes later: Microsoft says typically 60 to 90 (purview/audit-log-search).
    tenant["auditRecords"].append({
        "createdDateTime": "2026-11-23T09:50:00Z", "auditLogRecordType": "exchangeAdmin",
        "operation": "Set-CASMailbox", "userType": "admin", "userId": "it-admin@litware.example",
        "userPrincipalName": "it-admin@litware.example", "service": "Exchange", "availableAfterMinutes": 70,
        "auditData": {"CreationTime": "2026-11-23T09:50:00", "Operation": "Set-CASMailbox", "RecordType": 1,
                      "UserType": 2, "UserId": "it-admin@litware.example", "ResultStatus": "True",
                      "ObjectId": "scanner2@litware.example",
                      "Parameters": [{"Name": "Identity", "Value": "scanner2@litware.example"},
                                     {"Name": "SmtpClientAuthenticationDisabled", "Value": "False"}]}})


def _late_smtp(tenant: dict[str, Any]) -> None:
    tenant["graph"]["signIns"].append(_signin("2026-11-23T20:30:00Z", "sales@tailspin.example", "Authenticated SMTP"))


def _tighten_scanner_policy(tenant: dict[str, Any]) -> None:
    # Set-AuthenticationPolicy "Allow SMTP for scanner" -AllowBasicAuthSmtp:$false: Exchange may take up to 24 hours
    # to apply it (https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/disable-basic-authentication-in-exchange-online).
    policy = next(p for p in tenant["exchange"]["authenticationPolicies"] if p["Name"] == "Allow SMTP for scanner")
    policy["AllowBasicAuthSmtp"] = False


def _scanner_still_sends(tenant: dict[str, Any]) -> None:
    tenant["graph"]["signIns"].append(_signin("2026-11-23T15:50:00Z", "scanner@fabrikam.example", "Authenticated SMTP"))


def _reconsent(tenant: dict[str, Any]) -> None:
    tenant["consent"] = True


# (hours after the first cycle, tenant, what happens, change to the simulated tenant or None)
STORY: list[tuple[float, str, str, Any]] = [
    (1, CONTOSO, "an admin switches 'Block legacy authentication' to report-only",
     _set_block_state("enabledForReportingButNotEnforced", "2026-11-23T08:52:00Z")),
    (2, LITWARE, "SMTP AUTH is turned on for a second printer mailbox", _printer_override),
    (3, CONTOSO, "the admin switches the block back on: a new 24-hour enforcement window starts",
     _set_block_state("enabled", "2026-11-23T10:55:00Z")),
    (4, FABRIKAM, "an admin turns Basic SMTP off in the scanner's authentication policy: Exchange's own 24-hour "
                  "window starts", _tighten_scanner_policy),
    (8, FABRIKAM, "the scanner still sends with SMTP AUTH: expected while the window is open", _scanner_still_sends),
    (13, TAILSPIN, "25 hours after its new block, the CRM still sends with SMTP AUTH", _late_smtp),
    (24, WOODGROVE, "the customer grants admin consent again", _reconsent),
    (28, CONTOSO, "Contoso's and Fabrikam's windows have closed with no legacy sign-in since", None),
]

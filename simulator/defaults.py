"""What a fresh Microsoft 365 tenant shows where a scenario says nothing: the app's default permissions, the
sections every tenant has, and each Graph / Exchange item's default value (load_scenario fills them in).
"""

from __future__ import annotations

import re
from typing import Any

#: Application permissions granted to the app when a tenant does not list ``permissions``.
#: Graph permissions gate Graph endpoints (403 Authorization_RequestDenied when missing);
#: Exchange.ManageAsApp gates InvokeCommand (401 when missing, as the real service does).
DEFAULT_PERMISSIONS = (
    "Policy.Read.All",
    "SharePointTenantSettings.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
    "Exchange.ManageAsApp",
)

GRAPH_ITEMS = {
    "organization": dict,
    "securityDefaults": dict,
    "conditionalAccessPolicies": list,
    "sharepointSettings": dict,
    "signIns": list,
    "directoryAudits": list,
}
EXCHANGE_ITEMS = {
    "organizationConfig": dict,
    "transportConfig": dict,
    "authenticationPolicies": list,
    "casMailboxes": list,
    "casMailboxPlans": list,
    "users": list,
}

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower()) or "tenant"


def initial_domain(tenant: dict[str, Any]) -> str:
    """The tenant's ``*.onmicrosoft.com`` domain (from verifiedDomains when given)."""
    org = tenant.get("graph", {}).get("organization") or {}
    for dom in org.get("verifiedDomains") or []:
        if isinstance(dom, dict) and dom.get("isInitial") and dom.get("name"):
            return str(dom["name"])
    name = tenant.get("displayName") or f"tenant{tenant['tenantId'][:8]}"
    return f"{_slug(name)}.onmicrosoft.com"


def default_graph(tenant: dict[str, Any], item: str) -> Any:
    """What Graph serves for a tenant whose scenario omits ``graph.<item>``."""
    tid = tenant["tenantId"]
    if item == "organization":
        domain = initial_domain(tenant)
        return {
            "id": tid,
            "displayName": tenant.get("displayName") or domain.split(".")[0],
            "tenantType": "AAD",
            "countryLetterCode": "US",
            "createdDateTime": "2020-01-01T00:00:00Z",
            "onPremisesSyncEnabled": None,
            "technicalNotificationMails": [f"admin@{domain}"],
            "verifiedDomains": [
                {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": True, "isInitial": True,
                 "name": domain, "type": "Managed"},
            ],
        }
    if item == "securityDefaults":
        # Tenants created before Oct 2019 (or that turned it off) show isEnabled false
        # (https://learn.microsoft.com/en-us/entra/fundamentals/security-defaults); a monitor of legacy auth mostly meets those, so "off" is the
        # more useful default.
        return {
            "id": "00000000-0000-0000-0000-000000000005",
            "displayName": "Security Defaults",
            "description": "Security defaults is a set of basic identity security mechanisms recommended by Microsoft.",
            "isEnabled": False,
        }
    if item == "sharepointSettings":
        # Microsoft switched SharePoint's legacy protocols (IDCRL) off by default from 2026-02-16 and for good from
        # 2026-05-01 (message center MC1184649), so a tenant today reads false unless a scenario says otherwise.
        return {
            "allowedDomainGuidsForSyncApp": [],
            "availableManagedPathsForSiteCreation": ["/sites/", "/teams/"],
            "deletedUserPersonalSiteRetentionPeriodInDays": 30,
            "excludedFileExtensionsForSyncApp": [],
            "idleSessionSignOut": {"isEnabled": False, "warnAfterInSeconds": 0, "signOutAfterInSeconds": 0},
            "imageTaggingOption": "basic",
            "isCommentingOnSitePagesEnabled": True,
            "isFileActivityNotificationEnabled": True,
            "isLegacyAuthProtocolsEnabled": False,
            "isLoopEnabled": True,
            "isMacSyncAppEnabled": True,
            "isRequireAcceptingUserToMatchInvitedUserEnabled": True,
            "isResharingByExternalUsersEnabled": False,
            "isSharePointMobileNotificationEnabled": True,
            "isSharePointNewsfeedEnabled": True,
            "isSiteCreationEnabled": True,
            "isSiteCreationUIEnabled": True,
            "isSitePagesCreationEnabled": True,
            "isSitesStorageLimitAutomatic": True,
            "isSyncButtonHiddenOnPersonalSite": False,
            "isUnmanagedSyncAppForTenantRestricted": False,
            "personalSiteDefaultStorageLimitInMB": 1048576,
            "sharingAllowedDomainList": [],
            "sharingBlockedDomainList": [],
            "sharingCapability": "externalUserAndGuestSharing",
            "sharingDomainRestrictionMode": "none",
            "siteCreationDefaultManagedPath": "/sites/",
            "siteCreationDefaultStorageLimitInMB": 26214400,
            "tenantDefaultTimezone": "(UTC) Coordinated Universal Time",
        }
    return []  # collections: no CA policies, no sign-ins, no audit events


def default_exchange(tenant: dict[str, Any], item: str) -> Any:
    """What Exchange Online serves for a tenant whose scenario omits ``exchange.<item>``."""
    domain = initial_domain(tenant)
    if item == "organizationConfig":
        # No org-wide default authentication policy; modern auth on (the default since August 2017,
        # https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/enable-or-disable-modern-authentication-in-exchange-online).
        return {"Name": domain, "Identity": domain, "DefaultAuthenticationPolicy": None,
                "OAuth2ClientProfileEnabled": True}
    if item == "transportConfig":
        # Organisations created after January 2020 have SMTP AUTH disabled org-wide
        # (https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission).
        return {"Identity": "Transport Settings", "SmtpClientAuthenticationDisabled": True}
    return []

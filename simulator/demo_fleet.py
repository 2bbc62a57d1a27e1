"""The scripted fleet behind `authwatch demo`: a handful of tenants, each with a story worth monitoring.

Tenant ids are fixed so that the demo's output, the tests and the docs can all name the same tenants.
"""

from __future__ import annotations

import copy
from typing import Any

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "demo-fleet-secret"}

BLOCK_POLICY: dict[str, Any] = {
    "id": "11111111-1111-1111-1111-111111111111",
    "displayName": "Block legacy authentication",
    "createdDateTime": "2024-03-01T10:00:00Z",
    "modifiedDateTime": "2025-11-02T08:15:00Z",
    "state": "enabled",
    "conditions": {
        "userRiskLevels": [], "signInRiskLevels": [], "servicePrincipalRiskLevels": [], "insiderRiskLevels": None,
        "clientAppTypes": ["exchangeActiveSync", "other"],
        "platforms": None, "devices": None, "locations": None,
        "applications": {"includeApplications": ["All"], "excludeApplications": []},
        "users": {"includeUsers": ["All"], "excludeUsers": [], "includeGroups": [], "excludeGroups": [],
                  "includeRoles": [], "excludeRoles": [], "excludeGuestsOrExternalUsers": None},
    },
    "grantControls": {"operator": "OR", "builtInControls": ["block"]},
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


def _tenant(tenant_id: str, name: str, story: str, *, policies: list[dict[str, Any]], security_defaults: bool = False,
            smtp_auth_disabled: Any = True, **extra: Any) -> dict[str, Any]:
    return {
        "tenantId": tenant_id,
        "displayName": name,
        "story": story,
        "graph": {
            "securityDefaults": {"id": "00000000-0000-0000-0000-000000000005", "displayName": "Security Defaults",
                                 "isEnabled": security_defaults},
            "conditionalAccessPolicies": policies,
        },
        "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                         "SmtpClientAuthenticationDisabled": smtp_auth_disabled}},
        **extra,
    }


def demo_fleet() -> dict[str, Any]:
    """A fresh copy of the demo scenario (callers may mutate it)."""
    tenants = [
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000001", "Contoso", "healthy: CA blocks legacy auth, SMTP AUTH off",
                policies=[copy.deepcopy(BLOCK_POLICY), copy.deepcopy(MFA_POLICY)]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000002", "Fabrikam",
                "someone switched the legacy-auth block to report-only",
                policies=[_policy(state="enabledForReportingButNotEnforced", modifiedDateTime="2026-11-22T21:40:00Z")]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000003", "Northwind Traders",
                "SMTP AUTH re-enabled tenant-wide for an old scanner",
                policies=[], security_defaults=True, smtp_auth_disabled="False"),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000004", "Tailspin Toys",
                "new block policy switched on last night (inside its 24-hour window)",
                policies=[_policy(createdDateTime="2026-11-22T20:00:00Z", modifiedDateTime="2026-11-22T20:00:00Z")]),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000005", "Woodgrove Bank",
                "admin consent revoked: authwatch can no longer sign in",
                policies=[copy.deepcopy(BLOCK_POLICY)], consent=False),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000006", "Litware",
                "small business on security defaults", policies=[], security_defaults=True),
        _tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000007", "Adatum",
                "block policy excludes a contractor nobody approved; Exchange role missing",
                policies=[_policy(excludeUsers=[BREAK_GLASS, CONTRACTOR])], exchangeRole=False,
                settings={"approvedExclusions": {"users": [BREAK_GLASS]}}),
    ]
    return {"app": dict(APP), "tenants": tenants}

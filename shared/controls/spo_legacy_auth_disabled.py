"""Control 8: SharePoint Online and OneDrive refuse apps that do not use modern authentication.

isLegacyAuthProtocolsEnabled of https://learn.microsoft.com/en-us/graph/api/resources/sharepointsettings (Set-SPOTenant -LegacyAuthProtocolsEnabled);
Microsoft turned it off by default from 2026-02-16 and for good from 2026-05-01 (message center MC1184649), so a tenant
that still reads true is the one to look at."""

from __future__ import annotations

from typing import Any

from shared.controls.base import ControlMetadata, register
from shared.controls.setting_flag import SettingFlag
from shared.model import ControlResult, EvaluationContext, Severity, TenantSnapshot

METADATA = ControlMetadata(
    id="spo_legacy_auth_disabled",
    label="SharePoint legacy",
    title="SharePoint Online blocks legacy authentication protocols",
    severity=Severity.MEDIUM,
    frameworks=("CIS 7.2.1",),
    sources=("graph.sharepointSettings",),
    permissions=("SharePointTenantSettings.Read.All",),
    remediation=(
        "Set-SPOTenant -LegacyAuthProtocolsEnabled $false, or Graph PATCH /admin/sharepoint/settings "
        '{"isLegacyAuthProtocolsEnabled": false} (SharePointTenantSettings.ReadWrite.All), or SharePoint admin '
        "center > Policies > Access control > Apps that don't use modern authentication > Block access."
    ),
)

SOURCE = "graph.sharepointSettings"
FIELD = "isLegacyAuthProtocolsEnabled"


def _settings(value: Any) -> dict[str, Any] | None:
    """The settings entity. The SDK reads it at top level; the Graph docs' example wraps it in {"value": {...}}."""
    if isinstance(value, dict) and FIELD not in value and isinstance(value.get("value"), dict):
        return value["value"]
    return value if isinstance(value, dict) else None


FLAG = SettingFlag(
    source=SOURCE,
    field=FIELD,
    where="SharePoint settings",
    safe_value=False,
    question="whether SharePoint Online allows legacy authentication",
    passed="SharePoint Online blocks legacy authentication protocols",
    failed="SharePoint Online accepts legacy authentication protocols: apps can reach SharePoint and OneDrive with a "
           "password alone",
    read=_settings,
)


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    return FLAG.check(METADATA, snapshot)

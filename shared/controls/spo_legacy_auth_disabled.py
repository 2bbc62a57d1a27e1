"""Control 8: SharePoint Online and OneDrive refuse apps that do not use modern authentication."""

from __future__ import annotations

from typing import Any

from shared.controls.base import ControlMetadata, as_bool, not_collected, register
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

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


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    if not snapshot.collected(SOURCE):
        return not_collected(METADATA, snapshot, SOURCE)
    settings = _settings(snapshot.get(SOURCE))
    raw = settings.get(FIELD) if settings else None
    enabled = as_bool(raw)
    evidence = {FIELD: raw}
    if enabled is False:
        return METADATA.result(Status.PASS, "SharePoint Online blocks legacy authentication protocols "
                                            f"(SharePoint settings {FIELD} is false).", evidence)
    if enabled is True:
        return METADATA.result(
            Status.FAIL,
            "SharePoint Online accepts legacy authentication protocols: apps can reach SharePoint and OneDrive with "
            f"a password alone (SharePoint settings {FIELD} is true).",
            evidence,
        )
    # Empty settings or an odd value: nothing proves the tenant either way.
    return METADATA.result(
        Status.UNKNOWN,
        f"Cannot tell whether SharePoint Online allows legacy authentication: SharePoint settings {FIELD} is "
        f"{'missing' if not settings or FIELD not in settings else repr(raw)}.",
        evidence,
    )

"""Control 7: modern authentication (OAuth 2.0) is on for Exchange Online, so Outlook does not fall back to basic."""

from __future__ import annotations

from shared.controls.base import ControlMetadata, as_bool, first_object, not_collected, register
from shared.controls.exchange_objects import describe
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

METADATA = ControlMetadata(
    id="exo_modern_auth_enabled",
    label="modern auth",
    title="Modern authentication is enabled for Exchange Online",
    severity=Severity.MEDIUM,
    frameworks=("CIS 6.5.1",),
    sources=("exchange.organizationConfig",),
    permissions=("Exchange.ManageAsApp", "Entra role: Global Reader"),
    remediation="Set-OrganizationConfig -OAuth2ClientProfileEnabled $true",
)

SOURCE = "exchange.organizationConfig"
FIELD = "OAuth2ClientProfileEnabled"


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    if not snapshot.collected(SOURCE):
        return not_collected(METADATA, snapshot, SOURCE)
    raw_config = snapshot.get(SOURCE)
    config = first_object(raw_config)  # the cmdlet answers a one-item list; collectors may keep the object
    if config is None:
        return METADATA.result(
            Status.UNKNOWN,
            f"Cannot tell whether modern authentication is on: {SOURCE} is {describe(raw_config)}, expected an object.",
            {"unreadableSource": SOURCE},
        )
    raw = config.get(FIELD)
    enabled = as_bool(raw)
    evidence = {FIELD: raw, "organization": config.get("Identity") or config.get("Name")}
    if enabled is True:
        return METADATA.result(Status.PASS, "Modern authentication is enabled for Exchange Online "
                                            f"(organization config {FIELD} is True).", evidence)
    if enabled is False:
        return METADATA.result(
            Status.FAIL,
            f"Modern authentication is disabled for Exchange Online (organization config {FIELD} is False): Outlook "
            "clients cannot sign in with OAuth and are held to legacy authentication.",
            evidence,
        )
    # A missing value proves nothing either way; guessing would hide a collection problem.
    return METADATA.result(
        Status.UNKNOWN,
        f"Cannot tell whether modern authentication is on: organization config {FIELD} is {raw!r}.",
        evidence,
    )

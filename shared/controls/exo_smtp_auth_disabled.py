"""Control 3: SMTP AUTH (basic authentication for client submission) is off for the whole organisation."""

from __future__ import annotations

from shared.controls.base import ControlMetadata, as_bool, first_object, not_collected, register
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

METADATA = ControlMetadata(
    id="exo_smtp_auth_disabled",
    label="SMTP AUTH off",
    title="SMTP AUTH is disabled for the organisation",
    severity=Severity.HIGH,
    frameworks=("CISA MS.EXO.5.1v1", "CIS 6.5.4"),
    sources=("exchange.transportConfig",),
    permissions=("Exchange.ManageAsApp", "Entra role: Global Reader"),
    remediation="Set-TransportConfig -SmtpClientAuthenticationDisabled $true",
)

SOURCE = "exchange.transportConfig"


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    if not snapshot.collected(SOURCE):
        return not_collected(METADATA, snapshot, SOURCE)
    config = first_object(snapshot.get(SOURCE))
    raw = config.get("SmtpClientAuthenticationDisabled") if config else None
    disabled = as_bool(raw)
    evidence = {"SmtpClientAuthenticationDisabled": raw}
    if disabled is True:
        return METADATA.result(Status.PASS, "SMTP AUTH is disabled for the organisation (transport config).", evidence)
    if disabled is False:
        return METADATA.result(
            Status.FAIL,
            "SMTP AUTH is enabled for the whole organisation: any mailbox can send with a password over basic auth "
            "(transport config SmtpClientAuthenticationDisabled is False).",
            evidence,
        )
    # Peers guess here (ScubaGear passes, Prowler fails); a missing value proves nothing either way.
    return METADATA.result(
        Status.UNKNOWN,
        f"Cannot tell whether SMTP AUTH is disabled: transport config SmtpClientAuthenticationDisabled is {raw!r}.",
        evidence,
    )

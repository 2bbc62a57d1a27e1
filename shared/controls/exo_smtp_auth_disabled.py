"""Control 3: SMTP AUTH (basic authentication for client submission) is off for the whole organisation."""

from __future__ import annotations

from shared.controls.base import ControlMetadata, register
from shared.controls.setting_flag import SettingFlag
from shared.model import ControlResult, EvaluationContext, Severity, TenantSnapshot

METADATA = ControlMetadata(
    id="exo_smtp_auth_disabled",
    label="SMTP AUTH off",
    title="SMTP AUTH is disabled for the organisation",
    severity=Severity.HIGH,
    frameworks=("CISA MS.EXO.5.1v1", "CIS 6.5.4"),
    sources=("exchange.transportConfig",),
    permissions=("Exchange.ManageAsApp", "Exchange role: View-Only Configuration"),
    remediation="Set-TransportConfig -SmtpClientAuthenticationDisabled $true",
)

FLAG = SettingFlag(
    source="exchange.transportConfig",
    field="SmtpClientAuthenticationDisabled",
    where="transport config",
    safe_value=True,
    question="whether SMTP AUTH is disabled",
    passed="SMTP AUTH is disabled for the organisation",
    failed="SMTP AUTH is enabled for the whole organisation: any mailbox can send with a password over basic auth",
    identity=("Identity",),
)


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    # A missing value is unknown: peers guess here (ScubaGear passes, Prowler fails), which proves nothing.
    return FLAG.check(METADATA, snapshot)

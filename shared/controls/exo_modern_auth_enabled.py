"""Control 7: modern authentication (OAuth 2.0) is on for Exchange Online, so Outlook does not fall back to basic.

OAuth2ClientProfileEnabled true = modern authentication on, the default since August 2017
(https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/enable-or-disable-modern-authentication-in-exchange-online)."""

from __future__ import annotations

from shared.controls.base import ControlMetadata, register
from shared.controls.setting_flag import SettingFlag
from shared.model import ControlResult, EvaluationContext, Severity, TenantSnapshot

METADATA = ControlMetadata(
    id="exo_modern_auth_enabled",
    label="modern auth",
    title="Modern authentication is enabled for Exchange Online",
    severity=Severity.MEDIUM,
    frameworks=("CIS 6.5.1",),
    sources=("exchange.organizationConfig",),
    permissions=("Exchange.ManageAsApp", "Exchange role: View-Only Configuration"),
    remediation="Set-OrganizationConfig -OAuth2ClientProfileEnabled $true",
)

SOURCE = "exchange.organizationConfig"
FLAG = SettingFlag(
    source=SOURCE,
    field="OAuth2ClientProfileEnabled",
    where="organization config",
    safe_value=True,
    question="whether modern authentication is on",
    passed="Modern authentication is enabled for Exchange Online",
    failed="Modern authentication is disabled for Exchange Online: Outlook clients cannot sign in with OAuth and are "
           "held to legacy authentication",
    identity=("Identity", "Name"),
)


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    return FLAG.check(METADATA, snapshot)

"""Control 4: no mailbox turns SMTP AUTH back on for itself (a per-mailbox override beats the tenant setting).

Set-CASMailbox -SmtpClientAuthenticationDisabled: $false turns it on for the mailbox, $true off, $null (blank) makes it
follow Set-TransportConfig; "the mailbox setting overrides the organization setting"
(https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission)."""

from __future__ import annotations

from typing import Any

from shared.controls.base import ControlMetadata, as_bool, not_collected, register
from shared.controls.exchange_objects import (EVIDENCE_LIMIT, describe, mailbox_brief, mailbox_id, mailbox_label,
                                              name_some, ps_quote, read_objects)
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

# Bulk fix for many overrides (Where-Object rather than -Filter: no OPATH quoting pitfalls).
BULK_FIX = ("Get-CASMailbox -ResultSize Unlimited | Where-Object { $_.SmtpClientAuthenticationDisabled -eq $false } | "
            "Set-CASMailbox -SmtpClientAuthenticationDisabled $null")

METADATA = ControlMetadata(
    id="exo_smtp_auth_mailbox_overrides",
    label="mailbox overrides",
    title="No mailbox re-enables SMTP AUTH for itself",
    severity=Severity.HIGH,
    frameworks=(),
    sources=("exchange.casMailboxes",),
    permissions=("Exchange.ManageAsApp", "Exchange role: View-Only Recipients"),
    remediation=("Make each overriding mailbox inherit the organisation setting: Set-CASMailbox <id> "
                 f"-SmtpClientAuthenticationDisabled $null. All at once: {BULK_FIX}"),
)

SOURCE = "exchange.casMailboxes"
FIELD = "SmtpClientAuthenticationDisabled"
FIX_SHOWN = 5  # mailboxes spelled out in a finding's remediation; the bulk command covers the rest


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    if not snapshot.collected(SOURCE):
        return not_collected(METADATA, snapshot, SOURCE)
    raw = snapshot.get(SOURCE)
    mailboxes = read_objects(raw)
    if mailboxes is None:
        return METADATA.result(
            Status.UNKNOWN,
            f"Cannot evaluate mailbox SMTP AUTH overrides: {SOURCE} is {describe(raw)}, expected a list of mailboxes.",
            {"unreadableSource": SOURCE},
        )

    overrides: list[dict[str, Any]] = []
    labels: list[str] = []
    ids: list[str] = []  # what Set-CASMailbox can be given (a mailbox without any identity cannot be)
    count = explicitly_disabled = inheriting = 0
    unreadable = mailboxes.unreadable  # items that are not objects
    for mailbox in mailboxes.items:
        # A missing field is not "null": the mailbox was read without it, so it proves nothing.
        if FIELD not in mailbox:
            unreadable += 1
            continue
        value = mailbox[FIELD]
        disabled = as_bool(value)
        if value is None:
            inheriting += 1
        elif disabled is True:
            explicitly_disabled += 1
        elif disabled is False:
            count += 1
            if len(overrides) < EVIDENCE_LIMIT:  # keep the evidence small on 50,000-mailbox tenants
                overrides.append(mailbox_brief(mailbox))
                labels.append(mailbox_label(mailbox))
                ids.extend(filter(None, [mailbox_id(mailbox)]))
        else:
            unreadable += 1

    evidence = {
        "mailboxesEvaluated": len(mailboxes.items) + mailboxes.unreadable,
        "overrideCount": count,
        "overrides": overrides,
        "explicitlyDisabled": explicitly_disabled,
        "inheriting": inheriting,
        "unreadable": unreadable,
    }
    if count:
        fixes = [f"Set-CASMailbox {ps_quote(mailbox)} -{FIELD} $null" for mailbox in ids[:FIX_SHOWN]]
        rest = count - len(fixes)
        return METADATA.result(
            Status.FAIL,
            f"{count} mailbox(es) turn SMTP AUTH on for themselves ({FIELD} is False), overriding the organisation "
            f"setting: {name_some(labels, count)}.",
            evidence,
            remediation="; ".join(fixes + ([f"the other {rest}: {BULK_FIX}" if fixes else BULK_FIX] if rest else [])),
        )
    if unreadable:
        # An unreadable mailbox could be an override; passing would claim more than we know.
        return METADATA.result(
            Status.UNKNOWN,
            f"No mailbox is known to override SMTP AUTH, but {unreadable} mailbox record(s) in {SOURCE} could not be "
            f"read (not an object, or {FIELD} missing or not true/false/null).",
            evidence,
        )
    return METADATA.result(
        Status.PASS,
        f"No mailbox overrides the organisation's SMTP AUTH setting ({inheriting} inherit it, "
        f"{explicitly_disabled} disable it explicitly).",
        evidence,
    )

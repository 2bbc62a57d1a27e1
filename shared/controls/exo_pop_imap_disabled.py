"""Control 6: POP3 and IMAP4 are off on every mailbox (legacy protocols that only ever need a password)."""

from __future__ import annotations

from typing import Any

from shared.controls.base import ControlMetadata, as_bool, not_collected, register
from shared.controls.exchange_objects import (EVIDENCE_LIMIT, describe, mailbox_id, mailbox_label, name_some,
                                              ps_quote, read_objects)
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

BULK_FIX = ("Get-CASMailbox -ResultSize Unlimited | Where-Object { $_.PopEnabled -or $_.ImapEnabled } | "
            "Set-CASMailbox -PopEnabled $false -ImapEnabled $false")

METADATA = ControlMetadata(
    id="exo_pop_imap_disabled",
    label="POP/IMAP off",
    title="POP and IMAP are disabled on all mailboxes",
    severity=Severity.LOW,
    frameworks=(),
    sources=("exchange.casMailboxes", "exchange.casMailboxPlans"),
    permissions=("Exchange.ManageAsApp",
                 "Exchange role: View-Only Configuration",
                 "Exchange role: View-Only Recipients"),
    remediation=(f"Set-CASMailbox <id> -PopEnabled $false -ImapEnabled $false; all at once: {BULK_FIX}. For new "
                 "mailboxes: Set-CASMailboxPlan <plan> -PopEnabled $false -ImapEnabled $false"),
)

MAILBOXES, PLANS = "exchange.casMailboxes", "exchange.casMailboxPlans"
PROTOCOLS = {"PopEnabled": "POP", "ImapEnabled": "IMAP"}
FIX_SHOWN = 5


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    if not snapshot.collected(MAILBOXES):
        return not_collected(METADATA, snapshot, MAILBOXES)
    raw = snapshot.get(MAILBOXES)
    mailboxes = read_objects(raw)
    if mailboxes is None:
        return METADATA.result(Status.UNKNOWN, f"Cannot evaluate POP/IMAP: {MAILBOXES} is {describe(raw)}, expected "
                                               "a list of mailboxes.", {"unreadableSource": MAILBOXES})

    counts = dict.fromkeys(PROTOCOLS, 0)
    samples: dict[str, list[str]] = {field: [] for field in PROTOCOLS}
    unreadable = dict.fromkeys(PROTOCOLS, mailboxes.unreadable)
    enabled_labels: list[str] = []  # mailboxes with either protocol on, for the summary
    enabled_ids: list[str] = []  # ... and for Set-CASMailbox (a mailbox without any identity cannot be named)
    enabled_total = 0
    for mailbox in mailboxes.items:
        label: str | None = None
        for field in PROTOCOLS:
            value = as_bool(mailbox.get(field))
            # Missing, null or garbage: PopEnabled/ImapEnabled are plain booleans on Set-CASMailbox
            # (https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-casmailbox), never blank.
            if value is None:
                unreadable[field] += 1
            elif value:
                label = label or mailbox_label(mailbox)
                counts[field] += 1
                if len(samples[field]) < EVIDENCE_LIMIT:
                    samples[field].append(label)
        if label:
            enabled_total += 1
            if len(enabled_labels) < EVIDENCE_LIMIT:
                enabled_labels.append(label)
                enabled_ids.extend(filter(None, [mailbox_id(mailbox)]))

    evidence: dict[str, Any] = {
        "mailboxesEvaluated": len(mailboxes.items) + mailboxes.unreadable,
        "popEnabledCount": counts["PopEnabled"], "popEnabled": samples["PopEnabled"],
        "imapEnabledCount": counts["ImapEnabled"], "imapEnabled": samples["ImapEnabled"],
        "unreadable": {PROTOCOLS[field]: n for field, n in unreadable.items()},
        **_plans(snapshot),
    }
    plans = evidence.get("plansEnablingPopImap") or []
    plan_note = f"; {len(plans)} mailbox plan(s) enable POP/IMAP for new mailboxes" if plans else ""
    plan_fix = "; ".join(f"Set-CASMailboxPlan {ps_quote(plan['plan'])} -PopEnabled $false -ImapEnabled $false"
                         for plan in plans[:FIX_SHOWN] if plan["plan"])  # a nameless plan cannot be named
    if enabled_total:
        per_protocol = " and ".join(f"{PROTOCOLS[f]} on {counts[f]}" for f in PROTOCOLS if counts[f])
        fixes = [f"Set-CASMailbox {ps_quote(mailbox)} -PopEnabled $false -ImapEnabled $false"
                 for mailbox in enabled_ids[:FIX_SHOWN]]
        rest = enabled_total - len(fixes)
        fixes += [f"the other {rest}: {BULK_FIX}" if fixes else BULK_FIX] if rest else []
        return METADATA.result(
            Status.FAIL,
            f"{enabled_total} mailbox(es) accept legacy POP/IMAP ({per_protocol}): "
            f"{name_some(enabled_labels, enabled_total)}{plan_note}.",
            evidence,
            remediation="; ".join(fixes + ([plan_fix] if plan_fix else [])),
        )
    if any(unreadable.values()):
        bad = max(unreadable.values())
        return METADATA.result(Status.UNKNOWN, f"No mailbox is known to have POP or IMAP on, but {bad} mailbox "
                                               f"record(s) in {MAILBOXES} could not be read.", evidence)
    # Plans only shape mailboxes created later; the mailboxes themselves decide the verdict (controls.md §6).
    return METADATA.result(Status.PASS, f"POP and IMAP are off on every mailbox ({len(mailboxes.items)} "
                                        f"evaluated){plan_note}.", evidence, remediation=plan_fix or None)


def _plans(snapshot: TenantSnapshot) -> dict[str, Any]:
    """CAS mailbox plans that would switch POP/IMAP on for new mailboxes; missing plans only lose this evidence."""
    if not snapshot.collected(PLANS):
        error = snapshot.error(PLANS)
        detail = " ".join(str(part) for part in (error.status, error.message or error.code) if part) if error else ""
        why = f" ({detail})" if detail else ""
        return {"plansNote": f"{PLANS} was not collected{why}: plan settings for new mailboxes are not shown."}
    plans = read_objects(snapshot.get(PLANS))
    if plans is None:
        return {"plansNote": f"{PLANS} is {describe(snapshot.get(PLANS))}, expected a list: plans not shown."}
    enabling = []
    for plan in plans.items:
        protocols = [PROTOCOLS[field] for field in PROTOCOLS if as_bool(plan.get(field))]
        if protocols:
            name = plan.get("Name") or plan.get("Identity")
            enabling.append({"plan": name if isinstance(name, str) else None, "protocols": protocols})
    return {"plansEnablingPopImap": enabling[:EVIDENCE_LIMIT], "plansEvaluated": len(plans.items) + plans.unreadable,
            "unreadablePlans": plans.unreadable}

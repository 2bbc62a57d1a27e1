"""Control 9: per mailbox, is basic SMTP AUTH *effectively* usable? (controls.md §9)

Three layers must all be open for a mailbox to be exposed:
  (a) SMTP AUTH is on for it: its own SmtpClientAuthenticationDisabled is false, or null and the tenant's is not true;
  (b) its effective authentication policy allows basic SMTP (no policy at all counts as allowing);
  (c) Entra does not block it: security defaults off and no Conditional Access block on Other clients covers it.
Each layer answers closed, open or unsure. Any closed layer makes a mailbox safe; three open layers make it exposed;
otherwise it is "possibly exposed" with the reason (typically a CA group exclusion whose membership authwatch does not
expand). Possibly exposed mailboxes alone make the verdict `unknown`, never `pass`: authwatch cannot show them closed.
Indexes are built once and verdicts are shared constants, so 50,000 mailboxes evaluate in a fraction of a second.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from shared.controls.base import ControlMetadata, as_bool, first_object, not_collected, register
from shared.controls.exchange_objects import (
    Unreadable,
    default_policy_name,
    describe,
    mailbox_brief,
    mailbox_id,
    mailbox_label,
    name_some,
    ps_quote,
    read_objects,
)
from shared.controls.exposure_layers import (
    CLOSED,
    OPEN,
    OVERRIDE,
    UNSURE,
    EntraCoverage,
    PolicyLayer,
    Verdict,
    casefold_key,
    dig,
    entra_coverage,
    policy_layer,
    smtp_auth_layer,
)
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

METADATA = ControlMetadata(
    id="legacy_auth_exposure",
    label="SMTP exposure",
    title="No mailbox can effectively use basic SMTP AUTH",
    severity=Severity.HIGH,
    frameworks=(),  # no framework or peer combines the layers; the per-layer controls carry the mappings
    sources=("exchange.casMailboxes", "exchange.transportConfig", "exchange.authenticationPolicies",
             "exchange.organizationConfig", "exchange.users", "graph.securityDefaults",
             "graph.conditionalAccessPolicies"),
    permissions=("Policy.Read.All",
                 "Exchange.ManageAsApp",
                 "Exchange role: View-Only Configuration",
                 "Exchange role: View-Only Recipients"),
    remediation=(
        "Close at least one layer for every exposed mailbox (closing all three is defence in depth). "
        "SMTP AUTH: Set-TransportConfig -SmtpClientAuthenticationDisabled $true, and for mailboxes that override it "
        "Set-CASMailbox <id> -SmtpClientAuthenticationDisabled $true (or $null to inherit the disabled tenant). "
        "Authentication policy: Set-AuthenticationPolicy <name> -AllowBasicAuthSmtp:$false (with no policy: "
        "New-AuthenticationPolicy -Name 'Block Basic Auth'; Set-OrganizationConfig -DefaultAuthenticationPolicy "
        "'Block Basic Auth'). Entra: an enabled Conditional Access policy for All users and All cloud apps with "
        "Client apps = Exchange ActiveSync + Other clients and Grant = Block access that does not exclude the "
        "mailbox's user. Then Set-User <id> -STSRefreshTokensValidFrom ([DateTime]::UtcNow) so the change bites now."
    ),
)

EXCHANGE_SOURCES = METADATA.sources[:5]
SECURITY_DEFAULTS, CA_POLICIES = "graph.securityDefaults", "graph.conditionalAccessPolicies"
LAYERS = ("smtpAuth", "authenticationPolicy", "entra")
EVIDENCE_LIMIT = 50
FIX_SHOWN = 5
# ---------------------------------------------------------------- reading the snapshot


@dataclass(frozen=True)
class Inputs:
    mailboxes: list[dict[str, Any]]
    unreadable_mailboxes: int
    tenant_disabled: bool
    policy: PolicyLayer
    entra: EntraCoverage


def _unknown(reason: str, evidence: dict[str, Any]) -> ControlResult:
    return METADATA.result(Status.UNKNOWN, f"Cannot tell which mailboxes can use basic SMTP AUTH: {reason}.", evidence)


def _missing(snapshot: TenantSnapshot, sources: list[str]) -> ControlResult:
    result = not_collected(METADATA, snapshot, sources[0])
    if len(sources) > 1:
        result = replace(result, summary=f"Cannot evaluate: {', '.join(sources)} were not collected.")
    return replace(result, evidence={**result.evidence, "missingSources": sources})


def _read_inputs(snapshot: TenantSnapshot) -> Inputs | ControlResult:
    """Every source this control needs, read and indexed once; or the unknown result naming what is missing."""
    missing = [source for source in EXCHANGE_SOURCES if not snapshot.collected(source)]
    defaults = first_object(snapshot.get(SECURITY_DEFAULTS))
    defaults_on = as_bool(defaults.get("isEnabled")) if defaults else None
    policies = snapshot.get(CA_POLICIES)
    if defaults_on is not True:  # with security defaults on, Conditional Access does not matter
        if not snapshot.collected(CA_POLICIES):
            missing.append(CA_POLICIES)
        elif not isinstance(policies, list):
            return _unknown(f"{CA_POLICIES} is {describe(policies)}, expected a list",
                            {"unreadableSource": CA_POLICIES})
        # Security defaults cannot be on while a CA policy is enforced: the same inference as control 1.
        if defaults_on is None and not any(dig(policy, "state") == "enabled" for policy in policies or ()):
            if not snapshot.collected(SECURITY_DEFAULTS):
                missing.append(SECURITY_DEFAULTS)
            else:
                return _unknown("graph.securityDefaults.isEnabled is unreadable",
                                {"unreadableSource": SECURITY_DEFAULTS})
    if missing:
        return _missing(snapshot, missing)

    mailboxes = read_objects(snapshot.get("exchange.casMailboxes"))
    users = read_objects(snapshot.get("exchange.users"))
    transport = first_object(snapshot.get("exchange.transportConfig"))
    auth_policies = snapshot.get("exchange.authenticationPolicies")
    for source, readable in (("exchange.casMailboxes", mailboxes), ("exchange.users", users),
                             ("exchange.transportConfig", transport),
                             ("exchange.authenticationPolicies", auth_policies if isinstance(auth_policies, list)
                              else None)):
        if readable is None:
            return _unknown(f"{source} is {describe(snapshot.get(source))}, which cannot be read",
                            {"unreadableSource": source})
    try:
        default = default_policy_name(snapshot.get("exchange.organizationConfig"))
    except Unreadable as error:
        return _unknown(str(error), {"unreadableSource": "exchange.organizationConfig"})
    assert mailboxes is not None and users is not None and transport is not None  # checked just above
    return Inputs(
        mailboxes=mailboxes.items,
        unreadable_mailboxes=mailboxes.unreadable,
        # controls.md §9: only an explicit true closes the tenant level; null or missing leaves it open.
        tenant_disabled=as_bool(transport.get(OVERRIDE)) is True,
        policy=policy_layer(users.items, auth_policies, default),
        entra=entra_coverage(bool(defaults_on), policies if isinstance(policies, list) else [], snapshot),
    )


# ---------------------------------------------------------------- the verdict


@dataclass
class Findings:
    """What the pass over the mailboxes found: counts in full, evidence rows capped at EVIDENCE_LIMIT."""

    exposed: list[dict[str, Any]] = field(default_factory=list)
    possibly: list[dict[str, Any]] = field(default_factory=list)
    exposed_count: int = 0
    possibly_count: int = 0
    unmatched: int = 0  # mailboxes with no Get-User entry: the organisation default policy applies to them
    closed_by: Counter[str] = field(default_factory=Counter)  # layer -> mailboxes it closes
    possibly_why: Counter[str] = field(default_factory=Counter)
    open_by: dict[str, Counter[Verdict]] = field(default_factory=lambda: {layer: Counter() for layer in LAYERS})
    examples: dict[Verdict, list[str]] = field(default_factory=dict)  # per-mailbox fixes, the first few of each

    def add(self, mailbox: dict[str, Any], object_id: str | None, layers: dict[str, Verdict]) -> None:
        states = {verdict.state for verdict in layers.values()}
        if CLOSED in states:
            return
        brief = {"mailbox": mailbox_label(mailbox), **mailbox_brief(mailbox)}
        if states == {OPEN}:
            self.exposed_count += 1
            shown = len(self.exposed) < EVIDENCE_LIMIT
            fixes = {}
            for name, verdict in layers.items():
                self.open_by[name][verdict] += 1
                examples = self.examples.setdefault(verdict, [])
                if shown or len(examples) < FIX_SHOWN:  # filling in a fix costs; do it only where it is shown
                    fixes[name] = _fill(verdict.fix, mailbox, object_id)
                    if len(examples) < FIX_SHOWN and fixes[name] not in examples:
                        examples.append(fixes[name])
            if shown:
                self.exposed.append({**brief, **{name: v.why for name, v in layers.items()}, "closeAnyOf": fixes})
            return
        self.possibly_count += 1
        unsure = [v.why for v in layers.values() if v.state == UNSURE]
        self.possibly_why.update(why.split(" (")[0] for why in unsure)  # group by the reason, not its details
        if len(self.possibly) < EVIDENCE_LIMIT:
            self.possibly.append({**brief, "unsure": unsure,
                                  "open": {name: v.why for name, v in layers.items() if v.state == OPEN}})


def _fill(fix: str, mailbox: dict[str, Any], object_id: str | None) -> str:
    # str.replace, not str.format: policy names may contain braces.
    return fix.replace("{object_id}", object_id or "").replace("{mailbox}", ps_quote(mailbox_id(mailbox) or "<id>"))


def _scan(inputs: Inputs) -> Findings:
    findings = Findings()
    for mailbox in inputs.mailboxes:
        object_id = casefold_key(mailbox.get("ExternalDirectoryObjectId"))
        user = inputs.policy.user_for(mailbox, object_id)
        findings.unmatched += user is None
        layers = {"smtpAuth": smtp_auth_layer(mailbox, inputs.tenant_disabled),
                  "authenticationPolicy": inputs.policy.layer(user), "entra": inputs.entra.layer(object_id)}
        for name, verdict in layers.items():
            if verdict.state == CLOSED:
                findings.closed_by[name] += 1
        findings.add(mailbox, object_id, layers)
    return findings


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    inputs = _read_inputs(snapshot)
    if isinstance(inputs, ControlResult):
        return inputs
    found = _scan(inputs)
    total = len(inputs.mailboxes)
    evidence: dict[str, Any] = {
        "mailboxesEvaluated": total, "unreadableMailboxes": inputs.unreadable_mailboxes,
        "mailboxesWithoutUserMatch": found.unmatched, "tenantSmtpAuthDisabled": inputs.tenant_disabled,
        "defaultAuthenticationPolicy": inputs.policy.default,
        "entraBlocksEveryone": inputs.entra.everyone.why if inputs.entra.everyone else None,
        "closedBy": {layer: found.closed_by[layer] for layer in LAYERS},
        "exposedCount": found.exposed_count, "exposed": found.exposed,
        "possiblyExposedCount": found.possibly_count, "possiblyExposed": found.possibly,
        "possiblyExposedReasons": dict(found.possibly_why.most_common(5)),
    }
    if found.exposed_count:
        names = name_some((row["mailbox"] for row in found.exposed), found.exposed_count)
        return METADATA.result(
            Status.FAIL,
            f"{found.exposed_count} of {total} mailboxes can use basic SMTP AUTH: SMTP AUTH is on for them, their "
            f"authentication policy allows basic SMTP and Entra does not block them ({names}).",
            evidence,
            remediation=_remediation(found),
        )
    if found.possibly_count:
        # Not counted as exposed, but not shown closed either: answering pass would be a guess (see module doc).
        names = name_some((row["mailbox"] for row in found.possibly), found.possibly_count)
        return METADATA.result(
            Status.UNKNOWN,
            f"Cannot tell whether {found.possibly_count} of {total} mailboxes can use basic SMTP AUTH: no layer is "
            f"shown closed for them ({found.possibly_why.most_common(1)[0][0]}; {names}).",
            evidence,
        )
    skipped = f"; {inputs.unreadable_mailboxes} unreadable mailbox entries skipped" if inputs.unreadable_mailboxes \
        else ""
    return METADATA.result(
        Status.PASS,
        f"None of the {total} mailboxes can use basic SMTP AUTH: each has a closed layer (mailboxes closed by SMTP "
        f"AUTH {found.closed_by['smtpAuth']}, by authentication policy {found.closed_by['authenticationPolicy']}, by "
        f"Entra {found.closed_by['entra']}){skipped}.",
        evidence,
    )


def _remediation(found: Findings) -> str:
    """Per layer, the commands that close it for the exposed mailboxes, most common first; any one layer suffices."""
    labels = {"smtpAuth": "SMTP AUTH", "authenticationPolicy": "Authentication policy", "entra": "Entra"}
    lines = ["Close any one layer for each exposed mailbox:"]
    for layer, verdicts in found.open_by.items():
        parts = []
        for verdict, count in verdicts.most_common(FIX_SHOWN):
            examples = found.examples.get(verdict, [])
            per_mailbox = "{" in verdict.fix and count > len(examples)
            more = f", the first {len(examples)} shown" if per_mailbox else ""
            parts.append(f"{'; '.join(examples)} ({count} mailbox(es){more})")
        lines.append(f"- {labels[layer]}: {' | '.join(parts)}")
    lines.append("Then Set-User <id> -STSRefreshTokensValidFrom ([DateTime]::UtcNow) so the change bites now.")
    return "\n".join(lines)

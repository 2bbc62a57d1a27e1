"""Control 5: no Exchange authentication policy that governs users allows basic authentication."""

from __future__ import annotations

from typing import Any

from shared.controls.base import ControlMetadata, not_collected, register
from shared.controls.exchange_objects import (EVIDENCE_LIMIT, Unreadable, basic_auth_flags, count_assignments,
                                              default_policy_name, describe, policies_by_name, policy_key,
                                              policy_name, ps_quote)
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

METADATA = ControlMetadata(
    id="exo_basic_auth_policy",
    label="auth policies",
    title="Applied authentication policies do not allow basic SMTP AUTH",
    severity=Severity.HIGH,
    frameworks=(),
    sources=("exchange.authenticationPolicies", "exchange.organizationConfig", "exchange.users"),
    permissions=("Exchange.ManageAsApp",
                 "Exchange role: View-Only Configuration",
                 "Exchange role: View-Only Recipients"),
    remediation=(
        "Turn basic SMTP AUTH off in every applied authentication policy: Set-AuthenticationPolicy <name> "
        "-AllowBasicAuthSmtp:$false (the other AllowBasicAuth* no longer matter: Microsoft retired Basic for those "
        "protocols). Changes take up to 24 hours; "
        "Set-User <id> -STSRefreshTokensValidFrom ([DateTime]::UtcNow) makes them bite now."
    ),
)

FIX_SHOWN = 5
# Microsoft switched Basic authentication off service-side for every Exchange Online protocol but SMTP AUTH
# (October–December 2022, no re-enable since), so an AllowBasicAuth* true for them opens nothing today:
# https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/deprecation-of-basic-authentication-exchange-online
# SMTP AUTH still takes Basic: unchanged through December 2026, then off by default but re-enableable (MC786329,
# updated January 27, 2026). So AllowBasicAuthSmtp decides; the others are evidence (controls.md §5).
STILL_BASIC = "Smtp"


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    for source in METADATA.sources:
        if not snapshot.collected(source):
            return not_collected(METADATA, snapshot, source)
    policies, users = snapshot.get("exchange.authenticationPolicies"), snapshot.get("exchange.users")
    for source, value in (("exchange.authenticationPolicies", policies), ("exchange.users", users)):
        if not isinstance(value, list):
            return _unknown(f"{source} is {describe(value)}, expected a list", {"unreadableSource": source})
    try:
        default = default_policy_name(snapshot.get("exchange.organizationConfig"))
    except Unreadable as error:
        return _unknown(str(error), {"unreadableSource": "exchange.organizationConfig"})

    usage = count_assignments(users)  # one pass over the users; policies are then resolved once per name
    inheriting, unreadable_users = usage.inheriting, usage.unreadable
    # Resolve every applied reference to a policy object (by identity: Name, Identity and Guid are aliases).
    index = policies_by_name(policies)
    applied: dict[int, dict[str, Any]] = {}
    unresolved: list[dict[str, Any]] = []
    references = [(key, n, False) for key, n in usage.assigned.items()]
    if default:
        references.append((policy_key(default) or default, inheriting, True))
    for key, n, is_default in references:
        policy = index.get(key)
        if policy is None:
            name = default if is_default else usage.spelled[key]
            unresolved.append({"policy": name, "users": n, "isDefault": is_default})
            continue
        entry = applied.setdefault(id(policy), {"policy": policy_name(policy), "isDefault": False, "assignedUsers": 0,
                                                "inheritingUsers": 0})
        entry["isDefault"] = entry["isDefault"] or is_default
        entry["inheritingUsers" if is_default else "assignedUsers"] += n

    failing: list[dict[str, Any]] = []
    unapplied_allowing: list[dict[str, Any]] = []
    applied_unreadable: list[str] = []
    unapplied_doubtful = False  # an unapplied policy that allows (or may allow) basic, if an unreadable user uses it
    unreadable_policies = 0
    retired_allowed: list[dict[str, Any]] = []
    for policy in policies:
        if policy_name(policy) is None:
            unreadable_policies += 1
            continue
        flags = basic_auth_flags(policy)
        allowed = [STILL_BASIC] if flags[STILL_BASIC] is True else []
        doubtful = flags[STILL_BASIC] is None
        entry = applied.get(id(policy))
        retired = [protocol for protocol, value in flags.items() if value is True and protocol != STILL_BASIC]
        if entry is not None and retired:
            retired_allowed.append({"policy": entry["policy"], "protocols": retired,
                                    "note": f"no effect since Microsoft retired Basic for {', '.join(retired)}"})
        if entry is None:
            unapplied_doubtful = unapplied_doubtful or bool(allowed) or doubtful
            if allowed:
                unapplied_allowing.append({"policy": policy_name(policy), "protocols": allowed})
        elif allowed:
            failing.append({**entry, "protocols": allowed, "users": entry["assignedUsers"] + entry["inheritingUsers"]})
        elif doubtful:
            applied_unreadable.append(entry["policy"])

    evidence: dict[str, Any] = {
        "defaultPolicy": default,
        "policiesEvaluated": len(policies),
        "usersEvaluated": len(users),
        "usersWithoutOwnPolicy": inheriting,
        "appliedPolicies": [{"policy": e["policy"], "isDefault": e["isDefault"], "users": e["assignedUsers"]
                             + e["inheritingUsers"]} for e in list(applied.values())[:EVIDENCE_LIMIT]],
        "appliedPolicyCount": len(applied),
        "appliedPoliciesAllowingBasic": failing[:EVIDENCE_LIMIT],
        # Informational: they govern nobody today, but assigning one would reopen basic auth.
        "unappliedPoliciesAllowingBasic": unapplied_allowing[:EVIDENCE_LIMIT],
        "unresolvedPolicies": unresolved[:EVIDENCE_LIMIT],
        # Applied policies that still say AllowBasicAuth* true for protocols Microsoft retired: tidy, not a risk.
        "retiredProtocolsAllowed": retired_allowed[:EVIDENCE_LIMIT],
        "unreadableUsers": unreadable_users,
        "unreadablePolicies": unreadable_policies,
    }
    if failing:
        worst = failing[0]
        # The collector reads only users with a policy of their own (Get-User -Filter), so the default's reach is
        # "everyone else", not a count.
        role = ("the organisation default: every user without a policy of their own" if worst["isDefault"]
                else f"assigned to {worst['users']} user(s)")
        more = f" (and {len(failing) - 1} more applied policies)" if len(failing) > 1 else ""
        fixes = "; ".join(
            f"Set-AuthenticationPolicy {ps_quote(item['policy'])} "
            + " ".join(f"-AllowBasicAuth{protocol}:$false" for protocol in item["protocols"])
            for item in failing[:FIX_SHOWN])
        return METADATA.result(
            Status.FAIL,
            f"Authentication policy '{worst['policy']}' ({role}) allows basic authentication "
            f"for {', '.join(worst['protocols'])}{more}.",
            evidence,
            remediation=f"{fixes}. Then Set-User <id> -STSRefreshTokensValidFrom ([DateTime]::UtcNow) so the change "
                        "bites now rather than within 24 hours.",
        )
    doubts = ([f"policy '{item['policy']}' referenced by {item['users']} user(s) was not found" for item in unresolved]
              + [f"applied policy '{name}' has unreadable AllowBasicAuth* fields" for name in applied_unreadable])
    if unreadable_users and unapplied_doubtful:
        doubts.append(f"{unreadable_users} user record(s) are unreadable and could be assigned a policy that allows "
                      "basic authentication")
    if doubts:
        return _unknown("; ".join(doubts[:3]), evidence)
    if not applied:
        evidence["note"] = ("No authentication policy applies to any user: the tenant relies on Microsoft's "
                            "service-side defaults (basic SMTP AUTH stays possible wherever SMTP AUTH is enabled).")
        what = "no authentication policies exist" if not policies else "no authentication policy is applied"
        return METADATA.result(Status.PASS, f"No applied authentication policy allows basic authentication "
                                            f"({what}; Microsoft's service-side defaults apply).", evidence)
    names = ", ".join(f"'{e['policy']}'" for e in list(applied.values())[:3])
    return METADATA.result(Status.PASS, f"No applied authentication policy allows basic authentication "
                                        f"({len(applied)} applied: {names}).", evidence)


def _unknown(reason: str, evidence: dict[str, Any]) -> ControlResult:
    return METADATA.result(Status.UNKNOWN, f"Cannot tell whether authentication policies allow basic "
                                           f"authentication: {reason}.", evidence)

"""Control 1: legacy clients are blocked for everyone, by Conditional Access or by security defaults.

Security defaults block legacy authentication for every user and cannot be on while Conditional Access policies are
in force (https://learn.microsoft.com/en-us/entra/fundamentals/security-defaults); a block policy is judged by controls.md §1 (conditional_access,
ca_conditions)."""

from __future__ import annotations

from shared.controls.base import ControlMetadata, as_bool, register
from shared.controls.conditional_access import LEGACY_CLIENT_TYPES, LegacyBlock, legacy_block
from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

METADATA = ControlMetadata(
    id="entra_legacy_auth_blocked",
    label="legacy auth blocked",
    title="Legacy authentication is blocked by Conditional Access or security defaults",
    severity=Severity.HIGH,
    frameworks=("CISA MS.AAD.1.1v1", "CIS 5.2.2.3"),
    sources=("graph.securityDefaults", "graph.conditionalAccessPolicies"),
    permissions=("Policy.Read.All",),
    remediation=(
        "Create (or fix) one Conditional Access policy: Users = All users (only approved break-glass exclusions), "
        "Target resources = All cloud apps, Conditions > Client apps = Exchange ActiveSync clients + Other clients, "
        "Grant = Block access, State = On. Entra admin center > Protection > Conditional Access > "
        "Create new policy from template 'Block legacy authentication'. Or turn on security defaults when the "
        "tenant uses no Conditional Access."
    ),
)


@register(METADATA)
def check(snapshot: TenantSnapshot, context: EvaluationContext = EvaluationContext()) -> ControlResult:
    security_defaults = snapshot.get("graph.securityDefaults")
    defaults_on = as_bool(security_defaults.get("isEnabled")) if isinstance(security_defaults, dict) else None
    if defaults_on:
        return METADATA.result(
            Status.PASS,
            "Security defaults are on, which blocks legacy authentication for every user.",
            {"mechanism": "securityDefaults", "securityDefaultsEnabled": True},
        )

    policies = snapshot.get("graph.conditionalAccessPolicies")
    if not isinstance(policies, list):
        why = "security defaults are off" if defaults_on is False else "security defaults are not known to be on"
        return METADATA.result(
            Status.UNKNOWN,
            f"Cannot tell whether legacy authentication is blocked: Conditional Access policies were not collected "
            f"and {why}.",
            {"missingSource": "graph.conditionalAccessPolicies", "securityDefaultsEnabled": defaults_on},
        )

    block = legacy_block(policies, snapshot)
    if block.blocks_legacy:
        names = ", ".join(f"'{policy.name}'" for policy in block.qualifying)
        return METADATA.result(
            Status.PASS,
            f"Conditional Access blocks legacy authentication for all users and apps ({names}).",
            {"mechanism": "conditionalAccess",
             "policies": [policy.brief() for policy in block.qualifying],
             "securityDefaultsEnabled": defaults_on},
        )

    evidence = {
        "mechanism": None,
        "securityDefaultsEnabled": defaults_on,
        "policiesEvaluated": len(block.assessments),
        "coveredClientAppTypes": sorted(block.covered),
        "candidates": [policy.brief() for policy in block.candidates[:10]],
    }
    if defaults_on is None:
        enforced = [policy for policy in block.assessments if policy.state == "enabled"]
        if not enforced:
            return METADATA.result(
                Status.UNKNOWN,
                "Cannot tell whether legacy authentication is blocked: security defaults were not collected and no "
                "Conditional Access policy blocks it.",
                {**evidence, "missingSource": "graph.securityDefaults"},
            )
        # Security defaults cannot be on while Conditional Access policies are enforced, so they are off.
        evidence["securityDefaultsInferredOff"] = True

    return METADATA.result(Status.FAIL, _failure_summary(block), evidence)


def _failure_summary(block: LegacyBlock) -> str:
    """Lead with the fact a person acts on: which policy comes closest and what disqualifies it."""
    missing = [kind for kind in LEGACY_CLIENT_TYPES if kind not in block.covered]
    prefix = "Legacy auth not blocked: "
    if block.covered:
        blockers = ", ".join(f"'{policy.name}'" for policy in block.qualifying)
        return (f"{prefix}{blockers} blocks only {', '.join(sorted(block.covered))}; client app type "
                f"{', '.join(missing)} is not blocked by any qualifying policy.")
    candidates = [policy for policy in block.candidates if not policy.qualifies]
    if not candidates:
        return (f"{prefix}security defaults are off and no Conditional Access policy targets legacy clients "
                "(Exchange ActiveSync and Other clients).")
    closest = candidates[0]
    return f"{prefix}policy '{closest.name}' {'; '.join(closest.reasons)}."

"""Which Conditional Access policies really block legacy authentication, and why the others do not.

Shared by the controls that need the answer: `entra_legacy_auth_blocked` decides with it, the enforcement-window
and exposure controls reuse the qualifying policies. Every reason is a phrase a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.controls.base import as_list, as_strings
from shared.controls.ca_conditions import flags, narrowing
from shared.controls.managed_policies import enforcement_from, is_microsoft_managed, report_only_reason
from shared.model import TenantSnapshot, format_time, parse_time_or_none

# Graph's clientAppTypes for legacy clients: Exchange ActiveSync and "Other clients" (IMAP, POP, SMTP, MAPI, EWS…);
# "all" covers both (https://learn.microsoft.com/en-us/entra/identity/conditional-access/concept-conditional-access-conditions#client-apps,
# https://learn.microsoft.com/en-us/entra/identity/conditional-access/policy-block-legacy-authentication).
LEGACY_CLIENT_TYPES = ("exchangeActiveSync", "other")

# (where the id list lives, settings.approvedExclusions kind, what to call it in a sentence)
_EXCLUSION_FIELDS = (
    (("users", "excludeUsers"), "users", "users"),
    (("users", "excludeGroups"), "groups", "groups"),
    (("users", "excludeRoles"), "roles", "roles"),
    (("applications", "excludeApplications"), "applications", "applications"),
    (("locations", "excludeLocations"), "locations", "locations"),
)
_RISK_FIELDS = ("userRiskLevels", "signInRiskLevels", "servicePrincipalRiskLevels", "insiderRiskLevels")


@dataclass(frozen=True)
class PolicyAssessment:
    id: str
    name: str
    state: str
    legacy_types: tuple[str, ...]  # which of the legacy client app types the policy targets
    reasons: tuple[str, ...]  # why it does not qualify; empty when it does
    unapproved: dict[str, list[str]]  # exclusion kind -> ids not in approvedExclusions
    excluded_users: tuple[str, ...]
    excluded_groups: tuple[str, ...]
    effective_since: datetime | None  # modifiedDateTime, else createdDateTime
    microsoft_managed: bool = False
    microsoft_enables_from: datetime | None = None  # report-only managed policy: earliest day Microsoft turns it on

    @property
    def qualifies(self) -> bool:
        return not self.reasons and bool(self.legacy_types)

    def brief(self) -> dict[str, Any]:
        brief: dict[str, Any] = {"id": self.id, "displayName": self.name, "state": self.state,
                                 "clientAppTypes": list(self.legacy_types), "disqualifiedBecause": list(self.reasons)}
        if self.microsoft_managed:
            brief["microsoftManaged"] = True
            if self.microsoft_enables_from is not None:
                brief["microsoftEnablesFrom"] = format_time(self.microsoft_enables_from)
        return brief


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _targeted_legacy_types(conditions: dict[str, Any]) -> tuple[str, ...]:
    types = as_strings(conditions.get("clientAppTypes"))
    if "all" in types:  # "all" client apps includes both legacy types
        return LEGACY_CLIENT_TYPES
    return tuple(kind for kind in LEGACY_CLIENT_TYPES if kind in types)


def _narrowing(conditions: dict[str, Any]) -> list[str]:
    reasons = []
    locations = conditions.get("locations")
    if locations is not None and "All" not in as_strings(_dict(locations).get("includeLocations")):
        reasons.append("applies only to selected locations")
    platforms = conditions.get("platforms")
    if platforms is not None:
        platforms = _dict(platforms)
        if "all" not in as_strings(platforms.get("includePlatforms")):
            reasons.append("applies only to selected device platforms")
        elif as_list(platforms.get("excludePlatforms")):
            reasons.append(f"excludes device platforms {', '.join(as_strings(platforms.get('excludePlatforms')))}")
    for risk_field in _RISK_FIELDS:
        levels = flags(conditions.get(risk_field))  # a flags string in Graph ("minor,moderate"), or a list
        if levels:
            reasons.append(f"applies only at {risk_field} {', '.join(levels)}")
    if _dict(conditions.get("devices")).get("deviceFilter") is not None:
        reasons.append("applies only to devices matching a device filter")
    return reasons


def _unapproved_exclusions(conditions: dict[str, Any], snapshot: TenantSnapshot) -> dict[str, list[str]]:
    unapproved: dict[str, list[str]] = {}
    for (section, list_name), kind, _label in _EXCLUSION_FIELDS:
        ids = as_strings(_dict(conditions.get(section)).get(list_name))
        approved = snapshot.approved_exclusions(kind)
        missing = [item for item in ids if item not in approved]
        if missing:
            unapproved[kind] = missing
    guests = _dict(conditions.get("users")).get("excludeGuestsOrExternalUsers")
    if guests is not None:
        raw_types = _dict(guests).get("guestOrExternalUserTypes")
        approved = snapshot.approved_exclusions("guestOrExternalUserTypes")
        if isinstance(raw_types, str):
            missing = [kind.strip() for kind in raw_types.split(",") if kind.strip() and kind.strip() not in approved]
        else:
            # A guest exclusion we cannot read cannot be shown to be approved, so it counts as unapproved.
            missing = ["(unreadable guestOrExternalUserTypes)"]
        if missing:
            unapproved["guestOrExternalUserTypes"] = missing
    return unapproved


def assess(policy: Any, snapshot: TenantSnapshot) -> PolicyAssessment:
    """Judge one policy against every qualifying rule of control 1, collecting all the reasons it fails."""
    policy = _dict(policy)
    conditions = _dict(policy.get("conditions"))
    users = _dict(conditions.get("users"))
    state = policy.get("state") if isinstance(policy.get("state"), str) else "unknown"
    reasons: list[str] = []
    managed = is_microsoft_managed(policy)
    report_only = state == "enabledForReportingButNotEnforced"
    enables_from = enforcement_from(policy) if managed and report_only else None
    if report_only and managed:
        reasons.append(report_only_reason(enables_from, snapshot.collected_at))
    elif report_only:
        # Report-only policies are evaluated and logged, never enforced
        # (https://learn.microsoft.com/en-us/entra/identity/conditional-access/concept-conditional-access-report-only).
        reasons.append("is report-only (enabledForReportingButNotEnforced), so it blocks nothing")
    elif state != "enabled":
        reasons.append(f"is {state}")
    controls = as_strings(_dict(policy.get("grantControls")).get("builtInControls"))
    if "block" not in controls:
        reasons.append(f"grants access ({', '.join(controls) or 'no grant control'}) instead of blocking")
    if "All" not in as_strings(users.get("includeUsers")):
        reasons.append("does not include all users")
    if "All" not in as_strings(_dict(conditions.get("applications")).get("includeApplications")):
        reasons.append("does not include all cloud apps")
    unapproved = _unapproved_exclusions(conditions, snapshot)
    for kind, ids in unapproved.items():
        reasons.append(f"excludes unapproved {kind}: {', '.join(ids)}")
    reasons.extend(_narrowing(conditions))
    reasons.extend(narrowing(conditions))  # every other condition, fail-closed on ones authwatch does not know
    effective = parse_time_or_none(policy.get("modifiedDateTime")) or parse_time_or_none(policy.get("createdDateTime"))
    return PolicyAssessment(
        id=str(policy.get("id") or "(no id)"),
        name=str(policy.get("displayName") or "(unnamed policy)"),
        state=state,
        legacy_types=_targeted_legacy_types(conditions),
        reasons=tuple(reasons),
        unapproved=unapproved,
        excluded_users=tuple(as_strings(users.get("excludeUsers"))),
        excluded_groups=tuple(as_strings(users.get("excludeGroups"))),
        effective_since=effective,
        microsoft_managed=managed,
        microsoft_enables_from=enables_from,
    )


@dataclass(frozen=True)
class LegacyBlock:
    """The verdict on Conditional Access as a whole: which legacy client types qualifying policies block."""

    assessments: tuple[PolicyAssessment, ...]

    @property
    def qualifying(self) -> tuple[PolicyAssessment, ...]:
        return tuple(policy for policy in self.assessments if policy.qualifies)

    @property
    def covered(self) -> frozenset[str]:
        return frozenset(kind for policy in self.qualifying for kind in policy.legacy_types)

    @property
    def blocks_legacy(self) -> bool:
        return self.covered >= set(LEGACY_CLIENT_TYPES)

    @property
    def candidates(self) -> list[PolicyAssessment]:
        """Policies aimed at legacy clients, closest to qualifying first."""
        aimed = [policy for policy in self.assessments if policy.legacy_types]
        return sorted(aimed, key=lambda policy: (len(policy.reasons), -len(policy.legacy_types), policy.name))

    def blocking_policies_for(self, client_type: str) -> tuple[PolicyAssessment, ...]:
        return tuple(policy for policy in self.qualifying if client_type in policy.legacy_types)


def legacy_block(policies: list[Any], snapshot: TenantSnapshot) -> LegacyBlock:
    return LegacyBlock(tuple(assess(policy, snapshot) for policy in policies))

"""Every property of a Conditional Access policy's `conditions`, classified: does a value there narrow a legacy-auth
block (so the policy no longer blocks legacy clients for everyone), or not, and why (controls.md §1).

Fail-closed: a property this table does not name, holding a non-empty value, narrows — a condition Graph adds
tomorrow must never turn a partial policy into a PASS. tests/unit/test_ca_conditions.py compares this table with
the installed msgraph-sdk's generated models, so an SDK upgrade that brings a new property fails the suite until the
property is classified here.

Sources (Microsoft Graph v1.0): conditionalAccessConditionSet, conditionalAccessUsers, conditionalAccessApplications,
conditionalAccessClientApplications, conditionalAccessDevices, conditionalAccessLocations, conditionalAccessPlatforms,
conditionalAccessAuthenticationFlows —
https://learn.microsoft.com/en-us/graph/api/resources/conditionalaccessconditionset?view=graph-rest-1.0 and the
pages it links. The risk levels and `insiderRiskLevels` are flags enums: Graph sends ONE string, comma-separated
("minor,moderate"), not a list; `transferMethods` likewise ("deviceCodeFlow,authenticationTransfer").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

# What a property does to a block policy aimed at all users, all cloud apps and the legacy client types.
TARGET = "target"  # checked by the qualifying rules themselves (must be All / must name the legacy clients)
EXCLUSION = "exclusion"  # an exclusion: allowed only when approved (settings.approvedExclusions)
NEUTRAL = "neutral"  # widens or does not change who the block applies to
NARROWS = "narrows"  # any non-empty value means the block applies to some sign-ins only


@dataclass(frozen=True)
class Role:
    kind: str
    why: str


# Nested condition objects: the property of the condition set that holds each.
SECTIONS = ("users", "applications", "clientApplications", "devices", "locations", "platforms", "authenticationFlows")

CONDITIONS: dict[str, Role] = {
    "clientAppTypes": Role(TARGET, "which client apps: must include exchangeActiveSync and other, or all"),
    "userRiskLevels": Role(NARROWS, "applies only at the listed user risk"),
    "signInRiskLevels": Role(NARROWS, "applies only at the listed sign-in risk"),
    "servicePrincipalRiskLevels": Role(NARROWS, "applies only at the listed workload identity risk"),
    "insiderRiskLevels": Role(NARROWS, "applies only at the listed insider risk"),
    "users.includeUsers": Role(TARGET, "must include All"),
    "users.includeGroups": Role(NEUTRAL, "adds groups to All users"),
    "users.includeRoles": Role(NEUTRAL, "adds roles to All users"),
    "users.includeGuestsOrExternalUsers": Role(NEUTRAL, "adds guests to All users"),
    "users.excludeUsers": Role(EXCLUSION, "users left out of the block"),
    "users.excludeGroups": Role(EXCLUSION, "groups left out of the block"),
    "users.excludeRoles": Role(EXCLUSION, "roles left out of the block"),
    "users.excludeGuestsOrExternalUsers": Role(EXCLUSION, "guest types left out of the block"),
    "applications.includeApplications": Role(TARGET, "must include All"),
    "applications.excludeApplications": Role(EXCLUSION, "cloud apps left out of the block"),
    "applications.applicationFilter": Role(NARROWS, "applies only to the cloud apps an app filter selects"),
    "applications.includeUserActions": Role(NARROWS, "targets user actions, not cloud apps"),
    "applications.includeAuthenticationContextClassReferences":
        Role(NARROWS, "targets authentication contexts, not cloud apps"),
    "clientApplications.includeServicePrincipals": Role(NARROWS, "targets workload identities, not users"),
    "clientApplications.excludeServicePrincipals": Role(NARROWS, "targets workload identities, not users"),
    "clientApplications.servicePrincipalFilter": Role(NARROWS, "targets workload identities, not users"),
    "devices.deviceFilter": Role(NARROWS, "applies only to devices a device filter selects"),
    "locations.includeLocations": Role(TARGET, "must include All"),
    "locations.excludeLocations": Role(EXCLUSION, "named locations left out of the block"),
    "platforms.includePlatforms": Role(TARGET, "must include all"),
    "platforms.excludePlatforms": Role(NARROWS, "device platforms left out of the block"),
    "authenticationFlows.transferMethods":
        Role(NARROWS, "applies only to the device code / authentication transfer flows, not to legacy clients"),
}

# Judged by conditional_access.py with their own wording; the rest of the NARROWS are judged here.
JUDGED_ELSEWHERE = frozenset({"userRiskLevels", "signInRiskLevels", "servicePrincipalRiskLevels", "insiderRiskLevels",
                              "devices.deviceFilter", "platforms.excludePlatforms"})


def is_empty(value: Any) -> bool:
    """null, "", [] and {} (or an object of only empty values) say nothing, so they narrow nothing."""
    if value is None or value == "" or value == []:
        return True
    if isinstance(value, dict):
        return all(is_empty(item) for key, item in value.items() if key != "@odata.type")
    return False


def flags(value: Any) -> list[str]:
    """A Graph flags enum (one comma-separated string), or a list of strings: the names in it."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip() and part.strip() != "none"]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item and item != "none"]
    return []


def _shown(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("rule"), str):
        mode = value.get("mode") if isinstance(value.get("mode"), str) else "?"
        return f"{mode} {value['rule']}"[:200]
    if isinstance(value, list):
        return ", ".join(map(str, value))[:200]
    return str(value)[:200]


def _in_force(conditions: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(path, value, readable) of every non-empty condition: nested sections walked one level down; a section that
    is not an object is yielded whole with readable=False."""
    for name, value in conditions.items():
        if name == "@odata.type" or is_empty(value):
            continue
        if name not in SECTIONS:
            yield name, value, True
        elif not isinstance(value, dict):
            yield name, value, False
        else:
            for inner, inner_value in value.items():
                if inner != "@odata.type" and not is_empty(inner_value):
                    yield f"{name}.{inner}", inner_value, True


def narrowing(conditions: dict[str, Any]) -> list[str]:
    """Why this policy's conditions narrow it (judged here: unknown properties, odd shapes, and the NARROWS
    properties not in JUDGED_ELSEWHERE). Each reason names the property, so a person can find it."""
    reasons = []
    for path, value, readable in _in_force(conditions):
        role = CONDITIONS.get(path)
        if not readable:
            reasons.append(f"has conditions.{path} that is not an object ({_shown(value)!r}), which authwatch "
                           "cannot read")
        elif role is None:
            reasons.append(f"uses the condition conditions.{path} ({_shown(value)!r}), which authwatch does not "
                           "know; it may narrow the block, so the policy is not counted")
        elif role.kind == NARROWS and path not in JUDGED_ELSEWHERE:
            reasons.append(f"{role.why} (conditions.{path}: {_shown(value)})")
    return reasons


def narrowing_fields(conditions: dict[str, Any]) -> list[str]:
    """For drift: the conditions `narrowing` judges (unknown, unreadable, NARROWS outside JUDGED_ELSEWHERE, which
    drift keeps under their own keys), as 'path = value' (sorted), so that adding one to a working block is a
    change with before → after."""
    found = []
    for path, value, _readable in _in_force(conditions):
        role = CONDITIONS.get(path)
        if path in JUDGED_ELSEWHERE or (role is not None and role.kind != NARROWS):
            continue
        found.append(f"{path} = {_shown(value)}")
    return sorted(found)

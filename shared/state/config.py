"""The control-relevant configuration of a tenant, normalised: what the baseline holds and drift compares.

Flat: one key per thing that can drift on its own ("ca:<policy id>", "transport.SmtpClientAuthenticationDisabled",
"authPolicy:<name>", …), each grouped under the snapshot section it comes from, so a section that was not collected
this time is carried over instead of looking deleted (controls.md, "Drift").
"""

from __future__ import annotations

from typing import Any

from shared.controls.base import as_bool, as_strings, first_object
from shared.controls.ca_conditions import flags, narrowing_fields
from shared.controls.conditional_access import LEGACY_CLIENT_TYPES
from shared.controls.exchange_objects import ALLOW_BASIC_AUTH_FIELDS, mailbox_label
from shared.model import TenantSnapshot
from shared.state.bounded_set import bounded

ASSIGNED = "assigned:"  # authenticationPolicies["assigned:<policy>"]: the users who hold that policy of their own

Config = dict[str, dict[str, Any]]  # section -> {key: normalised value}

# section -> the snapshot sources it needs (all collected, or the section is not observed this time)
SECTIONS: dict[str, tuple[str, ...]] = {
    "conditionalAccess": ("graph.conditionalAccessPolicies",),
    "securityDefaults": ("graph.securityDefaults",),
    "transport": ("exchange.transportConfig",),
    "mailboxOverrides": ("exchange.casMailboxes",),
    "mailboxProtocols": ("exchange.casMailboxes",),
    "authenticationPolicies": ("exchange.authenticationPolicies", "exchange.organizationConfig", "exchange.users"),
    "organization": ("exchange.organizationConfig",),
    "sharepoint": ("graph.sharepointSettings",),
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sorted(value: Any) -> list[str]:
    return sorted(set(as_strings(value)))


def normalise_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Everything about a CA policy that decides whether it blocks legacy auth, and for whom."""
    conditions = _dict(policy.get("conditions"))
    users = _dict(conditions.get("users"))
    applications = _dict(conditions.get("applications"))
    locations = conditions.get("locations")
    platforms = conditions.get("platforms")
    guests = users.get("excludeGuestsOrExternalUsers")
    guest_types = _dict(guests).get("guestOrExternalUserTypes")
    normalised = {
        "displayName": policy.get("displayName"),
        "state": policy.get("state"),
        "clientAppTypes": _sorted(conditions.get("clientAppTypes")),
        "grant": _sorted(_dict(policy.get("grantControls")).get("builtInControls")),
        "includeUsers": _sorted(users.get("includeUsers")),
        "excludeUsers": _sorted(users.get("excludeUsers")),
        "excludeGroups": _sorted(users.get("excludeGroups")),
        "excludeRoles": _sorted(users.get("excludeRoles")),
        "excludeGuestTypes": sorted(t.strip() for t in guest_types.split(",") if t.strip())
        if isinstance(guest_types, str) else ([] if guests is None else ["(unreadable)"]),
        "includeApplications": _sorted(applications.get("includeApplications")),
        "excludeApplications": _sorted(applications.get("excludeApplications")),
        "includeLocations": None if locations is None else _sorted(_dict(locations).get("includeLocations")),
        "excludeLocations": _sorted(_dict(locations).get("excludeLocations")),
        "includePlatforms": None if platforms is None else _sorted(_dict(platforms).get("includePlatforms")),
        "excludePlatforms": _sorted(_dict(platforms).get("excludePlatforms")),
        "riskLevels": sorted(f"{name}:{level}" for name in ("userRiskLevels", "signInRiskLevels",
                                                            "servicePrincipalRiskLevels", "insiderRiskLevels")
                             for level in flags(conditions.get(name))),
        "deviceFilter": _dict(_dict(conditions.get("devices")).get("deviceFilter")).get("rule")
        if _dict(conditions.get("devices")).get("deviceFilter") is not None else None,
    }
    # Every other narrowing (or unknown) condition: only when there is one, so baselines stored before this key
    # existed compare equal to a policy without any.
    narrowed = narrowing_fields(conditions)
    if narrowed:
        normalised["narrowedBy"] = narrowed
    return normalised


def _blocks_legacy(policy: dict[str, Any]) -> bool:
    """Policies aimed at legacy clients with a block grant, in any state: the ones whose changes matter."""
    conditions = _dict(policy.get("conditions"))
    types = as_strings(conditions.get("clientAppTypes"))
    aimed = "all" in types or any(kind in types for kind in LEGACY_CLIENT_TYPES)
    return aimed and "block" in as_strings(_dict(policy.get("grantControls")).get("builtInControls"))


def _conditional_access(snapshot: TenantSnapshot) -> dict[str, Any]:
    policies = snapshot.get("graph.conditionalAccessPolicies")
    if not isinstance(policies, list):
        return {}
    return {f"ca:{policy.get('id')}": normalise_policy(policy)
            for policy in policies if isinstance(policy, dict) and policy.get("id") and _blocks_legacy(policy)}


def _applied_policies(snapshot: TenantSnapshot) -> dict[str, Any]:
    org = first_object(snapshot.get("exchange.organizationConfig")) or {}
    default = org.get("DefaultAuthenticationPolicy")
    applied = {str(default)} if default else set()
    users = snapshot.get("exchange.users")
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and user.get("AuthenticationPolicy"):
            applied.add(str(user["AuthenticationPolicy"]))
    found: dict[str, Any] = {"defaultPolicy": default}
    # Who holds each policy of their own (Get-User): an assignment is a change with its own enforcement window
    # (state/windows.py). Bounded like the mailbox overrides: count, digest, the first names.
    holders: dict[str, list[str]] = {}
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and user.get("AuthenticationPolicy") and user.get("UserPrincipalName"):
            holders.setdefault(str(user["AuthenticationPolicy"]), []).append(str(user["UserPrincipalName"]).lower())
    found.update({f"{ASSIGNED}{name}": bounded(names) for name, names in holders.items()})
    policies = snapshot.get("exchange.authenticationPolicies")
    for policy in policies if isinstance(policies, list) else []:
        if not isinstance(policy, dict):
            continue
        name = str(policy.get("Name") or policy.get("Identity") or "")
        if name in applied:
            found[f"authPolicy:{name}"] = {field.removeprefix("AllowBasicAuth"): as_bool(policy.get(field))
                                           for field in ALLOW_BASIC_AUTH_FIELDS}
    return found


def _mailbox_overrides(snapshot: TenantSnapshot) -> dict[str, Any]:
    boxes = snapshot.get("exchange.casMailboxes")
    overriding = (mailbox_label(box) for box in boxes if isinstance(box, dict)
                  and as_bool(box.get("SmtpClientAuthenticationDisabled")) is False) if isinstance(boxes, list) else ()
    # Bounded whatever the tenant's size: count, digest and the first names, not every address (state/bounded_set).
    return {"smtpAuthEnabledMailboxes": bounded(overriding)}


# The mailboxes with POP or IMAP on (bounded like the overrides): switching one off is a protection with its own
# window (state/windows.py); Basic for both was retired in 2022, so what it stops is every client, OAuth included.
PROTOCOL_KEYS = {"PopEnabled": "popEnabledMailboxes", "ImapEnabled": "imapEnabledMailboxes"}


def _mailbox_protocols(snapshot: TenantSnapshot) -> dict[str, Any]:
    boxes = [box for box in snapshot.get("exchange.casMailboxes") or () if isinstance(box, dict)]
    return {key: bounded(mailbox_label(box) for box in boxes if as_bool(box.get(field)) is True)
            for field, key in PROTOCOL_KEYS.items()}


def _flag(snapshot: TenantSnapshot, source: str, field: str, key: str) -> dict[str, Any]:
    holder = first_object(snapshot.get(source)) or {}
    return {key: as_bool(holder.get(field))}


def control_config(snapshot: TenantSnapshot) -> Config:
    """The normalised configuration of every section whose sources were collected in this snapshot."""
    builders = {
        "conditionalAccess": lambda: _conditional_access(snapshot),
        "securityDefaults": lambda: _flag(snapshot, "graph.securityDefaults", "isEnabled", "securityDefaults.isEnabled"),
        "transport": lambda: _flag(snapshot, "exchange.transportConfig", "SmtpClientAuthenticationDisabled",
                                   "transport.SmtpClientAuthenticationDisabled"),
        "mailboxOverrides": lambda: _mailbox_overrides(snapshot),
        "mailboxProtocols": lambda: _mailbox_protocols(snapshot),
        "authenticationPolicies": lambda: _applied_policies(snapshot),
        "organization": lambda: _flag(snapshot, "exchange.organizationConfig", "OAuth2ClientProfileEnabled",
                                      "organization.OAuth2ClientProfileEnabled"),
        "sharepoint": lambda: _flag(snapshot, "graph.sharepointSettings", "isLegacyAuthProtocolsEnabled",
                                    "sharepoint.isLegacyAuthProtocolsEnabled"),
    }
    return {section: build() for section, build in builders.items()
            if all(snapshot.collected(source) for source in SECTIONS[section])}


def merge(previous: Config | None, current: Config) -> Config:
    """Sections observed now replace the stored ones; sections not collected this time keep their last value."""
    return {**(previous or {}), **current}

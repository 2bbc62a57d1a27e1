"""Classify configuration changes: weakened, strengthened, neutral, or basic auth switched back on.

Pure: two normalised configurations in (state/config.py), a list of field-level changes out. "Weakened" is any
change that makes a control's verdict worse or widens exposure (a policy deleted, disabled or set to report-only, a
client app type removed, a new exclusion, a narrowing condition added, a flag turned on); "strengthened" the reverse;
"neutral" the rest (a rename). Settings that turn basic authentication back on get their own effect, `reenabled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.state.bounded_set import as_bounded
from shared.state.bounded_set import change as set_change
from shared.state.config import Config

WEAKENED, STRENGTHENED, NEUTRAL, REENABLED = "weakened", "strengthened", "neutral", "reenabled"

_STATE_RANK = {"enabled": 2, "enabledForReportingButNotEnforced": 1, "disabled": 0}
_LEGACY = {"exchangeActiveSync", "other"}

# Which control each section's configuration serves (for the event's "control" and its severity).
SECTION_CONTROL = {
    "conditionalAccess": "entra_legacy_auth_blocked",
    "securityDefaults": "entra_legacy_auth_blocked",
    "transport": "exo_smtp_auth_disabled",
    "mailboxOverrides": "exo_smtp_auth_mailbox_overrides",
    "mailboxProtocols": "exo_pop_imap_disabled",
    "authenticationPolicies": "exo_basic_auth_policy",
    "organization": "exo_modern_auth_enabled",
    "sharepoint": "spo_legacy_auth_disabled",
}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any
    effect: str
    note: str = ""  # e.g. which ids an exclusion added
    objects: tuple[str, ...] = ()  # the mailboxes / users it was turned on for, as far as the stored sample names them

    def describe(self) -> str:
        return f"{self.field}: {_show(self.before)} → {_show(self.after)}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Change:
    """All field changes of one configuration item (one policy, one flag…) between two observations."""

    section: str
    key: str
    fields: tuple[FieldChange, ...] = field(default_factory=tuple)

    @property
    def effect(self) -> str:
        effects = {change.effect for change in self.fields}
        for effect in (REENABLED, WEAKENED, STRENGTHENED):
            if effect in effects:
                return effect
        return NEUTRAL

    @property
    def control(self) -> str:
        return SECTION_CONTROL[self.section]


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]" if value else "[]"
    if isinstance(value, dict):
        return "{…}"
    return str(value)


def _legacy_types(types: list[str]) -> set[str]:
    return set(_LEGACY) if "all" in types else _LEGACY & set(types)


def _narrowed_locations(policy: dict[str, Any]) -> bool:
    include = policy.get("includeLocations")
    return include is not None and "All" not in include


def _narrowed_platforms(policy: dict[str, Any]) -> bool:
    include = policy.get("includePlatforms")
    return include is not None and ("all" not in include or bool(policy.get("excludePlatforms")))


def _policy_changes(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        effect, note = NEUTRAL, ""
        if name == "state":
            old_rank, new_rank = _STATE_RANK.get(str(old), -1), _STATE_RANK.get(str(new), -1)
            effect = WEAKENED if new_rank < old_rank else STRENGTHENED if new_rank > old_rank else NEUTRAL
        elif name == "clientAppTypes":
            lost, gained = _legacy_types(old or []) - _legacy_types(new or []), \
                _legacy_types(new or []) - _legacy_types(old or [])
            effect = WEAKENED if lost else STRENGTHENED if gained else NEUTRAL
            note = f"no longer blocks {', '.join(sorted(lost))}" if lost else ""
        elif name in ("includeUsers", "includeApplications"):
            had, has = "All" in (old or []), "All" in (new or [])
            effect = WEAKENED if had and not has else STRENGTHENED if has and not had else NEUTRAL
        elif name.startswith("exclude") and name not in ("excludePlatforms",):
            added = sorted(set(new or []) - set(old or []))
            removed = sorted(set(old or []) - set(new or []))
            effect = WEAKENED if added else STRENGTHENED if removed else NEUTRAL
            note = f"new exclusion: {', '.join(added)}" if added else ""
        elif name in ("includeLocations", "includePlatforms", "excludePlatforms"):
            check = _narrowed_locations if name == "includeLocations" else _narrowed_platforms
            was, now = check(before), check(after)
            effect = WEAKENED if now and not was else STRENGTHENED if was and not now else NEUTRAL
            note = "narrowed" if now and not was else ""
        elif name == "narrowedBy":
            added = sorted(set(new or []) - set(old or []))
            effect = WEAKENED if added else STRENGTHENED if set(old or []) - set(new or []) else NEUTRAL
            note = f"now applies only when {'; '.join(added)}" if added else ""
        elif name in ("riskLevels", "deviceFilter"):
            effect = WEAKENED if new and not old else STRENGTHENED if old and not new else NEUTRAL
            note = "only applies under a condition now" if new else ""
        changes.append(FieldChange(name, old, new, effect, note))
    return changes


def _flag_effect(key: str, old: Any, new: Any) -> str:
    """For each yes/no setting: which value is the safe one, and whether leaving it re-enables basic auth."""
    if old is None or new is None:
        return NEUTRAL  # unreadable before or after: the control reports unknown; nothing to classify
    safe = {"transport.SmtpClientAuthenticationDisabled": True, "securityDefaults.isEnabled": True,
            "organization.OAuth2ClientProfileEnabled": True, "sharepoint.isLegacyAuthProtocolsEnabled": False}[key]
    if new == safe:
        return STRENGTHENED
    reenables = key in ("transport.SmtpClientAuthenticationDisabled", "sharepoint.isLegacyAuthProtocolsEnabled")
    return REENABLED if reenables else WEAKENED


def _allowed(flags: Any) -> set[str]:
    return {protocol for protocol, allowed in (flags or {}).items() if allowed}


def _item_changes(section: str, key: str, old: Any, new: Any) -> list[FieldChange]:
    if section == "conditionalAccess":
        if old is None:
            return [FieldChange("policy", None, new.get("displayName"), STRENGTHENED, "new legacy-auth block policy")]
        if new is None:
            return [FieldChange("policy", old.get("displayName"), None, WEAKENED,
                                "deleted, or no longer blocks legacy clients")]
        return _policy_changes(old, new)
    if section == "mailboxOverrides":
        return _override_changes(old, new)
    if section == "mailboxProtocols":
        return _protocol_changes(key, old, new)
    if key.startswith("authPolicy:"):
        gained, lost = _allowed(new) - _allowed(old), _allowed(old) - _allowed(new)
        changes = [FieldChange(f"AllowBasicAuth{p}", (old or {}).get(p), True, REENABLED) for p in sorted(gained)]
        changes += [FieldChange(f"AllowBasicAuth{p}", True, (new or {}).get(p), STRENGTHENED) for p in sorted(lost)]
        if old is None and not gained:
            changes.append(FieldChange("applied", False, True, NEUTRAL, "policy now applied"))
        return changes
    if key.startswith("assigned:"):
        found = set_change(old, new)
        if found is None:
            return []
        notes = [f"assigned to {_names(found.added, found.more_added)}" if found.added or found.more_added else "",
                 f"no longer held by {_names(found.removed, False)}" if found.removed else ""]
        # Neutral: what a user's policy allows is judged by exo_basic_auth_policy; the assignment's own enforcement
        # window is state/windows.py's.
        return [FieldChange("users", found.before, found.after, NEUTRAL, "; ".join(n for n in notes if n),
                            tuple(found.added))]
    if key == "defaultPolicy":
        return [FieldChange("DefaultAuthenticationPolicy", old, new, NEUTRAL)]  # its flags are compared per policy
    return [FieldChange(key, old, new, _flag_effect(key, old, new))]


def _names(names: list[str], more: bool) -> str:
    shown = ", ".join(names[:20])
    rest = len(names) - 20
    return shown + (f" and {rest} more" if rest > 0 else "") + (" and others" if more else "")


def _override_changes(old: Any, new: Any) -> list[FieldChange]:
    found = set_change(old, new)
    if found is None:
        return []
    label = "mailboxes with SMTP AUTH switched on for themselves"
    changes = []
    if found.added or found.more_added:
        changes.append(FieldChange(label, found.before, found.after, REENABLED,
                                   f"turned on for {_names(found.added, found.more_added)}" if found.added
                                   else "turned on for mailboxes past the first "
                                        f"{len(as_bounded(new)['sample'])} (the control's evidence lists them)",
                                   tuple(found.added)))
    if found.removed:
        changes.append(FieldChange(label, found.before, found.after, STRENGTHENED,
                                   f"override removed for {_names(found.removed, False)}"))
    if found.unsure:
        # Neutral, not weakened: the set is not empty, so the control fails (and alerts) on it anyway.
        changes.append(FieldChange(label, found.before, found.after, NEUTRAL,
                                   "fewer mailboxes override it now, but the list is too long to tell whether one of "
                                   "them is new: check the control's evidence"))
    return changes


def _protocol_changes(key: str, old: Any, new: Any) -> list[FieldChange]:
    found = set_change(old, new)
    if found is None:
        return []
    label = "mailboxes with POP on" if key.startswith("pop") else "mailboxes with IMAP on"
    changes = []
    if found.added or found.more_added:
        changes.append(FieldChange(label, found.before, found.after, WEAKENED,
                                   f"turned on for {_names(found.added, found.more_added)}", tuple(found.added)))
    if found.removed:
        changes.append(FieldChange(label, found.before, found.after, STRENGTHENED,
                                   f"turned off for {_names(found.removed, False)}"))
    return changes


def diff(reference: Config, current: Config) -> list[Change]:
    """Changes from `reference` to `current`, only in sections observed in both (others are not evidence)."""
    changes: list[Change] = []
    for section in current:
        if section not in reference:
            continue
        old_items, new_items = reference[section], current[section]
        for key in sorted(set(old_items) | set(new_items)):
            old, new = old_items.get(key), new_items.get(key)
            if old == new:
                continue
            fields = _item_changes(section, key, old, new)
            if fields:
                changes.append(Change(section, key, tuple(fields)))
    return changes

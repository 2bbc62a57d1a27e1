"""Reading Exchange Online objects (Get-CASMailbox, Get-AuthenticationPolicy, Get-User, Get-OrganizationConfig).

Shared by the Exchange controls (4-6 and the exposure control 9). Exchange data is read as it arrives: booleans may
be strings, singletons may be one-item lists, and any item may be malformed. The helpers here never guess: what
cannot be read raises `Unreadable` (a ValueError) or is counted, so a control can say "unknown" and why instead of
passing on data it did not understand. Everything is O(n) over its input; build the indexes once per evaluation.

API:
- `ALLOW_BASIC_AUTH_FIELDS`: the twelve `AllowBasicAuth*` fields of an authentication policy.
- `read_objects(value) -> Objects | None`: a list source split into usable dicts and an unreadable count.
- `policy_key(name)`: the case-insensitive key Exchange matches policy names by.
- `policy_name(policy)`, `policies_by_name(policies)`, `basic_auth_flags(policy)`.
- `default_policy_name(org_config)`, `assigned_policy_name(user)`, `effective_policy_name(user, org_config)`,
  `count_assignments(users)`.
- `users_by_object_id(users)`, `mailbox_id(mailbox)`, `mailbox_label(mailbox)`, `mailbox_brief(mailbox)`.
- `ps_quote(value)`, `name_some(labels, total)`, `EVIDENCE_LIMIT`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from shared.controls.base import as_bool, first_object

# Evidence lists are capped; the full count always travels next to them.
EVIDENCE_LIMIT = 20

ALLOW_BASIC_AUTH_FIELDS: tuple[str, ...] = tuple(
    f"AllowBasicAuth{protocol}" for protocol in (
        "ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook", "OutlookService", "Pop", "Powershell",
        "ReportingWebServices", "Rpc", "Smtp", "WebServices",
    )
)


class Unreadable(ValueError):
    """Exchange data that cannot be interpreted; the message says what was expected."""


@dataclass(frozen=True)
class Objects:
    """The usable items of a list source, and how many items were skipped because they are not JSON objects."""

    items: list[dict[str, Any]]
    unreadable: int


def describe(value: Any) -> str:
    """A short name for a JSON value's type, for "expected a list, got …" messages."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def read_objects(value: Any) -> Objects | None:
    """A collected list source (mailboxes, users, policies): None when it is not a list at all."""
    if not isinstance(value, list):
        return None
    items = [item for item in value if isinstance(item, dict)]
    return Objects(items=items, unreadable=len(value) - len(items))


def _text(value: Any) -> str | None:
    """A non-blank string, stripped; None for anything else."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def policy_key(name: Any) -> str | None:
    """Exchange matches object names case-insensitively: the key for a policy name, None for null/blank/non-text."""
    text = _text(name)
    return text.casefold() if text else None


def policy_name(policy: Any) -> str | None:
    """The display name of an authentication policy: Name, else Identity."""
    if not isinstance(policy, dict):
        return None
    return _text(policy.get("Name")) or _text(policy.get("Identity"))


def policies_by_name(policies: Any) -> dict[str, dict[str, Any]]:
    """Readable policies keyed by `policy_key` of their Name, Identity and Guid (aliases of the same dict), so a
    reference in any of those forms resolves. The first policy wins a duplicate key. Nameless items are left out."""
    index: dict[str, dict[str, Any]] = {}
    for policy in policies if isinstance(policies, list) else ():
        if not policy_name(policy):
            continue
        for alias in (policy.get("Name"), policy.get("Identity"), policy.get("Guid")):
            key = policy_key(alias)
            if key:
                index.setdefault(key, policy)
    return index


def basic_auth_flags(policy: dict[str, Any]) -> dict[str, bool | None]:
    """Protocol (the field name without "AllowBasicAuth") -> allowed? True/False, None when missing or unreadable."""
    return {field.removeprefix("AllowBasicAuth"): as_bool(policy.get(field)) for field in ALLOW_BASIC_AUTH_FIELDS}


def default_policy_name(org_config: Any) -> str | None:
    """organizationConfig.DefaultAuthenticationPolicy (object or one-item list). Null/blank means no default.
    Raises Unreadable when the config is not an object, lacks the field, or the field is not text."""
    config = first_object(org_config)
    if config is None:
        raise Unreadable(f"organizationConfig is {describe(org_config)}, expected an object")
    if "DefaultAuthenticationPolicy" not in config:
        raise Unreadable("organizationConfig has no DefaultAuthenticationPolicy field")
    value = config["DefaultAuthenticationPolicy"]
    if value is not None and not isinstance(value, str):
        raise Unreadable(f"organizationConfig.DefaultAuthenticationPolicy is {describe(value)}, expected text")
    return _text(value)


def assigned_policy_name(user: Any) -> str | None:
    """The user's own AuthenticationPolicy (Get-User); null/blank/missing means none, so the default applies.
    Raises Unreadable when the user is not an object or the field is not text."""
    if not isinstance(user, dict):
        raise Unreadable(f"user is {describe(user)}, expected an object")
    value = user.get("AuthenticationPolicy")
    if value is not None and not isinstance(value, str):
        raise Unreadable(f"AuthenticationPolicy is {describe(value)}, expected text")
    return _text(value)


def effective_policy_name(user: Any, org_config: Any) -> str | None:
    """The policy that governs a user: its own (Set-User -AuthenticationPolicy), else the organisation default
    (Set-OrganizationConfig -DefaultAuthenticationPolicy), as
    https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/disable-basic-authentication-in-exchange-online describes; None when neither exists (the tenant
    then relies on Microsoft's service-side defaults). Raises Unreadable as the two functions above do."""
    return assigned_policy_name(user) or default_policy_name(org_config)


@dataclass(frozen=True)
class Assignments:
    """Who names an authentication policy of their own (by `policy_key`), who inherits the default."""

    assigned: Counter[str]  # policy key -> users assigned it
    spelled: dict[str, str]  # policy key -> the name as first written, for messages
    inheriting: int  # users without a policy of their own
    unreadable: int  # users that could not be read (not an object, AuthenticationPolicy not text)


def count_assignments(users: Any) -> Assignments:
    """One pass over Get-User objects: how many users each policy is assigned to, and how many inherit."""
    assigned: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    inheriting = unreadable = 0
    for user in users if isinstance(users, list) else ():
        try:
            name = assigned_policy_name(user)
        except Unreadable:
            unreadable += 1
            continue
        if name is None:
            inheriting += 1
        else:
            key = policy_key(name) or name
            assigned[key] += 1
            spelled.setdefault(key, name)
    return Assignments(assigned=assigned, spelled=spelled, inheriting=inheriting, unreadable=unreadable)


def users_by_object_id(users: Any) -> dict[str, dict[str, Any]]:
    """Get-User objects keyed by lower-cased ExternalDirectoryObjectId (the Entra object id a mailbox carries too)."""
    index: dict[str, dict[str, Any]] = {}
    for user in users if isinstance(users, list) else ():
        key = _text(user.get("ExternalDirectoryObjectId")) if isinstance(user, dict) else None
        if key:
            index.setdefault(key.lower(), user)
    return index


def mailbox_id(mailbox: Any) -> str | None:
    """What to pass to Set-CASMailbox: PrimarySmtpAddress (unique), else Identity, else ExternalDirectoryObjectId;
    None when the mailbox carries none of them as text."""
    if not isinstance(mailbox, dict):
        return None
    for field in ("PrimarySmtpAddress", "Identity", "ExternalDirectoryObjectId"):
        text = _text(mailbox.get(field))
        if text:
            return text
    return None


def mailbox_label(mailbox: Any) -> str:
    """How to name a mailbox to a person: its `mailbox_id`, or a placeholder that says why there is none."""
    if not isinstance(mailbox, dict):
        return "(unreadable mailbox)"
    return mailbox_id(mailbox) or "(mailbox without identity)"


def mailbox_brief(mailbox: dict[str, Any]) -> dict[str, Any]:
    """The identifying fields of a mailbox for evidence (only those present as text)."""
    return {field: mailbox[field] for field in ("Identity", "PrimarySmtpAddress", "ExternalDirectoryObjectId")
            if _text(mailbox.get(field))}


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal (quotes doubled), safe to paste into a remediation command."""
    return "'" + value.replace("'", "''") + "'"


def name_some(labels: Iterable[str], total: int, shown: int = 3) -> str:
    """'a, b, c and 17 more' — enough names for a sentence, and the true total."""
    names = list(labels)[:shown]
    text = ", ".join(names)
    return f"{text} and {total - len(names)} more" if total > len(names) else text

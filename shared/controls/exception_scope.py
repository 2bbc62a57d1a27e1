"""What a failing verdict is about, read from its evidence, and how much of it an exception's scope covers.

An exception accepts named objects (mailboxes, users, authentication policies, Conditional Access exclusions…), so
before a FAIL can show as accepted authwatch must tell, from the control's own evidence, exactly which objects make it
fail. Each control that fails about objects has a reader here; the others fail about an organisation-wide setting
(transport SMTP AUTH, modern auth, SharePoint's legacy protocols) and only an exception of the whole control (empty
scope) covers them.

Fail closed, always: when the evidence cannot name every failing object — a list capped below its count, records the
control could not read, a sign-in read cut short, a shape this code does not know — nothing is covered and
`Coverage.unclear` says why, so an exception never turns "could not tell" into pass.

Ids compare case-insensitively (casefold): Exchange matches mailbox and policy names that way, UPNs are
case-insensitive, and Graph's object ids are GUIDs whose letters may be written in either case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from shared.controls.base import as_list
from shared.controls.conditional_access import LEGACY_CLIENT_TYPES
from shared.controls.exchange_objects import EVIDENCE_LIMIT
from shared.model import ControlResult

Scope = Mapping[str, frozenset[str]]  # kind -> casefolded ids (the union of the live exceptions' scopes)

# Controls whose FAIL is about one organisation-wide setting, not about objects.
ORGANISATION_WIDE = frozenset({"exo_smtp_auth_disabled", "exo_modern_auth_enabled", "spo_legacy_auth_disabled"})
_MAILBOX_FIELDS = ("PrimarySmtpAddress", "Identity", "ExternalDirectoryObjectId")  # mailbox_id's order
# Labels authwatch writes when a mailbox or user has no identity: nothing an exception can name.
_NAMELESS = frozenset({"(mailbox without identity)", "(unreadable mailbox)", "(unknown user)"})


def key(value: str) -> str:
    return value.strip().casefold()


@dataclass(frozen=True)
class Coverage:
    """How a FAIL's objects meet a scope. `covered` / `not_covered`: kind -> the objects as the verdict names them;
    `matched`: (kind, casefolded scope id) pairs that covered something, so the exceptions that did are known.
    `unclear`: why the failing objects cannot be told (nothing is covered then)."""

    covered: dict[str, list[str]] = field(default_factory=dict)
    not_covered: dict[str, list[str]] = field(default_factory=dict)
    matched: frozenset[tuple[str, str]] = frozenset()
    unclear: str | None = None

    @property
    def complete(self) -> bool:
        return self.unclear is None and not self.not_covered


@dataclass(frozen=True)
class Failing:
    """One object a FAIL is about: its kind, how the verdict names it, and every id it answers to."""

    kind: str
    label: str
    aliases: frozenset[str]


def _objects(kind: str, entries: Iterable[tuple[str, Iterable[Any]]]) -> list[Failing]:
    """Failing objects from (label, aliases) pairs, in evidence order, one per label."""
    found: dict[str, Failing] = {}
    for label, aliases in entries:
        names = {key(alias) for alias in (label, *aliases) if isinstance(alias, str) and alias.strip()}
        found.setdefault(key(label), Failing(kind, label, frozenset(names)))
    return list(found.values())


def partition(objects: list[Failing], scope: Scope) -> Coverage:
    """Which failing objects the scope covers (any alias in the scope's ids of that kind) and which it does not."""
    covered: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    matched: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    for item in objects:
        if (item.kind, key(item.label)) in seen:  # the same id excluded by two policies is one object
            continue
        seen.add((item.kind, key(item.label)))
        hits = item.aliases & scope.get(item.kind, frozenset())
        if hits and item.label not in _NAMELESS:
            covered.setdefault(item.kind, []).append(item.label)
            matched.update((item.kind, hit) for hit in hits)
        else:
            missing.setdefault(item.kind, []).append(item.label)
    return Coverage(covered, missing, frozenset(matched))


def _unclear(why: str) -> Coverage:
    return Coverage(unclear=why)


def _count(evidence: dict[str, Any], name: str) -> int | None:
    value = evidence.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rows(evidence: dict[str, Any], name: str) -> list[dict[str, Any]] | None:
    value = evidence.get(name)
    return value if isinstance(value, list) and all(isinstance(row, dict) for row in value) else None


def _complete(listed: int, total: int | None, what: str) -> str | None:
    """Why a capped list cannot stand for all the failing objects, or None when it holds every one."""
    if total is None:
        return f"the evidence does not say how many {what} fail"
    if total > listed:
        return f"the evidence lists {listed} of the {total} {what} (the rest are not named)"
    return None


# ---------------------------------------------------------------- per control readers


def _mailbox_overrides(evidence: dict[str, Any], scope: Scope) -> Coverage:
    rows, total = _rows(evidence, "overrides"), _count(evidence, "overrideCount")
    if rows is None:
        return _unclear("the evidence has no readable list of overriding mailboxes")
    if why := _complete(len(rows), total, "overriding mailboxes"):
        return _unclear(why)
    if _count(evidence, "unreadable"):
        # Unreadable records may be overrides too: without the named ones the verdict would be unknown, not pass.
        return _unclear(f"{evidence['unreadable']} mailbox record(s) could not be read and may override too")
    return _mailbox_rows(rows, scope)


def _mailbox_rows(rows: list[dict[str, Any]], scope: Scope) -> Coverage:
    """Evidence rows naming mailboxes, matched on every name a row gives (the overrides', the exposure's)."""
    return partition(_objects("mailboxes", ((_mailbox_label(row), [row.get(f) for f in _MAILBOX_FIELDS])
                                            for row in rows)), scope)


def _mailbox_label(row: dict[str, Any]) -> str:
    for name in ("mailbox", *_MAILBOX_FIELDS):
        if isinstance(row.get(name), str) and row[name].strip():
            return row[name]
    return "(mailbox without identity)"


def _pop_imap(evidence: dict[str, Any], scope: Scope) -> Coverage:
    labels: list[str] = []
    for protocol, listed, count in (("POP", "popEnabled", "popEnabledCount"), ("IMAP", "imapEnabled",
                                                                                "imapEnabledCount")):
        names = evidence.get(listed)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            return _unclear(f"the evidence has no readable list of mailboxes with {protocol} on")
        if why := _complete(len(names), _count(evidence, count), f"mailboxes with {protocol} on"):
            return _unclear(why)
        labels.extend(names)
    unreadable = evidence.get("unreadable")
    if not isinstance(unreadable, dict) or any(n != 0 for n in unreadable.values()):
        return _unclear("some mailbox records could not be read and may have POP or IMAP on too")
    return partition(_objects("mailboxes", ((label, ()) for label in labels)), scope)


def _basic_auth_policy(evidence: dict[str, Any], scope: Scope) -> Coverage:
    rows = _rows(evidence, "appliedPoliciesAllowingBasic")
    if rows is None or not all(isinstance(row.get("policy"), str) for row in rows):
        return _unclear("the evidence has no readable list of applied policies allowing basic authentication")
    if len(rows) >= EVIDENCE_LIMIT:  # the control keeps no count of them beside the capped list
        return _unclear(f"the evidence lists only the first {EVIDENCE_LIMIT} applied policies allowing basic "
                        "authentication")
    unresolved = evidence.get("unresolvedPolicies")
    if unresolved:
        return _unclear("some users name an authentication policy that was not found, which may allow basic "
                        "authentication too")
    if _count(evidence, "unreadableUsers") != 0:
        return _unclear("some user records could not be read and may be assigned a policy that allows basic "
                        "authentication")
    return partition(_objects("authenticationPolicies", ((row["policy"], ()) for row in rows)), scope)


def _exposure(evidence: dict[str, Any], scope: Scope) -> Coverage:
    rows, total = _rows(evidence, "exposed"), _count(evidence, "exposedCount")
    if rows is None:
        return _unclear("the evidence has no readable list of exposed mailboxes")
    if why := _complete(len(rows), total, "exposed mailboxes"):
        return _unclear(why)
    if _count(evidence, "possiblyExposedCount") != 0:
        # Without the named mailboxes the verdict would be unknown for these, never pass.
        return _unclear(f"{evidence.get('possiblyExposedCount')} more mailbox(es) are possibly exposed, which "
                        "authwatch cannot show closed")
    return _mailbox_rows(rows, scope)


def _legacy_signins(evidence: dict[str, Any], scope: Scope) -> Coverage:
    if "partialRead" in evidence:
        return _unclear("the sign-in log was read only in part, so more users may follow")
    if "gapCount" in evidence:  # an enforcement gap: rows grouped per user, protocol and address
        rows = _rows(evidence, "gaps")
        if rows is None:
            return _unclear("the evidence has no readable list of the sign-ins after the window closed")
        counted = sum(row.get("count") for row in rows if isinstance(row.get("count"), int))
        if why := _complete(counted, _count(evidence, "gapCount"), "successful legacy sign-ins"):
            return _unclear(why)
        users = [row.get("user") for row in rows]
    else:  # legacy authentication in use, not blocked
        rows = _rows(evidence, "topUsers")
        if rows is None:
            return _unclear("the evidence has no readable list of the users signing in with legacy clients")
        if why := _complete(len(rows), _count(evidence, "distinctUsers"), "users signing in with legacy clients"):
            return _unclear(why)
        users = [row.get("user") for row in rows]
    if not all(isinstance(user, str) for user in users):
        return _unclear("a user in the evidence cannot be read")
    return partition(_objects("users", ((user, ()) for user in users)), scope)


# assess() in conditional_access.py writes one reason per unapproved exclusion kind, worded exactly so.
_EXCLUSION_REASON = re.compile(r"^excludes unapproved (users|groups|roles|applications|locations|"
                               r"guestOrExternalUserTypes): (.+)$")


def unapproved_exclusions(reasons: list[Any]) -> dict[str, list[str]] | None:
    """kind -> ids, when every reason a policy does not qualify is an unapproved exclusion; None otherwise (a
    report-only state, a narrowing condition… no exception of objects can make such a policy block)."""
    found: dict[str, list[str]] = {}
    for reason in reasons:
        match = _EXCLUSION_REASON.match(reason) if isinstance(reason, str) else None
        if match is None:
            return None
        ids = [part.strip() for part in match.group(2).split(", ") if part.strip()]
        if any(item.startswith("(unreadable") for item in ids):
            return None  # an exclusion authwatch could not read names nothing an exception can accept
        found[match.group(1)] = ids
    return found


def _legacy_auth_blocked(evidence: dict[str, Any], scope: Scope) -> Coverage:
    """The block passes once the qualifying policies, and those whose only fault is unapproved exclusions the scope
    accepts, together cover every legacy client type: the exception stands in for settings.approvedExclusions."""
    candidates = _rows(evidence, "candidates")
    if candidates is None:
        return _unclear("the evidence has no readable list of the candidate policies")
    needed = set(LEGACY_CLIENT_TYPES)
    covered_types: set[str] = set()
    accepted: list[dict[str, list[str]]] = []
    pending: list[tuple[dict[str, list[str]], set[str]]] = []  # fixable policies whose exclusions are not all in scope
    for policy in candidates:
        types = {kind for kind in as_list(policy.get("clientAppTypes")) if kind in needed}
        exclusions = unapproved_exclusions(as_list(policy.get("disqualifiedBecause")))
        if exclusions is None or not types:
            continue
        if all(key(item) in scope.get(kind, frozenset()) for kind, ids in exclusions.items() for item in ids):
            covered_types |= types
            accepted.append(exclusions)
        else:
            pending.append((exclusions, types))
    missing_types = needed - covered_types
    closable = {kind for _, types in pending for kind in types}
    if not missing_types <= closable:
        return _unclear("it does not fail because of excluded objects alone (no policy would block "
                        f"{', '.join(sorted(missing_types - closable))} even with its exclusions accepted)")
    objects = [item for exclusions in accepted for item in _exclusion_objects(exclusions)]
    # Not covered: the exclusions of the fewest policies that would close the missing client types, fewest first.
    for exclusions, types in sorted(pending, key=lambda entry: _outside(entry[0], scope)):
        if types & missing_types:
            missing_types -= types
            objects.extend(_exclusion_objects(exclusions))
    return partition(objects, scope)


def _outside(exclusions: dict[str, list[str]], scope: Scope) -> int:
    return sum(key(item) not in scope.get(kind, frozenset()) for kind, ids in exclusions.items() for item in ids)


def _exclusion_objects(exclusions: dict[str, list[str]]) -> list[Failing]:
    return [item for kind, ids in exclusions.items() for item in _objects(kind, ((i, ()) for i in ids))]


READERS: dict[str, Callable[[dict[str, Any], Scope], Coverage]] = {
    "entra_legacy_auth_blocked": _legacy_auth_blocked,
    "entra_legacy_signins_blocked": _legacy_signins,
    "exo_smtp_auth_mailbox_overrides": _mailbox_overrides,
    "exo_basic_auth_policy": _basic_auth_policy,
    "exo_pop_imap_disabled": _pop_imap,
    "legacy_auth_exposure": _exposure,
}


def coverage(result: ControlResult, scope: Scope) -> Coverage:
    """How much of a FAIL the scope covers. Pure; never raises on odd evidence (it is unclear then)."""
    if result.control in ORGANISATION_WIDE:
        return _unclear("it is about an organisation-wide setting, not objects: only an exception without a scope "
                        "(the whole control) covers it")
    reader = READERS.get(result.control)
    if reader is None:
        return _unclear("authwatch cannot tell which objects this control's findings are about")
    try:
        return reader(result.evidence if isinstance(result.evidence, dict) else {}, scope)
    except (AttributeError, TypeError, ValueError) as error:  # evidence shaped in a way nobody foresaw
        return _unclear(f"its evidence has an unexpected shape ({type(error).__name__})")

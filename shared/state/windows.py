"""Enforcement windows for the Exchange protections (issue 18): the same up-to-24-hour lag the Conditional Access
block has (compare.py, state["enforcement"]), for the switches Exchange documents it for.

Exchange: a change to an authentication policy (its AllowBasicAuth* fields, a user's assignment, the organisation's
default) "can take up to 24 hours" to apply, and `Set-User -STSRefreshTokensValidFrom` makes it apply for that user
in about 30 minutes
(https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/disable-basic-authentication-in-exchange-online).
Microsoft documents no shorter lag for turning SMTP AUTH off (Set-TransportConfig / Set-CASMailbox), so the same 24
hours (the tenant's enforcementWindowHours) is used there.

A window opens when authwatch sees a protection switched on between two cycles (a change it observed: the first
sight of a tenant opens none), starting at the cycle that saw it — the latest moment the change can have been made,
so a gap is never claimed early. Its evidence: successful legacy sign-ins of the protocol it closes
("Authenticated SMTP": Basic for the other Exchange protocols was retired in 2022) by the users it covers, after it
closed (per user, after the revocation + 30 minutes when that comes first). Each window ends once, on its own:
`enforcement.gap` or `enforcement.confirmed`; a protection switched off again cancels its open window. Pure: the
state, the changes and the snapshot in, windows and events out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.controls.signins import read_legacy_signin
from shared.model import TenantSnapshot, format_time, parse_time_or_none
from shared.state.bounded_set import change as set_change
from shared.state.config import ASSIGNED, Config
from shared.state.drift import REENABLED, STRENGTHENED, WEAKENED, Change

SMTP = "Authenticated SMTP"
REVOCATION_LAG = timedelta(minutes=30)  # Set-User -STSRefreshTokensValidFrom: "about 30 minutes" (page above)
MAX_WINDOWS = 20  # kept in the state (open ones and the last that ended): bounded whatever happens
SCOPE_SAMPLE = 50
MAX_GAPS_SHOWN = 20
TRANSPORT_KEY = "transport.SmtpClientAuthenticationDisabled"


@dataclass(frozen=True)
class Protection:
    """A protection switched on, as a change showed it."""

    key: str  # "smtpAuth:tenant", "smtpAuth:mailboxes", "authPolicy:<name>", "defaultPolicy"
    control: str
    label: str  # what was switched on, in words
    users: frozenset[str] | None  # lower-case user principal names / addresses in scope; None: every user
    protocol: str = "Authenticated SMTP"  # the clientAppUsed whose successful sign-ins break the window


def _policy_users(snapshot: TenantSnapshot, name: str) -> frozenset[str]:
    users = snapshot.get("exchange.users")
    return frozenset(str(user.get("UserPrincipalName") or "").lower() for user in users or ()
                     if isinstance(user, dict) and str(user.get("AuthenticationPolicy") or "") == name
                     and user.get("UserPrincipalName"))


def switched_on(changes: Iterable[Change], current: Config, snapshot: TenantSnapshot,
                previous: Config) -> Iterator[Protection]:
    """The protections these changes switch on (strengthenings of what closes SMTP AUTH Basic)."""
    tenant_off = (current.get("transport") or {}).get(TRANSPORT_KEY) is True
    policies = current.get("authenticationPolicies") or {}
    previous_policies = previous.get("authenticationPolicies") or {}
    default = policies.get("defaultPolicy")
    for change in changes:
        strengthened = [field for field in change.fields if field.effect == STRENGTHENED]
        if not strengthened and not change.key.startswith(ASSIGNED):
            continue
        if change.key == TRANSPORT_KEY:
            yield Protection("smtpAuth:tenant", "exo_smtp_auth_disabled", "SMTP AUTH turned off for the organisation",
                             None)
        elif change.section == "mailboxProtocols":
            found = set_change((previous.get("mailboxProtocols") or {}).get(change.key),
                               (current.get("mailboxProtocols") or {}).get(change.key))
            protocol = "POP3" if change.key.startswith("pop") else "IMAP4"
            if found and found.removed:
                yield Protection(f"{protocol}:mailboxes", "exo_pop_imap_disabled",
                                 f"{protocol[:-1] if protocol == 'POP3' else 'IMAP'} turned off for "
                                 f"{len(found.removed)} mailbox(es)",
                                 frozenset(name.lower() for name in found.removed), protocol)
        elif change.section == "mailboxOverrides" and tenant_off:
            found = set_change((previous.get("mailboxOverrides") or {}).get(change.key),
                               (current.get("mailboxOverrides") or {}).get(change.key))
            if found and found.removed:
                yield Protection("smtpAuth:mailboxes", "exo_smtp_auth_mailbox_overrides",
                                 "mailbox overrides removed (SMTP AUTH follows the organisation, which has it off)",
                                 frozenset(name.lower() for name in found.removed))
        elif change.key.startswith(ASSIGNED) and any(k.startswith(ASSIGNED) for k in previous_policies):
            # Users newly holding a policy that stops Basic SMTP (a state written before assignments were kept has
            # none: the first cycle after an upgrade opens no window for everyone already assigned).
            name = change.key.removeprefix(ASSIGNED)
            found = set_change(previous_policies.get(change.key), policies.get(change.key))
            flags = policies.get(f"authPolicy:{name}")
            if found and found.added and isinstance(flags, dict) and flags.get("Smtp") is False:
                yield Protection(f"authPolicy:{name}:assigned", "exo_basic_auth_policy",
                                 f"{len(found.added)} user(s) newly assigned authentication policy '{name}', which "
                                 "stops Basic authentication for SMTP", frozenset(found.added))
        elif change.key.startswith("authPolicy:") and change.key in policies \
                and any(f.field == "AllowBasicAuthSmtp" for f in strengthened):
            # (a policy that merely stopped being applied protects nobody: only one still applied counts)
            name = change.key.removeprefix("authPolicy:")
            yield Protection(change.key, "exo_basic_auth_policy",
                             f"authentication policy '{name}' stops Basic authentication for SMTP",
                             None if name == default else _policy_users(snapshot, name))
    if "authenticationPolicies" not in previous or "authenticationPolicies" not in current:
        return  # the default was not observed both times: no change seen
    old_default = previous["authenticationPolicies"].get("defaultPolicy")
    new_flags = policies.get(f"authPolicy:{default}") if default else None
    if default and default != old_default and isinstance(new_flags, dict) and new_flags.get("Smtp") is False:
        yield Protection("defaultPolicy", "exo_basic_auth_policy",
                         f"the organisation's default authentication policy is now '{default}', which stops Basic "
                         "authentication for SMTP", None)


def switched_off(changes: Iterable[Change]) -> set[str]:
    """Protection keys that a change weakened again: their open windows are cancelled."""
    keys = set()
    for change in changes:
        if any(field.effect in (WEAKENED, REENABLED) for field in change.fields):
            keys.add("smtpAuth:tenant" if change.key == TRANSPORT_KEY else
                     "smtpAuth:mailboxes" if change.section == "mailboxOverrides" else
                     ("POP3:mailboxes" if change.key.startswith("pop") else "IMAP4:mailboxes")
                     if change.section == "mailboxProtocols" else change.key)
    return keys


def revocations(snapshot: TenantSnapshot) -> dict[str, datetime]:
    """User → when its refresh tokens were revoked (Get-User StsRefreshTokensValidFrom), where Exchange says."""
    found: dict[str, datetime] = {}
    for user in snapshot.get("exchange.users") or ():
        if not isinstance(user, dict) or not user.get("UserPrincipalName"):
            continue
        value = next((v for k, v in user.items() if k.lower() == "stsrefreshtokensvalidfrom"), None)
        moment = parse_time_or_none(value) if isinstance(value, str) else None
        if moment is not None:
            found[str(user["UserPrincipalName"]).lower()] = moment
    return found


def new_window(protection: Protection, at: datetime, hours: float) -> dict[str, Any]:
    users = sorted(protection.users) if protection.users is not None else None
    return {"protection": protection.key, "control": protection.control, "label": protection.label,
            "startedAt": format_time(at), "closesAt": format_time(at + timedelta(hours=hours)), "hours": hours,
            "origin": "observation time", "scope": {"everyone": users is None, "count": len(users or ()),
                                                    "sample": (users or [])[:SCOPE_SAMPLE]},
            "users": users, "protocol": protection.protocol, "confirmed": False, "gapReported": False,
            "cancelled": False}


def _in_scope(window: dict[str, Any], user: str) -> bool:
    users = window.get("users")
    return users is None or user.lower() in users


def gaps(window: dict[str, Any], snapshot: TenantSnapshot, revoked: dict[str, datetime]) -> list[dict[str, Any]]:
    """Successful SMTP AUTH sign-ins by users in scope after the window closed for them."""
    started, closes = parse_time_or_none(window["startedAt"]), parse_time_or_none(window["closesAt"])
    if started is None or closes is None:
        return []
    found = []
    for raw in snapshot.get("graph.signIns") or ():
        signin = read_legacy_signin(raw)
        if signin is None or signin.protocol != window.get("protocol", SMTP) or signin.succeeded is not True \
                or signin.at is None:
            continue
        if not _in_scope(window, signin.user):
            continue
        revoked_at = revoked.get(signin.user.lower())
        bites = min(closes, revoked_at + REVOCATION_LAG) if revoked_at and revoked_at >= started else closes
        if signin.at >= bites:
            found.append({"user": signin.user, "ipAddress": signin.ip_address, "at": format_time(signin.at),
                          "protocol": signin.protocol, "closedForUserAt": format_time(bites)})
    return sorted(found, key=lambda gap: gap["at"])


def _what(window: dict[str, Any], short: bool = False) -> str:
    protocol = window.get("protocol", SMTP)
    if protocol == SMTP:
        return "SMTP AUTH" if short else "SMTP AUTH with a password"
    return protocol


def public(window: dict[str, Any]) -> dict[str, Any]:
    """A window as events and the API show it (without the full user list)."""
    return {key: value for key, value in window.items() if key != "users"}


def bounded(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open windows first, then the most recent that ended, at most MAX_WINDOWS."""
    open_ = [w for w in windows if not (w["confirmed"] or w["gapReported"] or w["cancelled"])]
    ended = [w for w in windows if w not in open_]
    return (open_ + ended[-(MAX_WINDOWS - len(open_)):])[:MAX_WINDOWS] if len(open_) < MAX_WINDOWS \
        else open_[-MAX_WINDOWS:]


MAX_SCOPE_USERS = 1_000  # beyond this a window's evidence counts every SMTP AUTH sign-in (said in the window)


def advance(windows: list[dict[str, Any]], changes: list[Change], previous: Config, current: Config,
            snapshot: TenantSnapshot, *, at: datetime, hours: float, emit: Any) -> list[dict[str, Any]]:
    """One cycle: cancel the windows of protections switched off again, open the new ones, then judge every open
    window against the sign-ins. `emit(kind, control, severity, summary, details, subject)` raises an event."""
    from shared.controls.enforcement_window import describe_duration
    from shared.state import events as ev

    windows = [dict(window) for window in windows]
    for key in switched_off(changes):
        for window in windows:
            if window["protection"] in (key, f"{key}:assigned") and not (window["confirmed"] or window["gapReported"]):
                window["cancelled"] = True
    for protection in switched_on(changes, current, snapshot, previous):
        if protection.users is not None and len(protection.users) > MAX_SCOPE_USERS:
            protection = Protection(protection.key, protection.control, protection.label + " (scope too large to "
                                    "keep: every SMTP AUTH sign-in counts as evidence)", None)
        for window in windows:
            if window["protection"] == protection.key and not (window["confirmed"] or window["gapReported"]):
                window["cancelled"] = True  # switched on again: the new window replaces it
        window = new_window(protection, at, hours)
        windows.append(window)
        who = "every user" if protection.users is None else f"{len(protection.users)} user(s)"
        emit(ev.WINDOW_STARTED, protection.control, "low",
             f"{protection.label[0].upper()}{protection.label[1:]}; Exchange can take up to {hours:g} hours to "
             f"enforce it for {who}: the window closes {window['closesAt']} "
             f"({describe_duration(timedelta(hours=hours))} left).",
             {**public(window), "windowStartedAt": window["startedAt"], "windowClosesAt": window["closesAt"],
              "windowHours": hours, "secondsLeft": int(hours * 3600)}, protection.key)
    revoked = revocations(snapshot)
    for window in windows:
        if window["confirmed"] or window["gapReported"] or window["cancelled"]:
            continue
        found = gaps(window, snapshot, revoked)
        details = {**public(window), "windowStartedAt": window["startedAt"], "windowClosesAt": window["closesAt"],
                   "windowHours": window["hours"]}
        if found:
            window["gapReported"] = True
            users = sorted({gap["user"] for gap in found})
            emit(ev.ENFORCEMENT_GAP, window["control"], "high",
                 f"{_what(window)} still succeeds after {window['label']} was enforced: "
                 f"{len(found)} sign-in(s) by {', '.join(users[:5])}{' and others' if len(users) > 5 else ''}.",
                 {**details, "gapCount": len(found), "gaps": found[:MAX_GAPS_SHOWN],
                  "remediation": "Revoke the users' sessions so the change bites now: Set-User <user> "
                                 "-STSRefreshTokensValidFrom ([DateTime]::UtcNow); then move the sender to OAuth "
                                 "or a relay."}, window["protection"])
        elif at >= parse_time_or_none(window["closesAt"]):  # type: ignore[operator]
            window["confirmed"] = True
            emit(ev.WINDOW_CONFIRMED, window["control"], "low",
                 f"Enforcement confirmed: no successful {_what(window, short=True)} sign-in in scope since "
                 f"{window['closesAt']} "
                 f"({window['label']}).", details, window["protection"])
    return bounded(windows)

"""Enforcement windows for the Exchange protections (issue 18, items 1 and 5), replayed through `authwatch replay`'s
code exactly as the worker raises them: SMTP AUTH turned off for the tenant, an authentication policy stopping Basic
SMTP for the printers, two windows open at once each closing on its own, a revocation that shortens a window, a
protection switched off again, and no window on first sight."""

from __future__ import annotations

from datetime import timedelta

from shared.cli.replay import replay
from shared.model import snapshot_from_json
from shared.state.compare import compare
from tests.builders import snapshot_json
from tests.unit.test_replay_scenarios import ALLOW, at, iso

PRINTERS = "Printers"


def snap(hours: float, *, transport=True, printers_smtp=True, revoked: dict[str, float] | None = None,
         signins=()):
    """Contoso without a Conditional Access block (whose own window would judge the same sign-ins): a default policy
    allowing Basic SMTP, a 'Printers' policy assigned to the scanner and the copier."""
    users = [{"Identity": "scanner", "UserPrincipalName": "scanner@contoso.com", "AuthenticationPolicy": PRINTERS,
              "StsRefreshTokensValidFrom": iso(at((revoked or {}).get("scanner@contoso.com", -1000)))},
             {"Identity": "copier", "UserPrincipalName": "copier@contoso.com", "AuthenticationPolicy": PRINTERS,
              "StsRefreshTokensValidFrom": None}]
    return snapshot_from_json(snapshot_json(
        policies=[], transport=transport,
        collected_at=iso(at(hours)),
        graph_sources={"sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}, "signIns": list(signins),
                       "directoryAudits": []},
        exchange_sources={
            "organizationConfig": {"DefaultAuthenticationPolicy": "Default", "OAuth2ClientProfileEnabled": True},
            "authenticationPolicies": [{"Name": "Default", **ALLOW, "AllowBasicAuthSmtp": True},
                                       {"Name": PRINTERS, **ALLOW, "AllowBasicAuthSmtp": printers_smtp}],
            "casMailboxes": [], "casMailboxPlans": [], "users": users}))


def smtp(hours: float, user: str = "scanner@contoso.com", ok: bool = True) -> dict:
    return {"id": f"{user}-{hours}", "createdDateTime": iso(at(hours)), "userPrincipalName": user, "userId": user,
            "clientAppUsed": "Authenticated SMTP", "ipAddress": "203.0.113.9",
            "status": {"errorCode": 0 if ok else 50126}}


def windows(events, kind):
    return [(e.control, e.details.get("protection"), e.at) for e in events if e.type == kind]


def test_no_window_on_first_sight():
    assert windows(replay([snap(0, printers_smtp=False, transport=True)]), "enforcement.window_started") == []


def test_smtp_auth_turned_off_opens_a_window_that_a_late_sign_in_breaks():
    events = replay([snap(0, transport=False), snap(1), snap(20, signins=[smtp(19)]),
                     snap(26, signins=[smtp(19), smtp(25.5)])])
    assert windows(events, "enforcement.window_started") == [("exo_smtp_auth_disabled", "smtpAuth:tenant", at(1))]
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert gap.control == "exo_smtp_auth_disabled" and gap.at == at(26)
    assert gap.details["windowClosesAt"] == iso(at(25)) and [g["at"] for g in gap.details["gaps"]] == [iso(at(25.5))]
    assert gap.details["scope"]["everyone"] is True
    assert "Set-User" in gap.details["remediation"]


def test_two_windows_open_at_once_each_close_on_their_own():
    """SMTP AUTH off for the tenant at 1 h; Basic SMTP off for the printers at 6 h. The tenant window confirms at
    25 h; the printers' one is broken by the scanner at 30.5 h (and only by a user of that policy)."""
    series = [snap(0, transport=False), snap(1, printers_smtp=True), snap(6, printers_smtp=False),
              snap(25.5, printers_smtp=False),
              snap(31, printers_smtp=False, signins=[smtp(30.5), smtp(30.6, user="alice@contoso.com", ok=False)])]
    events = replay(series)
    assert windows(events, "enforcement.window_started") == [
        ("exo_smtp_auth_disabled", "smtpAuth:tenant", at(1)), ("exo_basic_auth_policy", f"authPolicy:{PRINTERS}", at(6))]
    assert windows(events, "enforcement.confirmed") == [("exo_smtp_auth_disabled", "smtpAuth:tenant", at(25.5))]
    # The tenant's window confirmed before the scanner's sign-in; only the printers' window reports it.
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert (gap.details["protection"], gap.at) == (f"authPolicy:{PRINTERS}", at(31))
    assert gap.details["scope"]["sample"] == ["copier@contoso.com", "scanner@contoso.com"]
    assert [g["user"] for g in gap.details["gaps"]] == ["scanner@contoso.com"]


def test_a_revocation_shortens_the_window_for_that_user():
    """Printers' policy tightened at 6 h; the scanner's refresh tokens revoked at 7 h: the change bites for it by
    7.5 h, so a successful SMTP AUTH sign-in at 8 h is already a gap (24 h would have hidden it until 30 h)."""
    events = replay([snap(0), snap(6, printers_smtp=False, revoked={"scanner@contoso.com": 7}),
                     snap(9, printers_smtp=False, revoked={"scanner@contoso.com": 7}, signins=[smtp(8)])])
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert gap.at == at(9) and gap.details["gaps"][0]["closedForUserAt"] == iso(at(7.5))
    # Without the revocation, the same sign-in is expected inside the window.
    quiet = replay([snap(0), snap(6, printers_smtp=False), snap(9, printers_smtp=False, signins=[smtp(8)])])
    assert [e for e in quiet if e.type == "enforcement.gap"] == []


def test_a_protection_switched_off_again_cancels_its_window():
    events = replay([snap(0, transport=False), snap(1), snap(2, transport=False),
                     snap(30, transport=False, signins=[smtp(29)])])
    assert [e for e in events if e.type in ("enforcement.gap", "enforcement.confirmed")] == []
    [reenabled] = [e for e in events if e.type == "basic_auth.reenabled"]
    assert reenabled.details["canWorkAgainBy"] == iso(at(2 + 24))  # says when basic auth can work again
    assert reenabled.summary.endswith(f"within 24 h (by {iso(at(26))}).")


def test_windows_are_kept_in_the_state_bounded_and_without_user_lists_in_events():
    state = None
    for hours, transport in [(0, False), *((1 + 2 * i, i % 2 == 0) for i in range(30))]:
        state = compare(state, None, snap(hours, transport=transport), now=at(hours)).state
    assert 0 < len(state["windows"]) <= 20
    started = compare(None, None, snap(0, printers_smtp=True), now=at(0)).state
    later = compare(started, None, snap(6, printers_smtp=False), now=at(6))
    [event] = [e for e in later.events if e.type == "enforcement.window_started"]
    assert "users" not in event.details and event.details["scope"]["count"] == 2
    assert later.state["windows"][0]["users"] == ["copier@contoso.com", "scanner@contoso.com"]
    assert event.details["secondsLeft"] == int(timedelta(hours=24).total_seconds())


def test_a_user_assigned_the_policy_mid_window_gets_a_window_of_its_own():
    """The printers' policy tightened at 6 h (scanner, copier); a fax user assigned it at 20 h. The fax's SMTP AUTH at
    31 h is still inside its own window (20 h + 24 h), though past the printers' one (30 h); the scanner's is not."""
    def with_fax(hours: float, signins=()):
        snapshot = snap(hours, printers_smtp=False, signins=signins)
        snapshot.exchange["users"].append({"Identity": "fax", "UserPrincipalName": "fax@contoso.com",
                                           "AuthenticationPolicy": PRINTERS})
        return snapshot

    events = replay([snap(0), snap(6, printers_smtp=False), with_fax(20),
                     with_fax(31, signins=[smtp(30.5, user="fax@contoso.com"), smtp(30.6)])])
    started = [(e.details["protection"], e.at, e.details["scope"]["sample"]) for e in events
               if e.type == "enforcement.window_started"]
    assert started == [(f"authPolicy:{PRINTERS}", at(6), ["copier@contoso.com", "scanner@contoso.com"]),
                       (f"authPolicy:{PRINTERS}:assigned", at(20), ["fax@contoso.com"])]
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert gap.details["protection"] == f"authPolicy:{PRINTERS}"
    assert [g["user"] for g in gap.details["gaps"]] == ["scanner@contoso.com"]  # the fax is still in its window


def test_a_mailbox_override_removed_and_a_stricter_default_each_open_a_window():
    def mailboxes(hours: float, override: bool, default: str = "Default", signins=()):
        snapshot = snap(hours, printers_smtp=False, signins=signins)
        snapshot.exchange["casMailboxes"] = [{"Identity": "printer", "PrimarySmtpAddress": "printer@contoso.com",
                                              "SmtpClientAuthenticationDisabled": False if override else None}]
        snapshot.exchange["organizationConfig"]["DefaultAuthenticationPolicy"] = default
        return snapshot

    events = replay([mailboxes(0, True), mailboxes(1, False), mailboxes(2, False, PRINTERS),
                     mailboxes(27, False, PRINTERS, signins=[smtp(25.5, user="printer@contoso.com")])])
    started = [(e.control, e.details["protection"], e.details["scope"]["everyone"]) for e in events
               if e.type == "enforcement.window_started"]
    assert started == [("exo_smtp_auth_mailbox_overrides", "smtpAuth:mailboxes", False),
                       ("exo_basic_auth_policy", "defaultPolicy", True)]
    gaps = {e.details["protection"] for e in events if e.type == "enforcement.gap"}
    assert gaps == {"smtpAuth:mailboxes"}  # 25.5 h: past the override's window (1 h + 24), inside the default's (2 h + 24)


def test_a_user_assigned_a_stricter_policy_any_time_gets_a_window_and_an_upgrade_opens_none():
    """The printers' policy has blocked Basic SMTP since before authwatch looked; a week later a fax user is assigned
    it: its own window opens then, and its SMTP AUTH a day and more later is a gap. A state written before
    assignments were kept (no 'assigned:' entries) opens no window for everyone already assigned."""
    def with_fax(hours: float, signins=()):
        snapshot = snap(hours, printers_smtp=False, signins=signins)
        snapshot.exchange["users"].append({"Identity": "fax", "UserPrincipalName": "fax@contoso.com",
                                           "AuthenticationPolicy": PRINTERS})
        return snapshot

    events = replay([snap(0, printers_smtp=False), snap(168, printers_smtp=False), with_fax(170),
                     with_fax(195, signins=[smtp(194.5, user="fax@contoso.com")])])
    assert [(e.details["protection"], e.at) for e in events if e.type == "enforcement.window_started"] == [
        (f"authPolicy:{PRINTERS}:assigned", at(170))]
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert [g["user"] for g in gap.details["gaps"]] == ["fax@contoso.com"]
    state = None
    for snapshot in (snap(0, printers_smtp=False), with_fax(2)):
        result = compare(state, None, snapshot, now=snapshot.collected_at)
        state = result.state
    [note] = result.notes  # history (not alerts) says who got the policy
    assert note.type == "config.changed" and "assigned to fax@contoso.com" in note.summary

    old = compare(None, None, snap(0, printers_smtp=False), now=at(0)).state
    old["config"]["authenticationPolicies"] = {key: value for key, value in
                                               old["config"]["authenticationPolicies"].items()
                                               if not key.startswith("assigned:")}
    upgraded = compare(old, None, snap(1, printers_smtp=False), now=at(1))
    assert [e for e in upgraded.events if e.type == "enforcement.window_started"] == []


def test_pop_switched_off_for_a_mailbox_opens_a_window_judged_by_pop_sign_ins():
    """Basic POP was retired in 2022, so the window that matters is POP switched off altogether: any client,
    OAuth included, should stop within the window; a POP3 sign-in after it is a gap, an SMTP one is not."""
    def pop(hours: float, enabled: bool, signins=()):
        snapshot = snap(hours, signins=signins)
        snapshot.exchange["casMailboxes"] = [{"Identity": "frontdesk", "PrimarySmtpAddress": "frontdesk@contoso.com",
                                              "SmtpClientAuthenticationDisabled": None, "PopEnabled": enabled,
                                              "ImapEnabled": False}]
        return snapshot

    pop_signin = {**smtp(30, user="frontdesk@contoso.com"), "id": "pop-30", "clientAppUsed": "POP3"}
    events = replay([pop(0, True), pop(5, False),
                     pop(31, False, signins=[pop_signin, smtp(30.5, "frontdesk@contoso.com")])])
    [started] = [e for e in events if e.type == "enforcement.window_started"]
    assert (started.control, started.details["protection"], started.details["protocol"]) == (
        "exo_pop_imap_disabled", "POP3:mailboxes", "POP3")
    [gap] = [e for e in events if e.type == "enforcement.gap"]
    assert [g["protocol"] for g in gap.details["gaps"]] == ["POP3"] and gap.summary.startswith("POP3 still succeeds")
    # Turning POP back on is a weakening (and would cancel an open window).
    again = replay([pop(0, True), pop(5, False), pop(6, True)])
    assert [e.type for e in again if e.control == "exo_pop_imap_disabled"] == [
        "control.failed", "control.recovered", "drift.strengthened", "enforcement.window_started", "control.failed",
        "drift.weakened"]

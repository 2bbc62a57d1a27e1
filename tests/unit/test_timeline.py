"""The tenant's timeline (issue 18, item 2) from plain event data: shared/views/timeline.py is pure."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.views.timeline import PLATFORM_DATES, build_timeline, timeline_rows

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-000000000002"


def event(kind: str, at: str, details: dict | None = None, control: str | None = None, summary: str = "",
          event_id: str | None = None) -> dict:
    return {"id": event_id or f"{kind}-{at}", "at": at, "tenantId": TENANT, "type": kind, "control": control,
            "severity": "low", "summary": summary, "details": details or {}}


WEAKENED = event("drift.weakened", "2026-11-23T09:00:00Z", {
    "section": "conditionalAccess", "item": "ca:p1",
    "changes": [{"field": "state", "before": "enabled", "after": "enabledForReportingButNotEnforced",
                 "effect": "weakened", "note": ""}],
    "changedBy": "admin@fabrikam.example", "changedAt": "2026-11-23T08:20:00Z"},
    control="entra_legacy_auth_blocked",
    summary="Protection weakened by admin@fabrikam.example: Conditional Access policy 'Block legacy authentication': "
            "state: enabled → enabledForReportingButNotEnforced.")


def entries(events=(), state=None, **kwargs) -> list[dict]:
    return build_timeline(list(events), state, now=kwargs.pop("now", NOW), **kwargs)["entries"]


def kinds(found: list[dict]) -> list[str]:
    return [entry["kind"] for entry in found]


def test_a_weakening_says_when_by_whom_what_and_that_it_is_in_force_at_once():
    change = next(e for e in entries([WEAKENED]) if e["kind"] == "change")
    assert change["at"] == "2026-11-23T08:20:00Z"  # when it was made (the audit log), not when authwatch saw it
    assert change["detectedAt"] == "2026-11-23T09:00:00Z"
    assert change["by"] == "admin@fabrikam.example"
    assert change["effect"] == "weakened" and change["inForce"] == "at once" and change["inForceBy"] is None
    assert change["changes"] == [{"field": "state", "before": "enabled", "after": "enabledForReportingButNotEnforced",
                                  "effect": "weakened", "note": ""}]
    assert "Conditional Access policy 'Block legacy authentication'" in change["title"]
    assert change["eventId"] == WEAKENED["id"]


def test_without_an_audit_entry_the_change_sits_at_detection_and_names_nobody():
    bare = event("drift.weakened", "2026-11-23T09:00:00Z",
                 {"section": "transport", "item": "transport.SmtpClientAuthenticationDisabled",
                  "changes": [{"field": "SmtpClientAuthenticationDisabled", "before": True, "after": False,
                               "effect": "weakened"}]}, control="exo_smtp_auth_disabled")
    change = next(e for e in entries([bare]) if e["kind"] == "change")
    assert change["at"] == "2026-11-23T09:00:00Z" and change["by"] is None
    assert change["protection"] == "smtpAuth:tenant"
    # The protection keys shared/state/windows.py gives its windows, so a change finds the window it opened.
    for section, item, protection in (("mailboxOverrides", "mailboxOverrides.SmtpClientAuthenticationDisabled",
                                       "smtpAuth:mailboxes"),
                                      ("authenticationPolicies", "authPolicy:Printers", "authPolicy:Printers"),
                                      ("authenticationPolicies", "defaultPolicy", "defaultPolicy"),
                                      ("sharepoint", "sharepoint.isLegacyAuthProtocolsEnabled", None)):
        other = event("drift.strengthened", "2026-11-23T09:00:00Z", {"section": section, "item": item, "changes": []})
        assert next(e for e in entries([other]) if e["kind"] == "change")["protection"] == protection, section


def test_a_strengthening_is_in_force_by_its_window_close_and_the_evidence_confirms_it():
    opened = {"windowStartedAt": "2026-11-22T09:00:00Z", "windowClosesAt": "2026-11-23T09:00:00Z",
              "windowHours": 24, "protection": "smtpAuth:tenant", "scope": {"count": 3, "sample": ["a@x", "b@x"]}}
    history = [
        event("drift.strengthened", "2026-11-22T09:05:00Z",
              {"section": "transport", "item": "transport.SmtpClientAuthenticationDisabled",
               "changes": [{"field": "SmtpClientAuthenticationDisabled", "before": False, "after": True,
                            "effect": "strengthened"}]}, control="exo_smtp_auth_disabled"),
        event("enforcement.window_started", "2026-11-22T09:05:00Z", opened, control="entra_legacy_signins_blocked"),
        event("enforcement.confirmed", "2026-11-23T09:30:00Z", opened, control="entra_legacy_signins_blocked",
              summary="Enforcement confirmed: no successful legacy sign-in since the window closed."),
    ]
    found = entries(history)
    change = next(e for e in found if e["kind"] == "change")
    assert change["effect"] == "strengthened" and change["inForceBy"] == "2026-11-23T09:00:00Z"
    assert change["inForce"] == "by 2026-11-23T09:00:00Z"
    in_force = next(e for e in found if e["kind"] == "in_force")
    assert in_force["at"] == "2026-11-23T09:00:00Z" and in_force["status"] == "confirmed"
    assert in_force["scope"] == {"count": 3, "everyone": False, "sample": ["a@x", "b@x"]}
    confirmed = next(e for e in found if e["kind"] == "confirmed")
    assert confirmed["at"] == "2026-11-23T09:30:00Z" and confirmed["protection"] == "smtpAuth:tenant"
    ours = [e for e in found if e["kind"] not in ("platform", "managed_policy")]
    assert kinds(ours) == ["confirmed", "in_force", "change", "window_opened"]  # newest first


def test_a_gap_contradicts_the_window_and_an_open_window_counts_down():
    closed = {"windowStartedAt": "2026-11-21T08:00:00Z", "windowClosesAt": "2026-11-22T08:00:00Z", "windowHours": 24}
    history = [event("enforcement.window_started", "2026-11-21T08:00:00Z", closed),
               event("enforcement.gap", "2026-11-22T10:00:00Z", {**closed, "gapCount": 2},
                     summary="2 successful legacy sign-ins after the window closed")]
    found = entries(history)
    assert next(e for e in found if e["kind"] == "gap")["at"] == "2026-11-22T10:00:00Z"
    assert next(e for e in found if e["kind"] == "in_force")["status"] == "gap"
    opened = {"windowStartedAt": "2026-11-23T08:00:00Z", "windowClosesAt": "2026-11-24T08:00:00Z", "windowHours": 24}
    found = entries([event("enforcement.window_started", "2026-11-23T08:00:00Z", opened)])
    assert {e["status"] for e in found if e["kind"] in ("in_force", "window_opened")} == {"open"}
    found = entries([event("enforcement.window_started", "2026-11-23T08:00:00Z", opened)],
                    now=datetime(2026, 11, 25, tzinfo=timezone.utc))
    assert next(e for e in found if e["kind"] == "in_force")["status"] == "awaiting evidence"


def test_windows_in_the_state_row_appear_even_when_history_no_longer_has_their_events():
    state = {"enforcement": {"startedAt": "2026-11-01T00:00:00Z", "hours": 24, "confirmed": True,
                             "gapReported": False},
             "windows": [{"protection": "authPolicy:Printers", "control": "exo_basic_auth_policy",
                          "startedAt": "2026-11-23T09:00:00Z", "closesAt": "2026-11-24T09:00:00Z", "hours": 24,
                          "origin": "observation time", "scope": {"count": 4, "sample": ["scan@x"]},
                          "confirmed": False, "gapReported": False},
                         {"protection": "mailboxOverrides"}]}  # no startedAt: nothing to place, skipped
    found = entries([], state)
    block = [e for e in found if e["kind"] == "in_force" and e["protection"] is None]
    assert block and block[0]["at"] == "2026-11-02T00:00:00Z" and block[0]["status"] == "confirmed"
    policy = next(e for e in found if e["kind"] == "in_force" and e["protection"] == "authPolicy:Printers")
    assert policy["status"] == "open" and policy["control"] == "exo_basic_auth_policy"
    assert policy["scope"]["count"] == 4 and "uthentication policy 'Printers'" in policy["title"]


def test_a_window_known_from_its_event_and_the_state_is_listed_once_with_the_states_outcome():
    details = {"windowStartedAt": "2026-11-20T08:00:00Z", "windowClosesAt": "2026-11-21T08:00:00Z", "windowHours": 24}
    state = {"enforcement": {"startedAt": "2026-11-20T08:00:00Z", "hours": 24, "confirmed": True}}
    found = entries([event("enforcement.window_started", "2026-11-20T08:00:00Z", details)], state)
    assert kinds(found).count("in_force") == 1 and kinds(found).count("window_opened") == 1
    # The confirmation event is no longer in the history read; the state row still says how the window ended.
    assert next(e for e in found if e["kind"] == "in_force")["status"] == "confirmed"


def test_a_window_switched_off_again_is_cancelled_and_a_reenable_says_when_it_works_again_at_the_latest():
    state = {"windows": [{"protection": "smtpAuth:tenant", "control": "exo_smtp_auth_disabled",
                          "label": "SMTP AUTH turned off for the organisation", "startedAt": "2026-11-23T08:00:00Z",
                          "closesAt": "2026-11-24T08:00:00Z", "hours": 24, "scope": {"everyone": True, "count": 0},
                          "confirmed": False, "gapReported": False, "cancelled": True}]}
    reenabled = event("basic_auth.reenabled", "2026-11-23T09:00:00Z", {
        "section": "transport", "item": "transport.SmtpClientAuthenticationDisabled",
        "changes": [{"field": "SmtpClientAuthenticationDisabled", "before": True, "after": False,
                     "effect": "reenabled"}], "canWorkAgainBy": "2026-11-24T09:00:00Z"})
    opened = event("enforcement.window_started", "2026-11-23T08:00:00Z", {
        "protection": "smtpAuth:tenant", "windowStartedAt": "2026-11-23T08:00:00Z",
        "windowClosesAt": "2026-11-24T08:00:00Z", "windowHours": 24}, control="exo_smtp_auth_disabled")
    found = entries([reenabled, opened], state)
    assert kinds(found).count("in_force") == 1
    window = next(e for e in found if e["kind"] == "in_force")
    assert window["status"] == "cancelled" and window["inForce"] is None and "never in force" in window["title"]
    assert window["title"].startswith("SMTP AUTH turned off for the organisation")  # the window's own words
    change = next(e for e in found if e["kind"] == "change")
    assert change["effect"] == "reenabled" and change["inForceBy"] == "2026-11-24T09:00:00Z"
    assert change["inForce"] == "at once (at the latest by 2026-11-24T09:00:00Z)"


def test_the_windows_the_worker_raises_are_read_as_they_are_written():
    """Events from `authwatch replay` (the worker's code): the printers' policy stops Basic SMTP at hour 1, its window
    closes 24 h later and is confirmed; the change is in force by that close."""
    from shared.cli.replay import replay
    from tests.unit.test_exchange_windows import snap
    from tests.unit.test_replay_scenarios import at, iso

    raised = [e.to_record() for e in replay([snap(0), snap(1, printers_smtp=False), snap(26, printers_smtp=False)])]
    found = entries(raised, now=at(30))
    change = next(e for e in found if e["kind"] == "change" and e["protection"] == "authPolicy:Printers")
    assert change["effect"] == "strengthened" and change["inForceBy"] == iso(at(25))
    window = next(e for e in found if e["kind"] == "in_force" and e["protection"] == "authPolicy:Printers")
    assert window["status"] == "confirmed" and window["at"] == iso(at(25)) and window["scope"]["count"] == 2
    assert "Printers" in window["title"] and window["control"] == "exo_basic_auth_policy"
    assert next(e for e in found if e["kind"] == "confirmed")["at"] == iso(at(26))
    opened = next(e for e in found if e["kind"] == "window_opened")
    assert opened["at"] == change["at"] == iso(at(1)) and found.index(opened) < found.index(change)  # effect above cause


def test_the_platform_dates_are_there_with_their_sources_and_say_whether_they_are_past():
    found = entries()
    platform = {e["source"]["id"]: e for e in found if e["kind"] == "platform"}
    assert platform["MC786329"]["at"] == "2026-12-31T00:00:00Z" and platform["MC786329"]["status"] == "upcoming"
    assert "SMTP AUTH Basic" in platform["MC786329"]["title"]
    assert platform["MC1184649"]["at"] == "2026-05-01T00:00:00Z" and platform["MC1184649"]["status"] == "past"
    assert all(e["source"]["url"].startswith("https://") for e in platform.values())
    later = entries(now=datetime(2027, 1, 2, tzinfo=timezone.utc))
    assert {e["status"] for e in later if e["kind"] == "platform"} == {"past"}
    assert len(PLATFORM_DATES) == 2


def test_the_managed_policy_switch_on_date_comes_from_control_1s_evidence():
    controls = [{"control": "entra_legacy_auth_blocked", "status": "fail", "evidence": {"candidates": [
        {"id": "m1", "displayName": "Microsoft-managed: Block legacy authentication", "microsoftManaged": True,
         "microsoftEnablesFrom": "2026-12-16T00:00:00Z"},
        {"id": "p2", "displayName": "Ours", "microsoftEnablesFrom": "2026-12-01T00:00:00Z"}]}},  # not managed
        {"control": "exo_smtp_auth_disabled", "evidence": "odd"}]
    managed = [e for e in entries(controls=controls) if e["kind"] == "managed_policy"]
    assert len(managed) == 1
    assert managed[0]["at"] == "2026-12-16T00:00:00Z" and managed[0]["status"] == "upcoming"
    assert "Microsoft-managed: Block legacy authentication" in managed[0]["title"]
    assert managed[0]["source"]["url"].startswith("https://learn.microsoft.com/")


def test_newest_first_and_bounded():
    history = [event("drift.strengthened", f"2026-11-{day:02d}T10:00:00Z",
                     {"section": "sharepoint", "item": "sharepoint.isLegacyAuthProtocolsEnabled",
                      "changes": [{"field": "isLegacyAuthProtocolsEnabled", "before": True, "after": False,
                                   "effect": "strengthened"}]}) for day in range(1, 21)]
    answer = build_timeline(history, None, now=NOW, limit=5)
    assert len(answer["entries"]) == 5 and answer["omitted"] == 20 + len(PLATFORM_DATES) - 5
    times = [e["at"] for e in build_timeline(history, None, now=NOW, limit=100)["entries"]]
    assert times == sorted(times, reverse=True)


def test_other_event_types_and_odd_shapes_are_ignored_not_fatal():
    odd = [None, "x", {"type": "control.failed", "at": "2026-11-23T09:00:00Z"},
           {"type": "drift.weakened", "at": "not a time", "details": "nope"},
           {"type": "enforcement.gap", "details": {"windowStartedAt": 5}},
           {"type": "config.changed", "at": "2026-11-23T09:00:00Z", "details": {"changes": [None, {"field": "x"}]}}]
    found = entries(odd, {"enforcement": "broken", "windows": "broken"})
    changes = [e for e in found if e["kind"] == "change"]
    assert len(changes) == 2 and {c["effect"] for c in changes} == {"weakened", "neutral"}
    assert all(e["kind"] != "control.failed" for e in found)


def test_rows_for_tables_and_the_report():
    rows = timeline_rows([WEAKENED], now=NOW)
    change = next(r for r in rows if r["kind"] == "change")
    assert change == {"when": "2026-11-23T08:20:00Z", "kind": "change", "what": change["what"],
                      "by": "admin@fabrikam.example", "change": "state: enabled → enabledForReportingButNotEnforced",
                      "inForce": "at once", "notes": ""}
    platform = next(r for r in rows if r["when"] == "2026-12-31T00:00:00Z")
    assert "MC786329: https://" in platform["notes"]

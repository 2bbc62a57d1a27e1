"""Scenario tests through replay (the same compare as the timer path): every event type, exactly once per real
transition (controls.md "Drift", product.md event table)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

from shared.cli.replay import replay
from shared.model import SOURCES, snapshot_from_json
from tests.builders import block_policy, snapshot_json

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
ADMIN = "admin@contoso.com"
POLICY_ID = "11111111-1111-1111-1111-111111111111"
ALLOW = {f"AllowBasicAuth{p}": False for p in ("ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook",
                                                "OutlookService", "Pop", "Powershell", "ReportingWebServices", "Rpc",
                                                "Smtp", "WebServices")}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def snap(hours: float, *, policies=None, transport=True, overrides=(), smtp_policy=False, signins=(), audits=(),
         security_defaults=False, unreachable=False, settings=None):
    if policies is None:
        policies = [block_policy(POLICY_ID, modifiedDateTime="2025-01-01T00:00:00Z")]
    mailboxes = [{"Identity": name, "PrimarySmtpAddress": f"{name}@contoso.com",
                  "ExternalDirectoryObjectId": f"{i:08d}-0000-4000-8000-000000000000",
                  "SmtpClientAuthenticationDisabled": False if name in overrides else None,
                  "PopEnabled": False, "ImapEnabled": False} for i, name in enumerate(["alice", "bob", "scanner"])]
    document = snapshot_json(
        policies=policies, transport=transport, security_defaults=security_defaults, settings=settings,
        collected_at=iso(at(hours)),
        graph_sources={"sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}, "signIns": list(signins),
                       "directoryAudits": list(audits)},
        exchange_sources={"organizationConfig": {"DefaultAuthenticationPolicy": "Default", "OAuth2ClientProfileEnabled": True},
                          "authenticationPolicies": [{"Name": "Default", **ALLOW, "AllowBasicAuthSmtp": smtp_policy}],
                          "casMailboxes": mailboxes, "casMailboxPlans": [], "users": []})
    if unreachable:
        error = {"status": 401, "code": "AADSTS7000215", "message": "the client secret is wrong"}
        document["graph"], document["exchange"] = {}, {}
        document["errors"] = {source: dict(error) for source in SOURCES}
    return snapshot_from_json(document)


def success(hours: float, app: str = "IMAP4", user: str = "sales@contoso.com") -> dict:
    return {"id": f"{user}-{hours}", "createdDateTime": iso(at(hours)), "userPrincipalName": user, "userId": "u1",
            "clientAppUsed": app, "ipAddress": "203.0.113.7", "status": {"errorCode": 0}}


def audit(hours: float, who: str = ADMIN, target: str = POLICY_ID) -> dict:
    return {"id": f"a-{hours}", "activityDateTime": iso(at(hours)), "activityDisplayName": "Update conditional access policy",
            "loggedByService": "Conditional Access", "initiatedBy": {"user": {"userPrincipalName": who}},
            "targetResources": [{"id": target, "type": "Policy"}]}


def kinds(events, hours=None):
    """(type, control) pairs, optionally only those raised by the snapshot taken at `hours`."""
    return [(e.type, e.control) for e in events if hours is None or e.at == at(hours)]


def test_first_snapshot_of_a_healthy_tenant_raises_nothing():
    assert replay([snap(0)]) == []


def test_the_same_snapshot_twice_raises_nothing_new():
    report_only = [block_policy(POLICY_ID, state="enabledForReportingButNotEnforced")]
    first = replay([snap(0), snap(1, policies=report_only)])
    again = replay([snap(0), snap(1, policies=report_only), snap(1, policies=report_only)])
    assert [e.to_json() for e in again] == [e.to_json() for e in first]


def test_policy_set_to_report_only_and_back():
    report_only = [block_policy(POLICY_ID, state="enabledForReportingButNotEnforced",
                                modifiedDateTime=iso(at(0.9)))]
    events = replay([snap(0), snap(1, policies=report_only, audits=[audit(0.9)]),
                     snap(2, policies=[block_policy(POLICY_ID, modifiedDateTime=iso(at(1.5)))])])
    assert sorted(kinds(events, 1)) == [("control.failed", "entra_legacy_auth_blocked"),
                                        ("drift.weakened", "entra_legacy_auth_blocked")]
    weakened = next(e for e in events if e.type == "drift.weakened")
    assert "state: enabled → enabledForReportingButNotEnforced" in weakened.summary
    assert weakened.details["changedBy"] == ADMIN and weakened.details["changedAt"] == iso(at(0.9))
    assert ADMIN in weakened.summary
    back = kinds(events, 2)
    assert ("drift.strengthened", "entra_legacy_auth_blocked") in back
    assert ("control.recovered", "entra_legacy_auth_blocked") in back
    # Switching the block back on starts a new enforcement window, from the policy's own modification time.
    started = next(e for e in events if e.type == "enforcement.window_started")
    assert started.details["windowStartedAt"] == iso(at(1.5))


def test_smtp_auth_reenabled_tenant_wide_then_by_one_mailbox():
    events = replay([snap(0), snap(1, transport="False"), snap(2, transport=True, overrides=("scanner",))])
    assert sorted(kinds(events, 1)) == [("basic_auth.reenabled", "exo_smtp_auth_disabled"),
                                        ("control.failed", "exo_smtp_auth_disabled")]
    at_two = kinds(events, 2)
    assert ("basic_auth.reenabled", "exo_smtp_auth_mailbox_overrides") in at_two
    assert ("control.failed", "exo_smtp_auth_mailbox_overrides") in at_two
    assert ("control.recovered", "exo_smtp_auth_disabled") in at_two
    mailbox = next(e for e in events if e.type == "basic_auth.reenabled" and e.at == at(2))
    assert "scanner@contoso.com" in mailbox.summary


def test_authentication_policy_flipping_allow_basic_auth_smtp():
    events = replay([snap(0), snap(1, smtp_policy=True), snap(2, smtp_policy=False)])
    reenabled = [e for e in events if e.type == "basic_auth.reenabled"]
    assert len(reenabled) == 1 and reenabled[0].at == at(1)
    assert "AllowBasicAuthSmtp: False → True" in reenabled[0].summary
    assert ("drift.strengthened", "exo_basic_auth_policy") in kinds(events, 2)


def test_new_block_inside_the_window_then_one_gap_not_repeated():
    none = []
    block = [block_policy(POLICY_ID, createdDateTime=iso(at(0.9)), modifiedDateTime=iso(at(0.9)))]
    series = [snap(0, policies=none),
              snap(1, policies=block, signins=[success(1.2)]),
              snap(3, policies=block, signins=[success(2.5)]),           # inside the window: expected, no gap
              snap(26, policies=block, signins=[success(25.5)]),         # E + 24h = 24.9 h: a gap
              snap(26.25, policies=block, signins=[success(25.5)])]      # overlapping collection: same sign-in
    events = replay(series)
    assert kinds(events, 1).count(("enforcement.window_started", "entra_legacy_signins_blocked")) == 1
    started = next(e for e in events if e.type == "enforcement.window_started")
    assert started.details["windowStartedAt"] == iso(at(0.9))
    assert [e for e in events if e.type == "enforcement.gap" and e.at < at(26)] == []
    gaps = [e for e in events if e.type == "enforcement.gap"]
    assert len(gaps) == 1 and gaps[0].at == at(26)
    assert kinds(events, 26.25) == []


def test_quiet_window_is_confirmed_once():
    block = [block_policy(POLICY_ID, createdDateTime=iso(at(0.9)), modifiedDateTime=iso(at(0.9)))]
    events = replay([snap(0, policies=[]), snap(1, policies=block, signins=[success(1.1)]),
                     snap(26, policies=block), snap(27, policies=block)])
    confirmed = [e for e in events if e.type == "enforcement.confirmed"]
    assert len(confirmed) == 1 and confirmed[0].at == at(26)


def test_flapping_setting_raises_one_event_per_real_transition():
    values = [True, "False", "False", True, True, "False", True]
    events = replay([snap(hour, transport=value) for hour, value in enumerate(values)])
    drift = [(e.at, e.type) for e in events if e.control == "exo_smtp_auth_disabled" and e.type.startswith(("drift", "basic"))]
    assert drift == [(at(1), "basic_auth.reenabled"), (at(3), "drift.strengthened"),
                     (at(5), "basic_auth.reenabled"), (at(6), "drift.strengthened")]


def test_unreachable_and_back_raises_no_control_storm():
    events = replay([snap(0, transport="False"), snap(1, unreachable=True), snap(2, unreachable=True),
                     snap(3, transport="False")])
    assert kinds(events, 1) == [("tenant.unreachable", None)]
    assert kinds(events, 2) == []
    assert kinds(events, 3) == [("tenant.recovered", None)]
    unreachable = next(e for e in events if e.type == "tenant.unreachable")
    assert "AADSTS7000215" in unreachable.summary


def test_cosmetic_rename_alerts_nobody():
    renamed = [block_policy(POLICY_ID, displayName="Block legacy auth (renamed)",
                            modifiedDateTime="2025-01-01T00:00:00Z")]
    assert replay([snap(0), snap(1, policies=renamed)]) == []


def test_new_unapproved_exclusion_is_weakened_and_names_the_id():
    contractor = "cccccccc-0000-0000-0000-000000000003"
    excluded = [block_policy(POLICY_ID, modifiedDateTime="2025-01-01T00:00:00Z",
                             **{"conditions.users.excludeUsers": [contractor]})]
    events = replay([snap(0), snap(1, policies=excluded)])
    weakened = next(e for e in events if e.type == "drift.weakened")
    assert contractor in weakened.summary
    assert ("control.failed", "entra_legacy_auth_blocked") in kinds(events, 1)


def test_control_that_can_no_longer_be_evaluated_raises_control_unknown():
    first = snap(0)
    partial = copy.deepcopy(json.loads(json.dumps(snap(1).to_json())))
    del partial["exchange"]["transportConfig"]
    partial["errors"] = {"exchange.transportConfig": {"status": 503, "code": "HTTP503", "message": "unavailable"}}
    events = replay([first, snapshot_from_json(partial)])
    # Both controls that read the transport config lose their verdict; nothing else moves.
    assert kinds(events) == [("control.unknown", "exo_smtp_auth_disabled"), ("control.unknown", "legacy_auth_exposure")]


def test_event_ids_are_stable_across_replays_and_distinct():
    series = [snap(0), snap(1, transport="False"), snap(2, transport=True)]
    first, second = replay(series), replay(series)
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == len(first)


def test_events_follow_the_contract_shape():
    for event in replay([snap(0), snap(1, transport="False")]):
        record = event.to_json()
        assert list(record) == ["at", "tenantId", "type", "control", "severity", "summary", "details"]
        json.dumps(record)


def test_incremental_signins_do_not_fake_a_recovery():
    """Sign-ins are fetched since the last success; those already seen stay in the evidence window (48 h)."""
    report_only = [block_policy(POLICY_ID, state="enabledForReportingButNotEnforced",
                                modifiedDateTime="2025-01-01T00:00:00Z")]
    series = [snap(0, policies=report_only, signins=[success(-1)]),  # legacy auth in use
              snap(1, policies=report_only),                          # incremental: nothing new
              snap(50, policies=report_only)]                         # 51 h after the last success
    events = replay(series)
    failed = [e for e in events if e.control == "entra_legacy_signins_blocked"]
    assert [(e.type, e.at) for e in failed] == [("control.failed", at(0)), ("control.recovered", at(50))]


def test_no_confirmation_after_a_gap_even_when_the_evidence_ages_out():
    block = [block_policy(POLICY_ID, createdDateTime=iso(at(0.9)), modifiedDateTime=iso(at(0.9)))]
    events = replay([snap(0, policies=[]), snap(1, policies=block), snap(26, policies=block, signins=[success(25.5)]),
                     snap(80, policies=block)])
    assert [e.type for e in events if e.type.startswith("enforcement.")] == ["enforcement.window_started",
                                                                             "enforcement.gap"]

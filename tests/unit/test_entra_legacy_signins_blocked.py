"""Control 2, rule by rule (controls.md §2): legacy sign-ins stop succeeding once the block has had time to bite."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.controls.entra_legacy_signins_blocked import check
from shared.controls.signins import LEGACY_CLIENT_APPS, is_legacy_signin, legacy_protocol
from shared.model import LICENCE_ERROR_CODE, EvaluationContext
from tests.builders import block_policy, snapshot

# The default scene: the block policy was last changed at E = 2026-11-21T08:00Z, so its window closed at
# 2026-11-22T08:00Z; the snapshot is collected at 2026-11-23T08:00Z (builders' default).
E = "2026-11-21T08:00:00Z"
CLOSES = "2026-11-22T08:00:00Z"


def signin(at: str = "2026-11-22T09:00:00Z", app: str = "IMAP4", code=0, user: str = "scanner@contoso.com",
           ip: str = "203.0.113.7", **extra):
    return {"id": f"{user}-{at}", "createdDateTime": at, "userPrincipalName": user,
            "userId": "26be570a-ae82-4189-b4e2-a37c6808512d", "ipAddress": ip, "clientAppUsed": app,
            "status": {"errorCode": code, "failureReason": "Other."}, **extra}


def verdict(signins, *, policies=None, context=EvaluationContext(), **kwargs):
    policies = [block_policy(modifiedDateTime=E)] if policies is None else policies
    return check(snapshot(policies=policies, graph_sources={"signIns": signins}, **kwargs), context)


# ---------------------------------------------------------------- control 1 passes: the enforcement window

def test_pending_inside_the_window_with_time_left():
    result = verdict([signin("2026-11-23T03:00:00Z")], policies=[block_policy(modifiedDateTime="2026-11-23T02:00:00Z")])
    assert result.status == "pending"
    assert result.evidence["windowStartedAt"] == "2026-11-23T02:00:00Z"
    assert result.evidence["windowClosesAt"] == "2026-11-24T02:00:00Z"
    assert result.evidence["secondsLeft"] == 18 * 3600
    assert result.evidence["successesInWindow"] == 1
    assert result.evidence["successesInWindowDetail"][0]["user"] == "scanner@contoso.com"
    assert "18h 00m left" in result.summary and "Block legacy auth 1111" in result.summary


def test_pending_without_any_sign_in_yet():
    result = verdict([], policies=[block_policy(modifiedDateTime="2026-11-23T07:30:00Z")])
    assert result.status == "pending"
    assert result.evidence["successesInWindow"] == 0


def test_a_success_after_the_window_is_an_enforcement_gap():
    result = verdict([signin("2026-11-22T09:00:00Z"), signin("2026-11-22T10:00:00Z"),
                      signin("2026-11-22T11:00:00Z", app="POP3", user="printer@contoso.com", ip="198.51.100.1")])
    assert result.status == "fail"
    assert "Enforcement gap" in result.summary and CLOSES in result.summary
    assert result.evidence["gapCount"] == 3
    rows = {(row["user"], row["protocol"]): row for row in result.evidence["gaps"]}
    assert rows[("scanner@contoso.com", "IMAP4")] == {
        "user": "scanner@contoso.com", "protocol": "IMAP4", "ipAddress": "203.0.113.7", "count": 2,
        "firstAt": "2026-11-22T09:00:00Z", "lastAt": "2026-11-22T10:00:00Z"}
    assert rows[("printer@contoso.com", "POP3")]["ipAddress"] == "198.51.100.1"


def test_gap_remediation_forces_new_tokens_for_the_user():
    result = verdict([signin()])
    assert "Set-User '26be570a-ae82-4189-b4e2-a37c6808512d' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)" \
        in result.remediation
    assert "sign-in logs" in result.remediation


def test_one_remediation_names_the_real_users_each_command_on_its_own_line():
    result = verdict([signin(), signin(user="printer@contoso.com", userId=None)])
    lines = result.remediation.splitlines()
    assert "<id>" not in result.remediation  # never the generic command beside the real ones
    commands = [line for line in lines if line.startswith("Set-User")]
    assert commands == ["Set-User '26be570a-ae82-4189-b4e2-a37c6808512d' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)",
                        "Set-User 'printer@contoso.com' -STSRefreshTokensValidFrom ([DateTime]::UtcNow)"]
    assert lines[0].endswith("force new tokens so the block bites now:")


def test_a_success_exactly_at_e_plus_h_is_a_gap():
    assert verdict([signin(CLOSES)]).status == "fail"
    assert verdict([signin("2026-11-22T08:00:00.0000000Z")]).status == "fail"  # Graph's 7 fractional digits


def test_a_success_one_second_before_e_plus_h_is_not_a_gap():
    result = verdict([signin("2026-11-22T07:59:59Z")])
    assert result.status == "pass"
    assert result.evidence["successesInWindow"] == 1


def test_successes_before_the_block_do_not_count():
    assert verdict([signin("2026-11-20T08:00:00Z")]).status == "pass"


def test_pass_when_quiet_after_the_window():
    result = verdict([signin("2026-11-22T12:00:00Z", code=53003)])
    assert result.status == "pass"
    assert result.evidence["legacyFailures"] == 1
    assert result.evidence["mechanism"] == "conditionalAccess"
    assert "holds" in result.summary


def test_custom_window_length_from_settings():
    policies = [block_policy(modifiedDateTime="2026-11-21T12:00:00Z")]
    late = [signin("2026-11-22T18:00:00Z")]  # E + 30h
    assert verdict(late, policies=policies).status == "fail"
    longer = verdict(late, policies=policies, settings={"enforcementWindowHours": 48})
    assert longer.status == "pending"  # collected at E + 44h, inside a 48-hour window
    assert longer.evidence["windowHours"] == 48
    assert longer.evidence["secondsLeft"] == 4 * 3600


def test_short_custom_window():
    policies = [block_policy(modifiedDateTime="2026-11-23T06:00:00Z")]
    assert verdict([], policies=policies, settings={"enforcementWindowHours": 1}).status == "pass"
    assert verdict([signin("2026-11-23T07:30:00Z")], policies=policies,
                   settings={"enforcementWindowHours": 1}).status == "fail"


def test_stored_block_effective_at_overrides_the_policy_dates():
    context = EvaluationContext(block_effective_at=datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc))
    result = verdict([signin("2026-11-23T07:00:00Z")], context=context)  # a gap by the policy date, not by state
    assert result.status == "pending"
    assert result.evidence["windowStartOrigin"] == "state"
    assert result.evidence["windowStartedAt"] == "2026-11-23T06:00:00Z"


def test_stored_block_effective_at_can_close_the_window_earlier_than_the_policy_date():
    context = EvaluationContext(block_effective_at=datetime(2026, 11, 1, tzinfo=timezone.utc))
    policies = [block_policy(modifiedDateTime="2026-11-23T07:00:00Z")]
    assert verdict([signin("2026-11-23T07:30:00Z")], policies=policies).status == "pending"
    assert verdict([signin("2026-11-23T07:30:00Z")], policies=policies, context=context).status == "fail"


def test_collected_before_the_block_took_effect_is_pending():
    context = EvaluationContext(block_effective_at=datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc))
    result = verdict([], context=context)
    assert result.status == "pending"
    assert result.evidence["secondsLeft"] == 25 * 3600


def test_created_date_is_used_when_modified_is_null():
    policies = [block_policy(modifiedDateTime=None, createdDateTime="2026-11-23T04:00:00Z")]
    result = verdict([], policies=policies)
    assert result.status == "pending"
    assert result.evidence["windowStartedAt"] == "2026-11-23T04:00:00Z"


def test_undated_policy_means_the_block_is_old():
    policies = [block_policy(modifiedDateTime=None, createdDateTime=None)]
    result = verdict([signin("2026-11-23T07:00:00Z")], policies=policies)
    assert result.status == "fail"
    assert result.evidence["windowStartOrigin"] == "undatedPolicies"


def test_newest_of_two_complementary_policies_starts_the_window():
    policies = [block_policy("1111aaaa-0000-0000-0000-000000000000", client_app_types=["exchangeActiveSync"],
                             modifiedDateTime="2025-01-01T00:00:00Z"),
                block_policy("2222bbbb-0000-0000-0000-000000000000", client_app_types=["other"],
                             modifiedDateTime="2026-11-23T01:00:00Z")]
    result = verdict([signin("2026-11-23T02:00:00Z")], policies=policies)
    assert result.status == "pending"
    assert result.evidence["windowStartedAt"] == "2026-11-23T01:00:00Z"


def test_security_defaults_have_no_policy_date_so_any_success_is_a_gap():
    result = verdict([signin("2026-11-23T07:00:00Z")], policies=[], security_defaults=True)
    assert result.status == "fail"
    assert result.evidence["mechanism"] == "securityDefaults"
    assert result.evidence["windowStartedAt"] is None
    assert "security defaults" in result.summary


def test_security_defaults_quiet_passes():
    result = verdict([signin(code=50126)], policies=[], security_defaults=True)
    assert result.status == "pass"
    assert result.evidence["windowStartOrigin"] == "securityDefaults"


def test_security_defaults_with_stored_start_can_be_pending():
    context = EvaluationContext(block_effective_at=datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc))
    result = verdict([signin("2026-11-23T07:00:00Z")], policies=[], security_defaults=True, context=context)
    assert result.status == "pending"


# ---------------------------------------------------------------- what counts as a legacy success

@pytest.mark.parametrize("code", [50126, 53003, 50053, "53003"])
def test_failed_sign_ins_are_ignored(code):
    result = verdict([signin(code=code)])
    assert result.status == "pass"
    assert result.evidence["legacyFailures"] == 1


@pytest.mark.parametrize("app", ["Browser", "Mobile Apps and Desktop clients", "", None, 42])
def test_non_legacy_client_apps_are_ignored(app):
    assert verdict([signin(app=app)]).status == "pass"


@pytest.mark.parametrize("app", sorted(LEGACY_CLIENT_APPS))
def test_every_legacy_client_app_of_the_spec_counts(app):
    assert verdict([signin(app=app)]).status == "fail"


def test_client_app_is_compared_ignoring_case_and_spacing():
    assert legacy_protocol("  authenticated   smtp ") == "Authenticated SMTP"
    assert verdict([signin(app="imap4")]).evidence["gaps"][0]["protocol"] == "IMAP4"


def test_legacy_client_app_list_is_the_specs():
    assert len(LEGACY_CLIENT_APPS) == 13
    assert is_legacy_signin({"clientAppUsed": "Other clients"})
    assert not is_legacy_signin({"clientAppUsed": "Browser"}) and not is_legacy_signin("IMAP4")


def test_error_code_zero_as_a_string_is_a_success():
    assert verdict([signin(code="0")]).status == "fail"


# ---------------------------------------------------------------- control 1 does not pass: legacy auth in use

def test_control_1_failing_and_a_legacy_success_fails_with_counts_per_protocol_and_user():
    signins = [signin(user="a@contoso.com"), signin("2026-11-22T10:00:00Z", user="a@contoso.com"),
               signin(app="POP3", user="b@contoso.com"), signin(app="Authenticated SMTP", user="a@contoso.com"),
               signin(app="IMAP4", user="c@contoso.com", code=50126)]
    result = verdict(signins, policies=[])
    assert result.status == "fail"
    assert "in use and not blocked" in result.summary
    assert result.evidence["byProtocol"] == {"IMAP4": 2, "POP3": 1, "Authenticated SMTP": 1}
    assert result.evidence["topUsers"][0] == {"user": "a@contoso.com", "count": 3}
    assert result.evidence["distinctUsers"] == 2
    assert result.evidence["legacyFailures"] == 1
    assert result.evidence["legacyAuthBlocked"] == "fail"
    assert "STSRefreshTokensValidFrom" in result.remediation


def test_control_1_failing_and_old_successes_still_fail():
    # Without a block there is no window: any success in the collected logs is legacy auth in use.
    assert verdict([signin("2026-01-01T00:00:00Z")], policies=[]).status == "fail"


def test_control_1_failing_and_no_legacy_success_passes():
    result = verdict([signin(code=50126), signin(app="Browser")], policies=[])
    assert result.status == "pass"
    assert "not known to be blocked" in result.summary


def test_control_1_report_only_counts_as_not_passing():
    result = verdict([signin("2026-11-23T07:59:00Z")],
                     policies=[block_policy(state="enabledForReportingButNotEnforced",
                                            modifiedDateTime="2026-11-23T07:00:00Z")])
    assert result.status == "fail"  # report-only blocks nothing, so no window applies


def test_control_1_unknown_and_a_legacy_success_fails():
    result = verdict([signin()], drop=("graph.conditionalAccessPolicies",))
    assert result.status == "fail"
    assert result.evidence["legacyAuthBlocked"] == "unknown"


# ---------------------------------------------------------------- collection

def test_licence_missing_is_not_applicable():
    errors = {"graph.signIns": {"status": 403, "code": LICENCE_ERROR_CODE,
                                "message": "Neither tenant is B2C or tenant doesn't have premium license"}}
    result = verdict([], drop=("graph.signIns",), errors=errors)
    assert result.status == "not_applicable"
    assert "Entra ID P1" in result.summary


def test_not_collected_is_unknown():
    result = verdict([], drop=("graph.signIns",))
    assert result.status == "unknown"
    assert result.evidence["missingSource"] == "graph.signIns"


def test_other_collection_errors_are_unknown():
    errors = {"graph.signIns": {"status": 403, "code": "Authorization_RequestDenied", "message": "no"}}
    result = verdict([], drop=("graph.signIns",), errors=errors)
    assert result.status == "unknown"
    assert "Authorization_RequestDenied" in result.summary


def test_a_graph_page_pasted_as_is_is_accepted():
    assert verdict({"value": [signin()]}).status == "fail"


# ---------------------------------------------------------------- odd input never crashes

@pytest.mark.parametrize("signins", ["IMAP4", 42, {"value": "x"}, {"unexpected": []}])
def test_sign_ins_that_are_not_a_list_are_unknown(signins):
    assert verdict(signins).status == "unknown"


def test_unreadable_items_are_skipped_and_counted():
    odd = ["IMAP4", 7, None, [signin()],
           {"clientAppUsed": "IMAP4", "status": "success"},
           {"clientAppUsed": "IMAP4", "status": {"errorCode": True}},
           {"clientAppUsed": "IMAP4", "status": {"errorCode": None}},
           {"clientAppUsed": "IMAP4"}]
    result = verdict(odd)
    assert result.status == "pass"
    assert result.evidence["unreadableSignIns"] == len(odd)


def test_success_with_an_unreadable_time_is_counted_not_judged_when_the_window_is_dated():
    result = verdict([signin(at="not a time"), signin(at=None)])
    assert result.status == "pass"
    assert result.evidence["successesWithUnreadableTime"] == 2
    assert "unreadable time" in result.summary


def test_success_with_an_unreadable_time_is_a_gap_when_the_block_is_old():
    result = verdict([signin(at="garbage")], policies=[], security_defaults=True)
    assert result.status == "fail"
    assert result.evidence["gaps"][0]["firstAt"] is None


def test_success_with_an_unreadable_time_still_shows_use_when_not_blocked():
    assert verdict([signin(at="garbage")], policies=[]).status == "fail"


def test_odd_user_fields_still_give_a_verdict():
    odd = signin(user=None, ip=None)
    odd.update(userPrincipalName=["x"], userId=None, userDisplayName=None)
    result = verdict([odd], policies=[])
    assert result.status == "fail"
    assert result.evidence["topUsers"][0]["user"] == "(unknown user)"

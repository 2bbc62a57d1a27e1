"""Control 1, rule by rule (controls.md §1)."""

from __future__ import annotations

import pytest

from shared.controls.entra_legacy_auth_blocked import check
from tests.builders import block_policy, snapshot

APPROVED_USER = "aaaaaaaa-0000-0000-0000-000000000001"


def verdict(**kwargs):
    return check(snapshot(**kwargs))


def test_security_defaults_on_passes_and_names_the_mechanism():
    result = verdict(security_defaults=True)
    assert result.status == "pass"
    assert result.evidence["mechanism"] == "securityDefaults"


def test_security_defaults_as_string_true_counts():
    assert verdict(security_defaults="True").status == "pass"


def test_one_policy_covering_both_legacy_client_types_passes():
    result = verdict(policies=[block_policy()])
    assert result.status == "pass"
    assert result.evidence["mechanism"] == "conditionalAccess"
    assert [p["id"] for p in result.evidence["policies"]] == ["11111111-1111-1111-1111-111111111111"]


def test_two_policies_one_type_each_pass_together():
    policies = [block_policy("1111aaaa-0000-0000-0000-000000000000", client_app_types=["exchangeActiveSync"]),
                block_policy("2222bbbb-0000-0000-0000-000000000000", client_app_types=["other"])]
    assert verdict(policies=policies).status == "pass"


def test_a_policy_covering_only_one_type_fails_naming_the_gap():
    result = verdict(policies=[block_policy(client_app_types=["exchangeActiveSync"])])
    assert result.status == "fail"
    assert "other" in result.summary


def test_report_only_policy_fails_and_says_report_only():
    result = verdict(policies=[block_policy(state="enabledForReportingButNotEnforced")])
    assert result.status == "fail"
    assert "report-only" in result.summary


def test_disabled_policy_fails():
    result = verdict(policies=[block_policy(state="disabled")])
    assert result.status == "fail"
    assert "disabled" in result.summary


def test_policy_that_grants_with_mfa_does_not_block():
    result = verdict(policies=[block_policy(**{"grantControls.builtInControls": ["mfa"]})])
    assert result.status == "fail"
    assert "instead of blocking" in result.summary


def test_policy_not_for_all_users_fails():
    result = verdict(policies=[block_policy(**{"conditions.users.includeUsers": ["someone"]})])
    assert result.status == "fail" and "all users" in result.summary


def test_policy_not_for_all_apps_fails():
    result = verdict(policies=[block_policy(**{"conditions.applications.includeApplications": ["app"]})])
    assert result.status == "fail" and "all cloud apps" in result.summary


@pytest.mark.parametrize(
    ("field", "kind"),
    [("conditions.users.excludeUsers", "users"), ("conditions.users.excludeGroups", "groups"),
     ("conditions.users.excludeRoles", "roles"), ("conditions.applications.excludeApplications", "applications")],
)
def test_exclusions_pass_only_when_approved(field, kind):
    policy = block_policy(**{field: [APPROVED_USER]})
    unapproved = verdict(policies=[policy])
    assert unapproved.status == "fail"
    assert f"unapproved {kind}" in unapproved.summary and APPROVED_USER in unapproved.summary
    approved = verdict(policies=[policy], settings={"approvedExclusions": {kind: [APPROVED_USER]}})
    assert approved.status == "pass"


def test_excluded_locations_need_approval():
    policy = block_policy(**{"conditions.locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}})
    assert verdict(policies=[policy]).status == "fail"
    approved = verdict(policies=[policy], settings={"approvedExclusions": {"locations": ["AllTrusted"]}})
    assert approved.status == "pass"


def test_guest_exclusion_needs_every_type_approved():
    policy = block_policy(**{"conditions.users.excludeGuestsOrExternalUsers": {
        "guestOrExternalUserTypes": "internalGuest,b2bCollaborationGuest",
        "externalTenants": {"membershipKind": "all"}}})
    partly = verdict(policies=[policy], settings={"approvedExclusions": {"guestOrExternalUserTypes": ["internalGuest"]}})
    assert partly.status == "fail" and "b2bCollaborationGuest" in partly.summary
    fully = verdict(policies=[policy], settings={"approvedExclusions": {
        "guestOrExternalUserTypes": ["internalGuest", "b2bCollaborationGuest"]}})
    assert fully.status == "pass"


def test_no_settings_means_no_exclusion_is_approved():
    assert verdict(policies=[block_policy(**{"conditions.users.excludeUsers": [APPROVED_USER]})]).status == "fail"


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [("conditions.locations", {"includeLocations": ["some-named-location"]}, "selected locations"),
     ("conditions.platforms", {"includePlatforms": ["android"]}, "device platforms"),
     ("conditions.platforms", {"includePlatforms": ["all"], "excludePlatforms": ["iOS"]}, "excludes device platforms"),
     ("conditions.userRiskLevels", ["high"], "userRiskLevels"),
     ("conditions.signInRiskLevels", ["medium"], "signInRiskLevels"),
     ("conditions.servicePrincipalRiskLevels", ["high"], "servicePrincipalRiskLevels"),
     ("conditions.insiderRiskLevels", ["elevated"], "insiderRiskLevels"),
     ("conditions.devices", {"deviceFilter": {"mode": "include", "rule": "device.isCompliant -eq True"}},
      "device filter")],
)
def test_narrowed_policy_does_not_block_legacy_auth(field, value, phrase):
    result = verdict(policies=[block_policy(**{field: value})])
    assert result.status == "fail"
    assert phrase in result.summary


def test_unnarrowing_values_still_pass():
    policy = block_policy(**{"conditions.locations": {"includeLocations": ["All"], "excludeLocations": []},
                             "conditions.platforms": {"includePlatforms": ["all"], "excludePlatforms": []}})
    assert verdict(policies=[policy]).status == "pass"


def test_no_policy_and_defaults_off_fails():
    result = verdict(policies=[])
    assert result.status == "fail"
    assert "no Conditional Access policy targets legacy clients" in result.summary


def test_summary_names_the_closest_candidate():
    closest = block_policy("1111aaaa-0000-0000-0000-000000000000", state="enabledForReportingButNotEnforced",
                           displayName="Almost there")
    farther = block_policy("2222bbbb-0000-0000-0000-000000000000", state="disabled", displayName="Far away",
                           **{"conditions.users.includeUsers": ["x"]})
    result = verdict(policies=[farther, closest])
    assert "'Almost there'" in result.summary


def test_policies_not_collected_and_defaults_off_is_unknown():
    result = verdict(drop=("graph.conditionalAccessPolicies",))
    assert result.status == "unknown"


def test_policies_failed_to_collect_is_unknown():
    errors = {"graph.conditionalAccessPolicies": {"status": 403, "code": "Authorization_RequestDenied", "message": "no"}}
    assert verdict(policies=[block_policy()], errors=errors).status == "unknown"


def test_defaults_unknown_and_an_enforced_policy_that_does_not_block_fails():
    result = verdict(policies=[block_policy(client_app_types=["browser"])], drop=("graph.securityDefaults",))
    assert result.status == "fail"
    assert result.evidence["securityDefaultsInferredOff"] is True


def test_defaults_unknown_and_no_enforced_policy_is_unknown():
    result = verdict(policies=[block_policy(state="disabled")], drop=("graph.securityDefaults",))
    assert result.status == "unknown"


def test_defaults_unknown_but_ca_blocks_passes():
    assert verdict(policies=[block_policy()], drop=("graph.securityDefaults",)).status == "pass"


def test_odd_policy_shapes_give_a_verdict_not_a_crash():
    result = verdict(policies=[None, "x", {"state": 3, "conditions": []}, block_policy()])
    assert result.status == "pass"


def managed_policy(state: str, created: str = "2026-11-01T00:00:00Z") -> dict:
    """Microsoft's own 'Block legacy authentication' policy as it appears in Graph: its name is the only mark."""
    return block_policy(displayName="Microsoft-managed: Block legacy authentication", state=state,
                        createdDateTime=created, modifiedDateTime=created)


def test_microsoft_managed_report_only_policy_says_when_microsoft_turns_it_on():
    # Created 2026-11-01, snapshot 2026-11-23: Microsoft enables it no less than 45 days after it appeared.
    result = verdict(policies=[managed_policy("enabledForReportingButNotEnforced")])
    assert result.status == "fail"
    assert "Microsoft-managed and report-only" in result.summary
    assert "on or after 2026-12-16 unless it is set to Off" in result.summary
    candidate = result.evidence["candidates"][0]
    assert candidate["microsoftManaged"] is True and candidate["microsoftEnablesFrom"] == "2026-12-16T00:00:00Z"


def test_microsoft_managed_policy_past_its_45_days_may_be_turned_on_any_time():
    result = verdict(policies=[managed_policy("enabledForReportingButNotEnforced", "2026-01-05T00:00:00Z")])
    assert "at any time now" in result.summary and "2026-02-19" in result.summary


def test_microsoft_managed_policy_counts_once_it_is_on():
    result = verdict(policies=[managed_policy("enabled")])
    assert result.status == "pass"
    assert result.evidence["policies"][0]["microsoftManaged"] is True
    assert "microsoftEnablesFrom" not in result.evidence["policies"][0]


def test_a_policy_named_like_a_managed_one_elsewhere_in_the_name_is_an_ordinary_policy():
    policy = block_policy(displayName="Copy of Microsoft-managed: Block legacy authentication",
                          state="enabledForReportingButNotEnforced")
    result = verdict(policies=[policy])
    assert "Microsoft-managed" not in result.summary.split("'")[-1]
    assert "microsoftManaged" not in result.evidence["candidates"][0]

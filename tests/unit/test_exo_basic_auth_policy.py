"""Control 5 (controls.md §5): an applied authentication policy (default or assigned) allowing basic auth fails."""

from __future__ import annotations

import time

import pytest

from shared.controls.exchange_objects import ALLOW_BASIC_AUTH_FIELDS
from shared.controls.exo_basic_auth_policy import METADATA, check
from shared.model import SOURCES
from tests.builders import snapshot


def policy(name: str, *allowed: str, value: object = True, **fields: object) -> dict:
    """A policy with every AllowBasicAuth* false except the named protocols (set to `value`)."""
    flags = {field: (value if field.removeprefix("AllowBasicAuth") in allowed else False)
             for field in ALLOW_BASIC_AUTH_FIELDS}
    return {"Name": name, "Identity": name, "Guid": f"guid-{name.lower().replace(' ', '-')}", **flags, **fields}


def user(upn: str, policy_name: object = None) -> dict:
    return {"UserPrincipalName": upn, "AuthenticationPolicy": policy_name}


def verdict(policies: object = (), users: object = (), default: object = None, org: object = None):
    org_config = org if org is not None else {"Identity": "contoso.onmicrosoft.com",
                                              "DefaultAuthenticationPolicy": default}
    return check(snapshot(exchange_sources={
        "authenticationPolicies": list(policies) if isinstance(policies, tuple) else policies,
        "users": list(users) if isinstance(users, tuple) else users,
        "organizationConfig": org_config,
    }))


def test_metadata_matches_the_module_and_known_sources():
    assert METADATA.id == "exo_basic_auth_policy" and METADATA.severity == "high"
    assert set(METADATA.sources) <= set(SOURCES)


def test_default_policy_allowing_basic_fails_counting_users_without_their_own_policy():
    users = [user("a@contoso.com"), user("b@contoso.com"), user("c@contoso.com", "Strict")]
    result = verdict([policy("Legacy", "Smtp"), policy("Strict")], users, default="Legacy")
    assert result.status == "fail"
    [finding] = result.evidence["appliedPoliciesAllowingBasic"]
    assert finding["policy"] == "Legacy" and finding["isDefault"] is True
    assert finding["protocols"] == ["Smtp"]
    assert finding["users"] == 2 and finding["inheritingUsers"] == 2 and finding["assignedUsers"] == 0


def test_user_assigned_policy_allowing_basic_fails_counting_its_users():
    users = [user("a@contoso.com", "Scanners"), user("b@contoso.com", "Scanners"), user("c@contoso.com")]
    result = verdict([policy("Scanners", "Smtp", "Pop"), policy("Block")], users, default="Block")
    assert result.status == "fail"
    [finding] = result.evidence["appliedPoliciesAllowingBasic"]
    assert finding == {"policy": "Scanners", "isDefault": False, "assignedUsers": 2, "inheritingUsers": 0,
                       "protocols": ["Smtp"], "users": 2}
    assert result.evidence["retiredProtocolsAllowed"] == [
        {"policy": "Scanners", "protocols": ["Pop"], "note": "no effect since Microsoft retired Basic for Pop"}]


@pytest.mark.parametrize("retired", ["Pop", "Imap", "ActiveSync", "WebServices", "Powershell", "Mapi"])
def test_basic_allowed_only_for_a_protocol_microsoft_retired_is_no_failure(retired):
    result = verdict([policy("Legacy", retired)], [user("a@contoso.com")], default="Legacy")
    assert result.status == "pass"
    assert result.evidence["retiredProtocolsAllowed"] == [
        {"policy": "Legacy", "protocols": [retired], "note": f"no effect since Microsoft retired Basic for {retired}"}]


def test_an_unreadable_smtp_flag_is_unknown_whatever_the_retired_ones_say():
    broken = {**policy("Legacy", "Pop"), "AllowBasicAuthSmtp": "perhaps"}
    assert verdict([broken], [user("a@contoso.com")], default="Legacy").status == "unknown"


def test_summary_names_the_policy_its_users_and_protocols():
    result = verdict([policy("Scanners", "Smtp")], [user("a@contoso.com", "Scanners")])
    assert "'Scanners'" in result.summary and "assigned to 1 user(s)" in result.summary and "Smtp" in result.summary


def test_default_policy_summary_says_it_covers_everyone_without_their_own():
    result = verdict([policy("Legacy printers", "Smtp")], [], default="Legacy printers")
    assert result.status == "fail"
    assert "organisation default: every user without a policy of their own" in result.summary


def test_remediation_names_the_policy_and_the_flag_that_still_matters():
    result = verdict([policy("Scanners", "Smtp", "Imap")], [user("a@contoso.com", "Scanners")])
    assert "Set-AuthenticationPolicy 'Scanners' -AllowBasicAuthSmtp:$false." in result.remediation
    assert "STSRefreshTokensValidFrom" in result.remediation


def test_user_explicitly_assigned_the_default_counts_under_it():
    users = [user("a@contoso.com", "Legacy"), user("b@contoso.com")]
    [finding] = verdict([policy("Legacy", "Smtp")], users, default="Legacy").evidence["appliedPoliciesAllowingBasic"]
    assert finding["users"] == 2 and finding["assignedUsers"] == 1 and finding["inheritingUsers"] == 1


def test_unapplied_policy_allowing_basic_passes_and_is_listed_as_informational():
    result = verdict([policy("Block"), policy("Old exception", "Smtp")], [user("a@contoso.com")], default="Block")
    assert result.status == "pass"
    assert result.evidence["unappliedPoliciesAllowingBasic"] == [{"policy": "Old exception", "protocols": ["Smtp"]}]
    assert result.evidence["appliedPolicies"] == [{"policy": "Block", "isDefault": True, "users": 1}]


def test_applied_policies_blocking_everything_pass_naming_them():
    result = verdict([policy("Block")], [user("a@contoso.com", "Block")], default="Block")
    assert result.status == "pass" and "'Block'" in result.summary


def test_no_policies_at_all_passes_with_a_note_about_service_side_defaults():
    result = verdict([], [user("a@contoso.com")])
    assert result.status == "pass"
    assert "no authentication policies exist" in result.summary
    assert "service-side defaults" in result.evidence["note"]


def test_policies_that_nobody_uses_pass_with_the_same_note():
    result = verdict([policy("Old", "Smtp")], [user("a@contoso.com")])
    assert result.status == "pass"
    assert "no authentication policy is applied" in result.summary and "note" in result.evidence


@pytest.mark.parametrize(("value", "status"), [("True", "fail"), ("true", "fail"), (True, "fail"),
                                               ("False", "pass"), (False, "pass")])
def test_string_booleans_are_read_like_booleans(value, status):
    assert verdict([policy("P", "Smtp", value=value)], [], default="P").status == status


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_user_policy_means_the_default_applies(blank):
    result = verdict([policy("Legacy", "Smtp")], [user("a@contoso.com", blank)], default="Legacy")
    assert result.evidence["appliedPoliciesAllowingBasic"][0]["inheritingUsers"] == 1


@pytest.mark.parametrize("reference", ["scanners", " SCANNERS ", "guid-scanners"])
def test_policy_references_match_case_insensitively_and_by_guid(reference):
    result = verdict([policy("Scanners", "Smtp")], [user("a@contoso.com", reference)])
    assert result.status == "fail"


def test_users_with_their_own_blocking_policy_are_not_counted_under_a_permissive_default():
    users = [user("a@contoso.com", "Block"), user("b@contoso.com", "Block")]
    [finding] = verdict([policy("Legacy", "Smtp"), policy("Block")], users,
                        default="Legacy").evidence["appliedPoliciesAllowingBasic"]
    assert finding["users"] == 0  # still applied: it governs every new user


def test_organization_config_as_a_one_item_list_is_read():
    org = [{"Identity": "contoso", "DefaultAuthenticationPolicy": "Legacy"}]
    assert verdict([policy("Legacy", "Smtp")], [], org=org).status == "fail"


def test_unresolved_policy_reference_is_unknown_not_pass():
    result = verdict([policy("Block")], [user("a@contoso.com", "Deleted policy")], default="Block")
    assert result.status == "unknown"
    assert "'Deleted policy'" in result.summary
    assert result.evidence["unresolvedPolicies"] == [{"policy": "Deleted policy", "users": 1, "isDefault": False}]


def test_default_policy_missing_from_the_list_is_unknown():
    result = verdict([], [user("a@contoso.com")], default="Gone")
    assert result.status == "unknown" and "'Gone'" in result.summary


def test_applied_policy_with_unreadable_flags_is_unknown():
    result = verdict([policy("P", "Smtp", value="maybe")], [], default="P")
    assert result.status == "unknown" and "unreadable AllowBasicAuth*" in result.summary


def test_a_failure_wins_over_doubts():
    users = [user("a@contoso.com", "Gone"), "garbage"]
    result = verdict([policy("Legacy", "Smtp")], users, default="Legacy")
    assert result.status == "fail" and result.evidence["unreadableUsers"] == 1


def test_unreadable_users_matter_only_when_some_policy_could_reopen_basic():
    users = [user("a@contoso.com"), 17, {"AuthenticationPolicy": ["x"]}]
    assert verdict([policy("Block")], users, default="Block").status == "pass"
    result = verdict([policy("Block"), policy("Legacy", "Smtp")], users, default="Block")
    assert result.status == "unknown" and result.evidence["unreadableUsers"] == 2


@pytest.mark.parametrize("source", METADATA.sources)
def test_missing_source_is_unknown(source):
    result = check(snapshot(exchange_sources={"authenticationPolicies": [], "users": [],
                                              "organizationConfig": {"DefaultAuthenticationPolicy": None}},
                            drop=(source,)))
    assert result.status == "unknown" and source in result.summary


def test_failed_collection_is_unknown_and_says_why():
    errors = {"exchange.users": {"status": 429, "code": "TooManyRequests", "message": "throttled"}}
    result = check(snapshot(exchange_sources={"authenticationPolicies": [], "users": [],
                                              "organizationConfig": {"DefaultAuthenticationPolicy": None}},
                            errors=errors))
    assert result.status == "unknown" and "TooManyRequests" in result.summary


@pytest.mark.parametrize(("policies", "users", "org"), [
    ({"Name": "P"}, [], {"DefaultAuthenticationPolicy": None}),
    ([], "users", {"DefaultAuthenticationPolicy": None}),
    ([], [], "config"),
    ([], [], {"Identity": "no default field"}),
    ([], [], {"DefaultAuthenticationPolicy": 3}),
    ([], [], []),
])
def test_malformed_sources_are_unknown(policies, users, org):
    assert verdict(policies, users, org=org).status == "unknown"


@pytest.mark.parametrize("policies", [[None, 5, "x", {"Identity": None}, {}],
                                      [{"Name": ["x"], "AllowBasicAuthSmtp": 1}]])
def test_unreadable_policies_are_counted_and_give_a_verdict(policies):
    result = verdict(policies, [user("a@contoso.com")])
    assert result.status == "pass"  # nobody references them, nothing is applied
    assert result.evidence["unreadablePolicies"] == len(policies)


def test_fifty_thousand_users_evaluate_in_one_quick_pass():
    users = [user(f"u{i}@contoso.com", "Scanners" if i % 100 == 0 else None) for i in range(50_000)]
    started = time.perf_counter()
    result = verdict([policy("Scanners", "Smtp"), policy("Block")], users, default="Block")
    assert time.perf_counter() - started < 5  # mostly snapshot building; the check itself is linear
    assert result.evidence["appliedPoliciesAllowingBasic"][0]["users"] == 500

"""Control 9, rule by rule (controls.md §9): a mailbox is exposed only when all three layers are open."""

from __future__ import annotations


import pytest

from shared.controls.legacy_auth_exposure import check
from tests.builders import block_policy, snapshot

ALICE = "aaaaaaaa-0000-0000-0000-000000000001"
BOB = "bbbbbbbb-0000-0000-0000-000000000002"
GROUP = "99999999-0000-0000-0000-00000000beef"


def mailbox(name: str = "alice", oid: str | None = ALICE, override=None, **extra):
    box = {"Identity": name, "PrimarySmtpAddress": f"{name}@contoso.com", "SmtpClientAuthenticationDisabled": override,
           **extra}
    if oid is not None:
        box["ExternalDirectoryObjectId"] = oid
    return box


def user(name: str = "alice", oid: str | None = ALICE, policy=None):
    entry = {"Identity": name, "UserPrincipalName": f"{name}@contoso.com", "AuthenticationPolicy": policy}
    if oid is not None:
        entry["ExternalDirectoryObjectId"] = oid
    return entry


def auth_policy(name: str, smtp=True):
    return {"Name": name, "Identity": name, "AllowBasicAuthSmtp": smtp, "AllowBasicAuthPop": False}


def verdict(mailboxes=None, *, users=None, auth_policies=None, default=None, transport=False, policies=None,
            security_defaults=False, **kwargs):
    """Defaults: every layer open (tenant SMTP AUTH on, no authentication policy, no CA block, defaults off)."""
    exchange = {
        "casMailboxes": [mailbox()] if mailboxes is None else mailboxes,
        "users": [user()] if users is None else users,
        "authenticationPolicies": auth_policies or [],
        "organizationConfig": {"Identity": "contoso.onmicrosoft.com", "DefaultAuthenticationPolicy": default},
    }
    exchange.update(kwargs.pop("exchange_sources", {}))
    return check(snapshot(policies=policies or [], security_defaults=security_defaults, transport=transport,
                          exchange_sources=exchange, **kwargs))


def test_all_layers_open_is_exposed():
    result = verdict([mailbox(override=False)])
    assert result.status == "fail"
    assert result.evidence["exposedCount"] == 1
    row = result.evidence["exposed"][0]
    assert row["mailbox"] == "alice@contoso.com" and row["ExternalDirectoryObjectId"] == ALICE
    assert "override" in row["smtpAuth"]
    assert "no authentication policy" in row["authenticationPolicy"]
    assert "no Conditional Access block" in row["entra"]
    assert row["closeAnyOf"]["smtpAuth"] == "Set-CASMailbox 'alice@contoso.com' -SmtpClientAuthenticationDisabled $true"
    assert "alice@contoso.com" in result.summary


# ---------------------------------------------------------------- layer (a): SMTP AUTH

def test_mailbox_override_true_closes_it():
    result = verdict([mailbox(override=True)])
    assert result.status == "pass"
    assert result.evidence["closedBy"]["smtpAuth"] == 1


def test_tenant_disabled_with_null_override_closes_it():
    assert verdict([mailbox(override=None)], transport=True).status == "pass"


def test_tenant_disabled_but_override_false_is_still_open():
    result = verdict([mailbox(override=False)], transport=True)
    assert result.status == "fail"
    assert "Set-CASMailbox 'alice@contoso.com' -SmtpClientAuthenticationDisabled $true" in result.remediation


def test_tenant_enabled_with_null_override_is_open():
    result = verdict([mailbox(override=None)], transport=False)
    assert result.status == "fail"
    assert "inherits the tenant" in result.evidence["exposed"][0]["smtpAuth"]
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $true" in result.remediation


@pytest.mark.parametrize("tenant", [None, "maybe"])
def test_tenant_value_not_true_leaves_it_open(tenant):
    assert verdict([mailbox(override=None)], transport=tenant).status == "fail"


def test_missing_override_field_is_not_null():
    box = mailbox()
    del box["SmtpClientAuthenticationDisabled"]
    result = verdict([box], transport=True)
    assert result.status == "unknown"
    assert result.evidence["possiblyExposedCount"] == 1


# ---------------------------------------------------------------- layer (b): authentication policy

def test_user_policy_blocking_basic_smtp_closes_it():
    result = verdict(users=[user(policy="Block Basic Auth")], auth_policies=[auth_policy("Block Basic Auth", False)])
    assert result.status == "pass"
    assert result.evidence["closedBy"]["authenticationPolicy"] == 1


def test_default_policy_blocking_basic_smtp_closes_it():
    result = verdict(users=[user(policy=None)], auth_policies=[auth_policy("Block Basic Auth", False)],
                     default="Block Basic Auth")
    assert result.status == "pass"


def test_users_own_policy_beats_the_default():
    policies = [auth_policy("Block Basic Auth", False), auth_policy("Scanners", True)]
    result = verdict(users=[user(policy="Scanners")], auth_policies=policies, default="Block Basic Auth")
    assert result.status == "fail"
    assert result.evidence["exposed"][0]["closeAnyOf"]["authenticationPolicy"] == \
        "Set-AuthenticationPolicy 'Scanners' -AllowBasicAuthSmtp:$false"
    blocked = verdict(users=[user(policy="Block Basic Auth")], auth_policies=policies, default="Scanners")
    assert blocked.status == "pass"


def test_no_policy_counts_as_allowing():
    result = verdict(auth_policies=[auth_policy("Unused", False)])
    assert result.status == "fail"
    assert "New-AuthenticationPolicy" in result.evidence["exposed"][0]["closeAnyOf"]["authenticationPolicy"]


def test_policy_names_match_case_insensitively():
    result = verdict(users=[user(policy="block basic auth")], auth_policies=[auth_policy("Block Basic Auth", False)])
    assert result.status == "pass"


def test_mailbox_without_user_entry_gets_the_default():
    result = verdict(users=[], auth_policies=[auth_policy("Block Basic Auth", False)], default="Block Basic Auth")
    assert result.status == "pass"
    assert result.evidence["mailboxesWithoutUserMatch"] == 1


def test_user_matched_by_upn_when_the_mailbox_has_no_object_id():
    result = verdict([mailbox(oid=None)], users=[user(oid=None, policy="Block")],
                     auth_policies=[auth_policy("Block", False)], policies=[])
    assert result.status == "pass"


def test_user_matched_by_identity_as_a_last_resort():
    box = mailbox(oid=None, PrimarySmtpAddress="shared@contoso.com")
    result = verdict([box], users=[user(oid=None, policy="Block")], auth_policies=[auth_policy("Block", False)])
    assert result.status == "pass"


def test_object_id_wins_over_a_matching_upn():
    users = [user("alice", oid=BOB, policy="Block"), user("other", oid=ALICE, policy=None)]
    result = verdict([mailbox("alice", oid=ALICE)], users=users, auth_policies=[auth_policy("Block", False)])
    assert result.status == "fail"  # ALICE's own entry (no policy) governs, not the UPN namesake


def test_a_upn_match_with_a_contradicting_object_id_is_refused():
    result = verdict([mailbox("alice", oid=ALICE)], users=[user("alice", oid=BOB, policy="Block")],
                     auth_policies=[auth_policy("Block", False)])
    assert result.status == "fail"
    assert result.evidence["mailboxesWithoutUserMatch"] == 1


def test_unknown_policy_name_is_possibly_exposed():
    result = verdict(users=[user(policy="Deleted policy")])
    assert result.status == "unknown"
    assert "was not found" in result.evidence["possiblyExposed"][0]["unsure"][0]


# ---------------------------------------------------------------- layer (c): Entra

def test_security_defaults_on_close_it():
    result = verdict(security_defaults=True)
    assert result.status == "pass"
    assert result.evidence["entraBlocksEveryone"] == "security defaults are on"


def test_ca_block_covering_other_closes_it():
    result = verdict(policies=[block_policy()])
    assert result.status == "pass"
    assert result.evidence["closedBy"]["entra"] == 1


def test_ca_block_covering_only_exchange_active_sync_does_not_close_it():
    assert verdict(policies=[block_policy(client_app_types=["exchangeActiveSync"])]).status == "fail"


@pytest.mark.parametrize("change", [{"state": "enabledForReportingButNotEnforced"}, {"state": "disabled"},
                                    {"conditions.userRiskLevels": ["high"]},
                                    {"grantControls.builtInControls": ["mfa"]}])
def test_ca_policy_that_does_not_qualify_does_not_close_it(change):
    assert verdict(policies=[block_policy(**change)]).status == "fail"


def test_an_approved_excluded_user_is_still_exposed():
    policy = block_policy(**{"conditions.users.excludeUsers": [ALICE]})
    result = verdict([mailbox("alice", ALICE), mailbox("bob", BOB)], users=[user("alice", ALICE), user("bob", BOB)],
                     policies=[policy], settings={"approvedExclusions": {"users": [ALICE]}})
    assert result.status == "fail"
    assert [row["mailbox"] for row in result.evidence["exposed"]] == ["alice@contoso.com"]
    assert "excluded by id" in result.evidence["exposed"][0]["entra"]
    assert ALICE in result.evidence["exposed"][0]["closeAnyOf"]["entra"]


def test_an_unapproved_exclusion_removes_only_the_excluded_user():
    policy = block_policy(**{"conditions.users.excludeUsers": [ALICE.upper()]})  # object ids compare ignoring case
    result = verdict([mailbox("alice", ALICE), mailbox("bob", BOB)], users=[], policies=[policy])
    assert result.evidence["exposedCount"] == 1 and result.evidence["exposed"][0]["mailbox"] == "alice@contoso.com"


def test_an_unapproved_location_exclusion_still_disqualifies_the_block():
    policy = block_policy(**{"conditions.locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}})
    assert verdict(policies=[policy]).status == "fail"
    approved = verdict(policies=[policy], settings={"approvedExclusions": {"locations": ["AllTrusted"]}})
    assert approved.status == "pass"  # it qualifies for control 1, so it counts as covering


def test_excluded_from_one_block_but_covered_by_another():
    policies = [block_policy("1111aaaa-0000-0000-0000-000000000000", **{"conditions.users.excludeUsers": [ALICE]}),
                block_policy("2222bbbb-0000-0000-0000-000000000000", client_app_types=["other"],
                             **{"conditions.users.excludeUsers": [BOB]})]
    assert verdict([mailbox("alice", ALICE)], policies=policies).status == "pass"
    both = [block_policy("1111aaaa-0000-0000-0000-000000000000", **{"conditions.users.excludeUsers": [ALICE]}),
            block_policy("2222bbbb-0000-0000-0000-000000000000", **{"conditions.users.excludeUsers": [ALICE]})]
    assert verdict([mailbox("alice", ALICE)], policies=both).status == "fail"


@pytest.mark.parametrize("field", ["conditions.users.excludeGroups", "conditions.users.excludeRoles"])
def test_an_excluded_group_or_role_makes_mailboxes_possibly_exposed(field):
    policy = block_policy(**{field: [GROUP]})
    result = verdict([mailbox("alice", ALICE), mailbox("bob", BOB, override=True)], policies=[policy],
                     settings={"approvedExclusions": {"groups": [GROUP], "roles": [GROUP]}})
    assert result.status == "unknown"  # not counted as exposed, but not shown closed either
    assert result.evidence["exposedCount"] == 0
    assert result.evidence["possiblyExposedCount"] == 1
    assert "group membership not expanded" in result.evidence["possiblyExposed"][0]["unsure"][0]
    assert "group membership not expanded" in result.summary


def test_possibly_exposed_are_listed_next_to_exposed_ones():
    group_policy = block_policy(**{"conditions.users.excludeGroups": [GROUP],
                                   "conditions.users.excludeUsers": [BOB]})
    result = verdict([mailbox("alice", ALICE), mailbox("bob", BOB)], users=[], policies=[group_policy])
    assert result.status == "fail"
    assert result.evidence["exposedCount"] == 1 and result.evidence["possiblyExposedCount"] == 1


def test_mailbox_without_object_id_cannot_be_checked_against_user_exclusions():
    policy = block_policy(**{"conditions.users.excludeUsers": [BOB]})
    assert verdict([mailbox(oid=None)], users=[], policies=[policy]).status == "unknown"
    assert verdict([mailbox(oid=None)], users=[], policies=[block_policy()]).status == "pass"


# ---------------------------------------------------------------- Exchange's string booleans

def test_string_booleans_are_accepted():
    assert verdict([mailbox(override="True")]).status == "pass"
    assert verdict([mailbox(override="False")], transport="True").status == "fail"
    assert verdict([mailbox(override=None)], transport="True").status == "pass"
    assert verdict(users=[user(policy="P")], auth_policies=[auth_policy("P", "False")]).status == "pass"
    assert verdict(users=[user(policy="P")], auth_policies=[auth_policy("P", "True")]).status == "fail"
    assert verdict(security_defaults="True").status == "pass"


# ---------------------------------------------------------------- missing sources

@pytest.mark.parametrize("source", ["exchange.casMailboxes", "exchange.transportConfig",
                                    "exchange.authenticationPolicies", "exchange.organizationConfig",
                                    "exchange.users", "graph.conditionalAccessPolicies"])
def test_a_missing_source_is_unknown_and_named(source):
    result = verdict(drop=(source,))
    assert result.status == "unknown"
    assert source in result.summary
    assert result.evidence["missingSources"] == [source]


def test_a_failed_source_is_unknown_with_its_error():
    errors = {"exchange.casMailboxes": {"status": 403, "code": "HTTP403", "message": "no RBAC role"}}
    result = verdict(errors=errors)
    assert result.status == "unknown"
    assert "no RBAC role" in result.summary


def test_several_missing_sources_are_all_named():
    result = verdict(drop=("exchange.users", "graph.conditionalAccessPolicies"))
    assert result.evidence["missingSources"] == ["exchange.users", "graph.conditionalAccessPolicies"]
    assert "exchange.users" in result.summary and "graph.conditionalAccessPolicies" in result.summary


def test_security_defaults_on_make_conditional_access_unnecessary():
    assert verdict(security_defaults=True, drop=("graph.conditionalAccessPolicies",)).status == "pass"


def test_missing_security_defaults_are_unknown_unless_a_ca_policy_is_enforced():
    result = verdict(drop=("graph.securityDefaults",))
    assert result.status == "unknown" and "graph.securityDefaults" in result.summary
    # An enforced CA policy means security defaults are off, so the verdict stands without them.
    enforced = block_policy(client_app_types=["browser"])
    assert verdict(drop=("graph.securityDefaults",), policies=[enforced]).status == "fail"


# ---------------------------------------------------------------- odd input never crashes

def test_unreadable_mailboxes_are_skipped_and_counted():
    result = verdict([["alice"], "bob", None, 5, mailbox(override=True)])
    assert result.status == "pass"
    assert result.evidence["unreadableMailboxes"] == 4
    assert "4 unreadable" in result.summary


@pytest.mark.parametrize(("source", "value"), [("casMailboxes", {"Identity": "x"}), ("users", "alice"),
                                               ("authenticationPolicies", {"Name": "x"}), ("transportConfig", "on"),
                                               ("organizationConfig", ["x"]), ("organizationConfig", {"Name": "x"})])
def test_unreadable_sources_are_unknown(source, value):
    result = verdict(exchange_sources={source: value})
    assert result.status == "unknown"
    assert result.evidence["unreadableSource"] == f"exchange.{source}"


def test_odd_items_everywhere_still_give_a_verdict():
    result = verdict([mailbox(override=["x"]), mailbox("bob", BOB, override=False, ExternalDirectoryObjectId=7)],
                     users=["x", None, {"AuthenticationPolicy": 5, "ExternalDirectoryObjectId": ALICE}],
                     auth_policies=["x", {"Name": None}, {"Name": "{brace}", "AllowBasicAuthSmtp": True}],
                     policies=[None, "x", {"state": "enabled", "conditions": []}])
    assert result.status in ("fail", "unknown")
    assert result.evidence["exposedCount"] == 1  # bob: no object id, but no CA block exists to exclude him from


def test_policy_names_with_braces_do_not_break_the_fix():
    result = verdict(users=[user(policy="{odd}")], auth_policies=[auth_policy("{odd}", True)])
    assert "Set-AuthenticationPolicy '{odd}' -AllowBasicAuthSmtp:$false" in result.remediation


def test_evidence_is_capped_but_counts_are_full():
    boxes = [mailbox(f"user{i}", f"{i:08d}-0000-0000-0000-000000000000") for i in range(60)]
    result = verdict(boxes, users=[])
    assert result.evidence["exposedCount"] == 60
    assert len(result.evidence["exposed"]) == 50
    assert "57 more" in result.summary


def test_remediation_names_a_command_per_open_layer():
    result = verdict([mailbox(override=False)], users=[user(policy="Legacy")], auth_policies=[auth_policy("Legacy")])
    text = result.remediation
    assert "Set-CASMailbox 'alice@contoso.com' -SmtpClientAuthenticationDisabled $true" in text
    assert "Set-AuthenticationPolicy 'Legacy' -AllowBasicAuthSmtp:$false" in text
    assert "Conditional Access" in text and "STSRefreshTokensValidFrom" in text


def test_fifty_thousand_mailboxes_and_two_hundred_policies_are_all_judged():
    """How fast is benchmarks/evaluate_large_tenant.py's job (a figure, not a timed test that fails on a busy
    machine); here: the big shape is judged in full."""
    ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(50_000)]
    boxes = [mailbox(f"user{i}", oid, override=None if i % 3 else False) for i, oid in enumerate(ids)]
    users = [user(f"user{i}", oid, policy="Legacy" if i % 2 else None) for i, oid in enumerate(ids)]
    policies = [block_policy(f"{j:08d}-1111-4000-8000-000000000000",
                             **{"conditions.users.excludeUsers": ids[j:j + 100],
                                "conditions.users.excludeGroups": [GROUP] if j % 7 == 0 else []})
                for j in range(200)]
    document = snapshot(policies=policies, transport=False, exchange_sources={
        "casMailboxes": boxes, "users": users, "authenticationPolicies": [auth_policy("Legacy")],
        "organizationConfig": {"DefaultAuthenticationPolicy": None}})
    result = check(document)
    assert result.evidence["mailboxesEvaluated"] == 50_000

"""The shared Exchange helpers: policy resolution, mailbox naming and robust reading (used by controls 4-6 and 9)."""

from __future__ import annotations

import pytest

from shared.controls.exchange_objects import (ALLOW_BASIC_AUTH_FIELDS, Unreadable, assigned_policy_name,
                                              basic_auth_flags, count_assignments, default_policy_name,
                                              effective_policy_name, mailbox_brief, mailbox_id, mailbox_label,
                                              name_some, policies_by_name, policy_key, policy_name, ps_quote,
                                              read_objects, users_by_object_id)

ORG = {"Identity": "contoso.onmicrosoft.com", "DefaultAuthenticationPolicy": "Block Basic Auth"}


def test_the_twelve_allow_basic_auth_fields():
    assert len(ALLOW_BASIC_AUTH_FIELDS) == len(set(ALLOW_BASIC_AUTH_FIELDS)) == 12
    assert {"AllowBasicAuthSmtp", "AllowBasicAuthPop", "AllowBasicAuthImap", "AllowBasicAuthWebServices"} \
        <= set(ALLOW_BASIC_AUTH_FIELDS)


def test_effective_policy_is_the_users_own_else_the_default():
    assert effective_policy_name({"AuthenticationPolicy": "Scanners"}, ORG) == "Scanners"
    assert effective_policy_name({"AuthenticationPolicy": None}, ORG) == "Block Basic Auth"
    assert effective_policy_name({"AuthenticationPolicy": "  "}, ORG) == "Block Basic Auth"
    assert effective_policy_name({}, [ORG]) == "Block Basic Auth"  # one-item list, as the cmdlet answers
    assert effective_policy_name({}, {"DefaultAuthenticationPolicy": None}) is None


@pytest.mark.parametrize(("user", "org"), [("alice", ORG), ({"AuthenticationPolicy": 3}, ORG),
                                           ({}, "config"), ({}, {"Identity": "no field"}),
                                           ({}, {"DefaultAuthenticationPolicy": ["x"]})])
def test_unreadable_inputs_raise_unreadable_rather_than_guess(user, org):
    with pytest.raises(Unreadable):
        effective_policy_name(user, org)


def test_own_policy_is_enough_even_when_the_org_config_is_unreadable():
    assert effective_policy_name({"AuthenticationPolicy": "Scanners"}, None) == "Scanners"
    assert assigned_policy_name({"AuthenticationPolicy": " Scanners "}) == "Scanners"
    assert default_policy_name({"DefaultAuthenticationPolicy": ""}) is None


def test_policies_by_name_resolves_name_identity_and_guid_case_insensitively():
    scanners = {"Name": "Scanners", "Identity": "Scanners-id", "Guid": "3B3B"}
    index = policies_by_name([scanners, {"Name": "scanners"}, None, {"Identity": None}, "x"])
    assert index[policy_key("SCANNERS")] is scanners  # the first of a duplicate name wins
    assert index[policy_key("scanners-ID")] is scanners and index[policy_key("3b3b")] is scanners
    assert policies_by_name({"Name": "not a list"}) == {}


def test_policy_key_and_name():
    assert policy_key(" Block ") == "block"
    assert policy_key("") is None and policy_key(None) is None and policy_key(5) is None
    assert policy_name({"Identity": "only identity"}) == "only identity"
    assert policy_name({"Name": 3}) is None and policy_name("x") is None


def test_basic_auth_flags_read_string_booleans_and_mark_unreadable_as_none():
    flags = basic_auth_flags({"AllowBasicAuthSmtp": "True", "AllowBasicAuthPop": False, "AllowBasicAuthImap": 1})
    assert flags["Smtp"] is True and flags["Pop"] is False and flags["Imap"] is None
    assert flags["Rpc"] is None  # missing
    assert len(flags) == 12


def test_count_assignments_in_one_pass():
    users = [{"AuthenticationPolicy": "Scanners"}, {"AuthenticationPolicy": "SCANNERS"}, {"AuthenticationPolicy": ""},
             {}, "junk", {"AuthenticationPolicy": 7}]
    usage = count_assignments(users)
    assert usage.assigned == {"scanners": 2} and usage.spelled == {"scanners": "Scanners"}
    assert usage.inheriting == 2 and usage.unreadable == 2
    assert count_assignments({"not": "a list"}).inheriting == 0


def test_users_by_object_id():
    alice = {"UserPrincipalName": "alice@contoso.com", "ExternalDirectoryObjectId": "26BE570A"}
    assert users_by_object_id([alice, {"ExternalDirectoryObjectId": None}, "x"]) == {"26be570a": alice}


def test_mailbox_naming_prefers_the_address_then_identity_then_object_id():
    assert mailbox_label({"Identity": "scanner", "PrimarySmtpAddress": "scanner@contoso.com"}) == "scanner@contoso.com"
    assert mailbox_label({"Identity": "scanner", "PrimarySmtpAddress": ""}) == "scanner"
    assert mailbox_label({"ExternalDirectoryObjectId": "26be"}) == "26be"
    assert mailbox_label({"Identity": 5}) == "(mailbox without identity)" and mailbox_id({"Identity": 5}) is None
    assert mailbox_label("scanner") == "(unreadable mailbox)" and mailbox_id("scanner") is None
    assert mailbox_brief({"Identity": "scanner", "PrimarySmtpAddress": None, "PopEnabled": True}) == \
        {"Identity": "scanner"}


def test_read_objects_splits_usable_items_from_unreadable_ones():
    objects = read_objects([{"a": 1}, "x", None, {"b": 2}])
    assert objects is not None and objects.items == [{"a": 1}, {"b": 2}] and objects.unreadable == 2
    assert read_objects({"a": 1}) is None and read_objects(None) is None


def test_ps_quote_and_name_some():
    assert ps_quote("O'Brien") == "'O''Brien'"
    assert name_some(["a", "b", "c", "d"], 25) == "a, b, c and 22 more"
    assert name_some(["a"], 1) == "a"

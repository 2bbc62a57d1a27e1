"""Control 4 (controls.md §4): an explicit per-mailbox SmtpClientAuthenticationDisabled=False fails; null inherits."""

from __future__ import annotations

import pytest

from shared.controls.exo_smtp_auth_mailbox_overrides import METADATA, check
from shared.model import SOURCES
from tests.builders import snapshot

SOURCE = "exchange.casMailboxes"


def mailbox(name: str, value: object = None, **fields: object) -> dict:
    return {"Identity": name, "PrimarySmtpAddress": f"{name}@contoso.com", "ExternalDirectoryObjectId": f"id-{name}",
            "SmtpClientAuthenticationDisabled": value, **fields}


def verdict(mailboxes: object):
    return check(snapshot(exchange_sources={"casMailboxes": mailboxes}))


def test_metadata_matches_the_module_and_known_sources():
    assert METADATA.id == "exo_smtp_auth_mailbox_overrides" and METADATA.severity == "high"
    assert set(METADATA.sources) <= set(SOURCES)


@pytest.mark.parametrize("value", [False, "False", "false"])
def test_explicit_false_override_fails(value):
    result = verdict([mailbox("scanner", value), mailbox("alice")])
    assert result.status == "fail"
    assert result.evidence["overrideCount"] == 1
    assert result.evidence["overrides"] == [{"Identity": "scanner", "PrimarySmtpAddress": "scanner@contoso.com",
                                             "ExternalDirectoryObjectId": "id-scanner"}]


def test_null_inherits_the_tenant_and_passes():
    result = verdict([mailbox("alice", None), mailbox("bob", None)])
    assert result.status == "pass"
    assert result.evidence["inheriting"] == 2 and result.evidence["overrideCount"] == 0


@pytest.mark.parametrize("value", [True, "True"])
def test_explicitly_disabled_mailbox_is_not_an_override(value):
    result = verdict([mailbox("alice", value)])
    assert result.status == "pass"
    assert result.evidence["explicitlyDisabled"] == 1


def test_no_mailboxes_passes():
    assert verdict([]).status == "pass"


def test_summary_names_the_mailbox_and_the_reason():
    result = verdict([mailbox("scanner", False)])
    assert "scanner@contoso.com" in result.summary
    assert "SmtpClientAuthenticationDisabled is False" in result.summary


def test_remediation_names_the_overriding_mailbox():
    result = verdict([mailbox("scanner", False)])
    assert result.remediation == "Set-CASMailbox 'scanner@contoso.com' -SmtpClientAuthenticationDisabled $null"


def test_many_overrides_remediation_spells_out_five_then_the_bulk_command():
    result = verdict([mailbox(f"m{i}", False) for i in range(8)])
    assert result.remediation.count("Set-CASMailbox 'm") == 5
    assert "the other 3:" in result.remediation and "Where-Object" in result.remediation


def test_evidence_caps_at_twenty_with_the_full_count():
    result = verdict([mailbox(f"m{i:02}", False) for i in range(25)] + [mailbox("alice")])
    assert result.evidence["overrideCount"] == 25
    assert len(result.evidence["overrides"]) == 20
    assert result.evidence["overrides"][0]["PrimarySmtpAddress"] == "m00@contoso.com"
    assert "25 mailbox(es)" in result.summary and "and 22 more" in result.summary


def test_mailbox_known_only_by_identity_is_named_by_identity():
    result = verdict([{"Identity": "scanner", "SmtpClientAuthenticationDisabled": False}])
    assert result.status == "fail" and "scanner" in result.summary
    assert result.evidence["overrides"] == [{"Identity": "scanner"}]


def test_missing_source_is_unknown():
    result = check(snapshot(drop=(SOURCE,)))
    assert result.status == "unknown" and SOURCE in result.summary


def test_failed_collection_is_unknown_and_says_why():
    result = check(snapshot(errors={SOURCE: {"status": 403, "code": "HTTP403", "message": "needs Global Reader"}}))
    assert result.status == "unknown"
    assert "403" in result.summary and "needs Global Reader" in result.summary


@pytest.mark.parametrize("value", [{"Identity": "x"}, "mailboxes", 7, True])
def test_source_that_is_not_a_list_is_unknown(value):
    result = verdict(value)
    assert result.status == "unknown" and "expected a list" in result.summary


def test_unreadable_mailboxes_are_counted_and_do_not_hide_an_override():
    result = verdict(["scanner", 42, None, mailbox("scanner", False)])
    assert result.status == "fail"
    assert result.evidence["unreadable"] == 3


@pytest.mark.parametrize("bad", ["scanner", ["nested"], {"Identity": "no-field"}, mailbox("odd", 0),
                                 mailbox("odd", "maybe"), mailbox("odd", {"value": False})])
def test_unreadable_mailbox_without_overrides_is_unknown_not_pass(bad):
    result = verdict([mailbox("alice"), bad])
    assert result.status == "unknown"
    assert result.evidence["unreadable"] == 1 and "could not be read" in result.summary


def test_missing_field_is_not_treated_as_inherit():
    result = verdict([{"Identity": "alice", "PrimarySmtpAddress": "alice@contoso.com"}])
    assert result.status == "unknown"


def test_identity_fields_of_the_wrong_type_still_give_a_verdict():
    result = verdict([{"Identity": 5, "PrimarySmtpAddress": ["x"], "SmtpClientAuthenticationDisabled": "False"}])
    assert result.status == "fail"
    assert "(mailbox without identity)" in result.summary
    assert result.remediation.startswith("Get-CASMailbox -ResultSize Unlimited")  # nothing to name: bulk fix only

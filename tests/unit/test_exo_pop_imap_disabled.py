"""Control 6 (controls.md §6): mailboxes with POP or IMAP on fail; mailbox plans are evidence, not the verdict."""

from __future__ import annotations

import pytest

from shared.controls.exo_pop_imap_disabled import METADATA, check
from shared.model import SOURCES
from tests.builders import snapshot

MAILBOXES, PLANS = "exchange.casMailboxes", "exchange.casMailboxPlans"


def mailbox(name: str, pop: object = False, imap: object = False) -> dict:
    return {"Identity": name, "PrimarySmtpAddress": f"{name}@contoso.com", "PopEnabled": pop, "ImapEnabled": imap}


def plan(name: str, pop: object = False, imap: object = False) -> dict:
    return {"Name": name, "PopEnabled": pop, "ImapEnabled": imap, "ActiveSyncEnabled": True}


def verdict(mailboxes: object, plans: object = (), **kwargs):
    sources = {"casMailboxes": mailboxes, "casMailboxPlans": list(plans) if isinstance(plans, tuple) else plans}
    return check(snapshot(exchange_sources=sources, **kwargs))


def test_metadata_matches_the_module_and_known_sources():
    assert METADATA.id == "exo_pop_imap_disabled" and METADATA.severity == "low"
    assert set(METADATA.sources) <= set(SOURCES)


def test_all_off_passes():
    result = verdict([mailbox("alice"), mailbox("bob")])
    assert result.status == "pass"
    assert result.evidence["popEnabledCount"] == 0 and result.evidence["imapEnabledCount"] == 0


def test_pop_only_fails_counting_pop():
    result = verdict([mailbox("scanner", pop=True), mailbox("alice")])
    assert result.status == "fail"
    assert result.evidence["popEnabledCount"] == 1 and result.evidence["popEnabled"] == ["scanner@contoso.com"]
    assert result.evidence["imapEnabledCount"] == 0
    assert "(POP on 1)" in result.summary


def test_imap_only_fails_counting_imap():
    result = verdict([mailbox("crm", imap=True)])
    assert result.status == "fail"
    assert result.evidence["imapEnabledCount"] == 1 and result.evidence["popEnabledCount"] == 0
    assert "IMAP on 1" in result.summary


def test_mailbox_with_both_is_counted_once_in_total_and_once_per_protocol():
    result = verdict([mailbox("scanner", pop=True, imap=True)])
    assert result.summary.startswith("1 mailbox(es)")
    assert result.evidence["popEnabledCount"] == result.evidence["imapEnabledCount"] == 1


@pytest.mark.parametrize(("value", "status"), [("True", "fail"), ("true", "fail"), ("False", "pass")])
def test_string_booleans_are_read_like_booleans(value, status):
    assert verdict([mailbox("m", pop=value, imap="False")]).status == status


def test_summary_and_remediation_name_the_mailbox():
    result = verdict([mailbox("scanner", pop=True)])
    assert "scanner@contoso.com" in result.summary
    assert result.remediation == "Set-CASMailbox 'scanner@contoso.com' -PopEnabled $false -ImapEnabled $false"


def test_evidence_caps_at_twenty_per_protocol_with_full_counts():
    result = verdict([mailbox(f"p{i:02}", pop=True) for i in range(30)] + [mailbox(f"i{i:02}", imap=True)
                                                                          for i in range(21)])
    assert result.evidence["popEnabledCount"] == 30 and len(result.evidence["popEnabled"]) == 20
    assert result.evidence["imapEnabledCount"] == 21 and len(result.evidence["imapEnabled"]) == 20
    assert result.summary.startswith("51 mailbox(es)")
    assert result.remediation.count("Set-CASMailbox 'p") == 5 and "the other 46:" in result.remediation


def test_plans_enabling_pop_imap_are_listed_in_evidence_and_in_the_fix():
    result = verdict([mailbox("scanner", pop=True)], [plan("ExchangeOnlineEnterprise", pop=True, imap="True"),
                                                      plan("ExchangeOnline")])
    assert result.evidence["plansEnablingPopImap"] == [{"plan": "ExchangeOnlineEnterprise",
                                                         "protocols": ["POP", "IMAP"]}]
    assert "Set-CASMailboxPlan 'ExchangeOnlineEnterprise' -PopEnabled $false -ImapEnabled $false" \
        in result.remediation


def test_plans_alone_do_not_fail_but_are_reported():
    result = verdict([mailbox("alice")], [plan("ExchangeOnlineEnterprise", pop=True)])
    assert result.status == "pass"
    assert "1 mailbox plan(s) enable POP/IMAP for new mailboxes" in result.summary
    assert result.remediation.startswith("Set-CASMailboxPlan 'ExchangeOnlineEnterprise'")


def test_missing_plans_only_remove_that_evidence_with_a_note():
    result = verdict([mailbox("scanner", imap=True)], drop=(PLANS,))
    assert result.status == "fail"
    assert "not collected" in result.evidence["plansNote"]


def test_failed_plan_collection_is_noted_with_the_reason():
    result = verdict([mailbox("alice")], errors={PLANS: {"status": 403, "code": "HTTP403", "message": "forbidden"}})
    assert result.status == "pass" and "403 forbidden" in result.evidence["plansNote"]


def test_missing_mailboxes_are_unknown():
    result = check(snapshot(drop=(MAILBOXES,)))
    assert result.status == "unknown" and MAILBOXES in result.summary


def test_failed_mailbox_collection_is_unknown_and_says_why():
    result = verdict(None, errors={MAILBOXES: {"status": 401, "code": "HTTP401", "message": "no Exchange.ManageAsApp"}})
    assert result.status == "unknown" and "401" in result.summary and "Exchange.ManageAsApp" in result.summary


@pytest.mark.parametrize("value", [{"Identity": "m"}, "mailboxes", 3])
def test_mailboxes_that_are_not_a_list_are_unknown(value):
    assert verdict(value).status == "unknown"


@pytest.mark.parametrize("bad", ["scanner", None, {"Identity": "m"}, mailbox("m", pop=1), mailbox("m", imap=None)])
def test_unreadable_mailbox_without_findings_is_unknown(bad):
    result = verdict([mailbox("alice"), bad])
    assert result.status == "unknown" and "could not be read" in result.summary


def test_unreadable_mailboxes_are_counted_and_do_not_hide_a_finding():
    result = verdict(["junk", mailbox("scanner", pop=True)])
    assert result.status == "fail" and result.evidence["unreadable"] == {"POP": 1, "IMAP": 1}


@pytest.mark.parametrize("plans", ["plans", {"Name": "x"}, [None, "x", {"Name": 5, "PopEnabled": 2}]])
def test_malformed_plans_give_a_verdict_from_the_mailboxes(plans):
    result = verdict([mailbox("alice")], plans)
    assert result.status == "pass"


def test_nameless_plan_is_reported_but_not_put_in_a_command():
    result = verdict([mailbox("alice")], [{"Name": 5, "PopEnabled": "True"}])
    assert result.evidence["plansEnablingPopImap"] == [{"plan": None, "protocols": ["POP"]}]
    assert "Set-CASMailboxPlan '" not in result.remediation  # only the generic catalogue step

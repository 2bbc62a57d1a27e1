"""Exceptions on verdicts (issue 21): a finding a live exception covers shows as pass *with* the exception, never
dropped; what the exception does not cover stays a finding that names it; "could not tell" is never turned into
pass. Plain snapshot data through `evaluate` (the same path as the timer, `authwatch evaluate` and `replay`)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.cli import main
from shared.controls.evaluate import evaluate
from shared.controls.exceptions import (accepted, apply_exceptions, check_snapshot_exceptions, snapshot_exceptions,
                                        unknown_controls, verdict_before_exceptions)
from shared.exceptions import parse_exceptions
from shared.model import SnapshotError, Status, snapshot_from_json
from tests.builders import block_policy, snapshot_json

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
OVERRIDES = "exo_smtp_auth_mailbox_overrides"
ALLOW = {f"AllowBasicAuth{p}": False for p in ("ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook",
                                                "OutlookService", "Pop", "Powershell", "ReportingWebServices", "Rpc",
                                                "Smtp", "WebServices")}


def exception(ident: str = "printer-1", control: str = OVERRIDES, scope: dict[str, list[str]] | None = None, *,
              expires: str = "2026-12-31T00:00:00Z", created: str = "2026-11-01T00:00:00Z",
              owner: str = "Jane Doe") -> dict[str, Any]:
    return {"id": ident, "control": control, "scope": scope or {}, "owner": owner,
            "reason": "the scanner cannot do OAuth yet", "createdBy": "admin@contoso.com", "createdAt": created,
            "expiresAt": expires}


def mailbox(index: int, name: str, *, override: bool = False, pop: bool = False) -> dict[str, Any]:
    return {"Identity": name, "PrimarySmtpAddress": f"{name}@contoso.com",
            "ExternalDirectoryObjectId": f"{index:08d}-0000-4000-8000-000000000000",
            "SmtpClientAuthenticationDisabled": False if override else None, "PopEnabled": pop, "ImapEnabled": False}


def tenant(*, overrides: tuple[str, ...] = (), pop: tuple[str, ...] = (), exceptions: Any = None,
           policies: list[dict[str, Any]] | None = None, transport: Any = True, extra_mailboxes: int = 0,
           settings: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """A whole snapshot document: every source collected, the named mailboxes overriding SMTP AUTH / on POP."""
    names = ["alice", "bob", "scanner", "printer2", *(f"box{i}" for i in range(extra_mailboxes))]
    mailboxes = [mailbox(i, name, override=name in overrides, pop=name in pop) for i, name in enumerate(names)]
    settings = dict(settings or {})
    if exceptions is not None:
        settings["exceptions"] = exceptions
    return snapshot_json(
        policies=[block_policy()] if policies is None else policies, transport=transport, settings=settings,
        graph_sources={"sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}, "signIns": [],
                       "directoryAudits": []},
        exchange_sources={"organizationConfig": {"DefaultAuthenticationPolicy": "Default",
                                                 "OAuth2ClientProfileEnabled": True},
                          "authenticationPolicies": [{"Name": "Default", **ALLOW}],
                          "casMailboxes": mailboxes, "casMailboxPlans": [], "users": []}, **kwargs)


def results(document: dict[str, Any]) -> dict[str, Any]:
    return {result.control: result for result in evaluate(snapshot_from_json(document))}


def test_a_mailbox_exception_covers_exactly_its_mailbox():
    raw = results(tenant(overrides=("scanner",)))[OVERRIDES]
    assert raw.status == Status.FAIL
    # Named by its Identity, in another case: Exchange matches mailbox names case-insensitively.
    record = exception(scope={"mailboxes": ["SCANNER"]})
    result = results(tenant(overrides=("scanner",), exceptions=[record]))[OVERRIDES]
    assert result.status == Status.PASS and accepted(result)
    assert result.summary == f"Accepted by exception printer-1 (owner Jane Doe, until 2026-12-31): {raw.summary}"
    detail = result.evidence["exception"]
    assert detail["ids"] == ["printer-1"] and detail["owner"] == "Jane Doe"
    assert detail["expiresAt"] == "2026-12-31T00:00:00Z" and detail["wholeControl"] is False
    assert detail["covered"] == {"mailboxes": ["scanner@contoso.com"]}
    assert detail["acceptedStatus"] == "fail" and detail["acceptedSummary"] == raw.summary
    assert detail["records"][0]["reason"] == "the scanner cannot do OAuth yet"
    assert result.evidence["overrideCount"] == 1  # the control's own evidence stays
    assert result.remediation == raw.remediation  # how to fix it for good is still there
    assert verdict_before_exceptions(result) == Status.FAIL


def test_the_scope_growing_is_a_finding_naming_only_the_new_mailbox():
    result = results(tenant(overrides=("scanner", "printer2"),
                            exceptions=[exception(scope={"mailboxes": ["scanner@contoso.com"]})]))[OVERRIDES]
    assert result.status == Status.FAIL and not accepted(result)
    assert result.summary.endswith("1 mailbox is not covered by exception printer-1: printer2@contoso.com.")
    detail = result.evidence["exception"]
    assert detail["notCovered"] == {"mailboxes": ["printer2@contoso.com"]}
    assert detail["covered"] == {"mailboxes": ["scanner@contoso.com"]}
    assert "acceptedStatus" not in detail


def test_two_exceptions_together_cover_both_mailboxes_and_the_earliest_expiry_is_shown():
    records = [exception("printer-1", scope={"mailboxes": ["scanner"]}, expires="2026-12-31T00:00:00Z"),
               exception("printer-2", scope={"mailboxes": ["printer2"]}, expires="2026-12-15T00:00:00Z",
                         owner="Sam")]
    result = results(tenant(overrides=("scanner", "printer2"), exceptions=records))[OVERRIDES]
    assert result.status == Status.PASS
    assert result.summary.startswith("Accepted by exceptions printer-2 (owner Sam, until 2026-12-15), printer-1 "
                                     "(owner Jane Doe, until 2026-12-31): ")
    assert result.evidence["exception"]["expiresAt"] == "2026-12-15T00:00:00Z"
    assert result.evidence["exception"]["owner"] == "Sam, Jane Doe"


def test_an_expired_or_not_yet_started_exception_covers_nothing():
    raw = results(tenant(overrides=("scanner",)))[OVERRIDES]
    expired = exception(scope={"mailboxes": ["scanner"]}, expires="2026-11-23T08:00:00Z")  # expires at collectedAt
    later = exception(scope={"mailboxes": ["scanner"]}, created="2026-11-24T00:00:00Z")
    for record in (expired, later):
        assert results(tenant(overrides=("scanner",), exceptions=[record]))[OVERRIDES] == raw


def test_a_whole_control_exception_accepts_the_transport_setting():
    raw = results(tenant(transport=False))["exo_smtp_auth_disabled"]
    assert raw.status == Status.FAIL
    result = results(tenant(transport=False, exceptions=[exception("smtp-org", "exo_smtp_auth_disabled")]))
    accepted_result = result["exo_smtp_auth_disabled"]
    assert accepted_result.status == Status.PASS and accepted_result.evidence["exception"]["wholeControl"] is True
    assert accepted_result.evidence["exception"]["covered"] == {}
    assert accepted_result.summary.startswith("Accepted by exception smtp-org (owner Jane Doe, until 2026-12-31): "
                                              "SMTP AUTH is enabled")
    # An exception of objects cannot accept an organisation-wide setting: it is a finding still, saying why.
    scoped = results(tenant(transport=False, exceptions=[exception("smtp-org", "exo_smtp_auth_disabled",
                                                                   {"mailboxes": ["scanner"]})]))
    still = scoped["exo_smtp_auth_disabled"]
    assert still.status == Status.FAIL
    assert "organisation-wide setting" in still.evidence["exception"]["notCoveredBecause"]
    assert "Exception smtp-org covers none of it" in still.summary


def excluding(*users: str, groups: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [block_policy(**{"conditions.users.excludeUsers": list(users),
                            "conditions.users.excludeGroups": list(groups)})]


def test_a_conditional_access_exclusion_accepted_by_exception():
    blocked = "entra_legacy_auth_blocked"
    assert results(tenant(policies=excluding("u-1")))[blocked].status == Status.FAIL
    record = exception("breakglass", blocked, {"users": ["U-1"]})  # Graph ids compare case-insensitively
    result = results(tenant(policies=excluding("u-1"), exceptions=[record]))[blocked]
    assert result.status == Status.PASS and result.evidence["exception"]["covered"] == {"users": ["u-1"]}
    assert "excludes unapproved users: u-1" in result.summary
    # settings.approvedExclusions work as they always did: a plain pass, no exception involved.
    approved = results(tenant(policies=excluding("u-1"), settings={"approvedExclusions": {"users": ["u-1"]}}))
    assert approved[blocked].status == Status.PASS and "exception" not in approved[blocked].evidence
    # A wider exclusion (a group as well) is a finding naming the group.
    wider = results(tenant(policies=excluding("u-1", groups=("g-7",)), exceptions=[record]))[blocked]
    assert wider.status == Status.FAIL
    assert wider.evidence["exception"]["notCovered"] == {"groups": ["g-7"]}
    assert "1 group is not covered by exception breakglass: g-7" in wider.summary
    # The two together: approved exclusions plus an exception for the rest.
    both = results(tenant(policies=excluding("u-1", groups=("g-7",)), exceptions=[record],
                          settings={"approvedExclusions": {"groups": ["g-7"]}}))[blocked]
    assert both.status == Status.PASS


def test_a_conditional_access_failure_not_about_objects_is_not_accepted_by_a_scoped_exception():
    blocked = "entra_legacy_auth_blocked"
    report_only = [block_policy(state="enabledForReportingButNotEnforced",
                                **{"conditions.users.excludeUsers": ["u-1"]})]
    result = results(tenant(policies=report_only, exceptions=[exception("bg", blocked, {"users": ["u-1"]})]))[blocked]
    assert result.status == Status.FAIL
    assert "excluded objects alone" in result.evidence["exception"]["notCoveredBecause"]


def test_unknown_stays_unknown_and_pass_stays_pass():
    record = exception(scope={"mailboxes": ["scanner"]})
    unknown = tenant(exceptions=[record])
    del unknown["exchange"]["casMailboxes"]
    result = results(unknown)[OVERRIDES]
    assert result.status == Status.UNKNOWN and "exception" not in result.evidence
    healthy = results(tenant(exceptions=[record]))[OVERRIDES]
    assert healthy.status == Status.PASS and "exception" not in healthy.evidence


def test_a_capped_list_is_never_accepted():
    names = tuple(f"box{i}" for i in range(25))
    record = exception(scope={"mailboxes": list(names)})
    result = results(tenant(overrides=names, extra_mailboxes=25, exceptions=[record]))[OVERRIDES]
    assert result.status == Status.FAIL
    assert result.evidence["exception"]["notCoveredBecause"] == ("the evidence lists 20 of the 25 overriding "
                                                                 "mailboxes (the rest are not named)")
    assert "Exception printer-1 covers none of it: the evidence lists 20 of the 25" in result.summary


def test_pop_imap_mailboxes_are_covered_by_the_name_authwatch_shows():
    control = "exo_pop_imap_disabled"
    record = exception("pop-1", control, {"mailboxes": ["scanner@contoso.com"]})
    result = results(tenant(pop=("scanner",), exceptions=[record]))[control]
    assert result.status == Status.PASS and result.evidence["exception"]["covered"] == {"mailboxes":
                                                                                         ["scanner@contoso.com"]}
    grown = results(tenant(pop=("scanner", "bob"), exceptions=[record]))[control]
    assert grown.status == Status.FAIL and grown.evidence["exception"]["notCovered"] == {"mailboxes":
                                                                                        ["bob@contoso.com"]}


def test_an_authentication_policy_exception():
    control = "exo_basic_auth_policy"
    document = tenant(exceptions=[exception("legacy-smtp", control, {"authenticationPolicies": ["default"]})])
    document["exchange"]["authenticationPolicies"] = [{"Name": "Default", **ALLOW, "AllowBasicAuthSmtp": True}]
    result = results(document)[control]
    assert result.status == Status.PASS
    assert result.evidence["exception"]["covered"] == {"authenticationPolicies": ["Default"]}


def test_malformed_records_are_ignored_by_the_overlay_and_never_crash_evaluation():
    good = exception(scope={"mailboxes": ["scanner"]})
    document = tenant(overrides=("scanner",), exceptions=[{"id": "bad one"}, good, {**good, "owner": "Someone"},
                                                          "nonsense"])
    snapshot = snapshot_from_json(document)
    assert [record.owner for record in snapshot_exceptions(snapshot)] == ["Jane Doe"]  # the repeated id is ignored
    assert results(document)[OVERRIDES].status == Status.PASS
    for broken in ("not a list", {"id": "x"}, [{"id": "x", "control": OVERRIDES, "expiresAt": "soon"}]):
        raw = results(tenant(overrides=("scanner",)))[OVERRIDES]
        assert results(tenant(overrides=("scanner",), exceptions=broken))[OVERRIDES] == raw
    with pytest.raises(SnapshotError, match=r"settings\.exceptions\[0\]\.id"):
        check_snapshot_exceptions(snapshot)


def test_an_exception_naming_an_unknown_control_is_reported_and_covers_nothing():
    records = parse_exceptions([exception("typo", "exo_smtp_auth_disabledd"), exception()])
    assert [record.id for record in unknown_controls(records)] == ["typo"]
    raw = results(tenant(transport=False))
    assert results(tenant(transport=False, exceptions=[exception("typo", "exo_smtp_auth_disabledd")])) == raw


def test_the_overlay_is_deterministic_whatever_the_record_order():
    records = parse_exceptions([exception(f"e-{i}", scope={"mailboxes": [name]}, expires=f"2026-12-{10 + i}T00:00:00Z")
                                for i, name in enumerate(["scanner", "printer2", "alice", "bob"])])
    raw = evaluate(snapshot_from_json(tenant(overrides=("scanner", "printer2"))))
    first = apply_exceptions(raw, records, NOW)
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    assert apply_exceptions(raw, shuffled, NOW) == first
    assert next(r for r in first if r.control == OVERRIDES).evidence["exception"]["ids"] == ["e-0", "e-1"]
    # Only FAIL is touched: every other verdict comes back as it was.
    untouched = [replace(result, status=Status.UNKNOWN) for result in raw]
    assert apply_exceptions(untouched, records, NOW) == untouched
    assert apply_exceptions(raw, records, NOW + timedelta(days=60)) == raw  # all expired


# ---------------------------------------------------------------- the CLI contract: bad input is exit 2


def write(tmp_path, document: dict[str, Any], name: str = "snapshot.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(("exceptions", "settings", "field"), [
    ([{**exception(), "expiresAt": "next week"}], {}, "settings.exceptions[0].expiresAt"),
    ("a string", {}, "settings.exceptions: expected a list"),
    ([exception(), exception()], {}, "settings.exceptions[1].id: 'printer-1' is used twice"),
    ([exception(scope={"mailbox": ["x"]})], {}, "settings.exceptions[0].scope.mailbox: unknown kind"),
    ([exception()], {"exceptionReminderDays": "7"}, "settings.exceptionReminderDays"),
])
def test_evaluate_rejects_malformed_exceptions_naming_the_field(tmp_path, capsys, exceptions, settings, field):
    path = write(tmp_path, tenant(exceptions=exceptions, settings=settings))
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and field in captured.err
    assert main(["replay", str(path)]) == 2
    assert field in capsys.readouterr().err


def test_evaluate_prints_the_accepted_finding_and_warns_of_an_unknown_control(tmp_path, capsys):
    records = [exception(scope={"mailboxes": ["scanner"]}), exception("typo", "no_such_control")]
    path = write(tmp_path, tenant(overrides=("scanner",), exceptions=records))
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    by_control = {result["control"]: result for result in report["results"]}
    assert by_control[OVERRIDES]["status"] == "pass"
    assert by_control[OVERRIDES]["evidence"]["exception"]["covered"] == {"mailboxes": ["scanner@contoso.com"]}
    assert "exception typo names control 'no_such_control'" in captured.err


def test_legacy_sign_ins_by_an_accepted_user_and_an_accepted_exposed_mailbox():
    signins = "entra_legacy_signins_blocked"
    success = {"id": "s1", "createdDateTime": "2026-11-23T07:00:00Z", "userPrincipalName": "Sales@contoso.com",
               "userId": "u-9", "clientAppUsed": "IMAP4", "ipAddress": "203.0.113.7", "status": {"errorCode": 0}}
    document = tenant(policies=[], exceptions=[exception("imap-sales", signins, {"users": ["sales@contoso.com"]})])
    document["graph"]["signIns"] = [success]
    result = results(document)[signins]
    assert result.status == Status.PASS and result.evidence["exception"]["covered"] == {"users": ["Sales@contoso.com"]}
    document["graph"]["signIns"].append({**success, "id": "s2", "userPrincipalName": "ops@contoso.com"})
    grown = results(document)[signins]
    assert grown.status == Status.FAIL and grown.evidence["exception"]["notCovered"] == {"users": ["ops@contoso.com"]}

    exposure = "legacy_auth_exposure"
    document = tenant(policies=[], overrides=("scanner",),
                      exceptions=[exception("scanner-smtp", exposure, {"mailboxes": ["scanner"]})])
    document["exchange"]["authenticationPolicies"] = [{"Name": "Default", **ALLOW, "AllowBasicAuthSmtp": True}]
    result = results(document)[exposure]
    assert result.status == Status.PASS and result.evidence["exception"]["covered"] == {"mailboxes":
                                                                                         ["scanner@contoso.com"]}

"""SMTP AUTH Basic readiness (issue 18 item 3) from plain data: a tenant's stored control results (as tenant_detail
answers them) and its state's recentLegacySignIns. Who still sends, whether they break at the end-of-December-2026
switch-off, the fix, the fleet worst first, and the report section."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from shared.state.compare import MAX_REMEMBERED_SIGNINS
from shared.views import readiness, reports

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
T1, T2, T3, T4, T5 = (f"8c1d0f4e-1a2b-4c3d-8e9f-00000000001{i}" for i in range(5))


def signin(at: str, user: str, ip: str = "203.0.113.10", app: str = "Authenticated SMTP", code: int = 0,
           user_id: str | None = None, n: int = 0) -> dict:
    """One remembered legacy sign-in, in the shape shared/state/compare.py keeps (_SIGNIN_FIELDS)."""
    return {"id": f"{user}-{at}-{n}", "createdDateTime": at, "userId": user_id, "userPrincipalName": user,
            "clientAppUsed": app, "ipAddress": ip, "status": {"errorCode": code}}


def res(control: str, status: str, evidence: dict) -> dict:
    """A stored control result as tenant_detail answers it (ControlResult.to_json plus evaluatedAt)."""
    return {"control": control, "status": status, "severity": "high", "summary": f"{control} is {status}",
            "evidence": evidence, "frameworks": [], "remediation": "", "evaluatedAt": "2026-12-06T08:00:00Z"}


def smtp(disabled) -> dict:
    return res("exo_smtp_auth_disabled", "pass" if disabled is True else "fail",
               {"SmtpClientAuthenticationDisabled": disabled})


def overrides(*boxes: dict, count: int | None = None, explicitly: int = 0) -> dict:
    return res("exo_smtp_auth_mailbox_overrides", "fail" if boxes or count else "pass",
               {"overrideCount": len(boxes) if count is None else count, "overrides": list(boxes),
                "explicitlyDisabled": explicitly, "inheriting": 10, "unreadable": 0})


def policy(status: str, *, default: str | None = None, applied: list[dict] | None = None,
           allowing: list[dict] | None = None) -> dict:
    applied = applied or []
    return res("exo_basic_auth_policy", status,
               {"defaultPolicy": default, "appliedPolicies": applied, "appliedPolicyCount": len(applied),
                "appliedPoliciesAllowingBasic": allowing or []})


NO_POLICY = policy("pass")  # no authentication policy applied: Microsoft's defaults allow Basic SMTP


def detail(tenant_id: str, name: str, results: list[dict], status: str = "failing") -> dict:
    return {"tenantId": tenant_id, "displayName": name, "status": status, "enabled": True,
            "lastCollectedAt": "2026-12-06T08:00:00Z", "lastError": None, "controls": results, "openAlerts": [],
            "enforcementWindow": None, "history": []}


def scanner_tenant() -> tuple[dict, list]:
    """SMTP AUTH on for the organisation, no policy: a scanner sending from two IPs, one failed try, and an IMAP
    client that is not SMTP AUTH."""
    signins = [signin("2026-12-06T07:00:00Z", "scanner@contoso.example", "198.51.100.7", n=1),
               signin("2026-12-05T07:00:00Z", "scanner@contoso.example", "203.0.113.10", n=2),
               signin("2026-12-05T06:00:00Z", "scanner@contoso.example", "203.0.113.10", n=3),
               signin("2026-12-06T07:30:00Z", "scanner@contoso.example", "203.0.113.99", code=50126, n=4),
               signin("2026-12-06T07:45:00Z", "reader@contoso.example", app="IMAP4")]
    return detail(T1, "Contoso", [smtp(False), overrides(), NO_POLICY]), signins


def test_a_scanner_still_sending_breaks_at_the_switch_off():
    answer = readiness.tenant_readiness(*scanner_tenant())
    assert answer["verdict"] == "will-break" and answer["breaking"] == 1
    [sender] = answer["senders"]  # the IMAP reader is not an SMTP AUTH sender
    assert sender["user"] == sender["mailbox"] == "scanner@contoso.example"
    assert (sender["count"], sender["failed"]) == (3, 1)
    assert sender["clientIps"] == ["198.51.100.7", "203.0.113.10"]  # where it sends from, newest first (not the
    # failed try from 203.0.113.99)
    assert (sender["lastSeen"], sender["firstSeen"]) == ("2026-12-06T07:00:00Z", "2026-12-05T06:00:00Z")
    assert sender["outcome"] == "breaks" and "550 5.7.30" in sender["why"]
    assert sender["smtpAuth"]["effective"] == "on" and sender["policy"]["basicSmtp"] == "allowed"
    assert "OAuth" in sender["fix"] and "connector-based relay" in sender["fix"] and "High Volume Email" in \
        sender["fix"] and "Azure Communication Services" in sender["fix"]
    assert sender["fixOptions"] == ["oauth", "connector", "hve", "acs"]
    assert answer["lookback"] == {"hours": 48, "until": "2026-12-06T08:00:00Z"}


def test_a_mailbox_override_keeps_smtp_auth_working_where_the_tenant_turned_it_off():
    printer = {"Identity": "Printer", "PrimarySmtpAddress": "printer@fabrikam.example",
               "ExternalDirectoryObjectId": "aaaaaaaa-0000-4000-8000-000000000001"}
    default = {"policy": "Default", "isDefault": True, "users": 40}
    results = [smtp(True), overrides(printer), policy("fail", default="Default", applied=[default],
                                                         allowing=[{**default, "protocols": ["Smtp"]}])]
    signins = [signin("2026-12-06T06:00:00Z", "PRINTER@fabrikam.example", user_id=None),
               signin("2026-12-06T05:00:00Z", "old-app@fabrikam.example", "192.0.2.5")]
    answer = readiness.tenant_readiness(detail(T2, "Fabrikam", results), signins)
    by_user = {s["user"].lower(): s for s in answer["senders"]}
    printer_row = by_user["printer@fabrikam.example"]
    assert printer_row["outcome"] == "breaks" and printer_row["mailboxOverride"] is True
    assert printer_row["mailbox"] == "printer@fabrikam.example" and "override" in printer_row["smtpAuth"]["why"]
    assert "'Default'" in printer_row["policy"]["why"]
    old = by_user["old-app@fabrikam.example"]  # no override, organisation off: refused now, whatever the auth
    assert old["outcome"] == "refused" and old["smtpAuth"]["effective"] == "off"
    assert "OAuth with SMTP AUTH turned back on for this one mailbox" in old["fix"]  # OAuth alone would not do
    assert [s["outcome"] for s in answer["senders"]] == ["breaks", "refused"]  # worst first
    assert answer["verdict"] == "will-break" and answer["settings"]["smtpAuth"] == "off"


def test_a_tenant_already_off_with_nobody_sending_is_ready():
    answer = readiness.tenant_readiness(detail(T3, "Northwind", [smtp(True), overrides(), NO_POLICY],
                                               status="healthy"),
                                        [signin("2026-12-06T06:00:00Z", "pop@northwind.example", app="POP3")])
    assert answer["verdict"] == "ready" and answer["senders"] == []
    assert "SMTP AUTH is off for the organisation" in answer["headline"]


def test_a_policy_that_blocks_basic_smtp_means_refused_now_and_a_sender_after_24h_would_be_oauth():
    applied = [{"policy": "No basic", "isDefault": True, "users": 50}]
    results = [smtp(False), overrides(), policy("pass", default="No basic", applied=applied)]
    answer = readiness.tenant_readiness(detail(T4, "Tailspin", results),
                                        [signin("2026-12-06T06:00:00Z", "app@tailspin.example")])
    [sender] = answer["senders"]
    assert sender["outcome"] == "refused" and sender["policy"]["basicSmtp"] == "blocked"
    assert "OAuth" in sender["why"] and answer["verdict"] == "refused-now"


def test_what_authwatch_cannot_see_is_unknown_not_a_guess():
    named = [{"PrimarySmtpAddress": f"box{i}@wingtip.example"} for i in range(20)]
    results = [smtp(True), overrides(*named, count=25), NO_POLICY]  # 25 overrides, only 20 named in the evidence
    answer = readiness.tenant_readiness(detail(T5, "Wingtip", results),
                                        [signin("2026-12-06T06:00:00Z", "box24@wingtip.example")])
    assert answer["senders"][0]["outcome"] == "unknown" and answer["verdict"] == "check"
    assert "may turn it back on" in answer["senders"][0]["why"]
    # Some users' policies allow Basic SMTP, the default does not: which one this user has is not stored.
    mixed = policy("fail", default="Strict", applied=[{"policy": "Strict", "isDefault": True, "users": 9},
                                                      {"policy": "Printers", "isDefault": False, "users": 1}],
                   allowing=[{"policy": "Printers", "isDefault": False, "users": 1, "protocols": ["Smtp"]}])
    answer = readiness.tenant_readiness(detail(T5, "Wingtip", [smtp(False), overrides(), mixed]),
                                        [signin("2026-12-06T06:00:00Z", "scan@wingtip.example")])
    assert answer["senders"][0]["policy"]["basicSmtp"] == "unknown" and answer["verdict"] == "check"
    # No results stored at all: nothing is claimed.
    answer = readiness.tenant_readiness(detail(T5, "Wingtip", []), [signin("2026-12-06T06:00:00Z", "x@w.example")])
    assert answer["senders"][0]["outcome"] == "unknown"


def test_basic_and_oauth_are_not_told_apart_and_the_answer_says_so():
    """No stored field tells Basic from OAuth (shared/views/readiness.py cites why): every sender is 'probably basic'
    and the answer sends the admin to the SMTP AUTH clients report. A modern client's sign-in (a token for
    SMTP.Send is taken by an app, not by 'Authenticated SMTP') is not a sender."""
    detail_, signins = scanner_tenant()
    signins.append(signin("2026-12-06T07:50:00Z", "dev@contoso.example", app="Mobile Apps and Desktop clients"))
    answer = readiness.tenant_readiness(detail_, signins)
    assert {s["authentication"] for s in answer["senders"]} == {"probably basic"}
    assert "dev@contoso.example" not in {s["user"] for s in answer["senders"]}
    fleet = readiness.fleet_readiness([answer], now=NOW)
    assert "cannot tell Basic from OAuth" in fleet["knows"] and "Authentication Protocol" in fleet["knows"]
    assert fleet["sources"]["smtpAuthClientsReport"].startswith("https://learn.microsoft.com/")


def test_no_state_is_no_data_and_a_full_sign_in_list_is_said_to_be_a_floor():
    assert readiness.tenant_readiness(detail(T1, "New", [], status="never evaluated"), None)["verdict"] == "no-data"
    full = [signin("2026-12-06T06:00:00Z", f"u{i}@contoso.example", app="IMAP4", n=i)
            for i in range(MAX_REMEMBERED_SIGNINS)]
    answer = readiness.tenant_readiness(scanner_tenant()[0], full)
    assert any("floor" in note for note in answer["notes"])


def test_the_fleet_lists_tenants_that_will_break_first():
    one, signins = scanner_tenant()
    two = detail(T2, "Adatum", [smtp(False), overrides(), NO_POLICY])
    two_signins = signins + [signin("2026-12-06T05:00:00Z", "erp@adatum.example", n=9)]
    tenants = [readiness.tenant_readiness(detail(T3, "Aaa ready", [smtp(True), overrides(), NO_POLICY]), []),
               readiness.tenant_readiness(detail(T4, "Bbb unknown", []), [signin("2026-12-06T06:00:00Z", "a@b.c")]),
               readiness.tenant_readiness(one, signins), readiness.tenant_readiness(two, two_signins),
               readiness.tenant_readiness(detail(T5, "Ccc new", [], status="never evaluated"), None)]
    fleet = readiness.fleet_readiness(tenants, now=NOW)
    assert [t["displayName"] for t in fleet["tenants"]] == ["Adatum", "Contoso", "Bbb unknown", "Ccc new",
                                                            "Aaa ready"]
    assert fleet["summary"]["verdicts"]["will-break"] == 2 and fleet["summary"]["breakingSenders"] == 3
    assert [o["id"] for o in fleet["fixOptions"]] == ["oauth", "connector", "hve", "acs"]
    assert all(o["url"].startswith("https://learn.microsoft.com/") for o in fleet["fixOptions"])


# --- the fleet report's readiness section ---------------------------------------------------------------------------

def report_details() -> list[dict]:
    one, signins = scanner_tenant()
    ready = detail(T3, "Northwind <Traders>", [smtp(True), overrides(), NO_POLICY], status="healthy")
    return [{**one, "recentLegacySignIns": signins}, {**ready, "recentLegacySignIns": []}]


def test_the_json_report_carries_the_readiness_section_in_its_schema():
    report = json.loads(reports.to_json(reports.assemble(report_details(), now=NOW)))
    reports.validate(report)
    section = report["readiness"]
    assert section["kind"] == "smtp-basic" and section["switchOff"] == "end of December 2026"
    assert [t["verdict"] for t in section["tenants"]] == ["will-break", "ready"]
    assert section["tenants"][0]["senders"][0]["user"] == "scanner@contoso.example"
    report["readiness"]["tenants"][0]["verdict"] = "fine"
    try:
        reports.validate(report)
    except reports.ReportError as error:
        assert "readiness.tenants[0].verdict" in str(error)
    else:
        raise AssertionError("a readiness verdict outside the schema passed validation")


def test_a_report_built_without_sign_ins_says_no_data_rather_than_ready():
    section = reports.assemble([detail(T1, "Contoso", [smtp(False), overrides(), NO_POLICY])], now=NOW)["readiness"]
    assert section["tenants"][0]["verdict"] == "no-data"


def test_the_html_report_has_a_readiness_section_worst_first_offline_and_escaped():
    page = reports.render(reports.assemble(report_details(), now=NOW), "html")
    section = page[page.index('<section class="readiness">'):]
    section = section[:section.index("</section>")]
    assert "SMTP AUTH Basic readiness" in section and "MC786329" in section
    assert f'data-tenant-id="{T1}" data-verdict="will-break"' in section
    assert 'data-outcome="breaks"' in section and "scanner@contoso.example" in section and "198.51.100.7" in section
    assert "Northwind &lt;Traders&gt;" in section and "<Traders>" not in page  # quiet tenants: one line, escaped
    for name in ("OAuth for SMTP AUTH", "Connector-based relay", "High Volume Email",
                 "Azure Communication Services Email"):
        assert name in section
    assert "learn.microsoft.com/en-us/exchange/mail-flow-best-practices/high-volume-mails-m365" in section
    assert not re.search(r"<script|<link|src=|url\(|https?://", page)  # still one offline file
    # CSV and OCSF are unchanged by the section
    plain = reports.assemble(report_details(), now=NOW)
    assert reports.to_csv(plain).splitlines()[0] == ",".join(reports.CSV_COLUMNS)
    assert "readiness" not in reports.render(plain, "ocsf")

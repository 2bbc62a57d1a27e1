"""Reports are views of one document built from the API's tenant_detail answers: JSON follows the documented schema,
CSV has one row per tenant × control with the documented columns, HTML is one offline file naming every tenant."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone

import pytest

from shared.controls import controls
from shared.views import reports

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
CONTROL_IDS = [control.id for control in controls()]
HEALTHY, FAILING, DOWN = ("8c1d0f4e-1a2b-4c3d-8e9f-00000000000" + str(i) for i in (1, 2, 5))


def result(control: str, status: str = "pass", **extra) -> dict:
    return {"control": control, "status": status, "severity": "high", "summary": f"{control} is {status}",
            "evidence": {"x": 1}, "frameworks": ["CIS 5.2.2.3"], "remediation": f"Fix {control}",
            "evaluatedAt": "2026-11-23T09:00:00Z", **extra}


def detail(tenant_id: str, name: str, status: str, results: list[dict], **extra) -> dict:
    return {"tenantId": tenant_id, "displayName": name, "status": status, "enabled": True,
            "lastCollectedAt": "2026-11-23T09:00:00Z", "lastError": None, "controls": results, "openAlerts": [],
            "enforcementWindow": None, "history": [], "hasBaseline": True, **extra}


DRIFT = {"id": "d" * 32, "at": "2026-11-23T09:00:00Z", "tenantId": FAILING, "type": "drift.weakened",
         "control": "entra_legacy_auth_blocked", "severity": "high",
         "summary": "Protection weakened by admin@fabrikam.example: Conditional Access policy 'Block legacy "
                    "authentication': state: enabled → enabledForReportingButNotEnforced.",
         "details": {"section": "conditionalAccess", "item": "ca:1111", "changedBy": "admin@fabrikam.example",
                     "changedAt": "2026-11-23T08:20:00Z",
                     "changes": [{"field": "state", "before": "enabled", "after": "enabledForReportingButNotEnforced",
                                  "effect": "weakened", "note": ""}]}}
ALERT = {**DRIFT, "acknowledged": False, "snoozed": False}
FAILED = {"id": "f" * 32, "at": "2026-11-23T09:00:00Z", "tenantId": FAILING, "type": "control.failed",
          "control": "entra_legacy_auth_blocked", "severity": "high", "summary": "Legacy auth not blocked",
          "details": {}, "acknowledged": True, "snoozed": False}


def fleet_details() -> list[dict]:
    return [
        detail(DOWN, "Woodgrove <Bank> & Co", "unreachable", [],
               lastError="unreachable: AADSTS7000229: no service principal", openAlerts=[]),
        detail(FAILING, "Fabrikam", "failing",
               [result(c, "fail" if c == "entra_legacy_auth_blocked" else "pass") for c in CONTROL_IDS],
               openAlerts=[ALERT, FAILED], history=[DRIFT, FAILED],
               enforcementWindow={"windowStartedAt": "2026-11-22T20:00:00Z", "windowClosesAt": "2026-11-23T20:00:00Z",
                                  "windowHours": 24.0, "open": True, "secondsLeft": 39600, "confirmed": False,
                                  "gapReported": False}),
        detail(HEALTHY, "Contoso", "healthy", [result(c) for c in CONTROL_IDS]),
    ]


@pytest.fixture
def report() -> dict:
    return reports.assemble(fleet_details(), now=NOW)


def test_json_report_follows_the_documented_schema(report):
    parsed = json.loads(reports.to_json(report))
    reports.validate(parsed)
    assert parsed["schema"] == "authwatch.report/1" and parsed["generatedAt"] == "2026-11-23T09:00:00Z"
    assert parsed["scope"] == {"kind": "fleet", "tenantId": None}
    assert [c["id"] for c in parsed["controls"]] == CONTROL_IDS
    # open alerts first, then the API's (attention-first) order
    assert [t["displayName"] for t in parsed["tenants"]] == ["Fabrikam", "Woodgrove <Bank> & Co", "Contoso"]
    fabrikam = parsed["tenants"][0]
    assert [c["control"] for c in fabrikam["controls"]] == CONTROL_IDS
    assert fabrikam["controls"][0]["status"] == "fail" and fabrikam["controls"][0]["remediation"]
    assert {a["type"] for a in fabrikam["openAlerts"]} == {"drift.weakened", "control.failed"}
    assert fabrikam["drift"][0]["changedBy"] == "admin@fabrikam.example"
    assert fabrikam["drift"][0]["changes"][0]["before"] == "enabled"
    assert fabrikam["enforcementWindow"]["secondsLeft"] == 39600
    assert parsed["summary"]["tenants"] == 3 and parsed["summary"]["openAlerts"] == 2
    assert parsed["summary"]["tenantStatus"] == {"failing": 1, "unreachable": 1, "healthy": 1}


def test_a_tenant_never_read_lists_every_control_as_unknown(report):
    woodgrove = next(t for t in report["tenants"] if t["tenantId"] == DOWN)
    assert [c["status"] for c in woodgrove["controls"]] == ["unknown"] * len(CONTROL_IDS)
    # the reason and its fix are said once, for the tenant, not repeated in every control's summary
    assert all(c["evaluatedAt"] is None and "AADSTS" not in c["summary"] for c in woodgrove["controls"])
    assert "AADSTS7000229" in woodgrove["unreachable"]["reason"]
    assert "admin consent" in woodgrove["unreachable"]["fix"] and DOWN in woodgrove["unreachable"]["fix"]


def test_validate_names_the_offending_path(report):
    broken = json.loads(reports.to_json(report))
    broken["tenants"][1]["controls"][2]["status"] = "green"
    with pytest.raises(reports.ReportError, match=r"\$\.tenants\[1\]\.controls\[2\]\.status"):
        reports.validate(broken)
    del broken["summary"]
    with pytest.raises(reports.ReportError, match="summary"):
        reports.validate(broken)


def test_csv_has_one_row_per_tenant_and_control_with_the_documented_columns(report):
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
    assert tuple(rows[0]) == reports.CSV_COLUMNS
    assert len(rows) == 3 * len(CONTROL_IDS)
    assert {(r["tenant_id"], r["control"]) for r in rows} == {(t, c) for t in (HEALTHY, FAILING, DOWN)
                                                              for c in CONTROL_IDS}
    blocked = next(r for r in rows if r["tenant_name"] == "Fabrikam" and r["control"] == "entra_legacy_auth_blocked")
    assert blocked["status"] == "fail" and blocked["open_alerts"] == "2" and blocked["remediation"]
    assert blocked["tenant_status"] == "failing" and blocked["evaluated_at"] == "2026-11-23T09:00:00Z"
    assert {r["status"] for r in rows if r["tenant_id"] == DOWN} == {"unknown"}


def test_html_is_one_offline_file_that_names_every_tenant_and_prints(report):
    page = reports.render(report, "html")
    assert page.startswith("<!doctype html>") and "@media print" in page and "@page" in page
    assert not re.search(r"<script|<link|src=|url\(|https?://", page)  # nothing to fetch: opens offline
    for tenant in report["tenants"]:
        assert f'data-tenant-id="{tenant["tenantId"]}"' in page
    assert "Woodgrove &lt;Bank&gt; &amp; Co" in page and "<Bank>" not in page  # tenant data is escaped
    assert 'class="before">enabled</span> → <span class="after">enabledForReportingButNotEnforced' in page
    assert "admin@fabrikam.example" in page and "11h 00m left" in page
    assert page.count('class="s s-fail"') >= 2  # the matrix cell and the control row


def test_one_tenant_report_has_tenant_scope():
    single = reports.assemble(fleet_details()[1:2], now=NOW, single=True)
    reports.validate(single)
    assert single["scope"] == {"kind": "tenant", "tenantId": FAILING}
    assert "authwatch report — Fabrikam" in reports.render(single, "html")


def test_render_refuses_an_unknown_format(report):
    with pytest.raises(ValueError, match="html, csv, json, ocsf"):
        reports.render(report, "pdf")


def test_the_html_legend_names_every_control_status_of_the_schema():
    from shared.views import report_html

    assert tuple(report_html._WORD) == reports.CONTROL_STATUSES


# --- issue 23 item 4: failing-only, one unreachable sentence, the dashboard's order, OCSF ---------------------------

def test_failing_only_keeps_what_is_not_passing_and_collapses_quiet_tenants():
    report = reports.assemble(fleet_details(), now=NOW, failing_only=True)
    reports.validate(json.loads(reports.to_json(report)))
    by_name = {t["displayName"]: t for t in report["tenants"]}
    assert [c["control"] for c in by_name["Fabrikam"]["controls"]] == ["entra_legacy_auth_blocked"]
    assert by_name["Fabrikam"]["hiddenControls"] == len(CONTROL_IDS) - 1
    assert by_name["Contoso"]["controls"] == [] and by_name["Contoso"]["hiddenControls"] == len(CONTROL_IDS)
    assert report["summary"]["controlStatus"]["pass"] == 2 * len(CONTROL_IDS) - 1  # the whole scope, not the view
    assert report["filters"]["failingOnly"] is True
    page = reports.render(report, "html")
    quiet = page[page.index("<h2>Nothing failing</h2>"):page.index("</ul>", page.index("Nothing failing"))]
    assert "Contoso" in quiet and "Fabrikam" not in quiet
    assert f'<section class="tenant" id="t-{HEALTHY}"' not in page  # one line, no section of passing rows
    assert page.count('class="s s-pass"') == 0
    full = reports.render(reports.assemble(fleet_details(), now=NOW), "html")
    assert page.count("<tr data-control=") == 1 and full.count("<tr data-control=") == 2 * len(CONTROL_IDS)


def test_status_control_and_severity_filters():
    details = fleet_details()
    details[1]["controls"][5]["severity"] = "low"
    report = reports.assemble(details, now=NOW, filters={"status": ["pass"], "severity": ["low"], "control": None})
    fabrikam = next(t for t in report["tenants"] if t["displayName"] == "Fabrikam")
    assert [c["control"] for c in fabrikam["controls"]] == [CONTROL_IDS[5]]
    assert report["filters"] == {"failingOnly": False, "status": ["pass"], "control": None, "severity": ["low"]}
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
    assert {(r["tenant_name"], r["control"]) for r in rows} == {("Fabrikam", CONTROL_IDS[5])}


def test_an_unreachable_tenant_says_why_and_how_to_fix_it_once():
    page = reports.render(reports.assemble(fleet_details(), now=NOW), "html")
    assert page.count("AADSTS7000229") == 2  # the matrix row's one cell and the tenant's one sentence
    section = page[page.index(f'id="t-{DOWN}"'):]
    section = section[:section.index("</section>")]
    assert "How to fix it:</b> A Global Administrator of the tenant gives admin consent" in section
    assert "<table>" not in section and f"{len(CONTROL_IDS)} control(s) not evaluated" in section
    matrix_row = page[page.index(f'<tr data-tenant-id="{DOWN}">'):]
    assert matrix_row[:matrix_row.index("</tr>")].count("<td class=\"s") == 1  # one cell, not nine UNKNOWNs


def test_tenants_follow_the_dashboard_order_most_open_alerts_first():
    details = fleet_details()  # the API's order: unreachable, failing, healthy
    details[2]["openAlerts"] = [FAILED]
    details[1]["openAlerts"] = [ALERT, FAILED]
    report = reports.assemble(details, now=NOW)
    # the dashboard: open alerts descending, then the API's attention-first order (unreachable before healthy)
    assert [t["displayName"] for t in report["tenants"]] == ["Fabrikam", "Contoso", "Woodgrove <Bank> & Co"]
    assert reports.order_tenants([{"openAlerts": []}, {"openAlerts": [1]}]) == [{"openAlerts": [1]},
                                                                                 {"openAlerts": []}]


def test_ocsf_is_one_compliance_finding_per_control_mapped_from_the_schema(report):
    findings = json.loads(reports.render(report, "ocsf"))
    assert len(findings) == 3 * len(CONTROL_IDS)
    for finding in findings:
        assert finding["class_uid"] == 2003 and finding["category_uid"] == 2 and finding["type_uid"] == 200301
        assert finding["activity_id"] == 1 and finding["metadata"]["version"] == "1.8.0"
        assert finding["metadata"]["product"]["name"] == "authwatch" and isinstance(finding["time"], int)
        assert {"compliance", "finding_info", "metadata", "severity_id", "time"} <= set(finding)
    by = {(f["metadata"]["tenant_uid"], f["compliance"]["control"]): f for f in findings}
    failed = by[(FAILING, "entra_legacy_auth_blocked")]
    assert (failed["status_id"], failed["compliance"]["status_id"], failed["severity_id"]) == (1, 3, 4)
    assert failed["compliance"]["requirements"] == ["CIS 5.2.2.3"]
    assert failed["compliance"]["standards"] == ["CIS Microsoft 365 Foundations Benchmark"]
    assert failed["remediation"]["desc"] == "Fix entra_legacy_auth_blocked"
    assert failed["resources"] == [{"uid": FAILING, "name": "Fabrikam", "type": "Microsoft 365 tenant"}]
    assert failed["finding_info"]["uid"] == f"authwatch:{FAILING}:entra_legacy_auth_blocked"
    assert failed["time"] == int(datetime(2026, 11, 23, 9, tzinfo=timezone.utc).timestamp() * 1000)
    passed = by[(HEALTHY, "entra_legacy_auth_blocked")]
    assert (passed["status_id"], passed["compliance"]["status_id"]) == (4, 1)
    unknown = by[(DOWN, "entra_legacy_auth_blocked")]
    assert (unknown["status_id"], unknown["compliance"]["status_id"]) == (1, 2)


def test_ocsf_status_and_severity_maps_cover_every_authwatch_value():
    from shared.model import Severity, Status
    from shared.views import ocsf

    assert set(ocsf.COMPLIANCE_STATUS) == set(ocsf.FINDING_STATUS) == {str(s) for s in Status}
    assert set(ocsf.SEVERITY) == {str(s) for s in Severity}
    na = ocsf.finding({"control": "x", "status": "not_applicable", "severity": "low"}, tenant_id="t",
                      tenant_name=None, now=NOW)
    assert (na["status_id"], na["compliance"]["status_id"], na["compliance"]["status"]) == (3, 99, "Not Applicable")
    assert na["severity_id"] == 2 and "remediation" not in na


def test_each_tenant_carries_its_timeline_and_the_html_shows_it_offline(report):
    """Issue 18 #2: the report's tenants carry the timeline (changes with who and when, Microsoft's own dates)."""
    fabrikam = next(t for t in report["tenants"] if t["tenantId"] == FAILING)
    kinds = [row["kind"] for row in fabrikam["timeline"]]
    assert "change" in kinds and any("MC786329" in row["what"] + row["notes"] for row in fabrikam["timeline"])
    change = next(row for row in fabrikam["timeline"] if row["kind"] == "change")
    assert change["by"] == "admin@fabrikam.example" and "enabledForReportingButNotEnforced" in change["change"]
    page = reports.to_html(report)
    assert "<h3>Timeline</h3>" in page and "MC786329" in page
    assert not re.search(r"https?://", page)  # sources named as text: the file opens offline

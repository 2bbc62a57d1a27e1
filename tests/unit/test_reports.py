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
    assert all(c["evaluatedAt"] is None and "AADSTS7000229" in c["summary"] for c in woodgrove["controls"])


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
    with pytest.raises(ValueError, match="html, csv, json"):
        reports.render(report, "pdf")


def test_the_html_legend_names_every_control_status_of_the_schema():
    from shared.views import report_html

    assert tuple(report_html._WORD) == reports.CONTROL_STATUSES

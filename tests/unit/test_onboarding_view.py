"""Onboarding at a glance (issue 20, item 4): every GDAP customer's onboarding state with its one fix, those needing
a fix first; and the report's Onboarding section in JSON, CSV and HTML, present only when a customer has a record."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

from shared.tenants.onboarding_records import STATES, OnboardingRecord
from shared.views import reports
from shared.views.onboarding_view import LABELS, overview_of
from shared.views.report_onboarding import ONBOARDING_CSV_COLUMNS, section
from tests.unit.test_reports import fleet_details

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
IDS = [f"0b0a0d00-0000-4000-8000-00000000000{i}" for i in range(7)]
FIX_ROLE = "Ask Adatum to add Privileged Role Administrator to the GDAP relationship."


def records() -> list[OnboardingRecord]:
    return [
        OnboardingRecord(IDS[0], "Alpine Ski House", "ready", steps={"consent": "created"}, updated_at=NOW),
        OnboardingRecord(IDS[1], "Adatum", "lacks_role", FIX_ROLE, "the relationship lacks Privileged Role "
                         "Administrator", updated_at=NOW),
        OnboardingRecord(IDS[2], "Wingtip", "in_progress", updated_at=NOW),  # a run that stopped part-way: no fix
        OnboardingRecord(IDS[3], "Coho Winery", "failed", "Run the onboarding again; the steps already done are not "
                         "repeated.", "consent failed: 503 ServiceUnavailable", updated_at=NOW),
        OnboardingRecord(IDS[4], "bellows college", "failed", "=HYPERLINK(\"http://evil\")", "<script>x</script>",
                         updated_at=NOW),
        OnboardingRecord(IDS[5], "Litware", "missing_exchange_role", "Give the app Global Reader in Litware.",
                         updated_at=NOW),
        OnboardingRecord(IDS[6], "Fourth Coffee", "relationship_ended", "Ask Fourth Coffee for a new relationship.",
                         ended_reported_at=NOW),
    ]


def test_customers_needing_a_fix_come_first_worst_first_then_ready_by_name():
    overview = overview_of(records())
    assert [(c["state"], c["name"]) for c in overview["customers"]] == [
        ("failed", "bellows college"), ("failed", "Coho Winery"),  # by name, case aside
        ("lacks_role", "Adatum"), ("missing_exchange_role", "Litware"), ("relationship_ended", "Fourth Coffee"),
        ("in_progress", "Wingtip"), ("ready", "Alpine Ski House")]
    assert overview["counts"] == {"failed": 2, "lacks_role": 1, "missing_exchange_role": 1, "relationship_ended": 1,
                                  "in_progress": 1, "ready": 1, "removed": 0}
    assert overview["needsFix"] == 6 and overview["truncated"] is False
    adatum = next(c for c in overview["customers"] if c["name"] == "Adatum")
    assert adatum["fix"] == FIX_ROLE and adatum["label"] == "Relationship lacks a role" and adatum["needsFix"]
    assert adatum["tenantId"] == IDS[1] and adatum["detail"].startswith("the relationship lacks")


def test_every_customer_needing_a_fix_has_one_and_a_ready_one_has_none():
    overview = overview_of(records())
    wingtip = next(c for c in overview["customers"] if c["name"] == "Wingtip")
    assert f"authwatch tenants onboard --tenant {IDS[2]}" in wingtip["fix"]  # saved in_progress without a fix
    assert all(c["fix"] for c in overview["customers"] if c["needsFix"])
    ready = overview["customers"][-1]
    assert ready["fix"] == "" and ready["needsFix"] is False and ready["label"] == "Ready"
    assert set(LABELS) == set(STATES)


def test_no_records_is_an_empty_overview():
    assert overview_of([]) == {"customers": [], "counts": {state: 0 for state in LABELS}, "needsFix": 0,
                               "truncated": False}


def onboarding_report(tenant_id: str | None = None) -> dict:
    return reports.assemble(fleet_details(), now=NOW, onboarding=section(overview_of(records()), tenant_id=tenant_id))


def test_json_report_has_the_onboarding_section_in_the_schema():
    parsed = json.loads(reports.to_json(onboarding_report()))
    reports.validate(parsed)
    onboarding = parsed["onboarding"]
    assert [c["tenantId"] for c in onboarding["customers"]] == [IDS[4], IDS[3], IDS[1], IDS[5], IDS[6], IDS[2], IDS[0]]
    assert onboarding["needsFix"] == 6 and onboarding["counts"]["failed"] == 2
    assert {c["label"] for c in onboarding["customers"]} == set(LABELS.values()) - {LABELS["removed"]}  # one record per other state


def test_report_without_onboarding_records_has_no_section():
    plain = reports.assemble(fleet_details(), now=NOW)
    assert "onboarding" not in plain
    assert section(overview_of([])) is None
    assert "Onboarding" not in reports.render(plain, "html")
    assert "state_label" not in reports.render(plain, "csv")


def test_a_tenant_report_keeps_that_customer_only():
    single = section(overview_of(records()), tenant_id=IDS[1])
    assert single is not None and [c["name"] for c in single["customers"]] == ["Adatum"]
    assert single["needsFix"] == 1 and single["counts"]["lacks_role"] == 1 and single["counts"]["ready"] == 0
    assert section(overview_of(records()), tenant_id="0b0a0d00-0000-4000-8000-0000000000ff") is None


def test_csv_report_has_a_second_table_for_onboarding_formula_safe():
    text = reports.render(onboarding_report(), "csv")
    controls_table, onboarding_table = text.split("\n\n")
    assert next(csv.reader(io.StringIO(controls_table))) == list(reports.CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(onboarding_table)))
    assert list(rows[0]) == list(ONBOARDING_CSV_COLUMNS) and {row["section"] for row in rows} == {"onboarding"}
    assert [(row["tenant_name"], row["state"]) for row in rows][:3] == [
        ("bellows college", "failed"), ("Coho Winery", "failed"), ("Adatum", "lacks_role")]
    adatum = rows[2]
    assert adatum["fix"] == FIX_ROLE and adatum["state_label"] == "Relationship lacks a role"
    assert rows[0]["fix"] == "'=HYPERLINK(\"http://evil\")"  # text, never a formula
    assert rows[-1]["state"] == "ready" and rows[-1]["fix"] == "" and rows[-1]["updated_at"] == "2026-12-06T09:00:00Z"


def test_html_report_lists_every_customer_with_its_fix_escaped():
    page = reports.render(onboarding_report(), "html")
    start = page.index('<section class="onboarding">')
    onboarding = page[start:page.index("</section>", start)]
    assert "<h2>Onboarding (GDAP)</h2>" in onboarding and "7 customer(s), 6 needing a fix" in onboarding
    order = [onboarding.index(f'data-tenant-id="{tenant_id}"') for tenant_id in (IDS[4], IDS[1], IDS[2], IDS[0])]
    assert order == sorted(order)  # failed, lacks a role, in progress, ready
    assert "Relationship lacks a role" in onboarding and FIX_ROLE in onboarding
    assert "Needs the Exchange role" in onboarding and "Give the app Global Reader in Litware." in onboarding
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in onboarding
    assert "Nothing to do: watched." in onboarding  # the ready customer


def test_a_ready_customer_with_a_leftover_grant_still_shows_its_fix():
    leftover = OnboardingRecord(IDS[0], "Alpine Ski House", "ready", "Remove authwatch's delegated permissions in "
                                "Alpine Ski House.", "withdraw failed: HTTP 403", updated_at=NOW)
    clean = OnboardingRecord(IDS[1], "Bellows College", "ready", updated_at=NOW)
    overview = overview_of([leftover, clean])
    rows = {row["tenantId"]: row for row in overview["customers"]}
    assert rows[IDS[0]]["needsFix"] and rows[IDS[0]]["fix"].startswith("Remove authwatch's delegated permissions")
    assert not rows[IDS[1]]["needsFix"] and rows[IDS[1]]["fix"] == ""
    assert overview["needsFix"] == 1 and overview["counts"]["ready"] == 2

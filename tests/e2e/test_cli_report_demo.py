"""`authwatch report --demo` needs no storage setting: it starts Azurite and the simulator, evaluates the demo fleet
and reports it (issue 23: the README's report command failed without AUTHWATCH_STORAGE_CONNECTION_STRING)."""

from __future__ import annotations

import json

from shared.cli import main


def test_report_demo_failing_only_ocsf_and_html(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("AUTHWATCH_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    out = tmp_path / "report.html"
    assert main(["report", "--demo", "--failing-only", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<h2>Nothing failing</h2>" in page and "Contoso" in page
    # Woodgrove: the matrix's one cell, the tenant's one sentence with its fix, its open tenant.unreachable alert;
    # no longer once more per control (nine rows and nine cell titles before)
    assert page.count("AADSTS7000229") == 3
    assert "How to fix it:</b>" in page
    capsys.readouterr()
    assert main(["report", "--demo", "-o", "json", "--failing-only", "--fail-on", "high"]) == 3
    report = json.loads(capsys.readouterr().out)
    names = [t["displayName"] for t in report["tenants"]]
    alerts = [len(t["openAlerts"]) for t in report["tenants"]]
    assert alerts == sorted(alerts, reverse=True)  # the dashboard's order: most open alerts first
    assert names[0] == "Fabrikam"
    assert all(c["status"] in ("fail", "pending", "unknown") for t in report["tenants"] for c in t["controls"])

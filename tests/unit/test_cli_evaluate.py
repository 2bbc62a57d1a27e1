"""`authwatch evaluate` keeps its contract: one JSON object on stdout, exit 0 on any verdict, 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "snapshots"
STATUSES = {"pass", "fail", "pending", "unknown", "not_applicable"}


def evaluate_json(capsys, path: Path) -> dict:
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON object on one line"
    return json.loads(out)


def test_json_output_follows_the_contract(capsys):
    report = evaluate_json(capsys, FIXTURES / "healthy.json")
    assert set(report) == {"tenantId", "evaluatedAt", "results"}
    assert report["tenantId"] == "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"
    assert report["evaluatedAt"].endswith("Z")
    for result in report["results"]:
        assert set(result) == {"control", "status", "severity", "summary", "evidence", "frameworks", "remediation"}
        assert result["status"] in STATUSES
    by_control = {r["control"]: r for r in report["results"]}
    assert by_control["entra_legacy_auth_blocked"]["status"] == "pass"
    assert by_control["entra_legacy_auth_blocked"]["frameworks"] == ["CISA MS.AAD.1.1v1", "CIS 5.2.2.3"]
    assert by_control["exo_smtp_auth_disabled"]["status"] == "pass"


def test_failing_snapshot_still_exits_zero(capsys):
    by_control = {r["control"]: r for r in evaluate_json(capsys, FIXTURES / "report_only_smtp_on.json")["results"]}
    assert by_control["entra_legacy_auth_blocked"]["status"] == "fail"
    assert "report-only" in by_control["entra_legacy_auth_blocked"]["summary"]
    assert by_control["exo_smtp_auth_disabled"]["status"] == "fail"


def test_unreachable_tenant_is_unknown_everywhere(capsys):
    report = evaluate_json(capsys, FIXTURES / "unreachable.json")
    assert {r["status"] for r in report["results"]} == {"unknown"}


def test_table_format_lists_every_control(capsys):
    assert main(["evaluate", "--snapshot", str(FIXTURES / "report_only_smtp_on.json"), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "entra_legacy_auth_blocked" in out and "FAIL" in out and "report-only" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"),
     ("[]", "top level"),
     ('{"schemaVersion": 2, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z"}', "schemaVersion"),
     ('{"schemaVersion": 1, "collectedAt": "2026-11-23T08:00:00Z"}', "tenantId"),
     ('{"schemaVersion": 1, "tenantId": "t", "collectedAt": "yesterday"}', "collectedAt"),
     ('{"schemaVersion": 1, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z", "graph": []}', "graph"),
     ('{"schemaVersion": 1, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z",'
      ' "settings": {"approvedExclusions": {"users": "x"}}}', "settings.approvedExclusions.users")],
)
def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys, content, message):
    path = tmp_path / "snapshot.json"
    path.write_text(content)
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_missing_file_exits_2(capsys):
    assert main(["evaluate", "--snapshot", "/nonexistent/snap.json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_fields_are_ignored(tmp_path, capsys):
    document = json.loads((FIXTURES / "healthy.json").read_text())
    document["exportedBy"] = {"tool": "other"}
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(document))
    assert evaluate_json(capsys, path)["results"]


def test_console_script_reads_stdin_and_prints_no_traceback():
    command = [sys.executable, "-m", "shared.cli", "evaluate", "--snapshot", "-", "--format", "json"]
    bad = subprocess.run(command, input="{", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "not valid JSON" in bad.stderr
    good = subprocess.run(command, input=(FIXTURES / "healthy.json").read_text(), capture_output=True, text=True,
                          timeout=60)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["tenantId"]


@pytest.mark.parametrize("section,name,value,named", [
    ("graph", "conditionalAccessPolicies", "all of them", "graph.conditionalAccessPolicies: expected a list, got str"),
    ("graph", "securityDefaults", [True], "graph.securityDefaults: expected an object, got list"),
    ("exchange", "casMailboxes", None, "exchange.casMailboxes: expected a list, got null"),
])
def test_a_source_of_the_wrong_type_exits_2_naming_the_field(tmp_path, capsys, section, name, value, named):
    document = json.loads((FIXTURES / "healthy.json").read_text())
    document[section][name] = value
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(document))
    assert main(["evaluate", "--snapshot", str(path)]) == 2
    captured = capsys.readouterr()
    assert named in captured.err and captured.out == ""


def test_exchange_singletons_may_be_a_one_item_list(tmp_path, capsys):
    document = json.loads((FIXTURES / "healthy.json").read_text())
    document["exchange"]["transportConfig"] = [document["exchange"]["transportConfig"]]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(document))
    assert main(["evaluate", "--snapshot", str(path), "--format", "json"]) == 0

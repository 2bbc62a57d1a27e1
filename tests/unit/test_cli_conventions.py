"""One CLI convention (issue 23 item 2): -o/--output and -v anywhere, --version, help on every command, `controls
list`, filters and a --fail-on gate on evaluate, tenants by name or domain, errors in plain words, serve's port check
before anything starts, report saying what storage it needs."""

from __future__ import annotations

import argparse
import csv
import io
import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.cli import build_parser, main
from shared.cli.errors import UsageError
from shared.cli.output import walk
from shared.cli.tenantref import match
from shared.controls import CATALOGUE

FIXTURES = Path(__file__).parent.parent / "fixtures" / "snapshots"
FAILING = str(FIXTURES / "report_only_smtp_on.json")
HEALTHY = str(FIXTURES / "healthy.json")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- -o / --format / -v / --version / help --------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["-o", "json", "evaluate", "--snapshot", HEALTHY],
    ["evaluate", "--snapshot", HEALTHY, "-o", "json"],
    ["evaluate", "--snapshot", HEALTHY, "--output", "json"],
    ["evaluate", "--snapshot", HEALTHY, "--format", "json"],  # the old flag stays an alias
    ["evaluate", "-v", "--snapshot", HEALTHY, "-o", "json"],  # -v after the subcommand
])
def test_output_flag_and_verbose_work_before_or_after_the_subcommand(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert set(json.loads(out)) == {"tenantId", "evaluatedAt", "results"}


def test_verbose_after_the_subcommand_turns_logging_on(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr("shared.cli.configure_cli_logging", seen.append)
    assert main(["controls", "list", "-v"]) == 0
    assert main(["-v", "controls", "list"]) == 0
    assert main(["controls", "list"]) == 0
    assert seen == [True, True, False]


def test_output_that_conflicts_or_does_not_exist_is_refused_in_plain_words(capsys):
    code, out, err = run(capsys, "evaluate", "--snapshot", HEALTHY, "-o", "json", "--format", "table")
    assert code == 2 and out == "" and "disagree" in err
    code, _, err = run(capsys, "evaluate", "--snapshot", HEALTHY, "-o", "html")
    assert code == 2 and "table, json, csv, ocsf" in err and "default table" in err
    code, _, err = run(capsys, "-o", "json", "serve", "--port", "1")
    assert code == 2 and "does not apply" in err


def test_table_means_text_for_the_commands_that_say_text():
    args = build_parser().parse_args(["baseline", "accept", "--tenant", "x", "-o", "table"])
    from shared.cli.output import resolve_format

    resolve_format(args)
    assert args.format == "text"


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("authwatch ")


def test_every_subcommand_has_a_description_and_documents_its_output_default():
    parser = build_parser()
    for sub in walk(parser):
        assert sub.description, f"{sub.prog} --help has no description"
        formats = sub.get_default("formats")
        text = " ".join(sub.format_help().split())
        assert "-v, --verbose" in text, sub.prog
        if formats:
            assert "-o FORMAT, --output FORMAT" in text, sub.prog
            assert f"(default: {sub.get_default('format_default')})" in text, sub.prog
    assert "Exit status" in parser.format_help() and "3" in parser.format_help()


# --- controls list ---------------------------------------------------------------------------------------------------

def test_controls_list_in_every_format(capsys):
    code, out, _ = run(capsys, "controls", "list", "-o", "json")
    assert code == 0
    controls = json.loads(out)["controls"]
    assert [c["id"] for c in controls] == list(CATALOGUE)
    first = controls[0]
    assert first["severity"] == "high" and first["title"] and "CIS 5.2.2.3" in first["frameworks"]
    code, out, _ = run(capsys, "controls", "list", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == list(CATALOGUE) and set(rows[0]) == {"id", "severity", "title", "frameworks"}
    code, out, _ = run(capsys, "controls", "list")
    assert code == 0 and "SEVERITY" in out and "exo_smtp_auth_disabled" in out


# --- evaluate: filters, --fail-on, csv, ocsf -------------------------------------------------------------------------

def test_evaluate_filters_keep_the_json_shape(capsys):
    code, out, _ = run(capsys, "evaluate", "--snapshot", FAILING, "-o", "json", "--status", "fail",
                       "--severity", "low,medium")
    results = json.loads(out)["results"]
    assert code == 0 and [r["control"] for r in results] == ["exo_pop_imap_disabled"]
    code, out, _ = run(capsys, "evaluate", "--snapshot", FAILING, "-o", "json", "--control", "exo_smtp_auth_disabled",
                       "--control", "spo_legacy_auth_disabled")
    assert {r["control"] for r in json.loads(out)["results"]} == {"exo_smtp_auth_disabled", "spo_legacy_auth_disabled"}
    code, _, err = run(capsys, "evaluate", "--snapshot", FAILING, "--control", "nope")
    assert code == 2 and "--control 'nope' is not one of" in err


def test_fail_on_gates_a_pipeline_with_exit_3(capsys):
    code, out, err = run(capsys, "evaluate", "--snapshot", FAILING, "-o", "json", "--fail-on", "high")
    assert code == 3 and json.loads(out)["results"]  # the output is still written in full
    assert "exo_smtp_auth_disabled" in err and "exit 3" in err
    # only a failure at or above the severity trips it; without --fail-on the verdicts never change the exit status
    assert run(capsys, "evaluate", "--snapshot", FAILING, "--control", "exo_pop_imap_disabled",
               "--fail-on", "medium")[0] == 0
    assert run(capsys, "evaluate", "--snapshot", FAILING, "--control", "exo_pop_imap_disabled",
               "--fail-on", "low")[0] == 3
    assert run(capsys, "evaluate", "--snapshot", HEALTHY, "--fail-on", "low")[0] == 0
    assert run(capsys, "evaluate", "--snapshot", FAILING)[0] == 0
    with pytest.raises(SystemExit) as bad:  # argparse: not a severity
        main(["evaluate", "--snapshot", FAILING, "--fail-on", "severe"])
    assert bad.value.code == 2


def test_evaluate_csv_and_ocsf(capsys):
    code, out, _ = run(capsys, "evaluate", "--snapshot", FAILING, "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["control"] for r in rows] == list(CATALOGUE)
    assert next(r for r in rows if r["control"] == "exo_smtp_auth_disabled")["status"] == "fail"
    code, out, _ = run(capsys, "evaluate", "--snapshot", FAILING, "--format", "ocsf", "--control",
                       "exo_smtp_auth_disabled")
    [finding] = json.loads(out)
    assert finding["class_uid"] == 2003 and finding["metadata"]["version"] == "1.8.0"
    assert finding["compliance"]["status_id"] == 3 and finding["severity_id"] == 4
    assert finding["resources"][0]["uid"] == "8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"


# --- errors in plain words -------------------------------------------------------------------------------------------

def test_a_folder_given_as_a_snapshot_is_named_as_a_folder(capsys, tmp_path):
    code, out, err = run(capsys, "evaluate", "--snapshot", str(tmp_path))
    assert code == 2 and out == ""
    assert "is a folder, expected a snapshot file" in err and "Errno" not in err


def test_python_reprs_do_not_leak(capsys, tmp_path):
    bad = tmp_path / "snap.json"
    bad.write_text(json.dumps({"schemaVersion": 1, "tenantId": None, "collectedAt": "2026-11-23T08:00:00Z"}))
    code, _, err = run(capsys, "evaluate", "--snapshot", str(bad))
    assert code == 2 and "tenantId" in err and "None" not in err


def test_report_says_what_storage_it_needs(capsys, monkeypatch):
    for name in ("AUTHWATCH_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage", "AUTHWATCH_STORAGE_TABLE_URL",
                 "AUTHWATCH_STORAGE_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    code, out, err = run(capsys, "report", "--format", "html", "--out", "x.html")
    assert code == 2 and out == ""
    assert "AUTHWATCH_STORAGE_CONNECTION_STRING" in err and "--demo" in err


def test_report_refuses_a_folder_as_out_before_reading_anything(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("shared.cli.report._from_storage", lambda args, filters: ("x", {"tenants": [], "summary": {
        "tenants": 0, "openAlerts": 0}}))
    code, _, err = run(capsys, "report", "--out", str(tmp_path))
    assert code == 2 and "is a folder, expected a file name" in err


# --- serve checks its port first -------------------------------------------------------------------------------------

def test_serve_refuses_a_busy_port_before_starting_anything(capsys, monkeypatch):
    def must_not_start(*args, **kwargs):
        raise AssertionError("the demo (Azurite, the simulator, two cycles) started before the port was checked")

    monkeypatch.setattr("shared.cli.serve.running_demo", must_not_start)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        code, out, err = run(capsys, "serve", "--demo", "--port", str(port))
    assert code == 2 and time.monotonic() - started < 5
    assert f"port {port}" in err and "--port" in err and "--port 0" in err


# --- tenants by id, display name or verified domain ------------------------------------------------------------------

def tenant(tenant_id: str, name: str, domains: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(tenant_id=tenant_id, display_name=name, verified_domains=domains)


ROWS = [(tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000001", "Contoso", ("contoso.onmicrosoft.com", "contoso.com")), {}),
        (tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000002", "Fabrikam", ("fabrikam.onmicrosoft.com",)), {}),
        (tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000003", "Northwind"), {}),
        (tenant("8c1d0f4e-1a2b-4c3d-8e9f-000000000004", "northwind"), {})]


def test_a_tenant_is_named_by_id_display_name_or_verified_domain():
    assert match("8C1D0F4E-1A2B-4C3D-8E9F-000000000003", ROWS) == "8c1d0f4e-1a2b-4c3d-8e9f-000000000003"
    assert match("contoso", ROWS) == "8c1d0f4e-1a2b-4c3d-8e9f-000000000001"
    assert match("Contoso.OnMicrosoft.com", ROWS) == "8c1d0f4e-1a2b-4c3d-8e9f-000000000001"
    assert match("fabrikam.onmicrosoft.com", ROWS) == "8c1d0f4e-1a2b-4c3d-8e9f-000000000002"


def test_an_ambiguous_or_unknown_tenant_lists_the_candidates():
    with pytest.raises(UsageError) as ambiguous:
        match("Northwind", ROWS)
    assert "names 2 tenants" in str(ambiguous.value) and "000000000003" in str(ambiguous.value)
    with pytest.raises(UsageError) as unknown:
        match("Fabri", ROWS)
    assert "not a registered tenant" in str(unknown.value) and "Fabrikam (8c1d0f4e" in str(unknown.value)


def test_a_tenant_name_without_storage_says_so(capsys, monkeypatch):
    for name in ("AUTHWATCH_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage", "AUTHWATCH_STORAGE_TABLE_URL",
                 "AUTHWATCH_STORAGE_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "baseline", "accept", "--tenant", "contoso.onmicrosoft.com")
    assert code == 2 and "is a name, which needs the registry" in err and "AUTHWATCH_STORAGE_CONNECTION_STRING" in err

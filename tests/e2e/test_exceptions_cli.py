"""The installed `authwatch` command with exceptions in snapshot settings (issue 21), as a person runs it: evaluate
shows an accepted finding as pass with the exception and refuses a malformed list (exit 2, the field named); replay
over files stays quiet for an accepted new failure and raises control.failed once after the expiry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.test_exceptions_overlay import OVERRIDES, exception, tenant

ROOT = Path(__file__).resolve().parents[2]
AUTHWATCH = Path(sys.executable).parent / "authwatch"


def authwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AUTHWATCH), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def write(folder: Path, name: str, document: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def scanner_exception() -> dict:
    return exception(scope={"mailboxes": ["scanner@contoso.com"]}, created="2026-11-01T00:00:00Z",
                     expires="2026-11-25T00:00:00Z")


def test_evaluate_shows_the_accepted_finding_and_refuses_a_malformed_list(tmp_path):
    good = write(tmp_path, "good.json", tenant(overrides=("scanner",), exceptions=[scanner_exception()]))
    done = authwatch("evaluate", "--snapshot", str(good), "--format", "json")
    assert done.returncode == 0, done.stderr
    by_control = {result["control"]: result for result in json.loads(done.stdout)["results"]}
    assert by_control[OVERRIDES]["status"] == "pass"
    assert by_control[OVERRIDES]["summary"].startswith("Accepted by exception printer-1 (owner Jane Doe, until "
                                                       "2026-11-25): ")
    table = authwatch("evaluate", "--snapshot", str(good))
    assert table.returncode == 0 and "Accepted by exception printer-1" in " ".join(table.stdout.split())

    bad = write(tmp_path, "bad.json", tenant(exceptions=[{**scanner_exception(), "owner": ""}]))
    done = authwatch("evaluate", "--snapshot", str(bad), "--format", "json")
    assert done.returncode == 2 and done.stdout == ""
    assert "settings.exceptions[0].owner: required, a non-empty string" in done.stderr


def test_replay_is_quiet_for_an_accepted_failure_and_fails_once_after_the_expiry(tmp_path):
    write(tmp_path, "1.json", tenant(collected_at="2026-11-20T08:00:00Z"))
    write(tmp_path, "2.json", tenant(overrides=("scanner",), exceptions=[scanner_exception()],
                                     collected_at="2026-11-21T08:00:00Z"))
    write(tmp_path, "3.json", tenant(overrides=("scanner",), exceptions=[scanner_exception()],
                                     collected_at="2026-11-26T08:00:00Z"))
    done = authwatch("replay", str(tmp_path / "1.json"), str(tmp_path / "2.json"))
    assert done.returncode == 0, done.stderr
    first_two = [json.loads(line) for line in done.stdout.splitlines()]
    # The change itself is still said (an override switched SMTP AUTH on: drift, not a finding); the accepted
    # failure raises no control.failed; four days left: the reminder.
    assert [(event["type"], event["control"]) for event in first_two] == [
        ("basic_auth.reenabled", OVERRIDES), ("exception.expiring", OVERRIDES)]
    done = authwatch("replay", str(tmp_path))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(event["at"], event["type"]) for event in events] == [
        ("2026-11-21T08:00:00Z", "basic_auth.reenabled"), ("2026-11-21T08:00:00Z", "exception.expiring"),
        ("2026-11-26T08:00:00Z", "control.failed"), ("2026-11-26T08:00:00Z", "exception.expired")]
    assert all(set(event) == {"at", "tenantId", "type", "control", "severity", "summary", "details"}
               for event in events)

"""`authwatch demo` (what `make demo` runs) works end to end: Azurite, simulator, collection, storage, the table."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from shared.controls import controls
from simulator.demo_fleet import demo_fleet


def run_demo() -> str:
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("AUTHWATCH_STORAGE_CONNECTION_STRING", None)
    done = subprocess.run([sys.executable, "-m", "shared.cli", "demo"], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "get_token failed" not in done.stderr
    return done.stdout


def matrix(out: str) -> dict[str, dict[str, str]]:
    """The tenants × controls table, as {tenant: {column label: status}}."""
    lines = [line for line in out.split("What needs attention")[0].splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("TENANT"))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def test_demo_runs_a_cycle_and_shows_every_story():
    out = run_demo()
    # Its last line names a command the user can run from here as printed (authwatch is in the venv, not on PATH).
    import shutil

    command = re.search(r"Dashboard: (\S+) serve --demo", out).group(1)
    assert shutil.which(command) or os.access(command, os.X_OK), command
    table = matrix(out)
    label = {control.id: control.metadata.label for control in controls()}
    assert set(table) == {tenant["displayName"] for tenant in demo_fleet()["tenants"]}
    assert set(table["Contoso"].values()) == {"PASS"}
    assert table["Fabrikam"][label["entra_legacy_auth_blocked"]] == "FAIL" and "report-only" in out
    assert table["Northwind Traders"][label["exo_smtp_auth_disabled"]] == "FAIL"  # SMTP AUTH re-enabled
    assert table["Tailspin Toys"][label["entra_legacy_signins_blocked"]] == "PENDING"  # inside its 24-hour window
    assert table["Litware"][label["entra_legacy_signins_blocked"]] == "N/A"  # no Entra P1
    assert set(table["Woodgrove Bank"].values()) == {"UNKNOWN"}
    assert "UNREACHABLE" in out and "AADSTS7000229" in out  # no service principal, the others carry on
    assert "cccccccc-0000-0000-0000-000000000003" in out  # the unapproved exclusion is named
    assert "read back" in out
    # The story: each scripted change raises its alert once, as simulated hours pass.
    alerts = [line for line in out.splitlines() if line.startswith("■ ")]
    assert any(line.startswith("■ Contoso: Legacy auth not blocked") for line in alerts)
    assert "Protection weakened by admin@contoso.example" in out and "Changed by:" in out
    assert any(line.startswith("■ Litware: Basic authentication re-enabled") for line in alerts)
    # Who turned SMTP AUTH on for the printer: Microsoft's audit log names the admin later, in the same alert.
    assert "Litware: basic_auth.reenabled" in out and "changed by it-admin@litware.example" in out
    assert "Set-CASMailbox" in out
    assert any(line.startswith("■ Tailspin Toys: Enforcement gap") for line in alerts)
    assert any(line.startswith("■ Woodgrove Bank: Resolved: authwatch can read this tenant again") for line in alerts)
    assert any(line.startswith("■ Contoso: Enforcement confirmed") for line in alerts)
    # Exchange's own window (issue 18): the scanner's policy tightened, its SMTP AUTH inside the window expected,
    # then confirmed once the window closed.
    assert any(line.startswith("■ Fabrikam: Resolved: No applied authentication policy") for line in alerts)
    assert "Authentication policy 'Allow SMTP for scanner' stops Basic authentication for SMTP; Exchange can take up " \
           "to 24 hours" in out
    assert any(line.startswith("■ Fabrikam: Enforcement confirmed: no successful SMTP AUTH sign-in") for line in alerts)
    assert "left): authentication policy 'Allow SMTP for scanner'" in out  # its countdown while open
    assert len(alerts) == 8 and "window closes" in out  # one grouped message per tenant and change, no repeats
    # The readiness list before the story: who still sends with SMTP AUTH ahead of Microsoft's switch-off.
    readiness = out.split("SMTP AUTH Basic readiness before the switch-off")[1].split("Simulated hours pass")[0]
    assert "MC786329" in readiness and "scanner@fabrikam.example" in readiness
    assert "HTML report" in out
    # The MSP story: discover 12 GDAP customers, onboard 10, two need a fix; the ended relationship reported once.
    assert "13 customer(s) through GDAP: 12 with an active relationship, 1 watched" in out
    assert "1 lacks role, 1 missing exchange role, 10 ready" in out
    assert "fix: Add Privileged Role Administrator to the GDAP relationship with Wide World Importers" in out
    assert "Offboarding: The GDAP relationship with Trey Research has ended" in out
    assert "relationships ended and reported this time: 0" in out


def test_demo_fleet_fails_and_passes_every_control():
    table = matrix(run_demo())
    for control in controls():
        column = [row[control.metadata.label] for row in table.values()]
        assert "FAIL" in column and "PASS" in column, control.id

"""`authwatch demo` (what `make demo` runs) works end to end: Azurite, simulator, collection, storage, the table."""

from __future__ import annotations

import os
import subprocess
import sys

from simulator.demo_fleet import demo_fleet


def test_demo_runs_a_cycle_and_prints_every_tenant_with_its_verdicts():
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("AUTHWATCH_STORAGE_CONNECTION_STRING", None)
    done = subprocess.run([sys.executable, "-m", "shared.cli", "demo"], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr and "get_token failed" not in done.stderr
    matrix = out.split("What needs attention")[0]
    rows = {line.split("  ")[0]: line for line in matrix.splitlines()}
    for tenant in demo_fleet()["tenants"]:
        assert tenant["displayName"] in out
    assert "FAIL" in rows["Fabrikam"] and "report-only" in out
    assert rows["Northwind Traders"].split()[-1] == "FAIL"  # SMTP AUTH re-enabled
    assert rows["Contoso"].split()[1:] == ["PASS", "PASS"]
    assert "UNREACHABLE" in out and "AADSTS700016" in out  # consent revoked, the others carry on
    assert "cccccccc-0000-0000-0000-000000000003" in out  # the unapproved exclusion is named
    assert "read back" in out

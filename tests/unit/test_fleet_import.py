"""`tenants import` without storage: each bad row's reason in the file's words, the header checks, what an existing
tenant keeps, and the progress bar (issue 20, part 1)."""

from __future__ import annotations

import io
import uuid

import pytest

from shared.cli.tenants_import import Progress
from shared.collect.credentials import CredentialSpec
from shared.tenants import fleet_import
from shared.tenants.config import TenantConfig

ENV = {"AUTHWATCH_APP_CLIENT_ID": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
       "AZURE_CLIENT_ID": "0b7e6f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"}


def plan_csv(text: str, existing: dict | None = None, env: dict | None = None) -> list[fleet_import.Outcome]:
    return fleet_import.plan(fleet_import.read_csv(text), existing or {}, ENV if env is None else env)


@pytest.mark.parametrize(("cells", "why"), [
    ("not-a-guid,Contoso", "tenantId: expected a GUID"),
    ("{id},", "name: required"),
    ("{id},Contoso,password", "credentialMode: 'password' is not one of federated, secret, certificate"),
    ("{id},Contoso,secret", "secretSetting: required with mode secret"),
    ("{id},Contoso,federated,,,AUTHWATCH_SECRET", "secretSetting: not used with mode federated"),
    ("{id},Contoso,,,,,,4", "scheduleMinutes: expected whole minutes between 5 and 1440"),
    ("{id},Contoso,,,,,,soon", "scheduleMinutes: expected whole minutes, got 'soon'"),
    ("{id}," + "x" * 257, "name: expected a non-empty name of at most 256 characters"),
    ("{id}," + "x" * 2000, "name: value too long (2,000 characters; at most 1,024)"),
    ("{id},Contoso,,,,,,,a;" + "t" * 65, "tags[1]: expected a non-empty tag of at most 64 characters"),
    ("{id},Contoso,,,,,,,,maybe", "enabled: expected true or false, got 'maybe'"),
    ("{id},Contoso,,,,,,,,,surplus", "11 values, but the header names 10 columns"),
])
def test_each_bad_row_says_why_in_the_files_words(cells, why):
    header = ",".join(fleet_import.COLUMNS)
    [outcome] = plan_csv(f"{header}\n{cells.format(id=uuid.uuid4())}\n")
    assert outcome.outcome == "rejected" and outcome.reason.startswith(why), outcome.reason


def test_defaults_come_from_the_environment_like_tenants_add():
    tenant = str(uuid.uuid4())
    [added] = plan_csv(f"tenantId,name\n{tenant},Contoso\n")
    assert added.outcome == "added" and added.config.credential.mode == "federated"
    assert added.config.credential.managed_identity_client_id == ENV["AZURE_CLIENT_ID"]
    [rejected] = plan_csv(f"tenantId,name\n{tenant},Contoso\n", env={})
    assert rejected.reason.startswith("clientId: empty, and AUTHWATCH_APP_CLIENT_ID is not set")


def test_an_existing_tenant_keeps_what_the_file_leaves_out():
    tenant = str(uuid.uuid4())
    current = TenantConfig(tenant_id=tenant, display_name="Contoso", tags=("eu",), schedule_minutes=60,
                           enabled=False, credential=CredentialSpec(mode="secret", client_id=ENV[
                               "AUTHWATCH_APP_CLIENT_ID"], secret_setting="AUTHWATCH_SECRET_C"),
                           approved_exclusions={"users": ["breakglass"]})
    [same] = plan_csv(f"tenantId,name,tags\n{tenant},Contoso,\n", {tenant: current})
    assert same.outcome == "unchanged"
    [changed] = plan_csv(f"tenantId,name,tags,enabled\n{tenant},Contoso Ltd,eu;gold,true\n", {tenant: current})
    assert changed.text() == f"line 2 {tenant}: updated (fields name, tags, enabled)"
    assert changed.changes == {"displayName": "Contoso Ltd", "tags": ["eu", "gold"], "enabled": True}


def test_a_duplicate_is_rejected_naming_the_first_line():
    tenant = str(uuid.uuid4())
    outcomes = plan_csv(f"tenantId,name\n{tenant},A\n\n{tenant.upper()},B\n")
    assert [item.outcome for item in outcomes] == ["added", "rejected"]
    assert outcomes[1].text() == f"line 4 {tenant}: rejected: tenantId: {tenant} is already on line 2 (the first " \
                                 "one counts)"


@pytest.mark.parametrize(("text", "why"), [
    ("", "the file is empty"),
    ("tenantId,name,colour\n", "unknown column 'colour'"),
    ("tenantId,name,name\n", "column 'name' appears twice"),
    ("tenantId\n", "the header has no 'name' column"),
])
def test_a_bad_header_refuses_the_whole_file(text, why):
    with pytest.raises(fleet_import.ImportFileError, match=why):
        fleet_import.read_csv(text)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_on_a_terminal_and_prints_tenths_elsewhere():
    terminal = Terminal()
    progress = Progress(terminal)
    for done in range(1, 501):
        progress(done, 500)
    drawn = terminal.getvalue()
    assert drawn.count("\r") <= 201 and drawn.endswith("\rimport  [####################] 500/500\n")
    assert "\rimport  [##########..........] 252/500" in drawn

    log = io.StringIO()
    progress = Progress(log)
    for done in range(1, 501):
        progress(done, 500)
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[5] == "import  [##########..........] 250/500"
    quiet = io.StringIO()
    Progress(quiet)(1, 3)  # too short a run for a bar
    assert quiet.getvalue() == ""

"""`authwatch tenants list|show|enable|disable|remove` and their HTTP routes (issue 20, part 1), against real storage
(Azurite) and the simulator, through `main` and the function app's own entry points.

Storage is the session's Azurite, shared with other tests: every check looks at the tenants this module registered
(fresh GUIDs), never at the whole registry."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from shared.cli import main
from shared.cli.tenants_manage import LIST_COLUMNS
from shared.collect.credentials import CredentialSpec
from shared.cycle.fleet import evaluate_registered
from shared.storage.tenant_store import REGISTRY_ROW
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.tenants import permissions
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry
from tests.builders import block_policy
from tests.conftest import fleet_for

ROOT = Path(__file__).parents[2]
APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "manage-secret"}
SETTING = "AUTHWATCH_MANAGE_SECRET"
SPEC = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=SETTING)


@pytest.fixture
def fleet_of_four(monkeypatch, simulator_for, storage_connection_string) -> dict[str, str]:
    """Four tenants of our own: failing (evaluated, an open alert), unreachable (no consent: evaluated), never
    evaluated, and disabled. Names sort as listed; one name holds a comma (CSV quoting)."""
    ids = {kind: str(uuid.uuid4()) for kind in ("failing", "unreachable", "fresh", "disabled")}
    suffix = uuid.uuid4().hex[:6]
    names = {"failing": f"Aa Fabrikam, Inc. {suffix}", "unreachable": f"Ab Woodgrove {suffix}",
             "fresh": f"Ac Northwind {suffix}", "disabled": f"Ad Litware {suffix}"}
    sim = simulator_for({"app": dict(APP), "tenants": [
        {"tenantId": ids["failing"], "displayName": "Fabrikam",
         "graph": {"conditionalAccessPolicies": [block_policy()]},
         "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": False}}},
        {"tenantId": ids["unreachable"], "displayName": "Woodgrove", "consent": False}]})
    env = {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string, "AUTHWATCH_AUTHORITY_HOST": sim.url,
           "AUTHWATCH_GRAPH_URL": sim.graph_url, "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
           SETTING: APP["clientSecret"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def register() -> None:
        fleet = fleet_for(storage_connection_string, sim, env)
        try:
            await fleet.create()
            for kind, tenant_id in ids.items():
                await fleet.registry.add(TenantConfig(tenant_id=tenant_id, display_name=names[kind], credential=SPEC,
                                                      enabled=kind != "disabled", tags=("msp",)))
            now = datetime.now(timezone.utc)
            for kind in ("failing", "unreachable"):
                await evaluate_registered(fleet, ids[kind], now=now)
        finally:
            await fleet.close()

    asyncio.run(register())
    return {**ids, **{f"name:{kind}": name for kind, name in names.items()}}


def ours(rows: list[dict[str, Any]], fleet: dict[str, str]) -> dict[str, dict[str, Any]]:
    kinds = {fleet[kind]: kind for kind in ("failing", "unreachable", "fresh", "disabled")}
    return {kinds[row["tenantId"]]: row for row in rows if row["tenantId"] in kinds}


def test_list_in_json_csv_and_table(fleet_of_four, capsys):
    fleet = fleet_of_four
    assert main(["tenants", "list", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = ours(rows, fleet)
    assert set(rows[0]) == set(LIST_COLUMNS)
    assert mine["failing"]["status"] == "failing" and mine["failing"]["openAlerts"] >= 1
    assert mine["failing"]["lastSuccessAt"] and mine["failing"]["problem"] is None
    assert mine["unreachable"]["status"] == "unreachable" and mine["unreachable"]["problem"]
    assert mine["unreachable"]["openAlerts"] >= 1  # tenant.unreachable is itself an open alert
    assert mine["fresh"]["status"] == "never evaluated" and mine["fresh"]["lastSuccessAt"] is None
    assert mine["fresh"]["openAlerts"] == 0
    assert mine["disabled"]["status"] == "disabled" and mine["disabled"]["enabled"] is False
    assert {row["credentialMode"] for row in mine.values()} == {"secret"}
    assert all(row["onboarding"] is None for row in mine.values())
    order = [row["tenantId"] for row in rows if row["tenantId"] in {fleet[k] for k in mine}]
    assert order == [fleet[kind] for kind in ("failing", "unreachable", "fresh", "disabled")]  # by name

    assert main(["tenants", "list", "--format", "csv"]) == 0
    text = capsys.readouterr().out
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == LIST_COLUMNS
    by_id = {row["tenantId"]: row for row in reader}
    assert by_id[fleet["failing"]]["displayName"] == fleet["name:failing"]  # the comma survived the quoting
    assert f'"{fleet["name:failing"]}"' in text
    assert by_id[fleet["disabled"]]["enabled"] == "false" and by_id[fleet["fresh"]]["lastSuccessAt"] == ""

    assert main(["tenants", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split()[:3] == ["NAME", "TENANT", "ID"] and "OPEN ALERTS" in header and "PROBLEM" in header
    column = header.index("TENANT ID")
    for kind in ("failing", "unreachable", "fresh", "disabled"):
        line = next(line for line in lines if fleet[kind] in line)
        assert line.index(fleet[kind]) == column  # aligned under its header
    assert "NEVER EVALUATED" in next(line for line in lines if fleet["fresh"] in line)


def test_show_a_tenant_as_text_and_json(fleet_of_four, capsys):
    fleet = fleet_of_four
    assert main(["tenants", "show", fleet["failing"]]) == 0
    text = capsys.readouterr().out
    assert fleet["name:failing"] in text and "status:           failing" in text
    assert "exo_smtp_auth_disabled" in text and "Open alerts (" in text and "Recent history" in text
    assert SETTING in text and APP["clientSecret"] not in text  # the setting's name, never its value

    assert main(["tenants", "show", fleet["name:unreachable"], "-o", "json"]) == 0  # by display name
    detail = json.loads(capsys.readouterr().out)
    assert detail["tenantId"] == fleet["unreachable"] and detail["status"] == "unreachable"
    assert detail["problem"] and detail["consecutiveFailures"] >= 0
    assert detail["openAlerts"] and detail["history"]
    assert "routing" not in detail and detail["credential"] == SPEC.to_json()

    assert main(["tenants", "show", str(uuid.uuid4())]) == 2
    assert "tenants add" in capsys.readouterr().err


def test_disable_and_enable_are_idempotent(fleet_of_four, storage_connection_string, capsys):
    tenant = fleet_of_four["fresh"]
    assert main(["tenants", "disable", tenant]) == 0
    assert "Disabled" in capsys.readouterr().out
    version = registry_get(storage_connection_string, tenant).config_version
    assert main(["tenants", "disable", tenant]) == 0
    assert "already disabled" in capsys.readouterr().out
    assert registry_get(storage_connection_string, tenant).config_version == version  # nothing written
    assert main(["tenants", "enable", tenant]) == 0
    assert "Enabled" in capsys.readouterr().out
    assert main(["tenants", "enable", tenant]) == 0
    assert "already enabled" in capsys.readouterr().out
    assert registry_get(storage_connection_string, tenant).enabled is True


def registry_get(connection: str, tenant_id: str) -> TenantConfig | None:
    async def get() -> TenantConfig | None:
        async with TenantRegistry.from_connection_string(connection) as registry:
            return await registry.get(tenant_id)

    return asyncio.run(get())


def partition(connection: str, table: str, tenant_id: str) -> list[str]:
    with TableServiceClient.from_connection_string(connection) as service:
        try:
            return [row["RowKey"] for row in service.get_table_client(table).query_entities(
                "PartitionKey eq @t", parameters={"t": tenant_id}, select=["RowKey"])]
        except ResourceNotFoundError:
            return []  # a table nobody created holds nothing


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_remove_refuses_without_yes_off_a_terminal_and_asks_on_one(fleet_of_four, storage_connection_string,
                                                                  monkeypatch, capsys):
    tenant = fleet_of_four["failing"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a pipe, a CI job
    assert main(["tenants", "remove", tenant]) == 2
    assert "--yes" in capsys.readouterr().err
    assert registry_get(storage_connection_string, tenant) is not None

    monkeypatch.setattr(sys, "stdin", FakeTerminal())
    monkeypatch.setattr("builtins.input", lambda prompt="": "someone else")
    assert main(["tenants", "remove", tenant]) == 1
    assert "Not removed" in capsys.readouterr().err
    assert registry_get(storage_connection_string, tenant) is not None

    monkeypatch.setattr("builtins.input", lambda prompt="": fleet_of_four["name:failing"].upper())
    assert main(["tenants", "remove", tenant]) == 0
    assert registry_get(storage_connection_string, tenant) is None


def test_remove_keeps_history_and_says_what_to_withdraw(fleet_of_four, storage_connection_string, capsys):
    tenant = fleet_of_four["failing"]
    history = [key for key in partition(storage_connection_string, STATE_TABLE, tenant) if key.startswith("e:")]
    assert history
    assert main(["tenants", "remove", tenant, "--yes"]) == 0
    out = capsys.readouterr().out
    assert registry_get(storage_connection_string, tenant) is None
    kept = [key for key in partition(storage_connection_string, STATE_TABLE, tenant) if key.startswith("e:")]
    assert kept == history and "history is kept" in out
    # The reverse of what `tenants add` asked for, with the same role group, role and app.
    assert f"az ad sp delete --id {APP['clientId']}" in out
    assert f'Remove-RoleGroupMember -Identity "{permissions.EXCHANGE_ROLE_GROUP}"' in out
    assert permissions.GLOBAL_READER.id in out and "roleAssignments" in out
    assert f"adminconsent?client_id={APP['clientId']}" in out
    assert "Keep it: " in out  # the other tenants of this module still sign in with the same app setting
    assert main(["tenants", "show", tenant]) == 2  # gone from the registry
    assert main(["tenants", "remove", tenant, "--yes"]) == 2  # not registered any more: named, exit 2


def test_remove_purge_deletes_history_in_batches(fleet_of_four, storage_connection_string, capsys):
    tenant = fleet_of_four["unreachable"]
    assert main(["tenants", "show", tenant]) == 0  # reading its open alerts writes their rows
    capsys.readouterr()
    assert len(partition(storage_connection_string, STATE_TABLE, tenant)) > 1
    assert partition(storage_connection_string, "AuthwatchOpenAlerts", tenant)
    assert main(["tenants", "remove", tenant, "--purge", "--yes", "-o", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["purged"] is True and result["deletedRows"][STATE_TABLE] >= 1
    assert [step["title"] for step in result["withdraw"]][:3] == [
        "Exchange read access for the app",
        f"The Entra role {permissions.GLOBAL_READER.name} (if it was assigned instead of the role group)",
        "Admin consent (the app's enterprise application)"]
    # Only the change marker stays (it keeps a stale queued message from bringing the tenant back).
    assert partition(storage_connection_string, STATE_TABLE, tenant) == [REGISTRY_ROW]
    assert partition(storage_connection_string, "AuthwatchOpenAlerts", tenant) == []
    assert registry_get(storage_connection_string, tenant) is None


# -- the HTTP routes ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_functions() -> dict[str, Any]:
    """The function app as the host indexes it (a fresh copy: get_functions() runs once per FunctionApp)."""
    spec = importlib.util.spec_from_file_location("function_app_for_tenants_manage", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {function.get_function_name(): function for function in module.app.get_functions()}


def http(app: dict[str, Any], name: str, method: str, *, tenant_id: str | None = None,
         body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    request = func.HttpRequest(method=method, url="http://localhost/api/tenants", body=data,
                               route_params={"tenantId": tenant_id} if tenant_id else {},
                               headers={"content-type": "application/json"} if data else {})
    response = asyncio.run(app[name].get_user_function()(request))
    return response.status_code, json.loads(response.get_body())


def test_the_http_routes_list_enable_remove_and_import(fleet_of_four, app_functions, storage_connection_string,
                                                       monkeypatch):
    fleet = fleet_of_four
    status, body = http(app_functions, "list_tenants", "GET")
    mine = ours(body["tenants"], fleet)
    assert status == 200 and mine["failing"]["openAlerts"] >= 1 and mine["fresh"]["credentialMode"] == "secret"
    assert "onboarding" in mine["fresh"] and mine["unreachable"]["problem"]

    status, body = http(app_functions, "enable_tenant", "POST", tenant_id=fleet["disabled"])
    assert status == 200 and body["enabled"] is True and body["changed"] is True
    status, body = http(app_functions, "enable_tenant", "POST", tenant_id=fleet["disabled"])
    assert status == 200 and body["changed"] is False

    status, body = http(app_functions, "remove_tenant", "DELETE", tenant_id=fleet["fresh"], body={"purge": "yes"})
    assert status == 400 and "purge" in body["error"]
    assert registry_get(storage_connection_string, fleet["fresh"]) is not None
    status, body = http(app_functions, "remove_tenant", "DELETE", tenant_id=fleet["fresh"], body={"purge": False})
    assert status == 200 and body["removed"] and body["historyKept"]
    assert any("az ad sp delete" in command for step in body["withdraw"] for command in step["commands"])
    status, body = http(app_functions, "remove_tenant", "DELETE", tenant_id=fleet["fresh"])
    assert status == 404 and "no tenant" in body["error"]

    monkeypatch.setenv("AUTHWATCH_APP_CLIENT_ID", APP["clientId"])
    new = str(uuid.uuid4())
    items = [{"tenantId": new, "name": "Imported over HTTP", "credentialMode": "secret", "secretSetting": SETTING},
             {"tenantId": fleet["failing"], "name": fleet["name:failing"], "credentialMode": "secret"},
             {"tenantId": "not-a-guid", "name": "Bad"}]
    status, body = http(app_functions, "import_tenants", "POST", body={"tenants": items})
    assert status == 200, body
    assert [row["outcome"] for row in body["rows"]] == ["added", "unchanged", "rejected"]
    assert "GUID" in body["rows"][2]["reason"]
    assert body["summaryText"] == "1 added, 0 updated, 1 unchanged, 1 rejected"
    assert registry_get(storage_connection_string, new).display_name == "Imported over HTTP"
    status, body = http(app_functions, "import_tenants", "POST", body=[items[0]])
    assert status == 400 and "tenants" in body["error"]

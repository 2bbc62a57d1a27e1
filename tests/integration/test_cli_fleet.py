"""`authwatch run` and `authwatch alerts list|ack|snooze` against real storage (Azurite) and the simulator."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from shared.cli import main
from shared.collect.credentials import CredentialSpec
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry
from tests.builders import block_policy

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "cli-secret"}


@pytest.fixture
def registered(monkeypatch, simulator_for, storage_connection_string):
    smtp_on, revoked = str(uuid.uuid4()), str(uuid.uuid4())
    tenants = [{"tenantId": smtp_on, "displayName": "Fabrikam CLI",
                "graph": {"conditionalAccessPolicies": [block_policy()]},
                "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": False}}},
               {"tenantId": revoked, "displayName": "Woodgrove CLI", "consent": False}]
    sim = simulator_for({"app": dict(APP), "tenants": tenants})
    for name, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                        "AUTHWATCH_AUTHORITY_HOST": sim.url, "AUTHWATCH_GRAPH_URL": sim.graph_url,
                        "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                        "AUTHWATCH_CLI_SECRET": APP["clientSecret"]}.items():
        monkeypatch.setenv(name, value)
    spec = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting="AUTHWATCH_CLI_SECRET")

    async def register():
        async with TenantRegistry.from_connection_string(storage_connection_string) as registry:
            await registry.create()
            for tenant in tenants:
                await registry.add(TenantConfig(tenant_id=tenant["tenantId"], display_name=tenant["displayName"],
                                                credential=spec))

    asyncio.run(register())
    return smtp_on, revoked


def test_run_evaluates_every_registered_tenant_and_alerts_can_be_acted_on(registered, capsys):
    smtp_on, revoked = registered
    assert main(["run", "--format", "json"]) == 0
    rows = {row["tenantId"]: row for row in json.loads(capsys.readouterr().out)["tenants"]}
    assert rows[smtp_on]["outcome"] == "ok" and "exo_smtp_auth_disabled" in rows[smtp_on]["failing"]
    assert rows[revoked]["outcome"] == "unreachable"

    assert main(["alerts", "list", "--tenant", smtp_on, "--format", "json"]) == 0
    alerts = json.loads(capsys.readouterr().out)["openAlerts"]
    failed = next(a for a in alerts if a["control"] == "exo_smtp_auth_disabled")
    assert main(["alerts", "ack", "--tenant", smtp_on, "--alert", failed["id"], "--by", "oncall"]) == 0
    assert main(["alerts", "snooze", "--tenant", smtp_on, "--alert", failed["id"], "--until",
                 "2099-01-01T00:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["alerts", "list", "--tenant", smtp_on, "--format", "json"]) == 0
    again = next(a for a in json.loads(capsys.readouterr().out)["openAlerts"] if a["id"] == failed["id"])
    assert again["acknowledged"] and again["snoozed"] and again["acknowledgedBy"] == "oncall"


def test_alert_commands_explain_bad_input(registered, capsys):
    smtp_on, _ = registered
    assert main(["alerts", "list", "--tenant", "nope"]) == 2
    assert "GUID" in capsys.readouterr().err
    assert main(["alerts", "snooze", "--tenant", smtp_on, "--alert", "a" * 32, "--until", "yesterday"]) == 2
    assert "until" in capsys.readouterr().err
    assert main(["alerts", "list", "--tenant", str(uuid.uuid4())]) == 2
    assert "tenants add" in capsys.readouterr().err


def test_tenants_by_name_or_domain_reports_filters_and_the_gate(monkeypatch, simulator_for, storage_connection_string,
                                                                 capsys):
    """Issue 23: --tenant takes a display name or a verified domain (recorded by the worker from the tenant's
    organization on its first evaluation) through the registry;
    report -o ocsf / --failing-only / --fail-on work on stored results."""
    suffix = uuid.uuid4().hex[:8]
    smtp_on, twin_a, twin_b = (str(uuid.uuid4()) for _ in range(3))
    name, domain, twin = f"Tailspin {suffix}", f"tailspin{suffix}.onmicrosoft.com", f"Twin {suffix}"
    tenants = [{"tenantId": smtp_on, "displayName": name,
                "graph": {"conditionalAccessPolicies": [block_policy()]},
                "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": False}}}]
    sim = simulator_for({"app": dict(APP), "tenants": tenants})
    for key, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                       "AUTHWATCH_AUTHORITY_HOST": sim.url, "AUTHWATCH_GRAPH_URL": sim.graph_url,
                       "AUTHWATCH_EXCHANGE_URL": sim.url, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                       "AUTHWATCH_CLI_SECRET": APP["clientSecret"]}.items():
        monkeypatch.setenv(key, value)
    spec = CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting="AUTHWATCH_CLI_SECRET")

    async def register():
        async with TenantRegistry.from_connection_string(storage_connection_string) as registry:
            await registry.create()
            await registry.add(TenantConfig(tenant_id=smtp_on, display_name=name, credential=spec))
            for twin_id in (twin_a, twin_b):
                await registry.add(TenantConfig(tenant_id=twin_id, display_name=twin, credential=spec, enabled=False))

    asyncio.run(register())
    assert main(["run", "-o", "json"]) == 0
    capsys.readouterr()

    assert main(["alerts", "list", "--tenant", name.upper(), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["tenantId"] == smtp_on
    assert main(["report", "--tenant", domain, "-o", "json", "--failing-only"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scope"] == {"kind": "tenant", "tenantId": smtp_on}
    shown = report["tenants"][0]["controls"]
    assert shown and {c["status"] for c in shown} <= {"fail", "pending", "unknown"}
    assert "exo_smtp_auth_disabled" in {c["control"] for c in shown}

    assert main(["report", "--tenant", name, "--format", "ocsf", "--control", "exo_smtp_auth_disabled",
                 "--fail-on", "high"]) == 3
    captured = capsys.readouterr()
    [finding] = json.loads(captured.out)
    assert finding["class_uid"] == 2003 and finding["compliance"]["status_id"] == 3
    assert finding["resources"][0] == {"uid": smtp_on, "name": name, "type": "Microsoft 365 tenant"}
    assert "--fail-on high" in captured.err

    assert main(["report", "--tenant", twin, "-o", "csv"]) == 2
    err = capsys.readouterr().err
    assert "names 2 tenants" in err and twin_a in err and twin_b in err
    assert main(["baseline", "accept", "--tenant", f"nobody-{suffix}.example"]) == 2
    assert "not a registered tenant" in capsys.readouterr().err

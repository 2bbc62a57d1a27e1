"""SMTP AUTH Basic readiness through its surfaces, from storage written by the storage classes (as if each tenant had
been evaluated once): `authwatch readiness smtp-basic` (table, json, csv, --tenant by name) and
GET /api/readiness/smtp-basic through the function app's real entry point."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import datetime, timezone

import azure.functions as func
import pytest

from shared.cli import main

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
# Unique per run: the session's Azurite (and its registry) is shared with other tests.
RUN = uuid.uuid4().hex[:8]
SENDING, QUIET = (str(uuid.UUID(int=uuid.uuid4().int)) for _ in range(2))
SENDING_NAME, QUIET_NAME = f"Readiness Scanner {RUN}", f"Readiness Quiet {RUN}"


def _results(smtp_disabled: bool):
    from shared.model import ControlResult, Severity, Status

    status = Status.PASS if smtp_disabled else Status.FAIL
    return [ControlResult("exo_smtp_auth_disabled", status, Severity.HIGH, "smtp",
                          {"SmtpClientAuthenticationDisabled": smtp_disabled}),
            ControlResult("exo_smtp_auth_mailbox_overrides", Status.PASS, Severity.HIGH, "overrides",
                          {"overrideCount": 0, "overrides": [], "explicitlyDisabled": 0}),
            ControlResult("exo_basic_auth_policy", Status.PASS, Severity.HIGH, "policies",
                          {"defaultPolicy": None, "appliedPolicies": [], "appliedPolicyCount": 0,
                           "appliedPoliciesAllowingBasic": []})]


def _state(tenant_id: str, signins: list[dict]) -> dict:
    from shared.model import format_time
    from shared.state.compare import STATE_VERSION

    return {"version": STATE_VERSION, "tenantId": tenant_id, "lastCollectedAt": format_time(NOW),
            "lastSuccessAt": format_time(NOW), "unreachable": False, "consecutiveFailures": 0, "lastError": None,
            "controls": {}, "config": {}, "enforcement": None, "recentLegacySignIns": signins}


SCANNER = [{"id": f"s{i}", "createdDateTime": f"2026-12-06T0{i}:00:00Z", "userId": None,
            "userPrincipalName": "scanner@readiness.example", "clientAppUsed": "Authenticated SMTP",
            "ipAddress": "198.51.100.7", "status": {"errorCode": 0}} for i in range(1, 4)]


@pytest.fixture(scope="module")
def seeded(azurite) -> str:
    from shared.bootstrap import build_fleet
    from shared.tenants.config import TenantConfig

    azurite.start()
    env = {"AUTHWATCH_STORAGE_CONNECTION_STRING": azurite.connection_string}

    async def go() -> None:
        fleet = build_fleet(env)
        await fleet.create()
        try:
            for tenant_id, name, disabled, signins in ((SENDING, SENDING_NAME, False, SCANNER),
                                                       (QUIET, QUIET_NAME, True, [])):
                await fleet.registry.add(TenantConfig.from_json({
                    "tenantId": tenant_id, "displayName": name,
                    "credential": {"mode": "secret", "clientId": "11111111-1111-4111-8111-111111111111",
                                   "secretSetting": "AUTHWATCH_SECRET_READINESS"}}), now=NOW)
                await fleet.monitor.store.commit(tenant_id, state=_state(tenant_id, signins), expected_etag=None,
                                                 results=_results(disabled), evaluated_at=NOW, events=[])
        finally:
            await fleet.close()

    asyncio.run(go())
    return azurite.connection_string


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the CLI ------------------------------------------------------------------------------------------------------

def test_cli_lists_the_scanner_that_will_break_first(seeded, monkeypatch, capsys):
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", seeded)
    code, out, _ = run(capsys, "readiness", "smtp-basic", "-o", "json")
    assert code == 0
    answer = json.loads(out)
    ours = [t for t in answer["tenants"] if t["tenantId"] in (SENDING, QUIET)]
    assert [t["verdict"] for t in ours] == ["will-break", "ready"]  # worst first
    assert answer["tenants"].index(ours[0]) < answer["tenants"].index(ours[1])
    sender = ours[0]["senders"][0]
    assert (sender["user"], sender["count"], sender["clientIps"]) == ("scanner@readiness.example", 3,
                                                                      ["198.51.100.7"])
    assert sender["lastSeen"] == "2026-12-06T03:00:00Z" and sender["outcome"] == "breaks"

    code, out, _ = run(capsys, "readiness", "smtp-basic", "--tenant", SENDING_NAME, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [(r["tenant_id"], r["user"], r["sign_ins"], r["outcome"]) for r in rows] == [
        (SENDING, "scanner@readiness.example", "3", "breaks")]

    code, out, _ = run(capsys, "readiness", "smtp-basic", "--tenant", QUIET)
    assert code == 0 and QUIET_NAME in out and "READY" in out and SENDING_NAME not in out
    assert "cannot tell Basic from OAuth" in " ".join(out.split())


def test_cli_says_what_it_needs_without_storage_and_refuses_an_unknown_tenant(seeded, monkeypatch, capsys):
    monkeypatch.delenv("AUTHWATCH_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    code, out, err = run(capsys, "readiness", "smtp-basic")
    assert code == 2 and out == "" and "AUTHWATCH_STORAGE_CONNECTION_STRING" in err and "--demo" in err
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", seeded)
    code, _, err = run(capsys, "readiness", "smtp-basic", "--tenant", f"no such tenant {RUN}")
    assert code == 2 and "authwatch readiness smtp-basic: error:" in err
    code, _, err = run(capsys, "readiness", "smtp-basic", "-o", "html")
    assert code == 2 and "table, json, csv" in err


# --- the API route ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fns():
    """The app's functions as the host indexes them (get_functions() refuses a second run in a process: reset its
    guard before and after, as tests/e2e/test_api_cross_site.py does)."""
    import function_app

    function_app.app.functions_bindings = None
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = None


def get(fns, params: dict) -> tuple[int, dict]:
    request = func.HttpRequest(method="GET", url="http://localhost/api/readiness/smtp-basic", body=b"",
                               params=params)
    response = asyncio.run(fns["readiness_smtp_basic"].get_user_function()(request))
    return response.status_code, json.loads(response.get_body())


def test_api_route_answers_the_fleet_one_tenant_and_refuses_bad_ids(seeded, fns, monkeypatch):
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", seeded)
    status, fleet = get(fns, {})
    assert status == 200 and fleet["kind"] == "smtp-basic" and fleet["scope"] == {"kind": "fleet", "tenantId": None}
    verdicts = {t["tenantId"]: t["verdict"] for t in fleet["tenants"]}
    assert (verdicts[SENDING], verdicts[QUIET]) == ("will-break", "ready")
    status, one = get(fns, {"tenant": SENDING.upper()})  # any GUID spelling, normalised
    assert status == 200 and one["scope"] == {"kind": "tenant", "tenantId": SENDING}
    assert [t["tenantId"] for t in one["tenants"]] == [SENDING] and one["tenants"][0]["breaking"] == 1
    assert get(fns, {"tenant": "contoso"})[0] == 400  # names are the CLI's job; the API takes a GUID
    status, answer = get(fns, {"tenant": str(uuid.uuid4())})
    assert status == 404 and "is registered" in answer["error"]

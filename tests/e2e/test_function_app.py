"""The Functions app, built the way the host builds it (get_functions) and called with real azure.functions objects
(TimerRequest, QueueMessage, HttpRequest) against Azurite queues and tables and the simulator over HTTPS."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.storage.queues import JsonQueue
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "fleet-secret"}
HEALTHY, SMTP_ON, REVOKED = (str(uuid.UUID(int=i + 0x0E2E0000000040008000000000000000)) for i in range(3))


@pytest.fixture(scope="module")
def app_functions():
    """The host indexes the app once; get_functions() may only run once per FunctionApp."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(function) -> list[dict[str, Any]]:
    return [b.get_dict_repr() for b in function.get_bindings()]


def trigger(function) -> dict[str, Any]:
    return next(b for b in bindings(function) if b["direction"].name == "IN" or str(b["type"]).endswith("Trigger"))


def test_app_declares_the_triggers_schedules_queues_and_routes(app_functions):
    timer = trigger(app_functions["fan_out"])
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%AUTHWATCH_SCHEDULE%"
    assert timer["runOnStartup"] is False
    queues = {name: trigger(app_functions[name])["queueName"]
              for name in ("evaluate_tenant", "evaluation_poison", "deliver_alert")}
    assert queues == {"evaluate_tenant": "evaluations", "evaluation_poison": "evaluations-poison",
                      "deliver_alert": "alerts"}
    routes = {}
    for name, function in app_functions.items():
        http = trigger(function)
        if http["type"] == "httpTrigger":
            assert str(http["authLevel"].value) == "function", name  # every route needs a key
            routes[(http["route"], tuple(m.value for m in http["methods"]))] = name
    assert routes == {
        ("tenants", ("GET",)): "list_tenants", ("tenants", ("POST",)): "onboard_tenant",
        ("tenants/{tenantId}", ("GET",)): "get_tenant", ("tenants/{tenantId}", ("PATCH",)): "update_tenant",
        ("tenants/{tenantId}/disable", ("POST",)): "disable_tenant",
        ("tenants/{tenantId}/enable", ("POST",)): "enable_tenant",
        ("tenants/{tenantId}", ("DELETE",)): "remove_tenant",
        ("tenants/import", ("POST",)): "import_tenants",
        ("tenants/{tenantId}/results", ("GET",)): "tenant_results",
        ("tenants/{tenantId}/history", ("GET",)): "tenant_history",
        ("tenants/{tenantId}/timeline", ("GET",)): "tenant_timeline",
        ("tenants/{tenantId}/baseline/accept", ("POST",)): "accept_baseline",
        ("tenants/{tenantId}/evaluate", ("POST",)): "evaluate_now",
        ("tenants/{tenantId}/alerts/{alertId}/ack", ("POST",)): "acknowledge_alert",
        ("tenants/{tenantId}/alerts/{alertId}/snooze", ("POST",)): "snooze_alert",
        ("dashboard", ("GET",)): "dashboard",
        ("tenants/{tenantId}/deliveries/failed", ("GET",)): "tenant_failed_deliveries",
        ("report", ("GET",)): "report",
        ("readiness/smtp-basic", ("GET",)): "readiness_smtp_basic",
        ("tenants/{tenantId}/exceptions", ("GET",)): "list_exceptions",
        ("tenants/{tenantId}/exceptions", ("POST",)): "add_exception",
        ("tenants/{tenantId}/exceptions/{exceptionId}/extend", ("POST",)): "extend_exception",
        ("tenants/{tenantId}/exceptions/{exceptionId}", ("DELETE",)): "remove_exception",
        ("onboarding", ("GET",)): "onboarding_overview",
    }


# --- a fleet running through the real entry points ----------------------------------------------------------------

def scenario() -> dict:
    def tenant(tenant_id: str, name: str, smtp_disabled: Any = True) -> dict:
        return {"tenantId": tenant_id, "displayName": name,
                "graph": {"conditionalAccessPolicies": [block_policy(modifiedDateTime="2025-01-01T00:00:00Z")],
                          "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
                "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": smtp_disabled}}}

    revoked = tenant(REVOKED, "Woodgrove")
    revoked["app"] = {"clientId": APP["clientId"], "clientSecret": "rotated-away"}  # our stored secret is stale
    return {"app": dict(APP), "tenants": [tenant(HEALTHY, "Contoso"), tenant(SMTP_ON, "Fabrikam", "False"), revoked]}


@pytest.fixture
def fleet_env(monkeypatch, simulator_for, storage_connection_string):
    sim = simulator_for(scenario())
    endpoints = endpoints_for(sim)
    for name, value in {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
                        "AUTHWATCH_AUTHORITY_HOST": endpoints.authority, "AUTHWATCH_GRAPH_URL": endpoints.graph,
                        "AUTHWATCH_EXCHANGE_URL": endpoints.exchange, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
                        "AUTHWATCH_SECRET_FLEET": APP["clientSecret"]}.items():
        monkeypatch.setenv(name, value)
    asyncio.run(_drain(storage_connection_string))
    return sim


async def _drain(connection: str, name: str | None = None) -> list[dict]:
    """Empty the app's queues (tests share one Azurite); return what `name` held."""
    held: list[dict] = []
    for queue_name in ("evaluations", "alerts"):
        async with JsonQueue.from_connection_string(connection, queue_name) as queue:
            await queue.create()
            documents = await queue.receive_all()
            if queue_name == name:
                held = documents
    return held


def http(function, method: str, url: str, *, body: Any = None, route: dict | None = None,
         params: dict | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    request = func.HttpRequest(method=method, url=f"http://localhost/api/{url}", body=data,
                               route_params=route or {}, params=params or {},
                               headers={"content-type": "application/json"} if data else {})
    response = asyncio.run(function.get_user_function()(request))
    return response.status_code, json.loads(response.get_body())


def onboard(fns, tenant_id: str, name: str) -> tuple[int, Any]:
    return http(fns["onboard_tenant"], "POST", "tenants", body={
        "tenantId": tenant_id, "displayName": name,
        "credential": {"mode": "secret", "clientId": APP["clientId"], "secretSetting": "AUTHWATCH_SECRET_FLEET"}})


def run_timer(fns) -> None:
    asyncio.run(fns["fan_out"].get_user_function()(TimerRequest()))


def run_queue(fns, function_name: str, documents: list[dict]) -> None:
    for document in documents:
        message = func.QueueMessage(id=uuid.uuid4().hex, body=json.dumps(document).encode())
        asyncio.run(fns[function_name].get_user_function()(message))


def test_timer_to_workers_to_tables_to_alerts(app_functions, fleet_env, storage_connection_string):
    fns = app_functions
    for tenant_id, name in ((HEALTHY, "Contoso"), (SMTP_ON, "Fabrikam"), (REVOKED, "Woodgrove")):
        assert onboard(fns, tenant_id, name)[0] == 201

    run_timer(fns)
    run_timer(fns)  # an overlapping timer: every tenant is already in flight
    ours = {HEALTHY, SMTP_ON, REVOKED}
    # Other tests' tenants share the session's registry and may be due too: look at ours only.
    queued = [m for m in asyncio.run(_drain(storage_connection_string, "evaluations")) if m["tenantId"] in ours]
    assert sorted(m["tenantId"] for m in queued) == sorted(ours)  # once each, despite the second timer

    run_queue(fns, "evaluate_tenant", queued)
    alerts = asyncio.run(_drain(storage_connection_string, "alerts"))
    assert (SMTP_ON, "control.failed") in {(a["tenantId"], a["type"]) for a in alerts}
    assert (REVOKED, "tenant.unreachable") in {(a["tenantId"], a["type"]) for a in alerts}
    run_queue(fns, "deliver_alert", alerts)

    status, body = http(fns["list_tenants"], "GET", "tenants")
    by_id = {t["tenantId"]: t for t in body["tenants"]}
    assert by_id[REVOKED]["status"] == "unreachable" and by_id[REVOKED]["consecutiveFailures"] == 1
    assert "AADSTS7000215" in by_id[REVOKED]["lastError"]
    assert by_id[SMTP_ON]["status"] == "failing" and "exo_smtp_auth_disabled" in by_id[SMTP_ON]["failing"]
    assert by_id[HEALTHY]["status"] == "healthy", by_id[HEALTHY]
    assert by_id[HEALTHY]["lastSuccessAt"]
    assert [t["tenantId"] for t in body["tenants"] if t["tenantId"] in ours][0] == REVOKED  # attention first

    status, detail = http(fns["get_tenant"], "GET", f"tenants/{SMTP_ON}", route={"tenantId": SMTP_ON})
    assert status == 200
    assert {c["control"] for c in detail["controls"]} >= {"exo_smtp_auth_disabled", "entra_legacy_auth_blocked"}
    opened = [a for a in detail["openAlerts"] if a["control"] == "exo_smtp_auth_disabled"]
    assert opened and opened[0]["type"] == "control.failed"

    # Acknowledge, then snooze, the open alert.
    alert_id = opened[0]["id"]
    route = {"tenantId": SMTP_ON, "alertId": alert_id}
    status, acked = http(fns["acknowledge_alert"], "POST", "x", route=route, body={"by": "oncall@msp.example"})
    assert status == 200 and acked["acknowledgedBy"] == "oncall@msp.example"
    status, snoozed = http(fns["snooze_alert"], "POST", "x", route=route, body={"until": "2099-01-01T00:00:00Z"})
    assert status == 200 and snoozed["snoozedUntil"] == "2099-01-01T00:00:00Z"
    status, detail = http(fns["get_tenant"], "GET", "x", route={"tenantId": SMTP_ON})
    alert = next(a for a in detail["openAlerts"] if a["id"] == alert_id)
    assert alert["acknowledged"] and alert["snoozed"]

    # Evaluate now (queued like a scheduled run), accept the baseline, read history.
    assert http(fns["evaluate_now"], "POST", "x", route={"tenantId": HEALTHY})[0] == 202
    assert [m["tenantId"] for m in asyncio.run(_drain(storage_connection_string, "evaluations"))] == [HEALTHY]
    status, accepted = http(fns["accept_baseline"], "POST", "x", route={"tenantId": SMTP_ON})
    assert status == 200 and accepted["accepted"] is True
    status, history = http(fns["tenant_history"], "GET", "x", route={"tenantId": SMTP_ON}, params={"limit": "5"})
    assert status == 200 and history["events"] and len(history["events"]) <= 5
    status, failed = http(fns["tenant_failed_deliveries"], "GET", "x", route={"tenantId": SMTP_ON})
    assert status == 200 and failed["failedDeliveries"] == []  # no channel configured: nothing failed

    # The report as a download (the dashboard's "HTML report" button): the same document `authwatch report` writes.
    answer = asyncio.run(fns["report"].get_user_function()(func.HttpRequest(
        method="GET", url="http://localhost/api/report", body=b"",
        params={"format": "csv", "tenant": SMTP_ON, "status": "fail"})))
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="authwatch-report.csv"'
    rows = answer.get_body().decode("utf-8").splitlines()
    assert len(rows) > 1 and all(",fail," in row for row in rows[1:]) and "exo_smtp_auth_disabled" in rows[1]
    page = asyncio.run(fns["report"].get_user_function()(func.HttpRequest(
        method="GET", url="http://localhost/api/report", body=b"", params={"failingOnly": "true"})))
    assert page.status_code == 200 and page.mimetype == "text/html" and b"Fabrikam" in page.get_body()
    assert http(fns["report"], "GET", "report", params={"status": "broken"}) == (
        400, {"error": "status: 'broken' is not one of fail, not_applicable, pass, pending, unknown"})
    assert http(fns["report"], "GET", "report", params={"format": "pdf"})[0] == 400


def test_poison_message_is_recorded_against_the_tenant(app_functions, fleet_env):
    fns = app_functions
    tenant_id = str(uuid.uuid4())
    assert onboard(fns, tenant_id, "Poisoned")[0] == 201
    run_queue(fns, "evaluation_poison", [{"tenantId": tenant_id, "requestedAt": "2026-11-23T08:00:00Z"}])
    status, detail = http(fns["get_tenant"], "GET", "x", route={"tenantId": tenant_id})
    assert detail["consecutiveFailures"] == 1 and "poison" in detail["lastError"]


def test_disabled_tenants_are_not_queued_and_never_dropped(app_functions, fleet_env, storage_connection_string):
    fns = app_functions
    tenant_id = str(uuid.uuid4())
    onboard(fns, tenant_id, "Paused")
    status, body = http(fns["disable_tenant"], "POST", "x", route={"tenantId": tenant_id})
    assert status == 200 and body["enabled"] is False
    run_timer(fns)
    queued = asyncio.run(_drain(storage_connection_string, "evaluations"))
    assert tenant_id not in {m["tenantId"] for m in queued}
    listed = http(fns["list_tenants"], "GET", "tenants")[1]["tenants"]
    assert next(t for t in listed if t["tenantId"] == tenant_id)["status"] == "disabled"


# --- every route refuses bad input with a JSON 4xx that names the problem ------------------------------------------

@pytest.mark.parametrize(("name", "method", "route", "body", "status", "phrase"), [
    ("get_tenant", "GET", {"tenantId": "not-a-guid"}, None, 400, "GUID"),
    ("get_tenant", "GET", {"tenantId": "x' or PartitionKey ne '"}, None, 400, "GUID"),
    ("get_tenant", "GET", {"tenantId": str(uuid.UUID(int=7))}, None, 404, "no tenant"),
    ("update_tenant", "PATCH", {"tenantId": str(uuid.UUID(int=7))}, {"enabled": False}, 404, "no tenant"),
    ("disable_tenant", "POST", {"tenantId": "nope"}, None, 400, "GUID"),
    ("tenant_results", "GET", {"tenantId": str(uuid.UUID(int=7))}, None, 404, "no results"),
    ("tenant_history", "GET", {"tenantId": str(uuid.UUID(int=7))}, None, 404, "no tenant"),
    ("accept_baseline", "POST", {"tenantId": str(uuid.UUID(int=7))}, None, 404, "no tenant"),
    ("evaluate_now", "POST", {"tenantId": "1234"}, None, 400, "GUID"),
    ("acknowledge_alert", "POST", {"tenantId": str(uuid.UUID(int=7)), "alertId": "a" * 32}, None, 404, "no tenant"),
    ("snooze_alert", "POST", {"tenantId": "bad", "alertId": "a" * 32}, {"until": "2099-01-01T00:00:00Z"}, 400,
     "GUID"),
    ("onboard_tenant", "POST", {}, ["not", "an", "object"], 400, "JSON object"),
    ("onboard_tenant", "POST", {}, {"tenantId": "nope", "displayName": "x", "credential": {
        "mode": "secret", "clientId": APP["clientId"], "secretSetting": "AUTHWATCH_SECRET_FLEET"}}, 400, "tenantId"),
    ("onboard_tenant", "POST", {}, {"tenantId": str(uuid.UUID(int=8)), "displayName": "x"}, 400, "credential"),
])
def test_bad_requests_get_a_json_4xx(app_functions, fleet_env, name, method, route, body, status, phrase):
    got, answer = http(app_functions[name], method, "x", route=route, body=body)
    assert got == status and phrase in answer["error"]


def test_malformed_and_oversized_bodies_are_refused(app_functions, fleet_env):
    fns = app_functions
    status, answer = http(fns["onboard_tenant"], "POST", "tenants", raw=b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = http(fns["onboard_tenant"], "POST", "tenants", raw=b"{" + b" " * 70_000 + b"}")
    assert status == 400 and "limit" in answer["error"]


def test_alert_actions_validate_their_input(app_functions, fleet_env):
    fns = app_functions
    tenant_id = str(uuid.uuid4())
    onboard(fns, tenant_id, "Valid")
    status, answer = http(fns["snooze_alert"], "POST", "x", route={"tenantId": tenant_id, "alertId": "a" * 32},
                          body={"until": "yesterday"})
    assert status == 400 and "until" in answer["error"]
    status, answer = http(fns["acknowledge_alert"], "POST", "x", route={"tenantId": tenant_id, "alertId": "zz"})
    assert status == 400 and "alertId" in answer["error"]
    status, answer = http(fns["acknowledge_alert"], "POST", "x", route={"tenantId": tenant_id, "alertId": "b" * 32})
    assert status == 404


def test_onboarding_twice_is_refused_and_updates_are_validated(app_functions, fleet_env):
    fns = app_functions
    tenant_id = str(uuid.uuid4())
    assert onboard(fns, tenant_id, "Once")[0] == 201
    status, answer = onboard(fns, tenant_id, "Twice")
    assert status == 400 and "already registered" in answer["error"]
    status, answer = http(fns["update_tenant"], "PATCH", "x", route={"tenantId": tenant_id},
                          body={"scheduleMinutes": 1})
    assert status == 400 and "scheduleMinutes" in answer["error"]
    status, answer = http(fns["update_tenant"], "PATCH", "x", route={"tenantId": tenant_id},
                          body={"displayName": "Renamed", "approvedExclusions": {"users": [str(uuid.UUID(int=9))]}})
    assert status == 200 and answer["displayName"] == "Renamed"
    assert APP["clientSecret"] not in json.dumps(answer)  # the registry names the setting, never holds the secret

"""Alert delivery through the Functions entry points, called with real azure.functions objects: the evaluation
worker fills the `alerts` queue, `deliver_alert` sends one grouped message per tenant and cycle to real local
receivers, a redelivered message sends nothing, the last retry records a failed delivery, `alert_poison` records
what the host gave up on, and the `alert_digest` timer reminds of what is still open."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.alerts import AlertDeliveryFailed, failed_deliveries
from shared.storage.queues import JsonQueue
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for
from tests.integration.test_alert_receiver import receivers  # noqa: F401 - the fixture

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "alerts-fleet-secret"}


@pytest.fixture(scope="module")
def fns():
    """The app's functions as the host indexes them. FunctionApp.get_functions() refuses to run twice in a process
    (its duplicate-name guard remembers the first run), and test_function_app.py indexes the same app: reset the
    guard before and after."""
    import function_app

    function_app.app.functions_bindings = None
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = None


def trigger(function) -> dict[str, Any]:
    bindings = [b.get_dict_repr() for b in function.get_bindings()]
    return next(b for b in bindings if str(b["type"]).endswith("Trigger"))


def test_the_alert_blueprint_declares_its_queues_and_the_digest_timer(fns):
    assert trigger(fns["deliver_alert"])["queueName"] == "alerts"
    assert trigger(fns["alert_poison"])["queueName"] == "alerts-poison"
    timer = trigger(fns["alert_digest"])
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%AUTHWATCH_DIGEST_SCHEDULE%"
    assert timer["runOnStartup"] is False


def scenario(healthy: str, smtp_later: str, revoked: str) -> dict:
    def tenant(tenant_id: str, name: str, smtp_disabled: Any = True) -> dict:
        return {"tenantId": tenant_id, "displayName": name,
                "graph": {"conditionalAccessPolicies": [block_policy(modifiedDateTime="2025-01-01T00:00:00Z")],
                          "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
                "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": smtp_disabled}}}

    gone = tenant(revoked, "Woodgrove")
    gone["app"] = {"clientId": APP["clientId"], "clientSecret": "rotated-away"}
    return {"app": dict(APP), "tenants": [tenant(healthy, "Contoso"), tenant(smtp_later, "Fabrikam"), gone]}


def http(function, method: str, *, body: Any = None, route: dict | None = None) -> tuple[int, Any]:
    request = func.HttpRequest(method=method, url="http://localhost/api/x", route_params=route or {},
                               body=json.dumps(body).encode() if body is not None else b"",
                               headers={"content-type": "application/json"})
    response = asyncio.run(function.get_user_function()(request))
    return response.status_code, json.loads(response.get_body())


def queue_message(document: dict, *, message_id: str | None = None, dequeue_count: int = 1) -> func.QueueMessage:
    from azure.functions.queue import QueueMessage  # the host's class, which carries dequeue_count

    return QueueMessage(id=message_id or uuid.uuid4().hex, body=json.dumps(document).encode(),
                        dequeue_count=dequeue_count)


def call(function, argument) -> None:
    asyncio.run(function.get_user_function()(argument))


async def drain(connection: str, name: str, tenants: set[str]) -> list[dict]:
    """This test's messages from a queue the session shares (others' are left out)."""
    async with JsonQueue.from_connection_string(connection, name) as queue:
        await queue.create()
        return [document for document in await queue.receive_all() if document.get("tenantId") in tenants]


def test_alerts_flow_from_the_evaluation_worker_to_receivers(fns, monkeypatch, simulator_for, receivers,
                                                             storage_connection_string):
    healthy, smtp_on, revoked = (str(uuid.uuid4()) for _ in range(3))
    sim = simulator_for(scenario(healthy, smtp_on, revoked))
    endpoints = endpoints_for(sim)
    hook, slack, broken = receivers(), receivers(), receivers(default=500)
    suffix = uuid.uuid4().hex[:6]
    siem, ops, dead = f"siem-{suffix}", f"ops-{suffix}", f"dead-{suffix}"
    settings = {
        "AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
        "AUTHWATCH_AUTHORITY_HOST": endpoints.authority, "AUTHWATCH_GRAPH_URL": endpoints.graph,
        "AUTHWATCH_EXCHANGE_URL": endpoints.exchange, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
        "AUTHWATCH_SECRET_ALERTS_FLEET": APP["clientSecret"],
        "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "1", "AUTHWATCH_ALERT_BACKOFF_SECONDS": "0.01",
        # No outage allowance, so the last queue attempt records a failure (parking: test_fault_matrix_platform).
        "AUTHWATCH_ALERT_OUTAGE_HOURS": "0",
        "AUTHWATCH_DASHBOARD_URL": "https://authwatch.example/app",
        "AUTHWATCH_TEST_SLACK_URL": slack.url, "AUTHWATCH_TEST_HOOK_SECRET": "e2e-hook-secret-0123456789",
        "AUTHWATCH_ALERT_CHANNELS": json.dumps({
            siem: {"type": "webhook", "url": hook.url, "secretSetting": "AUTHWATCH_TEST_HOOK_SECRET"},
            ops: {"type": "slack", "urlSetting": "AUTHWATCH_TEST_SLACK_URL"},
            dead: {"type": "webhook", "url": broken.url}}),
        # Routes name this test's tenants: the registry and the deliveries table are shared by the session.
        "AUTHWATCH_ALERT_ROUTES": json.dumps({"routes": [
            {"name": "fabrikam", "tenants": [smtp_on, healthy], "channels": [siem, ops]},
            {"name": "woodgrove", "tenants": [revoked], "channels": [dead]}]}),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    mine = {healthy, smtp_on, revoked}
    try:
        for tenant_id, name in ((healthy, "Contoso"), (smtp_on, "Fabrikam"), (revoked, "Woodgrove")):
            status, _ = http(fns["onboard_tenant"], "POST", body={
                "tenantId": tenant_id, "displayName": name, "credential": {
                    "mode": "secret", "clientId": APP["clientId"], "secretSetting": "AUTHWATCH_SECRET_ALERTS_FLEET"}})
            assert status == 201
            call(fns["evaluate_tenant"], queue_message({"tenantId": tenant_id, "requestedAt": "x"}))
        first = asyncio.run(drain(storage_connection_string, "alerts", mine))
        assert {a["tenantId"] for a in first} == {revoked}  # first sight: the healthy ones raise nothing

        # Someone turns SMTP AUTH back on at Fabrikam; the next cycle raises several events at once.
        time.sleep(1.1)  # a new collectedAt (second precision)
        sim.update_tenant(smtp_on, lambda t: t["exchange"]["transportConfig"].update(
            SmtpClientAuthenticationDisabled=False))
        call(fns["evaluate_tenant"], queue_message({"tenantId": smtp_on, "requestedAt": "x"}))
        alerts = first + asyncio.run(drain(storage_connection_string, "alerts", mine))
        fabrikam = [a for a in alerts if a["tenantId"] == smtp_on]
        assert {a["type"] for a in fabrikam} >= {"control.failed", "basic_auth.reenabled"}

        # One message per alert, as flush_outbox queued them; the healthy tenant raised nothing.
        for document in fabrikam:
            call(fns["deliver_alert"], queue_message(document))
        [grouped] = hook.bodies()
        assert grouped["tenantName"] == "Fabrikam" and {e["id"] for e in grouped["events"]} == \
            {a["id"] for a in fabrikam}
        assert grouped["links"]["dashboard"] == f"https://authwatch.example/app#/tenants/{smtp_on}"
        assert len(slack.requests) == 1 and "Fabrikam" in slack.requests[0].body.decode()

        # The queue delivers every message again: nothing new reaches anyone.
        for document in fabrikam:
            call(fns["deliver_alert"], queue_message(document, dequeue_count=2))
        assert len(hook.requests) == 1 and len(slack.requests) == 1

        # Woodgrove's receiver is down: the host retries; the last attempt records the failure, and says so.
        [unreachable] = [a for a in alerts if a["tenantId"] == revoked]
        assert unreachable["type"] == "tenant.unreachable"
        message_id = uuid.uuid4().hex
        with pytest.raises(AlertDeliveryFailed):
            call(fns["deliver_alert"], queue_message(unreachable, message_id=message_id, dequeue_count=1))
        call(fns["deliver_alert"], queue_message(unreachable, message_id=message_id, dequeue_count=5))
        [failure] = asyncio.run(failed_deliveries(storage_connection_string, revoked))
        assert failure["eventId"] == unreachable["id"] and failure["channel"] == dead
        assert failure["error"] == "HTTP 500" and failure["attempts"] == 2
        assert {r.json["id"] for r in broken.requests} == {unreachable["id"]}

        # A message the host moved to alerts-poison (the worker crashed on every try) is recorded too.
        stray = {**fabrikam[0], "id": uuid.uuid4().hex, "at": "2026-01-01T00:00:00Z"}
        call(fns["alert_poison"], queue_message(stray))
        poisoned = {f["eventId"]: f for f in asyncio.run(failed_deliveries(storage_connection_string, smtp_on))}
        assert set(poisoned) == {stray["id"]} and "poison" in poisoned[stray["id"]]["error"]

        # The daily digest reminds of what is still open and high: one message per channel, not one per alert.
        call(fns["alert_digest"], TimerRequest())
        digests = [b for b in hook.bodies() if b.get("type") == "authwatch.digest"]
        assert len(digests) == 1
        reminded = {t["tenantName"]: {a["id"] for a in t["alerts"]} for t in digests[0]["tenants"]}
        high_fabrikam = {a["id"] for a in fabrikam if a["severity"] == "high"}
        assert set(reminded) == {"Fabrikam"} and reminded["Fabrikam"] == high_fabrikam
        # Woodgrove's reminder went to its dead receiver (4 tries after the alert's 2 × 4) and failed, logged.
        assert len(broken.requests) == 12 and broken.requests[-1].json["type"] == "authwatch.digest"
        call(fns["alert_digest"], TimerRequest())  # the same hour again: nothing more
        assert len([b for b in hook.bodies() if b.get("type") == "authwatch.digest"]) == 1
    finally:
        for tenant_id in mine:  # leave no due tenant behind for other tests' timers
            http(fns["disable_tenant"], "POST", route={"tenantId": tenant_id})

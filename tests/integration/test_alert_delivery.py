"""Alert delivery over real HTTP and real storage: local receivers on 127.0.0.1 (loopback allowed by the explicit
test setting), Azurite for the deliveries table and the tenants' event rows, the simulator's Graph for e-mail."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.alerts import AlertConfigError, AlertDeliveryFailed, AlertService, failed_deliveries, verify_signature
from shared.alerts.content import event_order
from shared.alerts.store import TABLE, AlertTables
from shared.storage.tenant_store import TenantStore
from tests.integration.conftest import endpoints_for
from tests.integration.test_alert_receiver import (  # noqa: F401 - the receivers fixture
    WEBHOOK_SECRET,
    alert_env,
    commit_cycle,
    enforcement_gap,
    readme_verify,
    receivers,
    register,
    smtp_failed,
    smtp_reenabled,
    window_started,
)

T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
CONTRACT_KEYS = {"id", "at", "tenantId", "type", "control", "severity", "summary", "details", "tenantName", "links"}


async def with_service(env: dict[str, str], work, **kwargs) -> Any:
    service = AlertService.from_env(env, **kwargs)
    try:
        await service.create()
        return await work(service)
    finally:
        await service.close()


def deliver(env, records, *, message_ids=None, dequeue_count=1, now=T1, concurrently=False, **kwargs):
    """Deliver queued records as the queue worker would (one message each); returns reports or exceptions."""
    message_ids = message_ids or [uuid.uuid4().hex for _ in records]

    async def work(service: AlertService):
        calls = [service.deliver(record, now=now, message_id=message_id, dequeue_count=dequeue_count)
                 for record, message_id in zip(records, message_ids)]
        if concurrently:
            return await asyncio.gather(*calls, return_exceptions=True)
        results = []
        for call in calls:
            try:
                results.append(await call)
            except AlertDeliveryFailed as error:
                results.append(error)
        return results

    return asyncio.run(with_service(env, work, **kwargs))


def webhook(receiver, *, signed: bool = True) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "webhook", "urlSetting": "AUTHWATCH_SIEM_URL"}
    if signed:
        channel["secretSetting"] = "AUTHWATCH_SIEM_SECRET"
    return channel


def webhook_env(connection: str, receiver, **settings: str) -> dict[str, str]:
    return alert_env(connection, {"siem": webhook(receiver)}, AUTHWATCH_SIEM_URL=receiver.url,
                     AUTHWATCH_SIEM_SECRET=WEBHOOK_SECRET, **settings)


async def delivery_rows(connection: str, tenant_id: str) -> list[dict[str, Any]]:
    async with AlertTables.from_connection_string(connection) as tables:
        return await tables.rows(tenant_id)


# --- the contract and the signature ---------------------------------------------------------------------------------

def test_webhook_payload_matches_the_contract_and_its_signature_verifies(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    asyncio.run(register(storage_connection_string, tenant, "Fabrikam"))
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    [report] = deliver(webhook_env(storage_connection_string, receiver), records)
    assert report.sent == {"siem": 1}

    [request] = receiver.requests
    payload = request.json
    assert set(payload) == CONTRACT_KEYS
    assert {key: payload[key] for key in ("at", "tenantId", "type", "control", "severity", "summary", "details")} \
        == {key: records[0][key] for key in ("at", "tenantId", "type", "control", "severity", "summary", "details")}
    assert payload["id"] == records[0]["id"] == request.headers["x-authwatch-id"]
    assert payload["tenantName"] == "Fabrikam"
    assert payload["links"] == {"dashboard": f"https://authwatch.example/app#/tenants/{tenant}"}
    assert request.headers["content-type"] == "application/json"

    header = request.headers["x-authwatch-signature"]
    now = time.time()
    assert verify_signature(request.body, header, WEBHOOK_SECRET, now=now)
    assert readme_verify(request.body, header, WEBHOOK_SECRET, now)  # the documented scheme, re-implemented
    tampered = request.body.replace(b'"high"', b'"low"')
    assert tampered != request.body and not verify_signature(tampered, header, WEBHOOK_SECRET, now=now)
    assert not verify_signature(request.body, header, WEBHOOK_SECRET, now=now + 301)  # stale
    assert not verify_signature(request.body, header, "not-the-secret-at-all!", now=now)


def test_unsigned_webhook_has_no_signature_header(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    env = alert_env(storage_connection_string, {"siem": {"type": "webhook", "url": receiver.url}})
    deliver(env, records)
    [request] = receiver.requests
    assert "x-authwatch-signature" not in request.headers
    assert request.json["tenantName"] == tenant  # not registered: the id stands in for the name


# --- at least once, exactly one message -------------------------------------------------------------------------------

def test_receiver_failing_twice_gets_the_alert_once_with_the_same_id(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers([500, 500])  # then 200
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    env = webhook_env(storage_connection_string, receiver)
    [report] = deliver(env, records, message_ids=["m-1"])
    assert report.sent == {"siem": 1}
    ids = [(request.json["id"], request.headers["x-authwatch-id"]) for request in receiver.requests]
    assert ids == [(records[0]["id"], records[0]["id"])] * 3  # three tries, one id
    for request in receiver.requests:  # every try is signed afresh and verifies
        assert verify_signature(request.body, request.headers["x-authwatch-signature"], WEBHOOK_SECRET,
                                now=time.time())

    # The queue delivers the same message again (same id, another message id): nothing is sent again.
    [again] = deliver(env, records, message_ids=["m-1-copy"], dequeue_count=2)
    assert again.sent == {} and again.skipped == ["siem"]
    assert len(receiver.requests) == 3
    [row] = asyncio.run(delivery_rows(storage_connection_string, tenant))
    assert row["RowKey"] == f"{records[0]['id']}:siem" and row["Status"] == "delivered" and row["Tries"] == 3


def test_a_failed_attempt_is_retried_by_the_queue_with_the_same_id(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers([500] * 4)  # the whole first attempt (1 try + 3 retries) fails
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    env = webhook_env(storage_connection_string, receiver)
    [first] = deliver(env, records, message_ids=["m-2"], dequeue_count=1)
    assert isinstance(first, AlertDeliveryFailed) and "siem: HTTP 500" in str(first)
    [second] = deliver(env, records, message_ids=["m-2"], dequeue_count=2, now=T1 + timedelta(seconds=30))
    assert second.sent == {"siem": 1}
    assert [request.json["id"] for request in receiver.requests] == [records[0]["id"]] * 5


def test_a_receiver_that_always_fails_produces_a_recorded_failed_delivery(receivers, storage_connection_string,
                                                                           caplog):
    tenant = str(uuid.uuid4())
    receiver = receivers(default=503)
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    # No outage allowance: the queue's last retry records the failure (parking: test_fault_matrix_platform row 5).
    env = webhook_env(storage_connection_string, receiver, AUTHWATCH_ALERT_RETRIES="1",
                      AUTHWATCH_ALERT_OUTAGE_HOURS="0")
    caplog.set_level(logging.INFO, logger="authwatch")
    for attempt in range(1, 5):
        [outcome] = deliver(env, records, message_ids=["m-3"], dequeue_count=attempt)
        assert isinstance(outcome, AlertDeliveryFailed)  # raised: the host retries the message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [last] = deliver(env, records, message_ids=["m-3"], dequeue_count=5)  # host.json maxDequeueCount
    assert last.failed == ["siem"] and last.sent == {}
    assert len(receiver.requests) == 10  # 5 attempts × 2 tries

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["alert delivery failed"]
    assert errors[0].event_id == records[0]["id"] and errors[0].channel == "siem" and errors[0].tenant_id == tenant

    [failure] = asyncio.run(failed_deliveries(storage_connection_string, tenant))
    assert failure["eventId"] == records[0]["id"] and failure["channel"] == "siem"
    assert failure["status"] == "failed" and failure["error"] == "HTTP 503" and failure["tries"] == 10
    assert failure["attempts"] == 5 and failure["type"] == "control.failed" and failure["failedAt"]
    # A late copy of the message does not try again: the failure is recorded, not forgotten.
    [late] = deliver(env, records, dequeue_count=1)
    assert late.skipped == ["siem"] and len(receiver.requests) == 10


def test_a_permanent_refusal_is_recorded_without_retries(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers(default=404)
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    [report] = deliver(webhook_env(storage_connection_string, receiver), records, dequeue_count=1)
    assert report.failed == ["siem"] and len(receiver.requests) == 1
    assert asyncio.run(failed_deliveries(storage_connection_string, tenant))[0]["error"] == "HTTP 404"


def test_one_cycle_is_one_grouped_message(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    events = [window_started(tenant, T1), smtp_failed(tenant, T1), smtp_reenabled(tenant, T1),
              enforcement_gap(tenant, T1)]
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, events))
    env = webhook_env(storage_connection_string, receiver)
    reports = deliver(env, records)  # one queue message per event, as flush_outbox sends them
    assert len(receiver.requests) == 1
    payload = receiver.requests[0].json
    routed = {e["id"] for e in records if e["type"] != "enforcement.window_started"}  # informational: not routed
    assert {e["id"] for e in payload["events"]} == routed
    assert payload["id"] == payload["events"][0]["id"]  # the top level is the lead event of the group
    assert payload["severity"] == "high"
    assert sum(r.sent.get("siem", 0) for r in reports) == 3
    assert [r.routed for r in reports if r.event_id == records[0]["id"]] == [()]
    rows = asyncio.run(delivery_rows(storage_connection_string, tenant))
    assert {row["EventId"] for row in rows} == routed
    assert {row["GroupId"] for row in rows} == {payload["id"]} and {row["Status"] for row in rows} == {"delivered"}


def test_messages_of_one_cycle_racing_each_other_still_send_one_message(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    events = [smtp_failed(tenant, T1), smtp_reenabled(tenant, T1), enforcement_gap(tenant, T1)]
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, events))
    reports = deliver(webhook_env(storage_connection_string, receiver), records + records, concurrently=True)
    assert not [r for r in reports if isinstance(r, BaseException)], reports
    assert len(receiver.requests) == 1 and len(receiver.requests[0].json["events"]) == 3


def test_a_later_cycle_is_a_new_message(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    env = webhook_env(storage_connection_string, receiver)
    first = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    later = T1 + timedelta(minutes=15)
    second = asyncio.run(commit_cycle(storage_connection_string, tenant, later, [enforcement_gap(tenant, later)]))
    deliver(env, first + second)
    assert [request.json["type"] for request in receiver.requests] == ["control.failed", "enforcement.gap"]
    assert all("events" not in request.json for request in receiver.requests)


# --- routing ------------------------------------------------------------------------------------------------------------

def test_routes_send_by_tenant_tag_severity_and_type(receivers, storage_connection_string):
    gold, plain = str(uuid.uuid4()), str(uuid.uuid4())
    teams, slack, siem = receivers(), receivers(), receivers()
    asyncio.run(register(storage_connection_string, gold, "Gold Co", tags=["Gold"]))
    asyncio.run(register(storage_connection_string, plain, "Plain Co"))
    env = alert_env(storage_connection_string, {
        "soc": {"type": "teams", "urlSetting": "AUTHWATCH_TEAMS_URL"},
        "ops": {"type": "slack", "urlSetting": "AUTHWATCH_SLACK_URL"},
        "siem": {"type": "webhook", "url": siem.url},
    }, {"routes": [{"name": "gold", "tags": ["gold"], "minSeverity": "high", "channels": ["soc"]},
                   {"name": "siem-all", "channels": ["siem"], "informational": True, "digest": False}],
        "default": {"channels": ["ops"]}},
        AUTHWATCH_TEAMS_URL=teams.url, AUTHWATCH_SLACK_URL=slack.url)
    gold_records = asyncio.run(commit_cycle(storage_connection_string, gold, T1,
                                            [smtp_failed(gold, T1), window_started(gold, T1)]))
    plain_records = asyncio.run(commit_cycle(storage_connection_string, plain, T1, [smtp_failed(plain, T1)]))
    deliver(env, gold_records + plain_records)
    assert len(teams.requests) == 1 and "Gold Co" in json.dumps(teams.requests[0].json)
    assert slack.requests == []  # every event matched a route, so the default stayed quiet
    siem_payloads = siem.bodies()
    assert sorted(p["tenantName"] for p in siem_payloads) == ["Gold Co", "Plain Co"]
    gold_payload = next(p for p in siem_payloads if p["tenantName"] == "Gold Co")
    assert {e["type"] for e in gold_payload["events"]} == {"control.failed", "enforcement.window_started"}


def test_a_tenant_routing_override_replaces_or_extends_the_global_rules(receivers, storage_connection_string):
    own, inherits = str(uuid.uuid4()), str(uuid.uuid4())
    ops, customer = receivers(), receivers()
    asyncio.run(register(storage_connection_string, own, "Own Rules", routing={"default": {"channels": ["customer"]}}))
    asyncio.run(register(storage_connection_string, inherits, "Inherits", routing={
        "inherit": True, "routes": [{"name": "also-customer", "channels": ["customer"]}]}))
    env = alert_env(storage_connection_string, {"ops": {"type": "webhook", "url": ops.url},
                                                "customer": {"type": "webhook", "url": customer.url}},
                    {"default": {"channels": ["ops"]}})
    records = asyncio.run(commit_cycle(storage_connection_string, own, T1, [smtp_failed(own, T1)]))
    records += asyncio.run(commit_cycle(storage_connection_string, inherits, T1, [smtp_failed(inherits, T1)]))
    deliver(env, records)
    assert sorted(p["tenantName"] for p in customer.bodies()) == ["Inherits", "Own Rules"]
    assert [p["tenantName"] for p in ops.bodies()] == []  # "Inherits" matched its own route: no default


def test_a_broken_tenant_routing_falls_back_to_the_global_rules(receivers, storage_connection_string, caplog):
    tenant = str(uuid.uuid4())
    ops = receivers()
    asyncio.run(register(storage_connection_string, tenant, "Typo", routing={"default": {"channels": ["nope"]}}))
    env = alert_env(storage_connection_string, {"ops": {"type": "webhook", "url": ops.url}})
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    caplog.set_level(logging.ERROR, logger="authwatch")
    deliver(env, records)
    assert len(ops.requests) == 1
    [error] = [r for r in caplog.records if r.getMessage() == "invalid tenant routing; using the global rules"]
    assert "default: channels[0]: unknown channel \"nope\"" in error.error and tenant in error.error


def test_without_channels_alerts_are_logged_not_lost(storage_connection_string, caplog):
    tenant = str(uuid.uuid4())
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    env = {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string}
    caplog.set_level(logging.WARNING, logger="authwatch")
    [report] = deliver(env, records)
    assert report.routed == () and report.sent == {}
    [line] = [r for r in caplog.records if r.getMessage() == "alert"]
    assert line.event_id == records[0]["id"] and "no alert channels" in line.outcome


# --- safety ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "phrase"), [
    ("http://example.com/hook", "must use https://"),
    ("https://10.1.2.3/hook", "a private address (10.1.2.3)"),
    ("https://192.168.0.10/hook", "a private address"),
    ("https://169.254.169.254/metadata/instance", "a link-local address"),
    ("https://[fe80::1]/hook", "a link-local address"),
    ("https://[::ffff:10.0.0.1]/hook", "a private address (10.0.0.1)"),
    ("https://127.0.0.1/hook", "a loopback address"),
    ("https://localhost/hook", "loopback"),
    ("https://user:pw@example.com/hook", "user name or password"),
])
def test_unsafe_webhook_targets_are_refused_when_loaded(storage_connection_string, url, phrase):
    env = alert_env(storage_connection_string, {"siem": {"type": "webhook", "url": url}},
                    AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS="")
    with pytest.raises(AlertConfigError) as caught:
        AlertService.from_env(env)
    assert phrase in str(caught.value) and "channel 'siem': url" in str(caught.value)
    assert "/hook" not in str(caught.value) and "/metadata" not in str(caught.value)  # never the path


def test_a_target_that_becomes_unsafe_is_refused_at_send_time(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    receiver = receivers()
    env = alert_env(storage_connection_string, {"ops": {"type": "slack", "urlSetting": "AUTHWATCH_SLACK_URL"}},
                    AUTHWATCH_SLACK_URL=receiver.url.replace("127.0.0.1", "localhost"))
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))

    async def work(service: AlertService):
        service.context.allow_loopback = False  # e.g. the setting was removed; the name resolves to 127.0.0.1
        return await service.deliver(records[0], now=T1, message_id="m-unsafe", dequeue_count=1)

    report = asyncio.run(with_service(env, work))
    assert report.failed == ["ops"] and receiver.requests == []
    [failure] = asyncio.run(failed_deliveries(storage_connection_string, tenant))
    assert failure["error"].startswith("refused target: localhost") and "loopback" in failure["error"]


# --- secrets -------------------------------------------------------------------------------------------------------------

def test_secrets_never_reach_logs_rows_payloads_or_errors(receivers, storage_connection_string, caplog):
    tenant = str(uuid.uuid4())
    slack_token = "T0SECRET/B0SECRET/xoxbSlackTokenValue42"
    teams_sig = "sig=TeamsWorkflowSignature9876543210abcdef"
    slack = receivers([500] * 8, path=f"/services/{slack_token}")
    teams = receivers(default=403, path=f"/workflows/abc/triggers/manual/paths/invoke?api-version=1&{teams_sig}")
    siem = receivers()
    secrets = [slack_token, "xoxbSlackTokenValue42", teams_sig, "TeamsWorkflowSignature9876543210abcdef",
               WEBHOOK_SECRET]
    env = alert_env(storage_connection_string, {
        "ops": {"type": "slack", "urlSetting": "AUTHWATCH_SLACK_URL"},
        "soc": {"type": "teams", "urlSetting": "AUTHWATCH_TEAMS_URL"},
        "siem": webhook(siem)},
        AUTHWATCH_SLACK_URL=slack.url, AUTHWATCH_TEAMS_URL=teams.url, AUTHWATCH_SIEM_URL=siem.url,
        AUTHWATCH_SIEM_SECRET=WEBHOOK_SECRET, AUTHWATCH_ALERT_OUTAGE_HOURS="0")  # failures recorded, not parked
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1,
                                       [smtp_failed(tenant, T1), smtp_reenabled(tenant, T1)]))
    caplog.set_level(logging.DEBUG)
    raised = deliver(env, records, message_ids=["s-1", "s-2"], dequeue_count=1)
    final = deliver(env, records, message_ids=["s-1", "s-2"], dequeue_count=5)
    texts = [caplog.text, *(str(item) for item in raised + final)]
    texts += [repr(record.__dict__) for record in caplog.records]
    texts += [repr(row) for row in asyncio.run(delivery_rows(storage_connection_string, tenant))]

    async def tenant_rows():
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            return await store.history(tenant, limit=50)

    texts.append(json.dumps(asyncio.run(tenant_rows())))
    texts += [repr(r.headers) + r.body.decode() for receiver in (slack, teams, siem) for r in receiver.requests]
    texts.append(repr(AlertService.from_env(env).settings.channels))
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert siem.requests and slack.requests and teams.requests  # everything was really exercised
    assert {f["channel"] for f in asyncio.run(failed_deliveries(storage_connection_string, tenant))} == {"ops", "soc"}


def test_config_errors_never_quote_a_pasted_secret(storage_connection_string):
    pasted = "https://hooks.slack.com/services/T000/B000/PastedSecretToken"
    cases = [
        {"ops": {"type": "slack", "urlSetting": pasted}},
        {"ops": {"type": "slack", "url": pasted}},
        {"ops": {"type": "webhook", "url": "https://example.com/x", "secretSetting": "whsec_Pasted-Secret!"}},
    ]
    for channels in cases:
        with pytest.raises(AlertConfigError) as caught:
            AlertService.from_env(alert_env(storage_connection_string, channels))
        assert "PastedSecretToken" not in str(caught.value) and "Pasted-Secret" not in str(caught.value)
        assert "channel 'ops'" in str(caught.value)
    env = alert_env(storage_connection_string, {"ops": {"type": "slack", "urlSetting": "S"}},
                    S="http://example.com/services/T/B/PastedSecretToken")
    with pytest.raises(AlertConfigError) as caught:
        AlertService.from_env(env)
    assert "https://" in str(caught.value) and "PastedSecretToken" not in str(caught.value)


# --- e-mail through Graph sendMail (the simulator) ----------------------------------------------------------------------

OPERATOR = "0b0e7a11-0000-4000-8000-00000000cafe"
MAIL_APP = "6a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def operator_scenario(**tenant: Any) -> dict[str, Any]:
    """The operator's tenant, where the mail app holds no Graph permission and Exchange RBAC for Applications lets it
    send from authwatch@operator.example alone (the setup infra/README.md documents)."""
    return {"app": {"clientId": MAIL_APP, "clientSecret": "op-secret"},
            "tenants": [{"tenantId": OPERATOR, "displayName": "Operator", "permissions": [],
                         "mailSenders": ["authwatch@operator.example"], **tenant}]}


def mail_env(sim, storage_connection_string: str, sender: str = "authwatch@operator.example", **extra: str):
    endpoints = endpoints_for(sim)
    return alert_env(storage_connection_string, {"mail": {
        "type": "email", "tenantId": OPERATOR, "from": sender, "to": ["soc@operator.example"],
        "credential": {"mode": "secret", "clientId": MAIL_APP, "secretSetting": "AUTHWATCH_MAIL_SECRET"}}},
        AUTHWATCH_MAIL_SECRET="op-secret", AUTHWATCH_AUTHORITY_HOST=endpoints.authority,
        AUTHWATCH_GRAPH_URL=endpoints.graph, AUTHWATCH_CA_BUNDLE=sim.ca_path, AUTHWATCH_ALERT_RETRIES="0", **extra)


def test_email_from_a_mailbox_outside_the_apps_exchange_scope_fails_naming_the_fix(simulator_for,
                                                                                   storage_connection_string):
    """RBAC for Applications scoped to one sender: any other mailbox is refused (403 ErrorAccessDenied), and the
    failure says which assignment is missing instead of a bare status."""
    sim = simulator_for(operator_scenario())
    tenant = str(uuid.uuid4())
    env = mail_env(sim, storage_connection_string, sender="ceo@operator.example")
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    [report] = deliver(env, records, dequeue_count=5)
    assert report.failed == ["mail"] and sim.sent_mail == []
    [failure] = asyncio.run(failed_deliveries(storage_connection_string, tenant))
    assert "403" in failure["error"] and "may not send as ceo@operator.example" in failure["error"]
    assert "Application Mail.Send" in failure["error"]


def test_an_unscoped_entra_mail_send_consent_is_named_once(simulator_for, storage_connection_string, caplog):
    """An Entra Mail.Send consent lets the app send as anyone, whatever Exchange's scope says: the mail still goes,
    and the operator is told once per process to remove the consent."""
    from shared.alerts.channels import email

    email._warned_unscoped.clear()
    sim = simulator_for(operator_scenario(permissions=["Mail.Send"]))
    env = mail_env(sim, storage_connection_string)
    with caplog.at_level(logging.WARNING, logger="authwatch.alerts"):
        for tenant in (str(uuid.uuid4()), str(uuid.uuid4())):
            records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
            deliver(env, records)
    assert len(sim.sent_mail) == 2
    warnings = [record.getMessage() for record in caplog.records if "Entra Mail.Send" in record.getMessage()]
    assert len(warnings) == 1 and MAIL_APP in warnings[0] and "every mailbox" in warnings[0]


def test_email_goes_through_graph_sendmail_and_the_simulator_receives_it(simulator_for, storage_connection_string):
    sim = simulator_for(operator_scenario())
    endpoints = endpoints_for(sim)
    tenant = str(uuid.uuid4())
    asyncio.run(register(storage_connection_string, tenant, "Fabrikam"))
    env = alert_env(storage_connection_string, {"mail": {
        "type": "email", "tenantId": OPERATOR, "from": "authwatch@operator.example",
        "to": ["soc@operator.example"], "cc": ["lead@operator.example"],
        "credential": {"mode": "secret", "clientId": "6a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                       "secretSetting": "AUTHWATCH_MAIL_SECRET"}}},
        AUTHWATCH_MAIL_SECRET="op-secret", AUTHWATCH_AUTHORITY_HOST=endpoints.authority,
        AUTHWATCH_GRAPH_URL=endpoints.graph, AUTHWATCH_EXCHANGE_URL=endpoints.exchange,
        AUTHWATCH_CA_BUNDLE=sim.ca_path)
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1,
                                       [smtp_failed(tenant, T1), smtp_reenabled(tenant, T1)]))
    reports = deliver(env, records)
    assert sum(r.sent.get("mail", 0) for r in reports) == 2

    [mail] = sim.sent_mail
    assert mail["tenant"] == OPERATOR and mail["sender"] == "authwatch@operator.example"
    assert mail["saveToSentItems"] is False
    message = mail["message"]
    assert message["toRecipients"] == [{"emailAddress": {"address": "soc@operator.example"}}]
    assert message["ccRecipients"] == [{"emailAddress": {"address": "lead@operator.example"}}]
    assert message["subject"].startswith("[authwatch] HIGH: Fabrikam:") and "(+1 more)" in message["subject"]
    assert message["body"]["contentType"] == "HTML"
    html = message["body"]["content"]
    for text in ("SmtpClientAuthenticationDisabled: true → false", "admin@contoso.example at 2026-11-23T07:52:10Z",
                 "Set-TransportConfig -SmtpClientAuthenticationDisabled $true", "status: pass → fail",
                 "password alone", f"https://authwatch.example/app#/tenants/{tenant}"):
        assert text in html, text
    lead = min(records, key=event_order)["id"]  # the group's id: its most important event's
    assert message["internetMessageHeaders"] == [{"name": "X-Authwatch-Alert-Id", "value": lead}]
    assert "op-secret" not in json.dumps(mail)
    assert sim.request_counts["graph.sendMail"] == 1


def test_email_with_a_wrong_secret_fails_visibly(simulator_for, storage_connection_string):
    sim = simulator_for({"app": {"clientId": "6a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "clientSecret": "op-secret"},
                         "tenants": [{"tenantId": OPERATOR, "displayName": "Operator"}]})
    endpoints = endpoints_for(sim)
    tenant = str(uuid.uuid4())
    env = alert_env(storage_connection_string, {"mail": {
        "type": "email", "tenantId": OPERATOR, "from": "authwatch@operator.example", "to": ["soc@operator.example"],
        "credential": {"mode": "secret", "clientId": "6a1c2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                       "secretSetting": "AUTHWATCH_MAIL_SECRET"}}},
        AUTHWATCH_MAIL_SECRET="wrong-secret", AUTHWATCH_AUTHORITY_HOST=endpoints.authority,
        AUTHWATCH_GRAPH_URL=endpoints.graph, AUTHWATCH_CA_BUNDLE=sim.ca_path, AUTHWATCH_ALERT_RETRIES="0")
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    [report] = deliver(env, records, dequeue_count=5)
    assert report.failed == ["mail"] and sim.sent_mail == []
    [failure] = asyncio.run(failed_deliveries(storage_connection_string, tenant))
    assert "AADSTS7000215" in failure["error"] and "wrong-secret" not in json.dumps(failure)


def test_failed_deliveries_of_an_unknown_tenant_is_empty(storage_connection_string):
    assert asyncio.run(failed_deliveries(storage_connection_string, str(uuid.uuid4()))) == []
    assert TABLE == "AuthwatchDeliveries"

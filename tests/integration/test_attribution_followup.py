"""Who re-enabled SMTP AUTH, when Microsoft's audit log says so only later: the cycle alerts once with "actor not
yet known", starts an audit log query once the change is an hour old, reads it on the next cycle and fills the actor
into the same event (no second alert). Simulator over HTTPS, real Azurite."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.collect import TenantAccess
from shared.cycle.service import Monitor, evaluate_tenant
from shared.state.attribution_pending import GIVEN_UP, NOT_YET_KNOWN
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "the-right-secret"}
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
CHANGED = T0 + timedelta(minutes=10)
PERMISSIONS = ["Policy.Read.All", "AuditLog.Read.All", "Directory.Read.All", "Exchange.ManageAsApp",
               "AuditLogsQuery-Exchange.Read.All"]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def smtp_record(upn: str = "jane@contoso.com") -> dict[str, Any]:
    return {"createdDateTime": stamp(CHANGED), "auditLogRecordType": "exchangeAdmin",
            "operation": "Set-TransportConfig", "userType": "admin", "userId": upn, "userPrincipalName": upn,
            "service": "Exchange", "availableAfterMinutes": 75,
            "auditData": {"CreationTime": stamp(CHANGED)[:-1], "Operation": "Set-TransportConfig", "RecordType": 1,
                          "UserType": 2, "UserId": upn, "ResultStatus": "True",
                          "Parameters": [{"Name": "SmtpClientAuthenticationDisabled", "Value": "False"}]}}


def tenant(tenant_id: str, **extra: Any) -> dict[str, Any]:
    return {"tenantId": tenant_id, "displayName": "Contoso", "permissions": PERMISSIONS,
            "graph": {"securityDefaults": {"id": "00000000-0000-0000-0000-000000000005", "isEnabled": False},
                      "conditionalAccessPolicies": [copy.deepcopy(block_policy())]},
            "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                             "SmtpClientAuthenticationDisabled": True}},
            "auditRecords": [], "auditQuery": {"now": stamp(T0)}, **extra}


def reenable(sim: Any, tenant_id: str, *, records: list[dict[str, Any]], now: datetime) -> None:
    def change(t: dict[str, Any]) -> None:
        t["exchange"]["transportConfig"]["SmtpClientAuthenticationDisabled"] = False
        t["auditRecords"] = records
        t["auditQuery"] = {"now": stamp(now)}
    sim.update_tenant(tenant_id, change)


def audit_clock(sim: Any, tenant_id: str, now: datetime) -> None:
    sim.update_tenant(tenant_id, lambda t: t.update(auditQuery={"now": stamp(now)}))


def cycles(sim: Any, connection: str, tenant_id: str, steps: list[tuple[datetime, Any]]) -> tuple[list, list]:
    """Run the worker's evaluate_tenant at each time (after calling the step's setup), return the alerts queued for
    this tenant and its history."""
    access = TenantAccess(tenant_id=tenant_id, client_id=APP["clientId"], client_secret=APP["clientSecret"])

    async def go() -> tuple[list, list]:
        monitor = Monitor(TenantStore.from_connection_string(connection),
                          JsonQueue.from_connection_string(connection, ALERTS_QUEUE), endpoints_for(sim))
        try:
            await monitor.create()
            for now, setup in steps:
                setup()
                outcome = await evaluate_tenant(access, monitor, now=now)
                assert outcome.failure is None, outcome.failure
            alerts = [a for a in await monitor.alerts.receive_all(limit=10_000) if a["tenantId"] == tenant_id]
            return alerts, await monitor.store.history(tenant_id)
        finally:
            await monitor.close()

    return asyncio.run(go())


def test_the_actor_of_an_smtp_auth_reenable_arrives_later_and_fills_the_same_alert(simulator_for,
                                                                                     storage_connection_string):
    tenant_id = "0a000000-0000-4000-8000-0000000000b1"
    sim = simulator_for({"app": dict(APP), "tenants": [tenant(tenant_id)]})
    seen = T0 + timedelta(minutes=15)
    alerts, history = cycles(sim, storage_connection_string, tenant_id, [
        (T0, lambda: None),
        # Re-enabled at 08:10, seen at 08:15; Microsoft's record only becomes searchable at 09:25.
        (seen, lambda: reenable(sim, tenant_id, records=[smtp_record()], now=seen)),
        (seen + timedelta(minutes=15), lambda: audit_clock(sim, tenant_id, seen + timedelta(minutes=15))),
        # An hour after it was seen: the query starts (the record is searchable from 09:25) ...
        (seen + timedelta(minutes=75), lambda: audit_clock(sim, tenant_id, seen + timedelta(minutes=75))),
        # ... and is read a cycle later.
        (seen + timedelta(minutes=90), lambda: audit_clock(sim, tenant_id, seen + timedelta(minutes=90))),
        (seen + timedelta(minutes=105), lambda: None),
    ])
    reenabled = [a for a in alerts if a["type"] == "basic_auth.reenabled"]
    assert len(reenabled) == 1  # one alert, sent when the change was seen ...
    assert reenabled[0]["details"]["actor"] == NOT_YET_KNOWN and reenabled[0]["details"]["changedBy"] is None
    [stored] = [e for e in history if e["type"] == "basic_auth.reenabled"]
    assert stored["id"] == reenabled[0]["id"]
    # ... and the same event now names who did it, with the cmdlet and its parameters.
    assert stored["details"]["changedBy"] == "jane@contoso.com"
    assert stored["details"]["cmdlet"] == "Set-TransportConfig"
    assert stored["details"]["parameters"] == {"SmtpClientAuthenticationDisabled": "False"}
    assert stored["details"]["byMicrosoft"] is False
    assert "Changed by jane@contoso.com" in stored["summary"]


def test_without_the_audit_permission_the_actor_stays_unknown_and_is_given_up_after_a_day(simulator_for,
                                                                                         storage_connection_string):
    tenant_id = "0a000000-0000-4000-8000-0000000000b2"
    sim = simulator_for({"app": dict(APP), "tenants": [tenant(tenant_id, permissions=PERMISSIONS[:-1])]})
    seen = T0 + timedelta(minutes=15)
    alerts, history = cycles(sim, storage_connection_string, tenant_id, [
        (T0, lambda: None),
        (seen, lambda: reenable(sim, tenant_id, records=[smtp_record()], now=seen)),
        (seen + timedelta(minutes=75), lambda: None),  # the query is refused (403): still not known
        (seen + timedelta(hours=25), lambda: None),  # a day later: given up, with the reason
    ])
    assert len([a for a in alerts if a["type"] == "basic_auth.reenabled"]) == 1
    [stored] = [e for e in history if e["type"] == "basic_auth.reenabled"]
    assert stored["details"]["changedBy"] is None
    assert stored["details"]["actor"] == GIVEN_UP
    assert stored["details"]["attributionError"]

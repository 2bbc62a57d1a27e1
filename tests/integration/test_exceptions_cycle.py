"""Exceptions through the real worker path (registry → the queue worker's evaluation → collect over HTTPS → compare →
Table storage → alerts queue): one that expires, one whose scope grows, one removed. Each time the finding comes back
with exactly one alert, and nothing is alerted while the exception covers it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.collect.credentials import CredentialSpec
from shared.cycle.fleet import evaluate_registered
from shared.model import format_time
from shared.tenants import exceptions_service as service
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry
from tests.conftest import fleet_for

APP = {"clientId": "7d1e9b2c-3a4f-4e5d-8c6b-0a1b2c3d4e60", "clientSecret": "exceptions-cycle-secret"}
SECRET_SETTING = "AUTHWATCH_EXCEPTIONS_CYCLE_SECRET"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
OVERRIDES = "exo_smtp_auth_mailbox_overrides"


def mailbox(address: str, smtp_on: bool) -> dict[str, Any]:
    return {"Identity": address.split("@")[0], "PrimarySmtpAddress": address, "UserPrincipalName": address,
            "SmtpClientAuthenticationDisabled": False if smtp_on else None, "PopEnabled": False,
            "ImapEnabled": False, "ActiveSyncEnabled": True}


def tenant(tenant_id: str) -> dict[str, Any]:
    return {"tenantId": tenant_id, "displayName": "Contoso Copiers",
            "exchange": {"transportConfig": {"Identity": "Transport Settings",
                                             "SmtpClientAuthenticationDisabled": True},
                         "casMailboxes": [mailbox("copier@contoso.com", True), mailbox("jane@contoso.com", False)]}}


def second_copier(t: dict[str, Any]) -> None:
    t["exchange"]["casMailboxes"].append(mailbox("copier2@contoso.com", True))


def run_story(simulator_for: Any, connection: str, steps: list[tuple[float, Any]]) -> list[dict[str, Any]]:
    """Each step: (days after T0, what to do first: a function of (sim, registry, tenant, now) or None), then one
    cycle of the real worker path. Returns the alerts queued for the control, in order."""
    tenant_id = str(uuid.uuid4())
    sim = simulator_for({"app": dict(APP), "tenants": [tenant(tenant_id)]})

    async def go() -> list[dict[str, Any]]:
        fleet = fleet_for(connection, sim, {SECRET_SETTING: APP["clientSecret"]})
        alerts: list[dict[str, Any]] = []
        try:
            await fleet.create()
            await fleet.registry.add(TenantConfig(tenant_id=tenant_id, display_name="Contoso Copiers", credential=
                                                  CredentialSpec(mode="secret", client_id=APP["clientId"],
                                                                 secret_setting=SECRET_SETTING)))
            for days, action in steps:
                now = T0 + timedelta(days=days)
                if action is not None:
                    await action(sim, fleet.registry, tenant_id, now)
                # The queue worker's function for this tenant (it reads the registry, as for a message without the
                # config); not the fan-out, which would also queue every other test's tenant in the shared registry.
                outcome = await evaluate_registered(fleet, tenant_id, now=now)
                assert outcome is not None and outcome.failure is None, outcome and outcome.failure
                alerts += [a for a in await fleet.monitor.alerts.receive_all(limit=100)
                           if a.get("control") == OVERRIDES or a["type"].startswith("exception.")]
        finally:
            await fleet.close()
        return alerts

    return asyncio.run(go())


async def accept_copier(sim: Any, registry: TenantRegistry, tenant_id: str, now: datetime, days: int = 30) -> None:
    await service.add_exception(registry, tenant_id, {
        "id": "copier", "control": OVERRIDES, "scope": {"mailboxes": ["copier@contoso.com"]}, "owner": "Mail team",
        "reason": "the copier cannot do OAuth until its firmware update", "createdBy": "alice@contoso.com",
        "expiresAt": format_time(now + timedelta(days=days))}, now=now)


def types(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["type"] for a in alerts]


def test_an_exception_that_expires_reminds_once_then_the_finding_returns_with_one_alert(simulator_for,
                                                                                       storage_connection_string):
    alerts = run_story(simulator_for, storage_connection_string, [
        (0, lambda sim, reg, t, now: accept_copier(sim, reg, t, now, days=10)),  # accepted from the first look
        (1, None),
        (4, None),  # 6 days left: the reminder (7 days ahead)
        (5, None),
        (10.5, None),  # expired: the finding is back
        (11, None),
    ])
    assert types(alerts) == ["exception.expiring", "control.failed"]
    assert "copier@contoso.com" in alerts[1]["summary"]


def test_an_exception_whose_scope_grows_alerts_once_for_the_mailbox_it_does_not_cover(simulator_for,
                                                                                     storage_connection_string):
    async def grow(sim: Any, registry: TenantRegistry, tenant_id: str, now: datetime) -> None:
        sim.update_tenant(tenant_id, second_copier)

    alerts = run_story(simulator_for, storage_connection_string, [
        (0, lambda sim, reg, t, now: accept_copier(sim, reg, t, now)),
        (1, grow),
        (2, None),
    ])
    failed = [a for a in alerts if a["type"] == "control.failed"]
    assert len(failed) == 1
    assert "copier2@contoso.com" in failed[0]["summary"] and "not covered by exception copier" in failed[0]["summary"]


def test_an_exception_removed_brings_the_finding_back_with_one_alert(simulator_for, storage_connection_string):
    async def remove(sim: Any, registry: TenantRegistry, tenant_id: str, now: datetime) -> None:
        await service.remove_exception(registry, tenant_id, "copier", by="bob@contoso.com", now=now)

    alerts = run_story(simulator_for, storage_connection_string, [
        (0, None),  # failing at first sight: one alert
        (1, lambda sim, reg, t, now: accept_copier(sim, reg, t, now)),  # accepted: that alert closes as accepted
        (2, None),
        (3, remove),  # removed: the finding is back, once
        (4, None),
    ])
    assert types(alerts) == ["control.failed", "control.recovered", "control.failed"]
    assert alerts[1]["summary"].startswith("Accepted by exception copier")


def test_a_change_an_exception_already_accepts_is_told_as_accepted(simulator_for, storage_connection_string):
    async def accept_both(sim: Any, registry: TenantRegistry, tenant_id: str, now: datetime) -> None:
        await service.add_exception(registry, tenant_id, {
            "id": "copiers", "control": OVERRIDES, "scope": {"mailboxes": ["copier@contoso.com",
                                                                          "copier2@contoso.com"]},
            "owner": "Mail team", "reason": "both copiers until the firmware update", "createdBy": "alice@contoso.com",
            "expiresAt": format_time(now + timedelta(days=30))}, now=now)

    async def grow(sim: Any, registry: TenantRegistry, tenant_id: str, now: datetime) -> None:
        sim.update_tenant(tenant_id, second_copier)

    alerts = run_story(simulator_for, storage_connection_string, [(0, accept_both), (1, grow), (2, None)])
    [reenabled] = [a for a in alerts if a["type"] == "basic_auth.reenabled"]
    assert reenabled["details"]["coveredByException"] == ["copiers"]
    assert reenabled["summary"].endswith("Accepted by exception copiers.")
    assert not [a for a in alerts if a["type"] == "control.failed"]  # the finding stays accepted

"""The alert layer's entry points for the Functions layer and the API: build an AlertService from the app settings,
make one call, close it. `deliver_message` (alerts queue), `record_poison_message` (alerts-poison), `run_digest`
(the daily timer), `failed_deliveries` (GET …/deliveries/failed and the dashboard), `open_alerts_of` (a tenant's
open alerts: GET …/tenants/{id}) and `annotate_alert` (acknowledge, snooze).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.alerts.config import AlertSettings
from shared.alerts.errors import AlertConfigError
from shared.alerts.open_store import OpenAlerts
from shared.alerts.service import AlertService, DeliveryReport, DigestReport
from shared.alerts.store import AlertTables
from shared.storage.account import StorageAccount

log = logging.getLogger("authwatch.alerts")


async def deliver_message(document: Any, *, message_id: str | None = None, dequeue_count: int | None = None,
                          now: datetime | None = None, env: Mapping[str, str] | None = None) -> DeliveryReport:
    try:
        service = AlertService.from_env(env)
    except AlertConfigError as error:
        log.error("alert configuration is invalid; the message will be retried",
                  extra={"error": str(error), "dequeue_count": dequeue_count})
        raise
    try:
        await service.create()
        return await service.deliver(document, now=now or datetime.now(timezone.utc), message_id=message_id,
                                     dequeue_count=dequeue_count)
    finally:
        await service.close()


async def record_poison_message(document: Any, *, now: datetime | None = None,
                                env: Mapping[str, str] | None = None) -> list[str]:
    now = now or datetime.now(timezone.utc)
    try:
        service = AlertService.from_env(env)
    except AlertConfigError as error:
        # Channels and routes cannot be read, but the failure must still be visible: one row for the event.
        from shared.settings import Settings

        service = AlertService(settings=AlertSettings(), tables=AlertTables.from_connection_string(
            Settings.from_env(os.environ if env is None else env).storage))
        try:
            await service.create()
            return await service.record_unroutable(document, now=now, reason=f"alert configuration invalid: {error}")
        finally:
            await service.close()
    try:
        await service.create()
        return await service.record_poison(document, now=now)
    finally:
        await service.close()


async def run_digest(*, now: datetime | None = None, env: Mapping[str, str] | None = None) -> DigestReport:
    service = AlertService.from_env(env)
    try:
        await service.create()
        return await service.digest(now=now or datetime.now(timezone.utc))
    finally:
        await service.close()


async def failed_deliveries(connection_string: str | StorageAccount, tenant_id: str, *,
                            limit: int = 50) -> list[dict[str, Any]]:
    """Recorded failed deliveries of one tenant, newest first: for the API (GET …/deliveries/failed) and the
    dashboard. Each: eventId, channel, channelType, type, control, severity, at, groupId, tries, attempts, error,
    failedAt. `connection_string`: a connection string or Settings.storage. The tenant id must already be validated
    (a GUID)."""
    async with AlertTables.from_connection_string(connection_string) as tables:
        try:
            return await tables.failed(tenant_id.lower(), limit=limit)
        except ResourceNotFoundError:
            return []


async def open_alerts_of(connection_string: str | StorageAccount, tenant_id: str, *, now: datetime) -> OpenAlerts:
    """A tenant's open alerts, newest first (each with acknowledged / snoozed), from its own open-alert rows caught up
    with history (open_store.py), and how many past the per-tenant bound are left out. The tenant id must already be
    validated (a GUID)."""
    async with AlertTables.from_connection_string(connection_string) as tables:
        await tables.open.create()
        return await tables.open.open_alerts(tenant_id.lower(), now=now)


async def annotate_alert(connection_string: str | StorageAccount, history: Any, tenant_id: str, event_id: str, *,
                         now: datetime, acknowledged_at: datetime | None = None, acknowledged_by: str | None = None,
                         snoozed_until: datetime | None = None) -> dict[str, Any]:
    """Record a person's decision on an alert: on its event row while history still holds it (`history`: the
    TenantStore) and on its open-alert row while it is open. LookupError when neither exists (nothing is written)."""
    changes = {"acknowledged_at": acknowledged_at, "acknowledged_by": acknowledged_by, "snoozed_until": snoozed_until}
    try:
        answer: dict[str, Any] | None = await history.annotate_event(tenant_id, event_id, **changes)
    except LookupError:
        answer = None
    async with AlertTables.from_connection_string(connection_string) as tables:
        try:
            if answer is not None:  # an alert opened before its row existed (never read since): build it first
                await tables.open.catch_up(tenant_id.lower(), now=now)
            opened = await tables.open.annotate(tenant_id.lower(), event_id, now=now, **changes)
        except ResourceNotFoundError:
            opened = None  # no open-alert table yet: nothing was ever open there
    if answer is None and opened is None:
        raise LookupError(f"tenant {tenant_id} has no event {event_id}")
    return answer if answer is not None else opened  # type: ignore[return-value]

"""The alert layer's entry points for the Functions layer and the API: build an AlertService from the app settings,
make one call, close it. `deliver_message` (alerts queue), `record_poison_message` (alerts-poison), `run_digest`
(the daily timer), `failed_deliveries` (GET …/deliveries/failed and the dashboard).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from shared.alerts.config import AlertSettings
from shared.alerts.errors import AlertConfigError
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
    from azure.core.exceptions import ResourceNotFoundError

    async with AlertTables.from_connection_string(connection_string) as tables:
        try:
            return await tables.failed(tenant_id.lower(), limit=limit)
        except ResourceNotFoundError:
            return []

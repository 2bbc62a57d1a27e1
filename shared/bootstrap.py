"""The one wiring point: real adapters built from settings (Cosmic Python's bootstrap)."""

from __future__ import annotations

from shared.service import Monitor
from shared.settings import Settings
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore


def build_monitor(settings: Settings) -> Monitor:
    return Monitor(
        store=TenantStore.from_connection_string(settings.storage_connection_string),
        alerts=JsonQueue.from_connection_string(settings.storage_connection_string, ALERTS_QUEUE),
        endpoints=settings.endpoints,
        history_days=settings.history_days,
    )

"""The one wiring point: real adapters built from settings (Cosmic Python's bootstrap)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Mapping

from shared.collect.connection import ConnectionPools
from shared.cycle.fleet import EVALUATIONS_QUEUE, Fleet
from shared.cycle.service import Monitor
from shared.logs import configure_observability
from shared.settings import Settings
from shared.storage.queues import ALERTS_QUEUE, JsonQueue
from shared.storage.tenant_store import TenantStore
from shared.tenants.registry import TenantRegistry


def build_monitor(settings: Settings) -> Monitor:
    return Monitor(
        store=TenantStore.from_connection_string(settings.storage),
        alerts=JsonQueue.from_connection_string(settings.storage, ALERTS_QUEUE),
        endpoints=settings.endpoints,
        history_days=settings.history_days,
        signin_overlap=timedelta(hours=settings.signin_overlap_hours),
        tenant_deadline_s=float(settings.tenant_deadline_seconds),
        pools=ConnectionPools.for_process(settings.endpoints),
    )


def build_fleet(env: Mapping[str, str] | None = None) -> Fleet:
    """Everything the Functions entry points need. Storage clients are cheap: each invocation builds and closes its
    own. The connections to Microsoft (TLS, token sessions) are the process's, reused by every invocation on the
    same event loop and rebuilt on a new one (see ConnectionPools)."""
    env = os.environ if env is None else env
    configure_observability()
    settings = Settings.from_env(env)
    return Fleet(
        registry=TenantRegistry.from_connection_string(settings.storage),
        monitor=build_monitor(settings),
        evaluations=JsonQueue.from_connection_string(settings.storage, EVALUATIONS_QUEUE),
        default_minutes=settings.interval_minutes,
        env=env,
    )

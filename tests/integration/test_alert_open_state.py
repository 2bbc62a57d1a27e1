"""Old open alerts must not vanish (issue 22, item 4): the open alerts the API answers (`openAlerts`) and the daily
digest reminds of are kept as their own state, not replayed from the newest few hundred events. Against Azurite: a
high alert opens, then 1,200 later events of a tenant flapping unreachable/recovered push it out of any window of
history; it is still open, in the API and in the digest, and acknowledging, snoozing and resolving it still work.
Existing deployments (history, no open-alert rows yet) lose nothing: the rows are built from history on first read.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.bootstrap import build_fleet
from shared.state.events import Event
from shared.views import api
from tests.integration.test_alert_receiver import (  # noqa: F401 - the receivers fixture
    alert_env,
    commit_cycle,
    receivers,
    register,
    smtp_failed,
    smtp_recovered,
)

T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
FLAPS = 1_200  # later events: past the 500 the API replayed and the 1,000 the digest replayed
PER_COMMIT = 60  # events per transaction (the limit is 100 rows)


def flapping(tenant_id: str, start: datetime, count: int) -> list[Event]:
    """A tenant that goes unreachable and comes back, over and over: one event a minute."""
    events = []
    for index in range(count):
        at = start + timedelta(minutes=index)
        if index % 2 == 0:
            events.append(Event(at, tenant_id, "tenant.unreachable", None, "high",
                                "authwatch cannot read this tenant: HTTP 503: Service Unavailable", {"errors": {}}))
        else:
            events.append(Event(at, tenant_id, "tenant.recovered", None, "high",
                                "authwatch can read this tenant again.", {}))
    return events


def commit_flaps(connection: str, tenant_id: str, start: datetime, count: int) -> datetime:
    events = flapping(tenant_id, start, count)
    for first in range(0, len(events), PER_COMMIT):
        batch = events[first:first + PER_COMMIT]
        asyncio.run(commit_cycle(connection, tenant_id, batch[-1].at, batch))
    return events[-1].at


def detail(env: dict[str, str], tenant_id: str, now: datetime) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        fleet = build_fleet(env)
        try:
            return await api.tenant_detail(fleet, tenant_id, now=now)
        finally:
            await fleet.close()

    return asyncio.run(main())


def call(env: dict[str, str], action, *args: Any, **kwargs: Any) -> Any:
    async def main() -> Any:
        fleet = build_fleet(env)
        try:
            return await action(fleet, *args, **kwargs)
        finally:
            await fleet.close()

    return asyncio.run(main())


def digest_alerts(env: dict[str, str], hook, tenant_id: str, now: datetime) -> list[str] | None:
    """The alert ids the digest at `now` listed for this tenant (None: no digest for it)."""
    from shared.alerts import AlertService

    async def main() -> None:
        service = AlertService.from_env(env)
        try:
            await service.create()
            await service.digest(now=now)
        finally:
            await service.close()

    before = len(hook.requests)
    asyncio.run(main())
    for body in hook.bodies()[before:]:
        for tenant in body.get("tenants", []):
            if tenant["tenantId"] == tenant_id:
                return [alert["id"] for alert in tenant["alerts"]]
    return None


def open_ids(answer: dict[str, Any]) -> list[str]:
    return [alert["id"] for alert in answer["openAlerts"]]


def setup(connection: str, receivers, name: str) -> tuple[str, dict[str, str], Any]:
    tenant = str(uuid.uuid4())
    hook = receivers()
    channel = f"siem-{uuid.uuid4().hex[:8]}"
    env = alert_env(connection, {channel: {"type": "webhook", "url": hook.url}},
                    {"routes": [{"name": "this-test", "tenants": [tenant], "channels": [channel]}]})
    asyncio.run(register(connection, tenant, name))
    return tenant, env, hook


def test_an_old_open_alert_survives_1200_later_events_in_the_api_and_the_digest(receivers,
                                                                               storage_connection_string):
    tenant, env, hook = setup(storage_connection_string, receivers, "Flapping Co")
    [opened] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    assert open_ids(detail(env, tenant, T1)) == [opened["id"]]  # read once while it is new

    last = commit_flaps(storage_connection_string, tenant, T1 + timedelta(minutes=1), FLAPS)
    now = last + timedelta(minutes=5)
    answer = detail(env, tenant, now)
    assert opened["id"] in open_ids(answer), "the open high alert vanished from openAlerts"
    alert = next(a for a in answer["openAlerts"] if a["id"] == opened["id"])
    assert alert["type"] == "control.failed" and alert["severity"] == "high" and not alert["acknowledged"]
    assert answer["openAlertsOmitted"] == 0
    # The flapping itself ended recovered: no tenant.unreachable alert is left open.
    assert [a["type"] for a in answer["openAlerts"]] == ["control.failed"]

    assert digest_alerts(env, hook, tenant, now) == [opened["id"]], "the open high alert vanished from the digest"

    # Acknowledge: still open, no longer reminded. Snooze another one; resolve: gone.
    acked = call(env, api.acknowledge_alert, tenant, opened["id"], {"by": "oncall@msp.example"}, now=now)
    assert acked["acknowledgedBy"] == "oncall@msp.example"
    alert = next(a for a in detail(env, tenant, now)["openAlerts"] if a["id"] == opened["id"])
    assert alert["acknowledged"] and alert["acknowledgedBy"] == "oncall@msp.example"
    assert digest_alerts(env, hook, tenant, now + timedelta(days=1)) is None

    snoozed = call(env, api.snooze_alert, tenant, opened["id"], {"until": "2099-01-01T00:00:00Z"}, now=now)
    assert snoozed["snoozedUntil"] == "2099-01-01T00:00:00Z"
    alert = next(a for a in detail(env, tenant, now)["openAlerts"] if a["id"] == opened["id"])
    assert alert["snoozed"] and alert["snoozedUntil"] == "2099-01-01T00:00:00Z"

    resolved_at = now + timedelta(minutes=1)
    asyncio.run(commit_cycle(storage_connection_string, tenant, resolved_at, [smtp_recovered(tenant, resolved_at)]))
    assert detail(env, tenant, resolved_at)["openAlerts"] == []


def test_an_existing_deployment_keeps_its_old_open_alerts_on_first_read(receivers, storage_connection_string):
    """History written before open-alert rows existed (no row, never read): the first read builds them from the
    whole history, so an alert opened 1,200 events ago is there, acknowledged as it was, snoozed as it was."""
    from shared.storage.tenant_store import TenantStore

    tenant, env, hook = setup(storage_connection_string, receivers, "Upgraded Co")
    second = T1 + timedelta(seconds=30)
    [opened] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    gap = Event(second, tenant, "enforcement.gap", "entra_legacy_signins_blocked", "high",
                "2 successful legacy sign-ins after the enforcement window closed.", {"gapCount": 2})
    [gapped] = asyncio.run(commit_cycle(storage_connection_string, tenant, second, [gap]))

    async def acknowledge_in_history() -> None:  # as an older version recorded it: on the event row only
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            await store.annotate_event(tenant, gapped["id"], acknowledged_at=second, acknowledged_by="old-version")

    asyncio.run(acknowledge_in_history())
    last = commit_flaps(storage_connection_string, tenant, T1 + timedelta(minutes=1), FLAPS)
    now = last + timedelta(minutes=5)

    answer = detail(env, tenant, now)  # the first read ever of this tenant's open alerts
    assert sorted(open_ids(answer)) == sorted([opened["id"], gapped["id"]])
    gap_alert = next(a for a in answer["openAlerts"] if a["id"] == gapped["id"])
    assert gap_alert["acknowledged"] and gap_alert["acknowledgedBy"] == "old-version"
    assert digest_alerts(env, hook, tenant, now) == [opened["id"]]  # the acknowledged one is not reminded


def test_the_digest_alone_also_builds_the_rows_from_history(receivers, storage_connection_string):
    tenant, env, hook = setup(storage_connection_string, receivers, "Digest-first Co")
    [opened] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    last = commit_flaps(storage_connection_string, tenant, T1 + timedelta(minutes=1), FLAPS)
    assert digest_alerts(env, hook, tenant, last + timedelta(hours=1)) == [opened["id"]]


def test_the_alert_worker_writes_the_row_when_the_alert_opens_and_removes_it_on_resolution(
        receivers, storage_connection_string):
    from shared.alerts import AlertService
    from shared.alerts.store import AlertTables

    tenant, env, hook = setup(storage_connection_string, receivers, "Worker Co")
    [opened] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))

    def deliver(record: dict[str, Any], now: datetime) -> None:
        async def main() -> None:
            service = AlertService.from_env(env)
            try:
                await service.create()
                await service.deliver(record, now=now, message_id=uuid.uuid4().hex, dequeue_count=1)
            finally:
                await service.close()

        asyncio.run(main())

    async def rows() -> dict[str, Any]:
        async with AlertTables.from_connection_string(storage_connection_string) as tables:
            return (await tables.open.load(tenant)).rows

    deliver(opened, T1)
    assert list(asyncio.run(rows())) == [opened["id"]]  # before anyone read the open alerts
    resolved_at = T1 + timedelta(hours=1)
    [resolved] = asyncio.run(commit_cycle(storage_connection_string, tenant, resolved_at,
                                          [smtp_recovered(tenant, resolved_at)]))
    deliver(resolved, resolved_at)
    deliver(opened, resolved_at)  # the opening message again, late (at least once): stays closed
    assert asyncio.run(rows()) == {}
    assert detail(env, tenant, resolved_at)["openAlerts"] == []


def test_an_open_alert_outlives_its_pruned_event_and_can_still_be_acknowledged(receivers,
                                                                               storage_connection_string):
    from shared.storage.tenant_store import TenantStore

    tenant, env, hook = setup(storage_connection_string, receivers, "Long-open Co")
    [opened] = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    assert open_ids(detail(env, tenant, T1)) == [opened["id"]]

    async def prune() -> int:
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            return await store.prune_history(tenant, T1 + timedelta(days=91))

    assert asyncio.run(prune()) == 1  # history keeps 90 days; the alert is still open on day 91
    later = T1 + timedelta(days=91)
    assert open_ids(detail(env, tenant, later)) == [opened["id"]]
    acked = call(env, api.acknowledge_alert, tenant, opened["id"], {"by": "oncall@msp.example"}, now=later)
    assert acked["id"] == opened["id"] and acked["acknowledgedBy"] == "oncall@msp.example"
    assert next(iter(detail(env, tenant, later)["openAlerts"]))["acknowledged"]

"""The alert lifecycle over real storage and real receivers: open → reminder digest → resolve; acknowledging and
snoozing keep the digest quiet; a flapping control raises one message per real transition, grouped per cycle."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from shared.alerts import AlertService
from shared.model import format_time, snapshot_from_json
from shared.state.compare import compare
from shared.storage.tenant_store import TenantStore
from tests.builders import block_policy, snapshot_json
from tests.integration.test_alert_receiver import (  # noqa: F401 - the receivers fixture
    alert_env,
    commit_cycle,
    enforcement_gap,
    receivers,
    register,
    smtp_failed,
    smtp_recovered,
)

T1 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def lifecycle_env(connection: str, hook, slack, tenant_id: str) -> dict[str, str]:
    """A webhook and a Slack channel for this test's tenant only: the storage account (and its registry and
    deliveries table) is shared by the whole session, so channel names are unique and routes name the tenant."""
    suffix = uuid.uuid4().hex[:8]
    siem, ops = f"siem-{suffix}", f"ops-{suffix}"
    return alert_env(connection, {siem: {"type": "webhook", "url": hook.url},
                                  ops: {"type": "slack", "urlSetting": "AUTHWATCH_SLACK_URL"}},
                     {"routes": [{"name": "this-test", "tenants": [tenant_id], "channels": [siem, ops]}]},
                     AUTHWATCH_SLACK_URL=slack.url)


def run(env: dict[str, str], work):
    async def main():
        service = AlertService.from_env(env)
        try:
            await service.create()
            return await work(service)
        finally:
            await service.close()

    return asyncio.run(main())


def deliver_all(env, records, now):
    async def work(service):
        return [await service.deliver(record, now=now, message_id=uuid.uuid4().hex, dequeue_count=1)
                for record in records]

    return run(env, work)


def digest(env, now):
    async def work(service):
        return await service.digest(now=now)

    return run(env, work)


def mine(receiver, tenant_id: str) -> list[dict]:
    """What this test's tenant got (the digest lists every registered tenant sharing the storage account)."""
    found = []
    for body in receiver.bodies():
        if body.get("type") == "authwatch.digest":
            tenants = [t for t in body["tenants"] if t["tenantId"] == tenant_id]
            if tenants:
                found.append({**body, "tenants": tenants})
        elif body.get("tenantId") == tenant_id:
            found.append(body)
    return found


def test_open_then_reminder_digest_then_resolve(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    hook, slack = receivers(), receivers()
    env = lifecycle_env(storage_connection_string, hook, slack, tenant)
    asyncio.run(register(storage_connection_string, tenant, "Lifecycle Co"))

    opened = asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [smtp_failed(tenant, T1)]))
    deliver_all(env, opened, T1)
    assert [m["type"] for m in mine(hook, tenant)] == ["control.failed"]

    report = digest(env, T1 + DAY)  # 08:00 the next day
    assert sorted(report.sent.values()) == [1, 1]  # one alert, to each of the two channels
    [reminder] = [m for m in mine(hook, tenant) if m.get("type") == "authwatch.digest"]
    [entry] = reminder["tenants"]
    assert entry["tenantName"] == "Lifecycle Co" and [a["id"] for a in entry["alerts"]] == [opened[0]["id"]]
    assert entry["alerts"][0]["openSince"] == format_time(T1)
    slack_text = str(slack.bodies()[-1])
    assert "Lifecycle Co" in slack_text and "open for 1d 0h" in slack_text and "reminder" in slack_text

    before = len(hook.requests)
    again = digest(env, T1 + DAY + timedelta(minutes=20))  # the timer fires twice in one hour: one digest
    assert again.sent == {} and len(hook.requests) == before

    resolved_at = T1 + DAY + timedelta(hours=3)
    resolved = asyncio.run(commit_cycle(storage_connection_string, tenant, resolved_at,
                                        [smtp_recovered(tenant, resolved_at)]))
    deliver_all(env, resolved, resolved_at)
    assert mine(hook, tenant)[-1]["type"] == "control.recovered"
    assert "Resolved: SMTP AUTH is disabled" in str(slack.bodies()[-1])

    digest(env, T1 + 2 * DAY)
    assert [m["type"] for m in mine(hook, tenant)] == ["control.failed", "authwatch.digest", "control.recovered"]


def test_acknowledged_and_snoozed_alerts_are_not_reminded(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    hook, slack = receivers(), receivers()
    env = lifecycle_env(storage_connection_string, hook, slack, tenant)
    asyncio.run(register(storage_connection_string, tenant, "Quiet Co"))
    records = asyncio.run(commit_cycle(storage_connection_string, tenant, T1,
                                       [smtp_failed(tenant, T1), enforcement_gap(tenant, T1)]))
    acked, snoozed = (next(r for r in records if r["type"] == kind) for kind in ("control.failed", "enforcement.gap"))

    async def annotate():
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            await store.annotate_event(tenant, acked["id"], acknowledged_at=T1, acknowledged_by="oncall@msp.example")
            await store.annotate_event(tenant, snoozed["id"], snoozed_until=T1 + 3 * DAY)

    asyncio.run(annotate())
    digest(env, T1 + DAY)
    digest(env, T1 + 2 * DAY)
    assert mine(hook, tenant) == [] and all(tenant not in str(body) for body in slack.bodies())

    digest(env, T1 + 4 * DAY)  # the snooze has passed; the acknowledged one stays quiet
    [reminder] = mine(hook, tenant)
    assert [a["id"] for a in reminder["tenants"][0]["alerts"]] == [snoozed["id"]]


def test_a_medium_alert_is_not_in_the_high_severity_digest(receivers, storage_connection_string):
    from shared.state.events import Event

    tenant = str(uuid.uuid4())
    hook, slack = receivers(), receivers()
    env = lifecycle_env(storage_connection_string, hook, slack, tenant)
    asyncio.run(register(storage_connection_string, tenant, "Medium Co"))
    medium = Event(T1, tenant, "control.failed", "exo_modern_auth_enabled", "medium",
                   "Modern authentication is off for Exchange Online.", {"before": "pass", "after": "fail"})
    asyncio.run(commit_cycle(storage_connection_string, tenant, T1, [medium]))
    digest(env, T1 + DAY)
    assert mine(hook, tenant) == []
    digest({**env, "AUTHWATCH_DIGEST_MIN_SEVERITY": "medium"}, T1 + DAY + timedelta(hours=1))
    assert len(mine(hook, tenant)) == 1


def test_a_flapping_control_sends_one_message_per_real_transition(receivers, storage_connection_string):
    tenant = str(uuid.uuid4())
    hook, slack = receivers(), receivers()
    env = lifecycle_env(storage_connection_string, hook, slack, tenant)
    asyncio.run(register(storage_connection_string, tenant, "Flappy Co"))
    # SMTP AUTH off, off, ON, on, off, ON, on, off, off: four real transitions in nine cycles.
    values = [True, True, False, False, True, False, False, True, True]

    async def cycle(store: TenantStore, at: datetime, smtp_disabled: bool) -> list[dict]:
        snapshot = snapshot_from_json(snapshot_json(
            tenantId=tenant, collected_at=format_time(at), transport=smtp_disabled,
            policies=[block_policy(modifiedDateTime="2025-01-01T00:00:00Z")]))
        record = await store.load(tenant)
        comparison = compare(record.state, record.baseline, snapshot, now=at)
        await store.commit(tenant, state=comparison.state, expected_etag=record.state_etag,
                           results=comparison.results, evaluated_at=at,
                           events=[e.to_record() for e in comparison.events + comparison.notes],
                           baseline=comparison.baseline)
        return [e.to_record() for e in comparison.events]

    async def flap():
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            await store.create()
            return [await cycle(store, T1 + timedelta(minutes=15 * i), value) for i, value in enumerate(values)]

    cycles = asyncio.run(flap())
    assert [bool(events) for events in cycles] == [False, False, True, False, True, True, False, True, False]
    for index, events in enumerate(cycles):
        now = T1 + timedelta(minutes=15 * index)
        deliver_all(env, events + events, now)  # every message twice, as an at-least-once queue may
        digest(env, now)  # the reminder runs every cycle here: still at most one digest in the hour

    messages = [m for m in mine(hook, tenant) if m.get("type") != "authwatch.digest"]
    assert [m["type"] for m in messages] == ["basic_auth.reenabled", "control.recovered",
                                             "basic_auth.reenabled", "control.recovered"]
    opening = messages[0]["events"]
    assert {e["type"] for e in opening} == {"control.failed", "basic_auth.reenabled"}  # one cycle, one message
    assert len([m for m in mine(hook, tenant) if m.get("type") == "authwatch.digest"]) <= 1
    assert len([b for b in slack.bodies() if "Flappy Co" in str(b) and "reminder" not in str(b)]) == 4

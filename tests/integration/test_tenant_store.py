"""Tenant state in Table storage (Azurite): one partition per tenant, one transaction per cycle, events as the outbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from azure.data.tables import TableServiceClient

from shared.model import ControlResult, Severity, Status, format_time
from shared.storage.tenant_store import (
    TABLE,
    ConcurrencyConflict,
    DocumentTooLarge,
    TenantStore,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
T = TypeVar("T")


def result(control: str, status: Status, summary: str = "s", **evidence: Any) -> ControlResult:
    return ControlResult(control=control, status=status, severity=Severity.HIGH, summary=summary,
                         evidence=evidence, frameworks=("CIS 6.5.4",), remediation="fix it")


def event(tenant: str, at: datetime, event_id: str | None = None, kind: str = "control.failed",
          control: str | None = "exo_smtp_auth_disabled", **details: Any) -> dict[str, Any]:
    return {"id": event_id or uuid.uuid4().hex, "at": format_time(at), "tenantId": tenant, "type": kind,
            "control": control, "severity": "high", "summary": f"{kind} at {format_time(at)}", "details": details}


def run(connection_string: str, body: Callable[[TenantStore], Awaitable[T]]) -> T:
    async def go() -> T:
        async with TenantStore.from_connection_string(connection_string) as store:
            await store.create()
            return await body(store)

    return asyncio.run(go())


def raw_rows(connection_string: str, tenant: str) -> list[dict[str, Any]]:
    with TableServiceClient.from_connection_string(connection_string) as service:
        table = service.get_table_client(TABLE)
        return list(table.query_entities("PartitionKey eq @t", parameters={"t": tenant}))


def event_rows(connection_string: str, tenant: str) -> list[dict[str, Any]]:
    return [row for row in raw_rows(connection_string, tenant) if row["RowKey"].startswith("e:")]


def test_a_new_tenant_loads_empty(storage_connection_string):
    """A tenant never evaluated has no state, no ETag, no baseline and no results."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        await store.create()  # idempotent
        return await store.load(tenant)

    record = run(storage_connection_string, body)
    assert (record.tenant_id, record.state, record.state_etag, record.baseline, record.results) == (
        tenant, None, None, None, [])


def test_commit_round_trips_state_results_and_baseline_in_one_partition(storage_connection_string):
    """Everything one cycle writes reads back from one partition query, keyed current rows first."""
    tenant = str(uuid.uuid4())
    state = {"controls": {"a": {"status": "pass"}}, "window": None, "name": "Contoso Ltd — Zürich"}
    baseline = {"transport": {"SmtpClientAuthenticationDisabled": True}}

    async def body(store: TenantStore):
        etag = await store.commit(tenant, state=state, expected_etag=None, evaluated_at=T0, baseline=baseline,
                                  results=[result("a", Status.PASS), result("b", Status.FAIL, mailboxes=["x"] * 3)],
                                  events=[event(tenant, T0, "ev-1")])
        return etag, await store.load(tenant)

    etag, record = run(storage_connection_string, body)
    assert record.state == state and record.baseline == baseline
    assert record.state_etag == etag
    assert {(r.result.control, r.result.status) for r in record.results} == {("a", Status.PASS), ("b", Status.FAIL)}
    b = next(r for r in record.results if r.result.control == "b")
    assert (b.tenant_id, b.evaluated_at, b.result.evidence, b.result.frameworks, b.result.remediation) == (
        tenant, T0, {"mailboxes": ["x", "x", "x"]}, ("CIS 6.5.4",), "fix it")

    row_keys = [row["RowKey"] for row in raw_rows(storage_connection_string, tenant)]
    assert row_keys[:4] == ["a:baseline", "a:state", "b:result:a", "b:result:b"]
    [event_key] = row_keys[4:]
    assert event_key.startswith("e:") and event_key.endswith(":ev-1")


def test_stale_etag_conflicts_and_writes_nothing(storage_connection_string):
    """With the right ETag a commit succeeds; with a stale one it raises and leaves no trace of itself."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        first = await store.commit(tenant, state={"cycle": 1}, expected_etag=None, evaluated_at=T0,
                                   results=[result("a", Status.PASS)], events=[], baseline={"v": 1})
        second = await store.commit(tenant, state={"cycle": 2}, expected_etag=first, evaluated_at=T0 + timedelta(minutes=5),
                                    results=[result("a", Status.FAIL, "now failing")],
                                    events=[event(tenant, T0 + timedelta(minutes=5), "ev-2")])
        with pytest.raises(ConcurrencyConflict) as conflict:
            await store.commit(tenant, state={"cycle": 3}, expected_etag=first, evaluated_at=T0 + timedelta(minutes=10),
                               results=[result("a", Status.PASS, "stale writer"), result("new", Status.PASS)],
                               events=[event(tenant, T0 + timedelta(minutes=10), "ev-stale")], baseline={"v": 3})
        return first, second, conflict.value, await store.load(tenant)

    first, second, conflict, record = run(storage_connection_string, body)
    assert second != first
    assert conflict.row_key == "a:state" and tenant in str(conflict)
    assert record.state == {"cycle": 2} and record.state_etag == second and record.baseline == {"v": 1}
    assert [(r.result.control, r.result.summary) for r in record.results] == [("a", "now failing")]
    assert [row["EventId"] for row in event_rows(storage_connection_string, tenant)] == ["ev-2"]


def test_two_concurrent_writers_one_wins(storage_connection_string):
    """Two workers racing from the same ETag: exactly one commit lands, with exactly its own events."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        etag = await store.commit(tenant, state={"cycle": 0}, expected_etag=None, evaluated_at=T0, results=[], events=[])

        async def writer(name: str) -> str:
            at = T0 + timedelta(minutes=5)
            return await store.commit(tenant, state={"writer": name}, expected_etag=etag, evaluated_at=at,
                                      results=[result("a", Status.FAIL, name)],
                                      events=[event(tenant, at, f"{name}-{i}") for i in range(3)])

        outcomes = await asyncio.gather(writer("left"), writer("right"), return_exceptions=True)
        return outcomes, await store.load(tenant)

    outcomes, record = run(storage_connection_string, body)
    winners = [name for name, outcome in zip(("left", "right"), outcomes) if isinstance(outcome, str)]
    assert len(winners) == 1, outcomes
    assert sum(isinstance(outcome, ConcurrencyConflict) for outcome in outcomes) == 1
    [winner] = winners
    assert record.state == {"writer": winner}
    assert [r.result.summary for r in record.results] == [winner]
    assert sorted(row["EventId"] for row in event_rows(storage_connection_string, tenant)) == [
        f"{winner}-{i}" for i in range(3)]


def test_creating_a_state_that_exists_conflicts(storage_connection_string):
    """expected_etag=None means "create": it fails when another writer created the tenant first."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        await store.commit(tenant, state={"by": "first"}, expected_etag=None, evaluated_at=T0, results=[], events=[])
        with pytest.raises(ConcurrencyConflict) as conflict:
            await store.commit(tenant, state={"by": "second"}, expected_etag=None, evaluated_at=T0,
                               results=[result("a", Status.PASS)], events=[event(tenant, T0)])
        return conflict.value, await store.load(tenant)

    conflict, record = run(storage_connection_string, body)
    assert conflict.row_key == "a:state" and "created" in str(conflict)
    assert record.state == {"by": "first"} and record.results == []
    assert event_rows(storage_connection_string, tenant) == []


def test_history_is_newest_first_and_keeps_cycle_order(storage_connection_string):
    """Events come back newest first; events of one cycle (same time) in reverse of the order they were raised."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        etag = None
        for cycle in range(3):
            at = T0 + timedelta(hours=cycle)
            etag = await store.commit(tenant, state={"cycle": cycle}, expected_etag=etag, evaluated_at=at, results=[],
                                      events=[event(tenant, at, f"c{cycle}-{name}") for name in ("z", "a", "m")])
        return await store.history(tenant), await store.history(tenant, limit=4)

    everything, latest = run(storage_connection_string, body)
    assert [e["id"] for e in everything] == ["c2-m", "c2-a", "c2-z", "c1-m", "c1-a", "c1-z", "c0-m", "c0-a", "c0-z"]
    assert [e["id"] for e in latest] == ["c2-m", "c2-a", "c2-z", "c1-m"]
    assert everything[0] == {**event(tenant, T0 + timedelta(hours=2), "c2-m"), "pending": True,
                             "acknowledgedAt": None, "acknowledgedBy": None, "snoozedUntil": None}


def test_pending_events_are_the_outbox(storage_connection_string):
    """Committed events stay pending, oldest first, until marked sent; marking is idempotent and ignores strangers."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        etag = await store.commit(tenant, state={}, expected_etag=None, evaluated_at=T0, results=[],
                                  events=[event(tenant, T0, "old-1"), event(tenant, T0, "old-2")])
        await store.commit(tenant, state={}, expected_etag=etag, evaluated_at=T0 + timedelta(minutes=5), results=[],
                           events=[event(tenant, T0 + timedelta(minutes=5), "new-1", kind="tenant.unreachable",
                                         control=None)])
        before = await store.pending_events(tenant)
        await store.mark_sent(tenant, ["old-1", "no-such-event"])
        await store.mark_sent(tenant, ["old-1"])  # again: a retried delivery
        await store.mark_sent(tenant, [])
        middle = await store.pending_events(tenant)
        await store.mark_sent(tenant, ["old-2", "new-1"])
        return before, middle, await store.pending_events(tenant), await store.history(tenant)

    before, middle, after, history = run(storage_connection_string, body)
    assert [e["id"] for e in before] == ["old-1", "old-2", "new-1"]
    assert before[2]["control"] is None and before[2]["type"] == "tenant.unreachable"
    assert [e["id"] for e in middle] == ["old-2", "new-1"]
    assert after == []
    assert [(e["id"], e["pending"]) for e in history] == [("new-1", False), ("old-2", False), ("old-1", False)]


def test_an_event_id_committed_twice_conflicts_and_stays_one_row(storage_connection_string):
    """Re-inserting a stored event (a retried cycle) is a conflict, never a duplicate alert."""
    tenant = str(uuid.uuid4())
    repeated = event(tenant, T0, "ev-once")

    async def body(store: TenantStore):
        etag = await store.commit(tenant, state={"cycle": 1}, expected_etag=None, evaluated_at=T0, results=[],
                                  events=[repeated])
        with pytest.raises(ConcurrencyConflict) as conflict:
            await store.commit(tenant, state={"cycle": 2}, expected_etag=etag, evaluated_at=T0,
                               results=[result("a", Status.FAIL)], events=[event(tenant, T0, "ev-fresh"), repeated])
        with pytest.raises(ValueError):
            await store.commit(tenant, state={"cycle": 2}, expected_etag=etag, evaluated_at=T0, results=[],
                               events=[repeated, repeated])
        return conflict.value, await store.load(tenant)

    conflict, record = run(storage_connection_string, body)
    assert "ev-once" in str(conflict) and conflict.row_key.endswith(":ev-once")
    assert record.state == {"cycle": 1} and record.results == []
    assert [row["EventId"] for row in event_rows(storage_connection_string, tenant)] == ["ev-once"]


def test_large_documents_are_chunked_and_too_large_ones_refused(storage_connection_string):
    """A 500,000-character state round-trips across chunk properties; a 2 MB one is refused before any write."""
    tenant = str(uuid.uuid4())
    big = {"padding": "x" * (500_000 - len('{"padding":""}'))}
    huge = {"padding": "y" * 2_000_000}

    async def body(store: TenantStore):
        etag = await store.commit(tenant, state=big, expected_etag=None, evaluated_at=T0, results=[], events=[],
                                  baseline=big)
        record = await store.load(tenant)
        with pytest.raises(DocumentTooLarge) as too_large:
            await store.commit(tenant, state=huge, expected_etag=etag, evaluated_at=T0, results=[], events=[])
        with pytest.raises(DocumentTooLarge):
            await store.save_baseline(tenant, huge)
        return record, too_large.value, await store.load(tenant)

    record, too_large, after = run(storage_connection_string, body)
    assert record.state == big and record.baseline == big
    [state_row] = [row for row in raw_rows(storage_connection_string, tenant) if row["RowKey"] == "a:state"]
    assert (state_row["Chunks"], state_row["Length"]) == (17, 500_000)
    assert tenant in str(too_large) and "2,000,014" in str(too_large)
    assert after.state_etag == record.state_etag and after.baseline == big


def test_huge_evidence_and_event_details_are_summarised_with_counts(storage_connection_string):
    """Evidence and event details too big for a property keep every scalar and every list's count."""
    tenant = str(uuid.uuid4())
    mailboxes = [f"user{i}@contoso.com" for i in range(20_000)]

    async def body(store: TenantStore):
        await store.commit(tenant, state={}, expected_etag=None, evaluated_at=T0,
                           results=[result("big", Status.FAIL, mailboxes=mailboxes, count=20_000)],
                           events=[event(tenant, T0, "ev-big", mailboxes=mailboxes, changedBy="admin@contoso.com")])
        return await store.load(tenant), await store.pending_events(tenant)

    record, [stored_event] = run(storage_connection_string, body)
    [stored] = record.results
    assert stored.result.evidence["truncated"] is True
    assert stored.result.evidence["mailboxesCount"] == 20_000
    assert stored.result.evidence["count"] == 20_000
    assert stored.result.evidence["mailboxes"] == mailboxes[:20]
    assert stored_event["id"] == "ev-big" and stored_event["type"] == "control.failed"
    assert stored_event["details"]["mailboxesCount"] == 20_000
    assert stored_event["details"]["changedBy"] == "admin@contoso.com"


def test_a_cycle_over_100_rows_is_refused_before_writing(storage_connection_string):
    """state + results + events + baseline must fit one transaction: the caller caps events."""
    tenant = str(uuid.uuid4())

    async def body(store: TenantStore):
        with pytest.raises(ValueError, match="100"):
            await store.commit(tenant, state={}, expected_etag=None, evaluated_at=T0,
                               results=[result(f"c{i}", Status.PASS) for i in range(10)],
                               events=[event(tenant, T0) for _ in range(89)], baseline={})
        return await store.load(tenant)

    assert run(storage_connection_string, body).state is None
    assert raw_rows(storage_connection_string, tenant) == []


def test_prune_history_deletes_only_old_events_in_batches(storage_connection_string):
    """Pruning removes every event before the cutoff (more than one 100-row batch) and nothing newer."""
    tenant = str(uuid.uuid4())
    cutoff = T0 + timedelta(days=30)

    async def body(store: TenantStore):
        etag = None
        for day in range(3):  # 3 x 60 old events
            at = T0 + timedelta(days=day)
            etag = await store.commit(tenant, state={"day": day}, expected_etag=etag, evaluated_at=at, results=[],
                                      events=[event(tenant, at, f"old-{day}-{i}") for i in range(60)])
        etag = await store.commit(tenant, state={"day": 30}, expected_etag=etag, evaluated_at=cutoff, results=[],
                                  events=[event(tenant, cutoff, "at-cutoff")])
        await store.commit(tenant, state={"day": 31}, expected_etag=etag, evaluated_at=cutoff + timedelta(days=1),
                           results=[], events=[event(tenant, cutoff + timedelta(days=1), "recent")])
        pruned = await store.prune_history(tenant, older_than=cutoff)
        again = await store.prune_history(tenant, older_than=cutoff)
        await store.mark_sent(tenant, ["old-0-1"])  # a pruned id is simply unknown now
        return pruned, again, await store.history(tenant, limit=500), await store.load(tenant)

    pruned, again, history, record = run(storage_connection_string, body)
    assert (pruned, again) == (180, 0)
    assert [e["id"] for e in history] == ["recent", "at-cutoff"]
    assert record.state == {"day": 31}


def test_tenant_ids_lists_tenants_with_state(storage_connection_string):
    """Only tenants that were evaluated (have a state row) are listed; a baseline alone does not count."""
    evaluated, other, baseline_only = (str(uuid.uuid4()) for _ in range(3))

    async def body(store: TenantStore):
        for tenant in (evaluated, other):
            await store.commit(tenant, state={}, expected_etag=None, evaluated_at=T0, results=[],
                               events=[event(tenant, T0)])
        await store.save_baseline(baseline_only, {"v": 1})
        return await store.tenant_ids(), await store.load(baseline_only)

    ids, record = run(storage_connection_string, body)
    assert {evaluated, other} <= set(ids) and baseline_only not in ids
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert (record.state, record.baseline) == (None, {"v": 1})


def test_concurrent_claims_hand_each_pending_event_to_one_worker_and_lapse(storage_connection_string):
    tenant = str(uuid.uuid4())
    events = [event(tenant, T0), event(tenant, T0 + timedelta(seconds=1))]

    async def body(store: TenantStore):
        await store.commit(tenant, state={"n": 1}, expected_etag=None, results=[], evaluated_at=T0, events=events)
        first, second = await asyncio.gather(store.claim_pending(tenant, now=T0), store.claim_pending(tenant, now=T0))
        while_held = await store.claim_pending(tenant, now=T0 + timedelta(minutes=1))
        after_lease = await store.claim_pending(tenant, now=T0 + timedelta(minutes=6))  # the claimer died
        await store.mark_sent(tenant, [e["id"] for e in after_lease])
        return first, second, while_held, after_lease, await store.pending_events(tenant)

    first, second, while_held, after_lease, pending = run(storage_connection_string, body)
    ids = sorted(e["id"] for e in events)
    assert sorted([sorted(e["id"] for e in first), sorted(e["id"] for e in second)]) == [[], ids]
    assert while_held == []
    assert sorted(e["id"] for e in after_lease) == ids
    assert pending == []


def test_acknowledge_and_snooze_are_recorded_on_the_event(storage_connection_string):
    tenant = str(uuid.uuid4())
    recorded = event(tenant, T0, "e" * 32)

    async def body(store: TenantStore):
        await store.commit(tenant, state={"n": 1}, expected_etag=None, results=[], evaluated_at=T0, events=[recorded])
        await store.annotate_event(tenant, "e" * 32, acknowledged_at=T0, acknowledged_by="oncall")
        await store.annotate_event(tenant, "e" * 32, snoozed_until=T0 + timedelta(days=1))
        with pytest.raises(LookupError):
            await store.annotate_event(tenant, "f" * 32, acknowledged_at=T0)
        return await store.history(tenant)

    [stored] = run(storage_connection_string, body)
    assert stored["acknowledgedAt"] == format_time(T0) and stored["acknowledgedBy"] == "oncall"
    assert stored["snoozedUntil"] == format_time(T0 + timedelta(days=1))

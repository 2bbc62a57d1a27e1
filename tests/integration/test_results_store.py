"""Control results in Table storage (Azurite): written, read back as one partition, overwritten next cycle."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from azure.data.tables import TableServiceClient

from shared.model import ControlResult, Severity, Status
from shared.storage.results import TABLE, ResultStore

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def result(control: str, status: Status, summary: str = "s", **evidence) -> ControlResult:
    return ControlResult(control=control, status=status, severity=Severity.HIGH, summary=summary,
                         evidence=evidence, frameworks=("CIS 6.5.4",), remediation="fix it")


async def _roundtrip(connection_string: str, tenant: str, other: str):
    async with ResultStore.from_connection_string(connection_string) as store:
        await store.create()
        await store.create()  # idempotent
        await store.save(tenant, [result("a", Status.PASS), result("b", Status.FAIL, mailboxes=["x"] * 3)], T0)
        await store.save(other, [result("a", Status.UNKNOWN)], T0)
        first = await store.load(tenant)
        await store.save(tenant, [result("a", Status.FAIL, "now failing"), result("b", Status.PASS)],
                         T0 + timedelta(minutes=15))
        second = await store.load(tenant)
        return first, second, await store.load(other)


def test_results_are_written_read_back_and_overwritten(storage_connection_string):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    first, second, others = asyncio.run(_roundtrip(storage_connection_string, tenant, other))

    assert {(r.result.control, r.result.status) for r in first} == {("a", Status.PASS), ("b", Status.FAIL)}
    b = next(r for r in first if r.result.control == "b")
    assert b.result.evidence == {"mailboxes": ["x", "x", "x"]}
    assert b.result.frameworks == ("CIS 6.5.4",)
    assert b.evaluated_at == T0

    assert {(r.result.control, r.result.status, r.result.summary) for r in second} == {
        ("a", Status.FAIL, "now failing"), ("b", Status.PASS, "s")}
    assert all(r.evaluated_at == T0 + timedelta(minutes=15) for r in second)
    assert [(r.tenant_id, r.result.status) for r in others] == [(other, Status.UNKNOWN)]

    # Keyed so a tenant's results are exactly one partition.
    table = TableServiceClient.from_connection_string(storage_connection_string).get_table_client(TABLE)
    rows = list(table.query_entities("PartitionKey eq @t", parameters={"t": tenant}))
    assert sorted(row["RowKey"] for row in rows) == ["a", "b"]


def test_huge_evidence_is_summarised_without_losing_counts(storage_connection_string):
    tenant = str(uuid.uuid4())
    mailboxes = [f"user{i}@contoso.com" for i in range(20_000)]

    async def go():
        async with ResultStore.from_connection_string(storage_connection_string) as store:
            await store.create()
            await store.save(tenant, [result("big", Status.FAIL, mailboxes=mailboxes, count=20_000)], T0)
            return await store.load(tenant)

    [stored] = asyncio.run(go())
    assert stored.result.evidence["truncated"] is True
    assert stored.result.evidence["mailboxesCount"] == 20_000
    assert stored.result.evidence["count"] == 20_000
    assert stored.result.evidence["mailboxes"] == mailboxes[:20]

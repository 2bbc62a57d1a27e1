"""The audit log query collector against the simulator over real HTTPS: create, poll, read paged records; Microsoft's
latency (a record absent from one query is in a later one); refusals and caps end as errors, never as a crash or a
silently short answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.identity.aio import ClientSecretCredential

from shared.collect.audit_query import AuditQueryClient, AuditQueryError, QueryFilters, QueryHandle, token_getter
from shared.collect.connection import http_clients
from shared.collect.deadline import Deadline
from shared.collect.errors import IncompleteRead
from shared.state.attribution_audit import ObservedChange, attribute, query_plans
from tests.integration.conftest import endpoints_for

APP = {"clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50", "clientSecret": "the-right-secret"}
TENANT = "0a000000-0000-4000-8000-0000000000a1"
CHANGED = datetime(2026, 12, 6, 8, 5, tzinfo=timezone.utc)
PERMISSIONS = ["Policy.Read.All", "AuditLog.Read.All", "Directory.Read.All", "Exchange.ManageAsApp",
               "AuditLogsQuery-Exchange.Read.All"]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(operation: str, parameters: dict[str, str], *, at: datetime = CHANGED, upn: str = "jane@contoso.com",
           later: float = 75, **extra: Any) -> dict[str, Any]:
    return {"createdDateTime": stamp(at), "auditLogRecordType": "exchangeAdmin", "operation": operation,
            "organizationId": TENANT, "userType": "admin", "userId": upn, "userPrincipalName": upn,
            "service": "Exchange", "objectId": extra.pop("objectId", None), "clientIp": "203.0.113.7",
            "administrativeUnits": [], "availableAfterMinutes": later,
            "auditData": {"CreationTime": stamp(at)[:-1], "Operation": operation, "RecordType": 1, "UserType": 2,
                          "UserId": upn, "ResultStatus": "True", "ExternalAccess": False,
                          "Parameters": [{"Name": k, "Value": v} for k, v in parameters.items()], **extra}}


SMTP_RECORD = record("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "False"})


def scenario(**tenant: Any) -> dict[str, Any]:
    return {"app": dict(APP), "tenants": [{"tenantId": TENANT, "displayName": "Contoso", "permissions": PERMISSIONS,
                                           "auditRecords": [SMTP_RECORD],
                                           "auditQuery": {"now": stamp(CHANGED + timedelta(minutes=30))},
                                           **tenant}]}


FILTERS = QueryFilters(start=CHANGED - timedelta(hours=1), end=CHANGED + timedelta(minutes=10),
                       record_types=("exchangeAdmin",), operations=("Set-TransportConfig", "Set-CASMailbox"))


def run(sim: Any, body: Callable[[AuditQueryClient], Awaitable[Any]], deadline: Deadline | None = None) -> Any:
    """`body` with a collector on the pooled Graph client and a real azure-identity credential."""
    endpoints = endpoints_for(sim)

    async def go() -> Any:
        http, exchange = http_clients(endpoints)
        credential = ClientSecretCredential(TENANT, APP["clientId"], APP["clientSecret"], authority=sim.url,
                                            connection_verify=sim.ca_path)
        try:
            client = AuditQueryClient(http, endpoints.graph, token_getter(credential), deadline=deadline)
            return await body(client)
        finally:
            await credential.close()
            await exchange.aclose()
            await http.aclose()

    return asyncio.run(go())


async def query_and_read(client: AuditQueryClient, filters: QueryFilters = FILTERS, **read: Any) -> list[dict]:
    handle = await client.start_query(filters)
    for _ in range(5):  # bounded poll; the simulator ends a query after its configured polls
        handle = await client.query_status(handle)
        if handle.finished:
            break
    return await client.read_records(handle, **read)


def test_a_query_is_created_polled_and_read(simulator_for):
    sim = simulator_for(scenario(auditQuery={"now": stamp(CHANGED + timedelta(hours=2)), "polls": 2}))

    async def body(client: AuditQueryClient) -> Any:
        handle = await client.start_query(FILTERS)
        statuses = [handle.status]
        while not handle.finished:
            handle = await client.query_status(handle)
            statuses.append(handle.status)
        return statuses, QueryHandle.from_json(handle.to_json()), await client.read_records(handle)

    statuses, handle, records = run(sim, body)
    assert statuses == ["notStarted", "running", "succeeded"] and handle.succeeded
    [kept] = records
    assert kept["operation"] == "Set-TransportConfig" and kept["userPrincipalName"] == "jane@contoso.com"
    assert kept["auditData"]["Parameters"] == [{"Name": "SmtpClientAuthenticationDisabled", "Value": "False"}]
    assert "clientIp" not in kept and "availableAfterMinutes" not in kept  # only what attribution needs
    assert sim.request_counts["graph.auditLogQueries"] == 3 and sim.request_counts["graph.auditLogRecords"] == 1


def test_a_record_not_yet_in_the_audit_log_arrives_in_a_later_query_one_cycle_late(simulator_for):
    """Cycle 1 (30 min after the change): the record is not available yet, the actor is not known. Cycle 2 (80 min
    after, past its 75 min latency): a new query finds it and the change is attributed."""
    sim = simulator_for(scenario())
    seen = ObservedChange("transportSmtpAuth", seen_at=CHANGED + timedelta(minutes=10),
                          since=CHANGED - timedelta(minutes=5), settings={"SmtpClientAuthenticationDisabled": False})
    [plan] = query_plans([seen])
    filters = QueryFilters(plan.start, plan.end, plan.record_types, plan.operations)
    assert run(sim, lambda client: query_and_read(client, filters)) == []
    assert attribute(seen, []) is None

    sim.update_tenant(TENANT, lambda t: t["auditQuery"].update(now=stamp(CHANGED + timedelta(minutes=80))))
    records = run(sim, lambda client: query_and_read(client, filters))
    assert attribute(seen, records) == {
        "changedBy": "jane@contoso.com", "changedAt": "2026-12-06T08:05:00Z", "cmdlet": "Set-TransportConfig",
        "parameters": {"SmtpClientAuthenticationDisabled": "False"}, "byMicrosoft": False, "source": "auditLogQuery"}


def test_filters_are_applied_by_the_service(simulator_for):
    other = record("Set-Mailbox", {"Identity": "x"}, later=0)
    outside = record("Set-TransportConfig", {"SmtpClientAuthenticationDisabled": "True"}, later=0,
                     at=CHANGED - timedelta(days=1))
    sim = simulator_for(scenario(auditRecords=[SMTP_RECORD, other, outside],
                                 auditQuery={"now": stamp(CHANGED + timedelta(hours=3))}))
    records = run(sim, query_and_read)
    assert [r["operation"] for r in records] == ["Set-TransportConfig"]


def test_records_are_read_across_pages(simulator_for):
    many = [record("Set-CASMailbox", {"Identity": f"user{i}", "SmtpClientAuthenticationDisabled": "False"}, later=0,
                   at=CHANGED + timedelta(seconds=i)) for i in range(5)]
    sim = simulator_for({**scenario(auditRecords=many), "pageSize": {"graph": 2}})
    records = run(sim, query_and_read)
    assert sorted(r["auditData"]["Parameters"][0]["Value"] for r in records) == [f"user{i}" for i in range(5)]
    assert sim.request_counts["graph.auditLogRecords"] == 3


def test_the_page_cap_ends_with_incomplete_read_keeping_what_was_read(simulator_for):
    many = [record("Set-CASMailbox", {"Identity": f"user{i}"}, later=0, at=CHANGED + timedelta(seconds=i))
            for i in range(5)]
    sim = simulator_for({**scenario(auditRecords=many), "pageSize": {"graph": 2}})
    with pytest.raises(IncompleteRead) as cut:
        run(sim, lambda client: query_and_read(client, max_pages=2))
    assert cut.value.code == "PageLimitReached" and len(cut.value.items) == 4


def test_the_record_cap_and_microsofts_own_record_limit_are_incomplete_reads(simulator_for):
    many = [record("Set-CASMailbox", {"Identity": f"user{i}"}, later=0) for i in range(3)]
    sim = simulator_for(scenario(auditRecords=many))
    with pytest.raises(IncompleteRead) as cut:
        run(sim, lambda client: query_and_read(client, max_records=2))
    assert cut.value.code == "RecordLimitReached" and len(cut.value.items) == 2
    sim.update_tenant(TENANT, lambda t: t["auditQuery"].update(recordLimit=2))
    with pytest.raises(IncompleteRead) as cut:
        run(sim, query_and_read)
    assert cut.value.code == "RecordCountLimitExceeded" and len(cut.value.items) == 2


def test_a_next_link_off_graphs_origin_is_not_followed(simulator_for):
    page = {"value": [], "@odata.nextLink": "https://attacker.example/v1.0/security/auditLog/queries/x/records"}
    sim = simulator_for(scenario(faults={"graph.auditLogRecords": {"status": 200, "body": page}}))
    with pytest.raises(IncompleteRead) as cut:
        run(sim, query_and_read)
    assert cut.value.code == "ForeignNextLink"


def test_without_an_audit_log_query_permission_it_is_a_source_error_not_a_crash(simulator_for):
    sim = simulator_for(scenario(permissions=["Policy.Read.All", "AuditLog.Read.All"]))
    with pytest.raises(AuditQueryError) as refused:
        run(sim, lambda client: client.start_query(FILTERS))
    error = refused.value.error
    assert (error.status, error.code) == (403, "accessDenied")
    assert "permission" in error.message


def test_a_record_type_the_app_may_not_read_is_refused(simulator_for):
    sim = simulator_for(scenario())  # AuditLogsQuery-Exchange.Read.All only
    sharepoint = QueryFilters(FILTERS.start, FILTERS.end, ("sharePoint",), keyword="LegacyAuthProtocolsEnabled")
    with pytest.raises(AuditQueryError) as refused:
        run(sim, lambda client: client.start_query(sharepoint))
    assert refused.value.error.status == 403


def test_a_failed_query_cannot_be_read(simulator_for):
    sim = simulator_for(scenario(auditQuery={"outcome": "failed"}))

    async def body(client: AuditQueryClient) -> Any:
        handle = await client.query_status(await client.start_query(FILTERS))
        assert handle.status == "failed" and handle.finished and not handle.succeeded
        return await client.read_records(handle)

    with pytest.raises(AuditQueryError) as refused:
        run(sim, body)
    assert refused.value.error.code == "AuditQueryNotSucceeded"


def test_an_unknown_query_id_is_a_404_source_error(simulator_for):
    sim = simulator_for(scenario())
    with pytest.raises(AuditQueryError) as missing:
        run(sim, lambda client: client.query_status(QueryHandle("00000000-0000-0000-0000-000000000000", "running")))
    assert missing.value.error.status == 404


def test_throttled_submissions_are_retried_after_retry_after(simulator_for):
    sim = simulator_for(scenario(faults={"graph.auditLogQueries": {"status": 429, "times": 1, "retryAfter": 1}}))
    handle = run(sim, lambda client: client.start_query(FILTERS))
    assert handle.status == "notStarted" and sim.request_counts["graph.auditLogQueries"] == 2


def test_no_time_left_is_a_deadline_error(simulator_for):
    sim = simulator_for(scenario())
    with pytest.raises(AuditQueryError) as late:
        run(sim, lambda client: client.start_query(FILTERS), deadline=Deadline.after(0))
    assert late.value.error.code == "DeadlineExceeded"
    assert sim.request_counts["graph.auditLogQueries"] == 0

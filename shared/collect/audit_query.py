"""The Microsoft Purview audit log, read through the Microsoft Graph audit log query API (v1.0), app-only.

Asked only when a change needs attributing (shared/state/attribution_audit.py says which operations and record types):
a query is created, runs on Microsoft's side for minutes, and its records are read once it has succeeded:

- create: `POST /security/auditLog/queries` with an auditLogQuery (displayName, filterStartDateTime, filterEndDateTime,
  recordTypeFilters, operationFilters, objectIdFilters, keywordFilter) -> 201 and the query with its `id` and `status`
  (https://learn.microsoft.com/en-us/graph/api/security-auditcoreroot-post-auditlogqueries);
- poll: `GET /security/auditLog/queries/{id}`; `status` is notStarted, running, succeeded, failed, cancelled or
  unknownFutureValue, and a succeeded query may still have stopped at its record limit (`isRecordCountLimitExceeded`)
  (https://learn.microsoft.com/en-us/graph/api/security-auditlogquery-get,
  https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogquery);
- read: `GET /security/auditLog/queries/{id}/records`, a collection of auditLogRecord, paged with @odata.nextLink
  (https://learn.microsoft.com/en-us/graph/api/security-auditlogquery-list-records,
  https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogrecord).

Permissions (application): AuditLogsQuery-Exchange.Read.All for Exchange records, AuditLogsQuery-SharePoint.Read.All
for SharePoint records; AuditLogsQuery.Read.All ("All Audit Logs") is the broader one (the permission tables of the
pages above). Tenant limits: a baseline of daily submissions and concurrent queries per tenant, 429 when exceeded
(https://learn.microsoft.com/en-us/graph/throttling-limits#security-audit-log-query-service-limits): not a per-second
rate the throttling budget could spread, so budget_middleware.classify leaves these paths alone and a 429 here goes
through the deadline-aware retry (Retry-After honoured) like any other Graph request.

Requests ride the pooled Graph client (connection.http_clients: its retry and budget middleware) with a bearer token
from the caller; every wait is bounded by the collection's Deadline. Failures raise AuditQueryError carrying a
SourceError; paging that cannot finish raises IncompleteRead (never a silently short list).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from kiota_http.middleware import REQUEST_OPTIONS_KEY

from shared.collect.connection import GRAPH_SCOPE
from shared.collect.deadline import Deadline, current
from shared.collect.errors import (DeadlineExceeded, IncompleteRead, graph_http_error, origin, same_origin,
                                   token_error, transport_error)
from shared.model import SourceError, format_time

SOURCE = "graph.auditLogQuery"
RECORDS_SOURCE = "graph.auditLogRecords"
PERMISSIONS = {  # record type -> the least-privileged application permission that reads it (pages above)
    "exchangeAdmin": "AuditLogsQuery-Exchange.Read.All",
    "sharePoint": "AuditLogsQuery-SharePoint.Read.All",
}
ALL_AUDIT_LOGS = "AuditLogsQuery.Read.All"

STATUSES = ("notStarted", "running", "succeeded", "failed", "cancelled", "unknownFutureValue")
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_MAX_PAGES = 20
DEFAULT_MAX_RECORDS = 2_000
# What is kept of each record: the fields attribution reads, bounded, so a noisy tenant cannot fill memory or state.
RECORD_FIELDS = ("id", "createdDateTime", "auditLogRecordType", "operation", "userType", "userId",
                 "userPrincipalName", "objectId", "service")
AUDIT_DATA_FIELDS = ("CreationTime", "Operation", "RecordType", "Workload", "ResultStatus", "UserType", "UserId",
                     "AppId", "ObjectId", "ModifiedObjectResolvedName", "ExternalAccess")
MAX_ENTRIES = 64  # Parameters / ModifiedProperties entries kept per record
MAX_TEXT = 512  # characters kept of any one value
_QUERY_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")  # the documented ids are GUID-like; anything else is not put in a URL

TokenGetter = Callable[[], Awaitable[str]]


class AuditQueryError(Exception):
    """The audit log query API refused or failed: `error` says why (status, Microsoft's code, message)."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class QueryFilters:
    start: datetime
    end: datetime
    record_types: tuple[str, ...]
    operations: tuple[str, ...] = ()
    object_ids: tuple[str, ...] = ()
    keyword: str | None = None
    display_name: str = "authwatch: who changed it"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"@odata.type": "#microsoft.graph.security.auditLogQuery",
                                "displayName": self.display_name,
                                "filterStartDateTime": format_time(self.start),
                                "filterEndDateTime": format_time(self.end),
                                "recordTypeFilters": list(self.record_types)}
        if self.operations:
            body["operationFilters"] = list(self.operations)
        if self.object_ids:
            body["objectIdFilters"] = list(self.object_ids)
        if self.keyword:
            body["keywordFilter"] = self.keyword
        return body


@dataclass(frozen=True)
class QueryHandle:
    """A query Microsoft holds: kept in state between cycles (to_json/from_json) since it may run for minutes."""

    id: str
    status: str
    record_limit_exceeded: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "recordLimitExceeded": self.record_limit_exceeded}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryHandle:
        return cls(str(data["id"]), str(data.get("status") or "notStarted"), bool(data.get("recordLimitExceeded")))


def _malformed(what: str) -> AuditQueryError:
    return AuditQueryError(SourceError(status=None, code="MalformedAnswer", message=what))


def _handle(body: Any) -> QueryHandle:
    # The Get page's example wraps the query in {"value": {...}}; the resource itself is unwrapped: accept both.
    if isinstance(body, dict) and "id" not in body and isinstance(body.get("value"), dict):
        body = body["value"]
    if not isinstance(body, dict):
        raise _malformed("Graph answered an audit log query that is not a JSON object")
    query_id = body.get("id")
    if not isinstance(query_id, str) or not _QUERY_ID.match(query_id):
        raise _malformed("Graph answered an audit log query without a usable id")
    status = body.get("status")
    status = status if isinstance(status, str) and status in STATUSES else "unknownFutureValue"
    return QueryHandle(query_id, status, body.get("isRecordCountLimitExceeded") is True)


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return _cut(str(value))  # nested objects are kept as bounded text, never as unbounded structures


def _entries(value: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [{name: _cut(entry.get(name)) for name in names if name in entry}
            for entry in value[:MAX_ENTRIES] if isinstance(entry, dict)]


def trim_record(record: Any) -> dict[str, Any] | None:
    """The fields attribution needs of one auditLogRecord, every value bounded; None for a non-object."""
    if not isinstance(record, dict):
        return None
    kept: dict[str, Any] = {name: _cut(record.get(name)) for name in RECORD_FIELDS if name in record}
    data = record.get("auditData")
    if isinstance(data, dict):
        audit = {name: _cut(data[name]) for name in AUDIT_DATA_FIELDS if name in data}
        if "Parameters" in data:
            audit["Parameters"] = _entries(data["Parameters"], ("Name", "Value"))
        if "ModifiedProperties" in data:
            audit["ModifiedProperties"] = _entries(data["ModifiedProperties"], ("Name", "NewValue", "OldValue"))
        kept["auditData"] = audit
    return kept


def token_getter(credential: Any, scope: str = GRAPH_SCOPE) -> TokenGetter:
    """A getter over an azure-identity async credential (its cache serves repeated calls)."""

    async def get() -> str:
        return (await credential.get_token(scope)).token

    return get


class AuditQueryClient:
    """The three calls of the audit log query API over the pooled Graph client, bounded by a Deadline."""

    def __init__(self, http: httpx.AsyncClient, graph_url: str, token: TokenGetter, *,
                 deadline: Deadline | None = None, timeout_s: float = 30.0) -> None:
        self._http, self._graph, self._token = http, graph_url.rstrip("/"), token
        self._deadline, self._timeout_s = deadline, timeout_s

    @property
    def queries_url(self) -> str:
        return f"{self._graph}/security/auditLog/queries"

    async def start_query(self, filters: QueryFilters) -> QueryHandle:
        return _handle(await self._send("POST", self.queries_url, SOURCE, json=filters.body(), expect=(201, 200)))

    async def query_status(self, handle: QueryHandle) -> QueryHandle:
        return _handle(await self._send("GET", f"{self.queries_url}/{handle.id}", SOURCE))

    async def read_records(self, handle: QueryHandle, max_pages: int = DEFAULT_MAX_PAGES,
                           max_records: int = DEFAULT_MAX_RECORDS) -> list[dict[str, Any]]:
        """Every record of a succeeded query, trimmed (trim_record). IncompleteRead, with what was read, when the page
        or record cap is reached with more to read, a nextLink repeats or leaves Graph's origin, a page is no
        collection, the deadline comes first, or Microsoft says the query itself stopped at its record limit."""
        if not handle.succeeded:
            raise AuditQueryError(SourceError(status=None, code="AuditQueryNotSucceeded",
                                              message=f"the audit log query is {handle.status}, not succeeded: its "
                                                      "records cannot be read (yet)"))
        url = f"{self.queries_url}/{handle.id}/records"
        items: list[dict[str, Any]] = []
        followed: set[str] = set()
        while True:  # bounded: each turn follows a new link, at most max_pages of them
            try:
                body = await self._send("GET", url, RECORDS_SOURCE)
            except AuditQueryError as failed:
                if failed.error.code == DeadlineExceeded.code and items:
                    raise IncompleteRead(RECORDS_SOURCE, DeadlineExceeded.code, failed.error.message, items) from None
                raise
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise IncompleteRead(RECORDS_SOURCE, "MalformedAnswer", "Graph answered a page that is not a "
                                     "collection (no JSON object with a 'value' list)", items)
            items.extend(record for record in map(trim_record, value) if record is not None)
            if len(items) > max_records:
                raise IncompleteRead(RECORDS_SOURCE, "RecordLimitReached",
                                     f"stopped at the record cap ({max_records} records)", items[:max_records])
            next_link = body.get("@odata.nextLink")
            if not next_link:
                break
            if not isinstance(next_link, str) or not same_origin(next_link, self._graph):
                raise IncompleteRead(RECORDS_SOURCE, "ForeignNextLink",
                                     f"Graph returned a nextLink to {origin(str(next_link))}, not to its own endpoint "
                                     f"{origin(self._graph)}: not followed, the token was not sent there", items)
            if len(followed) + 1 >= max_pages:
                raise IncompleteRead(RECORDS_SOURCE, "PageLimitReached", f"stopped at the page cap ({max_pages} "
                                     "pages)", items)
            if next_link in followed:
                raise IncompleteRead(RECORDS_SOURCE, "NextLinkLoop",
                                     "Graph returned a nextLink already followed (a paging loop)", items)
            followed.add(next_link)
            url = next_link
        if handle.record_limit_exceeded:
            raise IncompleteRead(RECORDS_SOURCE, "RecordCountLimitExceeded", "Microsoft stopped the query at its "
                                 "record-count limit (isRecordCountLimitExceeded)", items)
        return items

    # -- one request -------------------------------------------------------------------------------------------
    def _time_left(self) -> float:
        deadline = self._deadline or current()
        if deadline is None:
            return self._timeout_s
        left = deadline.remaining()
        if left <= 0:
            raise AuditQueryError(transport_error(DeadlineExceeded(f"no time left before {deadline.describe()}")))
        return min(self._timeout_s, left)

    async def _send(self, method: str, url: str, source: str, json: Any = None,
                    expect: tuple[int, ...] = (200,)) -> Any:
        timeout = self._time_left()
        try:
            token = await self._token()
        except Exception as error:  # noqa: BLE001 - a tenant that refuses us is a result
            raise AuditQueryError(token_error(error)) from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            # The kiota request options make the pooled client's middleware run (its deadline-aware retry, honouring
            # Retry-After): without them, one 429 would end the read (see exchange.read_source).
            response = await self._http.request(method, url, json=json, headers=headers, timeout=timeout,
                                                extensions={REQUEST_OPTIONS_KEY: {}})
        except httpx.TimeoutException as error:
            late = timeout < self._timeout_s
            raise AuditQueryError(transport_error(DeadlineExceeded(f"{source}: no answer before the collection "
                                                                   "deadline") if late else error)) from None
        except Exception as error:  # noqa: BLE001 - DeadlineExceeded from the retry, transport errors
            raise AuditQueryError(transport_error(error)) from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.status_code not in expect:
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            raise AuditQueryError(graph_http_error(response.status_code, str(error.get("code") or ""),
                                                   str(error.get("message") or response.reason_phrase)))
        if body is None:
            raise _malformed(f"{source}: Graph answered {response.status_code} without a JSON body")
        return body

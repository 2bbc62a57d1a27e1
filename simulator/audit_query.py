"""Microsoft Graph's audit log query API (v1.0) over a tenant's `auditRecords`: create a query, poll it, list records.

From Microsoft's pages, cited where each behaviour is played:
- create `POST /security/auditLog/queries` -> 201 and the auditLogQuery
  (https://learn.microsoft.com/en-us/graph/api/security-auditcoreroot-post-auditlogqueries);
- get `GET /security/auditLog/queries/{id}`: `status` notStarted / running / succeeded / failed / cancelled, and
  `isRecordCountLimitExceeded` (https://learn.microsoft.com/en-us/graph/api/security-auditlogquery-get,
  https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogquery);
- list records `GET /security/auditLog/queries/{id}/records`: auditLogRecord objects, paged with an absolute
  @odata.nextLink (https://learn.microsoft.com/en-us/graph/api/security-auditlogquery-list-records,
  https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogrecord).

Latency: a record is found only by a query that runs at or after createdDateTime + availableAfterMinutes; Microsoft:
"audit record availability is typically 60 to 90 minutes after an event occurs" for Exchange and SharePoint, with no
guarantee (https://learn.microsoft.com/en-us/purview/audit-log-search). A query runs on the tenant's clock
(`auditQuery.now`, else the real time) when it is created, and keeps what it found. Chosen here where Microsoft is
silent (simulator/README.md): the order of records, reading the records of a query that has not succeeded (400), and
a query for a record type the app has no AuditLogsQuery-* permission for (403 accessDenied, the Graph code "The caller
doesn't have permission to perform the action", https://learn.microsoft.com/en-us/graph/errors).

This module imports nothing of simulator/graph.py (which routes to it), so handlers build Graph's answers themselves.
"""
from __future__ import annotations

import uuid
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from .odata import ODataError, decode_skiptoken, encode_skiptoken, page_size
from .scenario import parse_datetime
from .state import SimResponse, SimState

# The application permissions of the pages above: one per Microsoft 365 service, and "All Audit Logs".
ALL_AUDIT_LOGS = "AuditLogsQuery.Read.All"
RECORD_TYPE_PERMISSION = {"exchangeadmin": "AuditLogsQuery-Exchange.Read.All",
                          "sharepoint": "AuditLogsQuery-SharePoint.Read.All"}
PERMISSIONS = (ALL_AUDIT_LOGS, "AuditLogsQuery-Exchange.Read.All", "AuditLogsQuery-SharePoint.Read.All",
               "AuditLogsQuery-OneDrive.Read.All", "AuditLogsQuery-Endpoint.Read.All", "AuditLogsQuery-CRM.Read.All",
               "AuditLogsQuery-Entra.Read.All")
DENIED = (403, "accessDenied", "The caller doesn't have permission to perform the action.")
RECORDS_PAGE_CAP = 1000
ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
STRING_LISTS = ("recordTypeFilters", "operationFilters", "userPrincipalNameFilters", "ipAddressFilters",
                "objectIdFilters", "administrativeUnitIdFilters", "serviceFilters")
BODY_KEYS = {"@odata.type", "displayName", "filterStartDateTime", "filterEndDateTime", "keywordFilter",
             "serviceFilter", "status", *STRING_LISTS}

# Queries live with the simulator's state (one store per SimState), keyed by id; each knows its tenant.
_STORES: weakref.WeakKeyDictionary[SimState, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _error(status: int, code: str, message: str, crid: str | None) -> SimResponse:
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": crid or str(uuid.uuid4())}
    return SimResponse(status, {"error": {"code": code, "message": message, "innerError": inner}},
                       {"Content-Type": "application/json"})


def _ok(body: Any, status: int = 200) -> SimResponse:
    return SimResponse(status, body, {"Content-Type": ODATA_JSON, "OData-Version": "4.0", "Cache-Control": "no-cache"})


def _check_body(body: Any) -> str | None:
    """Why the create body is not an auditLogQuery, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON auditLogQuery object."
    for key in body:
        if key not in BODY_KEYS:
            return f"Invalid property '{key}' for microsoft.graph.security.auditLogQuery."
    for key in STRING_LISTS:
        if key in body and not (isinstance(body[key], list) and all(isinstance(v, str) for v in body[key])):
            return f"Property '{key}' must be a collection of strings."
    for key in ("displayName", "keywordFilter", "serviceFilter"):
        if body.get(key) is not None and not isinstance(body[key], str):
            return f"Property '{key}' must be a string."
    for key in ("filterStartDateTime", "filterEndDateTime"):
        if body.get(key) is not None:
            try:
                parse_datetime(body[key])
            except ValueError:
                return f"Property '{key}' must be an ISO 8601 DateTimeOffset, got '{body[key]}'."
    return None


def _readable(record_type: str, granted: set[str]) -> bool:
    return ALL_AUDIT_LOGS in granted or RECORD_TYPE_PERMISSION.get(record_type.lower()) in granted


def _lower(values: Any) -> set[str]:
    return {v.lower() for v in values or []}


def _matches(record: dict[str, Any], body: dict[str, Any], runs_at: datetime, granted: set[str]) -> bool:
    created = parse_datetime(record["createdDateTime"])
    if created + timedelta(minutes=record.get("availableAfterMinutes") or 0) > runs_at:
        return False  # not yet in the audit log (Microsoft's latency)
    if body.get("filterStartDateTime") and created < parse_datetime(body["filterStartDateTime"]):
        return False
    if body.get("filterEndDateTime") and created > parse_datetime(body["filterEndDateTime"]):
        return False
    record_type = str(record.get("auditLogRecordType") or "")
    if not _readable(record_type, granted):
        return False
    checks = (("recordTypeFilters", record_type), ("operationFilters", record.get("operation")),
              ("objectIdFilters", record.get("objectId")), ("ipAddressFilters", record.get("clientIp")),
              ("userPrincipalNameFilters", record.get("userPrincipalName")))
    for key, value in checks:
        if body.get(key) and str(value or "").lower() not in _lower(body[key]):
            return False
    keyword = body.get("keywordFilter")
    return not keyword or keyword.lower() in repr(record).lower()


def _served(record: dict[str, Any]) -> dict[str, Any]:
    out = {"@odata.type": "#microsoft.graph.security.auditLogRecord"}
    out.update((key, value) for key, value in record.items() if key != "availableAfterMinutes")
    return out


def h_create_query(ctx: Any, call: Any) -> SimResponse:
    problem = _check_body(call.body)
    if problem:
        return _error(400, "BadRequest", problem, call.client_request_id)
    body = call.body
    with ctx.state.lock:
        tenant = ctx.state.tenant(call.tenant_id)
        granted = set(ctx.state.granted(tenant))
        if not all(_readable(rt, granted) for rt in body.get("recordTypeFilters") or []):
            return _error(*DENIED, call.client_request_id)
        settings = tenant["auditQuery"]
        runs_at = parse_datetime(settings["now"]) if settings["now"] else datetime.now(timezone.utc)
        found = [_served(r) for r in tenant["auditRecords"] if _matches(r, body, runs_at, granted)]
        limit = settings["recordLimit"]
        query = {key: value for key, value in body.items() if key not in ("@odata.type", "status")}
        query.update({"id": str(uuid.uuid4()), "status": "notStarted"})
        _STORES.setdefault(ctx.state, {})[query["id"]] = {
            "tenant": call.tenant_id, "query": query, "polls": 0, "pollsToFinish": settings["polls"],
            "outcome": settings["outcome"], "records": found[:limit] if limit else found,
            "limitExceeded": bool(limit and len(found) > limit)}
    return _ok({"@odata.context": f"{ctx.graph_url}/$metadata#security/auditLog/queries/$entity",
                "@odata.type": "#microsoft.graph.security.auditLogQuery", **query}, status=201)


def _stored(ctx: Any, call: Any) -> dict[str, Any] | None:
    stored = _STORES.get(ctx.state, {}).get(call.params.get("id", ""))
    return stored if stored is not None and stored["tenant"] == call.tenant_id else None  # never another tenant's


def _not_found(call: Any) -> SimResponse:
    return _error(404, "itemNotFound", f"The audit log query '{call.params.get('id')}' was not found.",
                  call.client_request_id)


def h_get_query(ctx: Any, call: Any) -> SimResponse:
    with ctx.state.lock:
        stored = _stored(ctx, call)
        if stored is None:
            return _not_found(call)
        stored["polls"] += 1
        finished = stored["polls"] >= stored["pollsToFinish"]
        stored["query"]["status"] = stored["outcome"] if finished else "running"
        body = dict(stored["query"])
        if stored["query"]["status"] == "succeeded":
            body.update(approximateReturnedRecordCount=len(stored["records"]),
                        isRecordCountLimitExceeded=stored["limitExceeded"])
    return _ok({"@odata.context": f"{ctx.graph_url}/$metadata#security/auditLog/queries/$entity",
                "@odata.type": "#microsoft.graph.security.auditLogQuery", **body})


def h_list_records(ctx: Any, call: Any) -> SimResponse:
    with ctx.state.lock:
        stored = _stored(ctx, call)
        if stored is None:
            return _not_found(call)
        if stored["query"]["status"] != "succeeded":
            return _error(400, "BadRequest", f"The audit log query is {stored['query']['status']}: its records can "
                          "be listed once it has succeeded.", call.client_request_id)
        records = stored["records"]
        size = ctx.state.scenario["pageSize"]["graph"]
    for name in call.query:
        if name.startswith("$") and name.lower() not in ("$top", "$skiptoken"):
            raise ODataError(f"Query option '{name}' is not supported on {call.path} by the simulator.")
    size = page_size(call, size, RECORDS_PAGE_CAP)
    scope = f"{call.tenant_id}{call.path.lower()}"
    offset = decode_skiptoken(call.query["$skiptoken"], scope) if "$skiptoken" in call.query else 0
    body: dict[str, Any] = {"@odata.context": f"{ctx.graph_url}/$metadata#Collection(microsoft.graph.security."
                                              "auditLogRecord)", "value": records[offset: offset + size]}
    if offset + size < len(records):
        rest = {k: v for k, v in call.query.items() if k != "$skiptoken"}
        rest["$skiptoken"] = encode_skiptoken(offset + size, scope)
        body["@odata.nextLink"] = f"{ctx.graph_url}{call.path}?{urlencode(rest, quote_via=quote, safe='$,')}"
    return _ok(body)

"""Microsoft Graph v1.0: the handful of endpoints authwatch reads, plus ``$batch`` and ``sendMail``.

Handlers are transport-independent (they take a ``GraphCall`` and return a ``SimResponse``) so a
``$batch`` item goes through exactly the same routing, fault injection, permission and licence
checks as a direct request, and is counted under its own endpoint key.
"""
from __future__ import annotations

import asyncio
import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from . import audit_query
from .odata import (ODataError, decode_skiptoken, encode_skiptoken, matches, page_size, parse_filter, parse_select,
                    select)
from .limits import GRAPH_CLASSES
from .state import Fault, SimResponse, SimState

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_BATCH = 20
AUDIT_PAGE_CAP = 1000  # documented maximum $top of signIns/directoryAudits
OTHER_PAGE_CAP = 999  # directory collections cap $top at 999


@dataclass
class GraphContext:
    state: SimState
    base_url: str  # https://127.0.0.1:PORT

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"


@dataclass
class GraphCall:
    tenant_id: str
    method: str
    path: str  # below /v1.0, e.g. "/auditLogs/signIns"
    query: dict[str, str]
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    client_request_id: str | None = None
    app_id: str | None = None  # the token's appid: the "app" of per-app throttling limits


Handler = Callable[[GraphContext, GraphCall], "SimResponse | Awaitable[SimResponse]"]


def graph_error(status: int, code: str, message: str, client_request_id: str | None = None,
                headers: dict[str, str] | None = None) -> SimResponse:
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": client_request_id or str(uuid.uuid4())}
    return SimResponse(status, {"error": {"code": code, "message": message, "innerError": inner}},
                       {"Content-Type": "application/json", **(headers or {})})


def ok(body: Any, status: int = 200) -> SimResponse:
    return SimResponse(status, body, {"Content-Type": ODATA_JSON, "OData-Version": "4.0", "Cache-Control": "no-cache"})


def not_found(call: GraphCall, what: str) -> SimResponse:
    return graph_error(404, "Request_ResourceNotFound",
                       f"Resource '{what}' does not exist or one of its queried reference-property objects are "
                       "not present.", call.client_request_id)


def _check_options(call: GraphCall, allowed: set[str]) -> None:
    for name in call.query:
        if name.startswith("$") and name.lower() not in allowed:
            raise ODataError(f"Query option '{name}' is not supported on {call.path} by the simulator.")


def _context(ctx: GraphContext, entity_set: str, fields: list[str] | None, suffix: str = "") -> str:
    sel = f"({','.join(fields)})" if fields else ""
    return f"{ctx.graph_url}/$metadata#{entity_set}{sel}{suffix}"


def _page(ctx: GraphContext, call: GraphCall, items: list[dict[str, Any]], cap: int,
          entity_set: str) -> SimResponse:
    """Serve one page of ``items`` with an absolute ``@odata.nextLink`` while more remain."""
    fields = parse_select(call.query.get("$select"))
    size = page_size(call, ctx.state.scenario["pageSize"]["graph"], cap)
    scope = f"{call.tenant_id}{call.path.lower()}"
    offset = decode_skiptoken(call.query["$skiptoken"], scope) if "$skiptoken" in call.query else 0
    chunk = items[offset: offset + size]
    body: dict[str, Any] = {"@odata.context": _context(ctx, entity_set, fields)}
    if offset + size < len(items):
        rest = {k: v for k, v in call.query.items() if k != "$skiptoken"}
        rest["$skiptoken"] = encode_skiptoken(offset + size, scope)
        # Keep "$" and "," readable like Graph does; everything else percent-encoded.
        body["@odata.nextLink"] = f"{ctx.graph_url}{call.path}?{urlencode(rest, quote_via=quote, safe='$,')}"
    # Stored scenario objects are never mutated (copy-on-write in SimState), so serve them as they are.
    body["value"] = [select(r, fields) for r in chunk]
    return ok(body)


# -- handlers ----------------------------------------------------------------------------------------
def h_organization(ctx: GraphContext, call: GraphCall) -> SimResponse:
    _check_options(call, {"$select"})
    fields = parse_select(call.query.get("$select"))
    with ctx.state.lock:
        org = ctx.state.tenant(call.tenant_id)["graph"]["organization"]
    if "id" not in org:
        org = {**org, "id": call.tenant_id}  # never mutate the stored object
    if "id" in call.params:
        if call.params["id"].lower() != str(org["id"]).lower():
            return not_found(call, call.params["id"])
        return ok({"@odata.context": _context(ctx, "organization", fields, "/$entity"), **select(org, fields)})
    return ok({"@odata.context": _context(ctx, "organization", fields), "value": [select(org, fields)]})


def _entity(section: str, entity_set: str) -> Handler:
    def handler(ctx: GraphContext, call: GraphCall) -> SimResponse:
        _check_options(call, {"$select"})
        fields = parse_select(call.query.get("$select"))
        with ctx.state.lock:
            obj = ctx.state.tenant(call.tenant_id)["graph"][section]
        # Fields at top level next to @odata.context: what msgraph-sdk deserialises.
        return ok({"@odata.context": _context(ctx, entity_set, fields, "/$entity"), **select(obj, fields)})
    return handler


def h_ca_policies(ctx: GraphContext, call: GraphCall) -> SimResponse:
    entity_set = "identity/conditionalAccess/policies"
    with ctx.state.lock:
        policies = ctx.state.tenant(call.tenant_id)["graph"]["conditionalAccessPolicies"]
        if "id" in call.params:
            _check_options(call, {"$select"})
            fields = parse_select(call.query.get("$select"))
            for p in policies:
                if str(p.get("id", "")).lower() == call.params["id"].lower():
                    return ok({"@odata.context": _context(ctx, entity_set, fields, "/$entity"),
                               **select(p, fields)})
            return not_found(call, call.params["id"])
        _check_options(call, {"$select", "$top", "$skiptoken"})
        return _page(ctx, call, policies, OTHER_PAGE_CAP, entity_set)


def _audit_log(item: str, date_field: str, string_fields: tuple[str, ...], entity_set: str,
               refused: frozenset[str] = frozenset(), premium: bool = False) -> Handler:
    """An audit log list (or one record by id); `refused` are the list's query options Graph answers with 400.
    `premium`: the log needs Entra ID P1/P2. Sign-ins do ("Accessing sign-in reports requires a Microsoft Entra ID
    P1 or P2 license",
    https://learn.microsoft.com/en-us/entra/identity/monitoring-health/howto-analyze-activity-logs-with-microsoft-graph);
    the audit log is in "all editions of Microsoft Entra ID", 7 days on Free
    (https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reference-reports-data-retention)."""
    filter_fields = {date_field: "datetime", **{f: "string" for f in string_fields}}

    def handler(ctx: GraphContext, call: GraphCall) -> SimResponse:
        with ctx.state.lock:
            tenant = ctx.state.tenant(call.tenant_id)
            if premium and not tenant["licensed"]:
                return graph_error(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                                   "Neither tenant is B2C or tenant doesn't have premium license",
                                   call.client_request_id)
            records = ctx.state.sorted_records(call.tenant_id, item)
            if "id" in call.params:
                _check_options(call, {"$select"})
                fields = parse_select(call.query.get("$select"))
                for _, rec in records:
                    if str(rec.get("id", "")) == call.params["id"]:
                        return ok({"@odata.context": _context(ctx, entity_set, fields, "/$entity"),
                                   **select(rec, fields)})
                return not_found(call, call.params["id"])
            refused_option = next((name for name in call.query if name.lower() in refused), None)
            if refused_option is not None:
                return graph_error(400, "BadRequest", f"Query option '{refused_option[1:].capitalize()}' is not "
                                   "allowed. To allow it, set the 'AllowedQueryOptions' property on "
                                   "EnableQueryAttribute or QueryValidationSettings.", call.client_request_id)
            _check_options(call, {"$select", "$top", "$skiptoken", "$filter"} - refused)
            if "$filter" in call.query:
                clauses = parse_filter(call.query["$filter"], filter_fields)
                chosen = [rec for ts, rec in records if matches(rec, clauses, {date_field: ts})]
            else:
                chosen = [rec for _, rec in records]
            return _page(ctx, call, chosen, AUDIT_PAGE_CAP, entity_set)
    return handler


def h_send_mail(ctx: GraphContext, call: GraphCall) -> SimResponse:
    """sendMail as app-only: allowed by an Entra Mail.Send app role (any mailbox) or by Exchange RBAC for Applications
    ("Application Mail.Send" scoped to the mailboxes in `mailSenders`); the two are a union
    (https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac). Neither: 403 ErrorAccessDenied."""
    with ctx.state.lock:
        tenant = ctx.state.tenant(call.tenant_id)
        unscoped = "Mail.Send" in ctx.state.granted(tenant)
        scoped = {address.lower() for address in tenant["mailSenders"]} if tenant["consent"] is True else set()
    if not unscoped and call.params["id"].lower() not in scoped:
        return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.",
                           call.client_request_id)
    body = call.body
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return graph_error(400, "ErrorInvalidRequest", "Cannot read the request body: 'message' is required.",
                           call.client_request_id)
    with ctx.state.lock:
        ctx.state.sent_mail.append({"tenant": call.tenant_id, "sender": call.params["id"],
                                    "message": copy.deepcopy(body["message"]),
                                    "saveToSentItems": body.get("saveToSentItems", True)})
    return SimResponse(202, None, {})


async def h_batch(ctx: GraphContext, call: GraphCall) -> SimResponse:
    """JSON batching: items run in order through ``dispatch``; the batch is 200 even if items fail."""
    body = call.body
    reqs = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(reqs, list) or not reqs:
        return graph_error(400, "BadRequest", "Invalid batch payload format: 'requests' must be a non-empty array.",
                           call.client_request_id)
    if len(reqs) > MAX_BATCH:
        return graph_error(400, "BadRequest", f"The number of requests in a batch cannot exceed {MAX_BATCH}.",
                           call.client_request_id)
    seen: set[str] = set()
    for item in reqs:
        rid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(rid, str) or not rid or not isinstance(item.get("method"), str) \
                or not isinstance(item.get("url"), str):
            return graph_error(400, "BadRequest",
                               "Invalid batch payload format: each request needs string 'id', 'method' and 'url'.",
                               call.client_request_id)
        if rid in seen:
            return graph_error(400, "BadRequest", f"Batch request ids must be unique: '{rid}' is duplicated.",
                               call.client_request_id)
        url = item["url"]
        if urlsplit(url).scheme or url.startswith("//"):
            return graph_error(400, "BadRequest",
                               f"Invalid request URL in batch request '{rid}': urls must be relative (e.g. "
                               "'/organization'), not absolute.", call.client_request_id)
        deps = item.get("dependsOn", [])
        if not isinstance(deps, list) or any(d not in seen for d in deps):
            return graph_error(400, "BadRequest",
                               f"Batch request '{rid}' has a 'dependsOn' that does not name an earlier request.",
                               call.client_request_id)
        seen.add(rid)

    responses: list[dict[str, Any]] = []
    status_by_id: dict[str, int] = {}
    for item in reqs:
        rid, method = item["id"], item["method"].upper()
        parts = urlsplit(item["url"] if item["url"].startswith("/") else "/" + item["url"])
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        failed = [d for d in item.get("dependsOn", []) if status_by_id.get(d, 500) >= 400]
        if failed:
            key = route(method, parts.path)[0]
            resp = graph_error(424, "FailedDependency", f"Dependent request '{failed[0]}' failed.",
                               call.client_request_id)
        else:
            sub = GraphCall(call.tenant_id, method, parts.path, query, item.get("body"),
                            client_request_id=call.client_request_id, app_id=call.app_id)
            key, resp = await dispatch(ctx, sub)
        ctx.state.record(key, call.tenant_id, method, "/v1.0" + parts.path, parts.query, resp.status,
                         resp.throttled)
        status_by_id[rid] = resp.status
        entry: dict[str, Any] = {"id": rid, "status": resp.status,
                                 "headers": {k: v for k, v in resp.headers.items() if k != "OData-Version"}}
        if resp.raw is not None:
            entry["body"] = resp.raw.decode("utf-8", "replace")  # the JSON envelope can carry text only as a string
        elif resp.body is not None:
            entry["body"] = resp.body
        responses.append(entry)
    return SimResponse(200, {"responses": responses}, {"Content-Type": "application/json"})


# -- routing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    key: str
    method: str
    handler: Handler
    permissions: tuple[str, ...]  # any one of them suffices; () = no check
    limit_class: str | None  # throttling class (limits.DEFAULT_LIMITS); None = not limited itself
    denied: Denial  # how Graph refuses a token without any of `permissions`
    also: tuple[tuple[str, Denial], ...] = ()  # permissions needed on top, each with its own refusal


class Denial(NamedTuple):
    status: int
    code: str
    message: str


# Graph's usual refusal of an app role that is missing: 403 Authorization_RequestDenied.
INSUFFICIENT = Denial(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
# SharePoint settings refuse with 401, not 403, when SharePointTenantSettings.Read.All is missing (observed, undocumented:
# https://github.com/Galvnyz/M365-Assess/issues/116, https://github.com/microsoft/Partner-Center-PowerShell/issues/428).
SHAREPOINT_DENIED = Denial(401, "accessDenied", "There has been an error authenticating the request.")
# The reports API names the permission it misses (observed: microsoftgraph/microsoft-graph-docs-contrib#3196,
# microsoftgraph/microsoft-graph-explorer-v4#2731).
AUDIT_LOG_DENIED = Denial(403, "Authentication_MSGraphPermissionMissing",
                          "Calling principal does not have required MSGraph permissions AuditLog.Read.All")
# List directoryAudits documents "AuditLog.Read.All and Directory.Read.All" for applications
# (https://learn.microsoft.com/en-us/graph/api/directoryaudit-list#permissions); without Directory.Read.All the
# premium-licence check fails (observed: microsoftgraph/microsoft-graph-docs#2789, …-docs-contrib#4858).
DIRECTORY_READ_DENIED = Denial(403, "Authentication_ApplicationHasNoDirectoryReadAccess",
                               "Failed to do premium license check from ADGraph")


def _r(path: str, key: str, handler: Handler, perms: tuple[str, ...], method: str = "GET",
       denied: Denial = INSUFFICIENT, also: tuple[tuple[str, Denial], ...] = ()) -> Route:
    return Route(re.compile(f"^{path}/?$", re.IGNORECASE), key, method, handler, perms,
                 GRAPH_CLASSES.get(key, "graph"), denied, also)


_ORG = ("Organization.Read.All", "Directory.Read.All")
_POLICY = ("Policy.Read.All",)
_AUDIT = ("AuditLog.Read.All",)
_DIRECTORY = (("Directory.Read.All", DIRECTORY_READ_DENIED),)
ROUTES: tuple[Route, ...] = (
    _r(r"/organization", "graph.organization", h_organization, _ORG),
    _r(r"/organization/(?P<id>[^/]+)", "graph.organization", h_organization, _ORG),
    _r(r"/policies/identitySecurityDefaultsEnforcementPolicy", "graph.securityDefaults",
       _entity("securityDefaults", "policies/identitySecurityDefaultsEnforcementPolicy"), _POLICY),
    _r(r"/identity/conditionalAccess/policies", "graph.conditionalAccessPolicies", h_ca_policies, _POLICY),
    _r(r"/identity/conditionalAccess/policies/(?P<id>[^/]+)", "graph.conditionalAccessPolicies", h_ca_policies,
       _POLICY),
    _r(r"/admin/sharepoint/settings", "graph.sharepointSettings",
       _entity("sharepointSettings", "admin/sharepoint/settings"),
       ("SharePointTenantSettings.Read.All", "SharePointTenantSettings.ReadWrite.All"), denied=SHAREPOINT_DENIED),
    _r(r"/auditLogs/signIns", "graph.signIns",
       # List signIns documents only $top, $skiptoken and $filter and refuses $select with 400
       # (https://learn.microsoft.com/en-us/graph/api/signin-list; observed answer:
       # https://learn.microsoft.com/en-us/answers/questions/1116053/query-option-select-is-not-allowed-to-allow-it-set).
       _audit_log("signIns", "createdDateTime", ("clientAppUsed", "userPrincipalName", "appId"), "auditLogs/signIns",
                  refused=frozenset({"$select"}), premium=True),
       _AUDIT, denied=AUDIT_LOG_DENIED),
    _r(r"/auditLogs/signIns/(?P<id>[^/]+)", "graph.signIns",
       _audit_log("signIns", "createdDateTime", (), "auditLogs/signIns", premium=True), _AUDIT,
       denied=AUDIT_LOG_DENIED),
    _r(r"/auditLogs/directoryAudits", "graph.directoryAudits",
       _audit_log("directoryAudits", "activityDateTime", ("loggedByService", "category", "activityDisplayName"),
                  "auditLogs/directoryAudits"), _AUDIT, denied=AUDIT_LOG_DENIED, also=_DIRECTORY),
    _r(r"/auditLogs/directoryAudits/(?P<id>[^/]+)", "graph.directoryAudits",
       _audit_log("directoryAudits", "activityDateTime", (), "auditLogs/directoryAudits"), _AUDIT,
       denied=AUDIT_LOG_DENIED, also=_DIRECTORY),
    # The audit log query API (simulator/audit_query.py); each record type needs its own AuditLogsQuery-* permission.
    _r(r"/security/auditLog/queries", "graph.auditLogQueries", audit_query.h_create_query, audit_query.PERMISSIONS,
       method="POST", denied=Denial(*audit_query.DENIED)),
    _r(r"/security/auditLog/queries/(?P<id>[^/]+)", "graph.auditLogQueries", audit_query.h_get_query,
       audit_query.PERMISSIONS, denied=Denial(*audit_query.DENIED)),
    _r(r"/security/auditLog/queries/(?P<id>[^/]+)/records", "graph.auditLogRecords", audit_query.h_list_records,
       audit_query.PERMISSIONS, denied=Denial(*audit_query.DENIED)),
    _r(r"/\$batch", "graph.batch", h_batch, (), method="POST"),
    _r(r"/users/(?P<id>[^/]+)/sendMail", "graph.sendMail", h_send_mail, (), method="POST"),  # h_send_mail checks
)


def route(method: str, path: str) -> tuple[str, Route | None, dict[str, str], bool]:
    """Return (endpoint key, route, path params, method_ok); key is ``graph.unknown`` when no path matches."""
    for r in ROUTES:
        m = r.pattern.match(path)
        if m:
            return r.key, r, m.groupdict(), method.upper() == r.method
    return "graph.unknown", None, {}, False


def fault_response(fault: Fault, default: SimResponse) -> SimResponse:
    """Turn an injected fault into a response; without an explicit body use the Graph-shaped default."""
    headers = dict(default.headers) if not fault.has_body else {"Content-Type": "application/json"}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(int(fault.retry_after) if float(fault.retry_after).is_integer()
                                     else fault.retry_after)
    if fault.raw_body is not None:
        return SimResponse(fault.status or 500, None, {**headers, "Content-Type": "application/json"},
                           raw=fault.raw_body.encode())
    body = fault.body if fault.has_body else default.body
    return SimResponse(fault.status or 500, body, headers)


def throttled_response(retry_after: int | None, crid: str | None) -> SimResponse:
    """Graph's 429 (the documented sample); ``retry_after`` None = no Retry-After (Conditional Access)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"code": "429", "date": now, "message": "Please retry after", "request-id": str(uuid.uuid4()),
             "client-request-id": crid or str(uuid.uuid4()), "status": "429"}
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return SimResponse(429, {"error": {"code": "TooManyRequests", "innerError": inner,
                                       "message": "Please retry again later."}}, headers, throttled=True)


def default_graph_fault(status: int, crid: str | None) -> SimResponse:
    codes = {429: ("TooManyRequests", "Please retry again later."),
             503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
             504: ("UnknownError", "The gateway timed out."),
             500: ("InternalServerError", "An internal server error occurred."),
             403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
             401: ("InvalidAuthenticationToken", "Access token validation failure."),
             404: ("Request_ResourceNotFound", "Resource not found.")}
    code, msg = codes.get(status, ("BadRequest" if status < 500 else "UnknownError", f"Injected fault {status}."))
    return graph_error(status, code, msg, crid)


async def dispatch(ctx: GraphContext, call: GraphCall) -> tuple[str, SimResponse]:
    """Route an authenticated call: throttling limits, fault injection, then permission, then the handler."""
    key, r, params, method_ok = route(call.method, call.path)
    if r is None:
        seg = call.path.strip("/").split("/")[0] or call.path
        return key, graph_error(404, "Request_ResourceNotFound", f"Resource not found for the segment '{seg}'.",
                                call.client_request_id)
    if not method_ok:
        return key, graph_error(405, "Request_BadRequest",
                                "Specified HTTP method is not allowed for the request target.", call.client_request_id)
    call.params = params
    throttled, retry_after = ctx.state.throttle(r.limit_class, call.tenant_id, call.app_id)
    if throttled:
        return key, throttled_response(retry_after, call.client_request_id)
    fault = ctx.state.take_fault(call.tenant_id, key, call.method)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return key, fault_response(fault, default_graph_fault(fault.status, call.client_request_id))
    if r.permissions:
        with ctx.state.lock:
            granted = set(ctx.state.granted(ctx.state.tenant(call.tenant_id)))
        refusal = r.denied if not granted.intersection(r.permissions) else next(
            (denial for permission, denial in r.also if permission not in granted), None)
        if refusal is not None:
            return key, graph_error(*refusal, call.client_request_id)
    try:
        result = r.handler(ctx, call)
        resp = await result if asyncio.iscoroutine(result) else result
    except ODataError as exc:
        resp = graph_error(400, "BadRequest", str(exc), call.client_request_id)
    return key, resp  # type: ignore[return-value]

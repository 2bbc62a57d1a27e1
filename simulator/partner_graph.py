"""Microsoft Graph for the MSP: the partner tenant's GDAP endpoints, and the router for every call made with the
operator's delegated (user) token (customer-tenant onboarding calls live in customer_graph.py).

* ``GET /tenantRelationships/delegatedAdminRelationships[/{id}]`` — Microsoft's delegatedAdminRelationship resource
  (https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadminrelationships?view=graph-rest-1.0):
  ``$filter`` on ``status eq '…'`` and ``customer/tenantId eq '…'`` (joined by ``and``, optionally parenthesised, as
  CIPP sends them), ``$top`` 1..300 ("$top supports up to 300 objects"), ``$select``, ``@odata.nextLink`` paging.
* ``GET /tenantRelationships/delegatedAdminCustomers[/{id}]`` — one per customer with at least one ACTIVE
  relationship ("deleted when no more active relationships exist",
  https://learn.microsoft.com/en-us/graph/api/resources/delegatedadmincustomer).

Both need ``DelegatedAdminRelationship.Read.All`` or ``.ReadWrite.All``: a delegated token of the partner tenant with
that scope, or (the live Learn page lists Application permissions too, research20 §1-2) an app-only token whose app
holds that app role in the partner tenant. Anything else: 403 Authorization_RequestDenied.

Delegated tokens are served only on these endpoints and customer_graph's; Graph's other endpoints answer them 403
(the simulator plays those app-only), and ``$batch`` does not carry them.
"""
from __future__ import annotations

import asyncio
import base64
import re
import uuid
from typing import Any, Callable

from . import customer_graph
from .graph import (GraphCall, GraphContext, _page, default_graph_fault, fault_response, graph_error, not_found, ok,
                    route, throttled_response)
from .limits import GRAPH_CLASSES
from .odata import ODataError, parse_select, select
from .state import SimResponse

READ_SCOPES = ("delegatedadminrelationship.read.all", "delegatedadminrelationship.readwrite.all")
MAX_TOP = 300
_CLAUSE = re.compile(r"^\(?\s*(?P<field>status|customer/tenantId)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*\)?$",
                     re.IGNORECASE)
_INSUFFICIENT = ("Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _etag(*parts: str) -> str:
    # Microsoft's etags are W/"<base64 of '"<guid-like>"'>"; stable for the same object.
    inner = str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))
    return 'W/"' + base64.b64encode(f'"{inner}"'.encode()).decode() + '"'


def _customer_name(ctx: GraphContext, tid: str) -> str:
    tenant = ctx.state.tenant(tid)
    if tenant is None:
        return tid
    return tenant.get("displayName") or tenant["graph"]["organization"].get("displayName") or tid


def _relationship(ctx: GraphContext, rel: dict[str, Any]) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
        "@odata.etag": _etag(rel["id"], rel["status"], rel["lastModifiedDateTime"]),
        "id": rel["id"], "displayName": rel["displayName"], "duration": rel["duration"],
        "customer": {"tenantId": rel["customerTenantId"], "displayName": _customer_name(ctx, rel["customerTenantId"])},
        "accessDetails": {"unifiedRoles": [{"roleDefinitionId": r} for r in rel["roles"]]},
        "status": rel["status"], "autoExtendDuration": rel["autoExtendDuration"],
        "createdDateTime": rel["createdDateTime"], "lastModifiedDateTime": rel["lastModifiedDateTime"],
        "activatedDateTime": rel["activatedDateTime"], "endDateTime": rel["endDateTime"],
    }


def _customers(ctx: GraphContext, partner: dict[str, Any]) -> list[dict[str, Any]]:
    seen: list[str] = []
    for rel in partner["relationships"]:
        if rel["status"] == "active" and rel["customerTenantId"] not in seen:
            seen.append(rel["customerTenantId"])
    return [{"@odata.type": "#microsoft.graph.delegatedAdminCustomer", "@odata.etag": _etag("customer", tid),
             "id": tid, "tenantId": tid, "displayName": _customer_name(ctx, tid)} for tid in seen]


def _filter(text: str) -> list[tuple[str, str]]:
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(part.strip())
        if not m:
            raise ODataError(f"Invalid filter clause: '{part.strip()[:80]}' is not supported (the simulator filters "
                             "on status eq '…' and customer/tenantId eq '…', joined by 'and').")
        clauses.append((m.group("field").lower(), m.group("value").replace("''", "'").casefold()))
    return clauses


def _top(call: GraphCall) -> None:
    if "$top" in call.query:
        try:
            top = int(call.query["$top"])
        except ValueError:
            raise ODataError(f"Invalid value '{call.query['$top'][:20]}' for $top: an integer is required.") from None
        if not 1 <= top <= MAX_TOP:
            raise ODataError(f"Invalid value '{top}' for $top: $top supports up to {MAX_TOP} objects.")


def h_relationships(ctx: GraphContext, call: GraphCall, partner: dict[str, Any]) -> SimResponse:
    with ctx.state.lock:
        items = [_relationship(ctx, r) for r in partner["relationships"]]
    if "id" in call.params:
        return _one(ctx, call, items, "delegatedAdminRelationships")
    _top(call)
    if "$filter" in call.query:
        for field, value in _filter(call.query["$filter"]):
            get: Callable[[dict[str, Any]], str] = (lambda i: i["status"]) if field == "status" else \
                (lambda i: i["customer"]["tenantId"])
            items = [i for i in items if get(i).casefold() == value]
    return _page(ctx, call, items, MAX_TOP, "delegatedAdminRelationships")


def h_customers(ctx: GraphContext, call: GraphCall, partner: dict[str, Any]) -> SimResponse:
    with ctx.state.lock:
        items = _customers(ctx, partner)
    if "id" in call.params:
        return _one(ctx, call, items, "delegatedAdminCustomers")
    _top(call)
    return _page(ctx, call, items, MAX_TOP, "delegatedAdminCustomers")


def _one(ctx: GraphContext, call: GraphCall, items: list[dict[str, Any]], entity_set: str) -> SimResponse:
    """``GET …/{entity_set}/{id}[?$select=…]``: the item, or Graph's 404."""
    found = next((i for i in items if i["id"] == call.params["id"].lower()), None)
    if found is None:
        return not_found(call, call.params["id"])
    return ok({"@odata.context": f"{ctx.graph_url}/$metadata#{entity_set}/$entity",
               **select(found, parse_select(call.query.get("$select")))})


_PARTNER_OPTIONS = frozenset({"$select", "$top", "$skiptoken", "$filter"})
PARTNER_ROUTES = tuple(
    (re.compile(f"^{pattern}/?$", re.IGNORECASE), key, "GET", handler, options)
    for pattern, key, handler, options in (
        (r"/tenantRelationships/delegatedAdminRelationships", "graph.delegatedAdminRelationships", h_relationships,
         _PARTNER_OPTIONS),
        (r"/tenantRelationships/delegatedAdminRelationships/(?P<id>[^/]+)", "graph.delegatedAdminRelationships",
         h_relationships, frozenset({"$select"})),
        (r"/tenantRelationships/delegatedAdminCustomers", "graph.delegatedAdminCustomers", h_customers,
         frozenset({"$select", "$top", "$skiptoken"})),
        (r"/tenantRelationships/delegatedAdminCustomers/(?P<id>[^/]+)", "graph.delegatedAdminCustomers",
         h_customers, frozenset({"$select"})),
    ))


def _match(method: str, path: str) -> tuple[str | None, Any, dict[str, str], bool, bool]:
    """(key, route, params, method_ok, partner side) of the first route whose path matches."""
    for routes, partner_side in ((PARTNER_ROUTES, True), (customer_graph.ROUTES, False)):
        candidates = [r for r in routes if r[0].match(path)]
        for r in candidates:
            if r[2] == method.upper():
                return r[1], r, r[0].match(path).groupdict(), True, partner_side  # type: ignore[union-attr]
        if candidates:
            return candidates[0][1], candidates[0], {}, False, partner_side
    return None, None, {}, False, False


_PREFIXES = ("/tenantrelationships/", "/serviceprincipals", "/rolemanagement/")


def route_key(method: str, path: str) -> str | None:
    """The endpoint key of an onboarding path (for request_counts), None when it is not one. Called for every Graph
    request: the prefix test keeps the regexes off the collection hot path."""
    if not path.lower().startswith(_PREFIXES):
        return None
    return _match(method, path)[0]


async def dispatch(ctx: GraphContext, call: GraphCall, claims: dict[str, Any]) -> tuple[str, SimResponse]:
    """Serve a delegated token's call, or an app-only call on an onboarding path. Order as graph.dispatch: route,
    throttling, fault injection, permission (scope + the operator's GDAP roles), handler."""
    crid = call.client_request_id
    delegated = claims.get("idtyp") == "user"
    key, r, params, method_ok, partner_side = _match(call.method, call.path)
    if r is None:
        app_key = route(call.method, call.path)[0]
        if app_key != "graph.unknown":  # an endpoint the simulator plays for app-only tokens
            return app_key, graph_error(403, *_INSUFFICIENT, crid)
        seg = call.path.strip("/").split("/")[0] or call.path
        return app_key, graph_error(404, "Request_ResourceNotFound", f"Resource not found for the segment '{seg}'.",
                                    crid)
    if not method_ok:
        return key, graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.",
                                crid)
    call.params = params
    with ctx.state.lock:
        partner = ctx.state.scenario.get("partner")
        tenant = ctx.state.tenant(call.tenant_id)
    is_partner = partner is not None and call.tenant_id == partner["tenantId"]
    if not partner_side and (tenant is None or tenant["consent"] is False):
        return key, graph_error(401, "InvalidAuthenticationToken", "Access token validation failure: the application "
                                "has no service principal in this tenant.", crid)
    throttled, retry_after = ctx.state.throttle(GRAPH_CLASSES.get(key, "graph"), call.tenant_id, call.app_id)
    if throttled:
        return key, throttled_response(retry_after, crid)
    fault = ctx.state.take_partner_fault(call.tenant_id, key, call.method) if partner_side else \
        ctx.state.take_fault(call.tenant_id, key, call.method)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return key, fault_response(fault, default_graph_fault(fault.status, crid))
    try:
        if partner_side:
            if not is_partner or not _may_read_relationships(ctx, claims, tenant, delegated):
                return key, graph_error(403, *_INSUFFICIENT, crid)
            customer_graph.check_options(call, r[4])
            return key, r[3](ctx, call, partner)
        if not delegated:
            # App-only onboarding calls are not simulated (the MSP story makes them with the operator's token).
            return key, graph_error(403, *_INSUFFICIENT, crid)
        customer_graph.check_options(call, r[4])
        return key, r[3](customer_graph.Caller(ctx, call, claims), call)
    except ODataError as exc:
        return key, graph_error(400, "BadRequest", str(exc), crid)


def _may_read_relationships(ctx: GraphContext, claims: dict[str, Any], tenant: dict[str, Any] | None,
                            delegated: bool) -> bool:
    if delegated:
        return any(s.lower() in READ_SCOPES for s in str(claims.get("scp", "")).split())
    if tenant is None:
        return False
    with ctx.state.lock:
        granted = ctx.state.granted(tenant)
    return any(g.lower() in READ_SCOPES for g in granted)

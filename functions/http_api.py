"""HTTP API blueprint (function-level auth): decode the request, call one service function, answer JSON.

Every error is a JSON 4xx whose message names the problem; a body over 64 KiB is refused before it is parsed.

What the deployed API relies on. Every route is `AuthLevel.FUNCTION`: the Functions host answers 401, before any
Python runs, to a request without a function key (or the host key) in `x-functions-key` or `?code=`; whoever holds
a key holds the API, so keys live in Key Vault or the portal and the dashboard's `?code=` URL is itself a secret.
Azure's front end routes by Host, so a re-pointed name (DNS rebinding) reaches no app. When Easy Auth (App Service
Authentication) is put in front, its session cookie is sent by the browser with any request, including one a
foreign page makes: so, whatever authenticates, a state-changing route (POST, PATCH, DELETE) refuses a cross-site
request (403: an `Origin` other than the address the request reached — Host, X-Forwarded-Host or the URL — or
`Sec-Fetch-Site: cross-site`/`same-site`) and a body not declared `Content-Type: application/json` (415), the two
things a foreign page cannot fake without a CORS preflight (shared/views/guard.py). Keep the app's CORS allowed
origins empty (or your own): an allowed origin is one that passes that preflight.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import azure.functions as func

from shared.settings import SettingsError
from shared.views import api, exceptions_api, guard, readiness, tenants_admin
from shared.views.report_route import Download, report_download

bp = func.Blueprint()
log = logging.getLogger("authwatch.http")

MAX_BODY_BYTES = api.MAX_BODY_BYTES
Handler = Callable[[func.HttpRequest, Any, datetime], Awaitable[tuple[int, Any]]]


def _json(status: int, body: Any) -> func.HttpResponse:
    if isinstance(body, Download):  # the report: a file with its own media type, not the API's JSON
        return func.HttpResponse(body.content, status_code=status, mimetype=body.media_type.split(";")[0],
                                 charset="utf-8", headers={"Content-Disposition": body.disposition})
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def body_of(req: func.HttpRequest) -> Any:
    return api.parse_body(req.get_body() or b"")


def _limit(req: func.HttpRequest, name: str, default: int) -> int:
    return api.parse_limit(req.params.get(name), name, default)


def _refusal(req: func.HttpRequest) -> guard.Refused | None:
    """Why a state-changing request is refused before it is decoded (cross-site, not JSON), or None."""
    if req.method.upper() not in guard.STATE_CHANGING:
        return None
    forwarded = (req.headers.get("x-forwarded-host") or "").split(",")[0]
    try:
        guard.check_same_origin(req.headers, [req.headers.get("host"), forwarded, urlsplit(req.url).netloc])
        guard.check_json(req.headers.get("content-type"), req.get_body() or b"")
    except guard.Refused as refused:
        return refused
    return None


async def _respond(req: func.HttpRequest, name: str, handler: Handler) -> func.HttpResponse:
    from shared.bootstrap import build_fleet

    refused = _refusal(req)
    if refused is not None:
        log.warning("refused", extra={"route": name, "status": refused.status, "error": refused.message})
        return _json(refused.status, {"error": refused.message})
    started = time.monotonic()
    try:
        fleet = build_fleet()
    except SettingsError as error:
        log.error("misconfigured", extra={"route": name, "error": str(error)})
        return _json(500, {"error": f"authwatch is not configured: {error}"})
    status = 500
    try:
        await fleet.create()
        status, body = await handler(req, fleet, datetime.now(timezone.utc))
        return _json(status, body)
    except api.BadRequest as error:
        status = 400
        return _json(400, {"error": str(error)})
    except LookupError as error:
        status = 404
        return _json(404, {"error": str(error).strip("'\"")})
    finally:
        await fleet.close()
        log.info("request", extra={"route": name, "status": status,
                                   "duration_ms": round((time.monotonic() - started) * 1000)})


def route(path: str, methods: list[str]) -> Callable[[Handler], Handler]:
    """Register `handler` as an HTTP function named after it; the function itself only delegates."""
    def register(handler: Handler) -> Handler:
        name = handler.__name__

        async def endpoint(req: func.HttpRequest) -> func.HttpResponse:
            return await _respond(req, name, handler)

        endpoint.__name__ = endpoint.__qualname__ = name
        bp.route(route=path, methods=methods, auth_level=func.AuthLevel.FUNCTION)(endpoint)
        return handler

    return register


def _tenant(req: func.HttpRequest) -> str:
    return api.tenant_id_from(req.route_params.get("tenantId"))


@route("tenants", ["GET"])
async def list_tenants(req, fleet, now):
    return 200, {"tenants": await tenants_admin.list_tenants(fleet, now=now)}


@route("tenants", ["POST"])
async def onboard_tenant(req, fleet, now):
    return 201, await api.onboard_tenant(fleet, body_of(req))


@route("tenants/{tenantId}", ["GET"])
async def get_tenant(req, fleet, now):
    return 200, await api.tenant_detail(fleet, _tenant(req), now=now, history_limit=_limit(req, "history", 50))


@route("tenants/{tenantId}", ["PATCH"])
async def update_tenant(req, fleet, now):
    return 200, await api.update_tenant(fleet, _tenant(req), body_of(req))


@route("tenants/{tenantId}/disable", ["POST"])
async def disable_tenant(req, fleet, now):
    return 200, await api.disable_tenant(fleet, _tenant(req))


@route("tenants/{tenantId}/enable", ["POST"])
async def enable_tenant(req, fleet, now):
    return 200, await tenants_admin.set_enabled(fleet, _tenant(req), True)


@route("tenants/{tenantId}", ["DELETE"])
async def remove_tenant(req, fleet, now):
    tenant_id = _tenant(req)  # the id first: a bad one is named as such whatever the body says
    return 200, await tenants_admin.remove_tenant(fleet, tenant_id, body_of(req))


# Bounded by the API's 64 KiB body (a few hundred tenants); a bigger import goes through `authwatch tenants import`.
@route("tenants/import", ["POST"])
async def import_tenants(req, fleet, now):
    return 200, await tenants_admin.import_tenants(fleet, body_of(req))


@route("tenants/{tenantId}/results", ["GET"])
async def tenant_results(req, fleet, now):
    return 200, await api.tenant_results(fleet, _tenant(req))


@route("tenants/{tenantId}/history", ["GET"])
async def tenant_history(req, fleet, now):
    return 200, {"events": await api.tenant_history(fleet, _tenant(req), limit=_limit(req, "limit", 50))}


@route("tenants/{tenantId}/timeline", ["GET"])
async def tenant_timeline(req, fleet, now):
    return 200, await api.tenant_timeline(fleet, _tenant(req), now=now, limit=_limit(req, "limit", 100))


@route("tenants/{tenantId}/deliveries/failed", ["GET"])
async def tenant_failed_deliveries(req, fleet, now):
    return 200, {"failedDeliveries": await api.tenant_failed_deliveries(fleet, _tenant(req),
                                                                        limit=_limit(req, "limit", 50))}


@route("tenants/{tenantId}/baseline/accept", ["POST"])
async def accept_baseline(req, fleet, now):
    return 200, await api.accept_tenant_baseline(fleet, _tenant(req))


@route("tenants/{tenantId}/evaluate", ["POST"])
async def evaluate_now(req, fleet, now):
    return 202, await api.request_evaluation(fleet, _tenant(req), now=now)


@route("tenants/{tenantId}/alerts/{alertId}/ack", ["POST"])
async def acknowledge_alert(req, fleet, now):
    return 200, await api.acknowledge_alert(fleet, _tenant(req), req.route_params.get("alertId"), body_of(req),
                                            now=now)


@route("report", ["GET"])
async def report(req, fleet, now):
    return 200, await report_download(fleet, req.params, now=now)


@route("tenants/{tenantId}/alerts/{alertId}/snooze", ["POST"])
async def snooze_alert(req, fleet, now):
    return 200, await api.snooze_alert(fleet, _tenant(req), req.route_params.get("alertId"), body_of(req), now=now)


@route("readiness/smtp-basic", ["GET"])
async def readiness_smtp_basic(req, fleet, now):
    tenant = req.params.get("tenant")
    return 200, await readiness.smtp_basic(fleet, now=now, tenant_id=tenant)  # ?tenant=GUID: one tenant


# Exceptions (shared/views/exceptions_api.py): who changes one is the body's createdBy / by, or the name App Service
# Authentication puts in X-MS-CLIENT-PRINCIPAL-NAME when it is in front (it wins):
# https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities
@route("tenants/{tenantId}/exceptions", ["GET"])
async def list_exceptions(req, fleet, now):
    return 200, await exceptions_api.list_exceptions(fleet, _tenant(req), now=now)


@route("tenants/{tenantId}/exceptions", ["POST"])
async def add_exception(req, fleet, now):
    return 201, await exceptions_api.add_exception(fleet, _tenant(req), body_of(req), now=now, headers=req.headers)


@route("tenants/{tenantId}/exceptions/{exceptionId}/extend", ["POST"])
async def extend_exception(req, fleet, now):
    return 200, await exceptions_api.extend_exception(fleet, _tenant(req), req.route_params.get("exceptionId"),
                                                      body_of(req), now=now, headers=req.headers)


@route("tenants/{tenantId}/exceptions/{exceptionId}", ["DELETE"])
async def remove_exception(req, fleet, now):
    return 200, await exceptions_api.remove_exception(fleet, _tenant(req), req.route_params.get("exceptionId"),
                                                      body_of(req), now=now, headers=req.headers)


# Onboarding at a glance (issue 20): every GDAP customer's onboarding state and its one fix, those needing a fix
# first, for the dashboard's Onboarding page (shared/views/onboarding_view.py).
@route("onboarding", ["GET"])
async def onboarding_overview(req, fleet, now):
    from shared.views.onboarding_view import onboarding_overview as overview

    return 200, await overview(fleet)

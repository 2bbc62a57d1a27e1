"""Dashboard blueprint (function-level auth): the dashboard page, one self-contained HTML response (shared/views/web).

Open it as https://<app>.azurewebsites.net/api/dashboard?code=<function key>: the page reads the key from its URL
and sends it as `x-functions-key` to the JSON routes of functions/http_api.py. Their base is the app setting
AUTHWATCH_DASHBOARD_API_BASE (default "/api/", the host's default route prefix; set it when host.json changes
routePrefix or the API sits behind another address, e.g. API Management).

What it relies on: the page, like every route, needs a function key (the Functions host answers 401 without one),
or Easy Auth in front, and holds no token of its own: the key from its URL is what it sends. Its actions (alert
ack / snooze, baseline accept) are the API's own POST routes, sent by the page with a JSON body, the key and the
browser's Origin, so they pass the checks every state-changing route makes whatever authenticates (cross-site
refused, JSON only: functions/http_api.py, shared/views/guard.py); the page is served with a CSP that forbids framing
it and loading anything else. `?refresh=N` on the page's URL sets its auto-refresh (seconds, default 60).
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared.views.web import render_page

bp = func.Blueprint()
log = logging.getLogger("authwatch.http")


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    page, headers = render_page(os.environ.get("AUTHWATCH_DASHBOARD_API_BASE") or "/api/",
                                source=os.environ.get("WEBSITE_SITE_NAME", ""))
    log.info("request", extra={"route": "dashboard", "status": 200})
    return func.HttpResponse(page, status_code=200, headers=headers, mimetype="text/html", charset="utf-8")

"""The dashboard: one HTML page with its CSS and JavaScript inlined, served by the function app
(functions/dashboard.py) and by `authwatch serve` (shared/cli/serve.py). May import: shared.controls, shared.model.

No build step and no library fetched at run time: index.html, app.css and app.js are package files, joined here
into one response. One response matters on Azure Functions: every route needs a function key, and a key passed as
`?code=` on the page's URL reaches the page but not the assets a page would load; inlined, there is nothing else
to load. The page reads the key from its own URL and sends it as `x-functions-key` with each API call.

The page is configured by a JSON block rendered into it (`render_page`):
  apiBase    where the JSON routes are ("/api/" under Functions and `authwatch serve`; any base URL works);
  controls   the control catalogue (id, label, title, severity) for the matrix columns and the tenant view;
  source     a short text naming where the data comes from (shown in the header);
  token      `authwatch serve` only: the run's token, sent back as X-Authwatch-Token with the page's own API calls
             (shared/views/guard.py). Under Functions the function key from the page's URL plays that part.

The page's fleet view draws the matrix from one GET tenants (each tenant's `controlStatus` and `unreachableReason`),
pages and filters it in the browser, keeps filters, sort and page in the URL (#/?tenants=failing&sort=name…), exports
the filtered tenants as CSV built in the page, and refreshes itself every 60 s (`?refresh=N` on the page's URL). The
tenant view's buttons (ack, snooze, accept baseline) call the API's POST routes through the same checks as any client.
The Onboarding view (#/onboarding, linked from the header) draws every GDAP customer's onboarding state and its one
fix from one GET onboarding (shared/views/onboarding_view.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

PAGE = "index.html"
ASSETS = ("index.html", "app.css", "app.js")


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The text of one packaged web file (ValueError for anything not shipped)."""
    if name not in ASSETS:
        raise ValueError(f"no web asset named {name!r}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def catalogue() -> list[dict[str, Any]]:
    """The controls, in catalogue order, as the page and the reports name them."""
    from shared.controls import controls

    return [{"id": control.id, "label": control.metadata.label or control.id, "title": control.metadata.title,
             "severity": str(control.metadata.severity)} for control in controls()]


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end it early."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_page(api_base: str = "/api/", *, source: str = "", token: str | None = None) -> tuple[str, dict[str, str]]:
    """The dashboard page and the headers to serve it with (a Content-Security-Policy that allows exactly the
    inlined script and style, and API calls to `api_base`)."""
    if not api_base.endswith("/"):
        api_base += "/"
    settings: dict[str, Any] = {"apiBase": api_base, "controls": catalogue(), "source": source}
    if token:
        settings["token"] = token
    config = _script_json(settings)
    style, script = asset("app.css"), asset("app.js")
    parts_by_marker = {"/*{{STYLE}}*/": style, "{{CONFIG}}": config, "/*{{SCRIPT}}*/": script}
    # One pass, so nothing inserted is ever taken for a marker.
    page = re.sub(r"/\*\{\{STYLE\}\}\*/|\{\{CONFIG\}\}|/\*\{\{SCRIPT\}\}\*/",
                  lambda match: parts_by_marker[match.group(0)], asset(PAGE))
    parts = urlsplit(api_base)
    connect = "'self'" + (f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "")
    policy = (f"default-src 'none'; script-src {_hash(script)}; style-src {_hash(style)}; "
              f"connect-src {connect}; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": policy,
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "Cache-Control": "no-store"}
    return page, headers

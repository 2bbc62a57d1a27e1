"""The deployed function app refuses what a browser sends cross-site (issue 22, item 2): a state-changing route answers
403 to a cross-site Origin or `Sec-Fetch-Site: cross-site` and 415 to a body that is not JSON (a form or a text/plain
fetch, the requests a page may send without a CORS preflight), and changes nothing. Same-origin and non-browser
clients (no Origin) with JSON bodies work as before. Built as the host builds it, called with real HttpRequests
against Azurite."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import azure.functions as func
import pytest

APP_HOST = "authwatch-prod.azurewebsites.net"
CREDENTIAL = {"mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
              "secretSetting": "AUTHWATCH_SECRET_CROSS_SITE"}
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def fns():
    """The app's functions as the host indexes them (get_functions() refuses a second run in a process: reset its
    guard before and after, as tests/e2e/test_alert_function_app.py does)."""
    import function_app

    function_app.app.functions_bindings = None
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = None


@pytest.fixture
def app(fns, monkeypatch, storage_connection_string):
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    monkeypatch.setenv("AUTHWATCH_SECRET_CROSS_SITE", "not-used-here")
    return fns


def http(function, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
         route: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    request = func.HttpRequest(method=method, url=f"https://{APP_HOST}/api/{path}", body=data,
                               route_params=route or {}, headers={"host": APP_HOST, **(headers or {})})
    response = asyncio.run(function.get_user_function()(request))
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def onboard(app, name: str = "Contoso") -> str:
    tenant_id = str(uuid.uuid4())
    status, body = http(app["onboard_tenant"], "POST", "tenants", headers=JSON_TYPE,
                        body={"tenantId": tenant_id, "displayName": name, "credential": CREDENTIAL})
    assert status == 201, body
    return tenant_id


def detail(app, tenant_id: str) -> dict:
    status, body = http(app["get_tenant"], "GET", f"tenants/{tenant_id}", route={"tenantId": tenant_id})
    assert status == 200, body
    return body


CROSS_SITE = [
    {"origin": "https://evil.example", **JSON_TYPE},
    {"origin": "null", **JSON_TYPE},  # a sandboxed frame or a data: page
    {"origin": f"https://{APP_HOST}.evil.example", **JSON_TYPE},
    {"sec-fetch-site": "cross-site", **JSON_TYPE},  # no Origin, but the browser says where it comes from
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=["origin", "null-origin", "look-alike-origin", "sec-fetch-site"])
def test_cross_site_requests_change_nothing(app, headers):
    tenant_id = onboard(app)
    route = {"tenantId": tenant_id}
    status, body = http(app["disable_tenant"], "POST", "x", route=route, headers=headers)
    assert status == 403 and "cross-site" in body["error"], body
    status, body = http(app["update_tenant"], "PATCH", "x", route=route, headers=headers,
                        body={"displayName": "Renamed by a web page"})
    assert status == 403, body
    status, body = http(app["acknowledge_alert"], "POST", "x", route={**route, "alertId": "a" * 32},
                        headers=headers, body={"by": "a web page"})
    assert status == 403, body
    status, body = http(app["onboard_tenant"], "POST", "tenants", headers=headers, body={
        "tenantId": str(uuid.uuid4()), "displayName": "Planted", "credential": CREDENTIAL})
    assert status == 403, body
    after = detail(app, tenant_id)
    assert after["enabled"] is True and after["displayName"] == "Contoso"


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_bodies_must_be_declared_json(app, content_type):
    """What a form, or a fetch without a preflight, can send; and a body with no type at all."""
    tenant_id = onboard(app)
    headers = {"content-type": content_type} if content_type else {}
    status, body = http(app["update_tenant"], "PATCH", "x", route={"tenantId": tenant_id}, headers=headers,
                        body={"displayName": "Renamed"})
    assert status == 415 and "application/json" in body["error"], body
    status, body = http(app["snooze_alert"], "POST", "x", route={"tenantId": tenant_id, "alertId": "a" * 32},
                        headers=headers, body={"until": "2099-01-01T00:00:00Z"})
    assert status == 415, body
    if content_type:  # a bodyless action says what it is too, if it says anything
        status, body = http(app["disable_tenant"], "POST", "x", route={"tenantId": tenant_id}, headers=headers)
        assert status == 415, body
    assert detail(app, tenant_id)["displayName"] == "Contoso" and detail(app, tenant_id)["enabled"] is True


def test_same_origin_and_api_clients_still_work(app):
    tenant_id = onboard(app)  # JSON, no Origin: a script or curl
    route = {"tenantId": tenant_id}
    same_origin = {"origin": f"https://{APP_HOST}", "sec-fetch-site": "same-origin",
                   "content-type": "application/json; charset=utf-8"}
    status, body = http(app["update_tenant"], "PATCH", "x", route=route, headers=same_origin,
                        body={"displayName": "Renamed"})
    assert status == 200 and body["displayName"] == "Renamed"
    behind_a_proxy = {"origin": "https://authwatch.contoso.example", "x-forwarded-host": "authwatch.contoso.example",
                      **JSON_TYPE}
    status, body = http(app["update_tenant"], "PATCH", "x", route=route, headers=behind_a_proxy,
                        body={"displayName": "Proxied"})
    assert status == 200 and body["displayName"] == "Proxied"
    status, body = http(app["disable_tenant"], "POST", "x", route=route)  # curl -X POST: no body, no type
    assert status == 200 and body["enabled"] is False
    status, body = http(app["list_tenants"], "GET", "tenants", headers={"origin": "https://evil.example"})
    assert status == 200  # reads are not state-changing (the browser keeps a cross-site answer from the page)


def test_the_api_says_what_it_relies_on():
    import functions.dashboard
    import functions.http_api

    for module in (functions.http_api, functions.dashboard):
        doc = module.__doc__ or ""
        assert "function key" in doc and "Easy Auth" in doc and "cross-site" in doc, module.__name__

"""The exception routes of the HTTP API (issue 21, part 1) through the real function entry points, built the way the
host builds them, against Azurite: add, list, extend, remove; who made a change (the body's, or App Service
Authentication's X-MS-CLIENT-PRINCIPAL-NAME when present); 400 naming the field and nothing written for bad input,
404 for an unknown tenant or exception; the tenant page's data, the reports (JSON, CSV, HTML) and, in a real
browser, the dashboard's tenant page."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient

from shared.model import ControlResult, Severity, Status, format_time
from shared.storage.tenant_store import REGISTRY_ROW, TenantStore
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.tenants.registry import PARTITION, TABLE

ROOT = Path(__file__).parents[2]
CREDENTIAL = {"mode": "secret", "clientId": "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50",
              "secretSetting": "AUTHWATCH_SECRET_EXCEPTIONS"}
SMTP = "exo_smtp_auth_disabled"
ROUTES = {"list_exceptions": "GET", "add_exception": "POST", "extend_exception": "POST", "remove_exception": "DELETE",
          "onboard_tenant": "POST", "update_tenant": "PATCH", "get_tenant": "GET", "tenant_history": "GET"}


@pytest.fixture(scope="module")
def app(azurite) -> Iterator[dict[str, Any]]:
    """The function app as the host indexes it (a fresh module: get_functions() runs once per FunctionApp)."""
    azurite.start()
    spec = importlib.util.spec_from_file_location("function_app_for_exceptions", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", azurite.connection_string)
        yield {"functions": {f.get_function_name(): f for f in module.app.get_functions()},
               "connection": azurite.connection_string}


def call(app: dict[str, Any], name: str, tenant_id: str, *, exception_id: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> tuple[int, Any]:
    route = {"tenantId": tenant_id, **({"exceptionId": exception_id} if exception_id is not None else {})}
    data = json.dumps(body).encode() if body is not None else b""
    request = func.HttpRequest(method=ROUTES[name], url=f"http://localhost/api/tenants/{tenant_id}/exceptions",
                               body=data, route_params=route, params=params or {},
                               headers={**({"content-type": "application/json"} if data else {}), **(headers or {})})
    response = asyncio.run(app["functions"][name].get_user_function()(request))
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def onboard(app: dict[str, Any], name: str = "Contoso API exceptions", **fields: Any) -> str:
    tenant_id = str(uuid.uuid4())
    status, body = call(app, "onboard_tenant", tenant_id, body={"tenantId": tenant_id, "displayName": name,
                                                               "credential": CREDENTIAL, **fields})
    assert status == 201, body
    return tenant_id


def exception(**changes: Any) -> dict[str, Any]:
    return {"control": SMTP, "scope": {"mailboxes": ["scanner@contoso.com"]}, "owner": "Mail team",
            "reason": "copier", "createdBy": "alice@msp.example",
            "expiresAt": format_time(datetime.now(timezone.utc) + timedelta(days=30)), **changes}


def stored(connection: str, tenant_id: str) -> tuple[dict[str, Any], list[str]]:
    """The registry row (with its ETag) and the RowKeys of the tenant's state partition: what a refusal must not
    change."""
    with TableServiceClient.from_connection_string(connection) as client:
        entity = client.get_table_client(TABLE).get_entity(PARTITION, tenant_id)
        keys = [row["RowKey"] for row in client.get_table_client(STATE_TABLE).query_entities(
            "PartitionKey eq @tenant", parameters={"tenant": tenant_id}, select=["RowKey"])]
    return {"etag": entity.metadata["etag"], **dict(entity)}, sorted(keys)


def test_add_list_extend_remove_and_who_made_each_change(app):
    tenant_id = onboard(app, approvedExclusions={"users": ["break-glass@contoso.com"]})
    status, added = call(app, "add_exception", tenant_id, body=exception(id="copier"))
    assert status == 201 and added["id"] == "copier" and added["createdBy"] == "alice@msp.example"
    # With App Service Authentication in front, its signed-in user wins over what the body says.
    status, second = call(app, "add_exception", tenant_id, body=exception(scope={"users": ["u1"]}),
                          headers={"X-MS-CLIENT-PRINCIPAL-NAME": "admin@contoso.com"})
    assert status == 201 and second["createdBy"] == "admin@contoso.com" and second["id"].startswith("exc-")

    status, listed = call(app, "list_exceptions", tenant_id)
    assert status == 200 and [x["id"] for x in listed["exceptions"]][-1] == "legacy-approvedExclusions"
    assert {x["id"] for x in listed["exceptions"][:2]} == {"copier", second["id"]}
    assert listed["maxExceptionDays"] == 180 and listed["exceptionReminderDays"] == 7

    until = format_time(datetime.now(timezone.utc) + timedelta(days=90))
    status, extended = call(app, "extend_exception", tenant_id, exception_id="copier",
                            body={"expiresAt": until, "by": "bob@msp.example"})
    assert status == 200 and extended["expiresAt"] == until
    status, removed = call(app, "remove_exception", tenant_id, exception_id=second["id"],
                           headers={"x-ms-client-principal-name": "carol@contoso.com"})  # no body needed then
    assert status == 200 and removed["removed"] is True

    status, detail = call(app, "get_tenant", tenant_id)
    assert status == 200 and [x["id"] for x in detail["exceptions"]] == ["copier", "legacy-approvedExclusions"]
    assert detail["exceptions"][0]["daysLeft"] in (89, 90) and detail["exceptions"][0]["status"] == "active"
    status, history = call(app, "tenant_history", tenant_id)
    changes = [(e["details"]["action"], e["details"]["by"], e["details"]["exception"]["id"])
               for e in history["events"] if e["type"] == "exception.changed"]
    assert changes == [("removed", "carol@contoso.com", second["id"]), ("extended", "bob@msp.example", "copier"),
                       ("added", "admin@contoso.com", second["id"]), ("added", "alice@msp.example", "copier")]


@pytest.mark.parametrize(("body", "field"), [
    (exception(expiresAt=None), "expiresAt"),
    (exception(expiresAt=format_time(datetime.now(timezone.utc) + timedelta(days=400))), "expiresAt"),
    (exception(control="exo_everything"), "control"),
    (exception(scope={"people": ["x"]}), "scope.people"),
    (exception(owner=""), "owner"),
    (exception(createdAt="2026-01-01T00:00:00Z"), "createdAt"),
    ([exception()], "JSON object"),
])
def test_bad_exceptions_get_a_400_naming_the_field_and_write_nothing(app, body, field):
    tenant_id = onboard(app)
    before = stored(app["connection"], tenant_id)
    status, answer = call(app, "add_exception", tenant_id, body=body)
    assert status == 400 and field in answer["error"], answer
    assert stored(app["connection"], tenant_id) == before


def test_duplicates_unknown_ids_and_unknown_tenants(app):
    tenant_id = onboard(app)
    assert call(app, "add_exception", tenant_id, body=exception(id="copier"))[0] == 201
    before = stored(app["connection"], tenant_id)
    status, answer = call(app, "add_exception", tenant_id, body=exception(id="copier"))
    assert status == 400 and answer["error"].startswith("id:"), answer
    for name, body in (("extend_exception", {"expiresAt": "2099-01-01", "by": "bob"}),
                       ("remove_exception", {"by": "bob"})):
        status, answer = call(app, name, tenant_id, exception_id="nope", body=body)
        assert status == 404 and "no exception 'nope'" in answer["error"], answer
    for name, body, field in (("extend_exception", {"expiresAt": "2099-01-01"}, "by"),
                              ("extend_exception", {"by": "bob"}, "expiresAt"),
                              ("extend_exception", {"by": "bob", "expiresAt": "2099-01-01"}, "expiresAt"),
                              ("extend_exception", {"by": "bob", "expiresAt": "2030-01-01", "x": 1}, "x"),
                              ("remove_exception", None, "by"), ("remove_exception", {"by": 5}, "by")):
        status, answer = call(app, name, tenant_id, exception_id="copier", body=body)
        assert status == 400 and answer["error"].startswith(f"{field}:"), (name, body, answer)
    assert stored(app["connection"], tenant_id) == before
    unknown = str(uuid.uuid4())
    for name, exception_id, body in (("list_exceptions", None, None), ("add_exception", None, exception()),
                                     ("extend_exception", "copier", {"expiresAt": "2099-01-01", "by": "bob"}),
                                     ("remove_exception", "copier", {"by": "bob"})):
        status, answer = call(app, name, unknown, exception_id=exception_id, body=body)
        assert status == 404 and "no tenant" in answer["error"], (name, answer)
    status, answer = call(app, "list_exceptions", "x' or PartitionKey ne '")
    assert status == 400 and "tenantId" in answer["error"]


def test_the_tenant_patch_sets_the_bounds_but_not_the_exceptions(app):
    tenant_id = onboard(app)
    status, answer = call(app, "update_tenant", tenant_id, body={"exceptions": []})
    assert status == 400 and answer["error"].startswith("exceptions:") and "history" in answer["error"]
    status, answer = call(app, "update_tenant", tenant_id, body={"maxExceptionDays": 5000})
    assert status == 400 and answer["error"].startswith("maxExceptionDays:")
    status, answer = call(app, "update_tenant", tenant_id, body={"maxExceptionDays": 14, "exceptionReminderDays": 3})
    assert status == 200 and answer["maxExceptionDays"] == 14 and answer["exceptionReminderDays"] == 3
    status, answer = call(app, "add_exception", tenant_id, body=exception())  # 30 days: past the tenant's 14
    assert status == 400 and "at most 14 days" in answer["error"]
    status, answer = call(app, "onboard_tenant", str(uuid.uuid4()), body={
        "tenantId": str(uuid.uuid4()), "displayName": "x", "credential": CREDENTIAL, "exceptions": []})
    assert status == 400 and answer["error"].startswith("exceptions:")


# --- what people read: the reports and the dashboard -----------------------------------------------------------------

def seed_covered_result(connection: str, tenant_id: str, exception_id: str) -> None:
    """A stored result an exception turned into a pass (the evidence shape of shared/controls/exceptions.py)."""
    covered = ControlResult(SMTP, Status.PASS, Severity.HIGH, "SMTP AUTH is on, covered by an exception.",
                            evidence={"exception": {"ids": [exception_id], "owner": "<b>Mail</b> team",
                                                    "expiresAt": "2099-01-01T00:00:00Z", "covered": ["tenant"],
                                                    "acceptedStatus": "fail",
                                                    "acceptedSummary": "SMTP AUTH is enabled"}})
    failing = ControlResult("exo_pop_imap_disabled", Status.FAIL, Severity.MEDIUM, "POP is on for 2 mailboxes.")

    async def go() -> None:
        async with TenantStore.from_connection_string(connection) as store:
            await store.create()
            record = await store.load(tenant_id)
            await store.commit(tenant_id, state={"tenantId": tenant_id, "lastCollectedAt": format_time(
                datetime.now(timezone.utc))}, expected_etag=record.state_etag, results=[covered, failing],
                evaluated_at=datetime.now(timezone.utc), events=[])

    asyncio.run(go())


def report(app: dict[str, Any], tenant_id: str, fmt: str) -> str:
    request = func.HttpRequest(method="GET", url="http://localhost/api/report", body=b"",
                               params={"format": fmt, "tenant": tenant_id})
    response = asyncio.run(app["functions"]["report"].get_user_function()(request))
    assert response.status_code == 200, response.get_body()[:300]
    return response.get_body().decode("utf-8")


def test_the_reports_list_the_exceptions_and_name_the_one_a_pass_rests_on(app):
    from shared.views.reports import CSV_COLUMNS, validate

    tenant_id = onboard(app, name="Report <exceptions>")
    status, added = call(app, "add_exception", tenant_id, body=exception(
        id="copier", owner="<script>alert(1)</script>", reason="a & b"))
    assert status == 201, added
    seed_covered_result(app["connection"], tenant_id, "copier")

    document = json.loads(report(app, tenant_id, "json"))
    validate(document)
    tenant = document["tenants"][0]
    assert [x["id"] for x in tenant["exceptions"]] == ["copier"] and tenant["exceptions"][0]["status"] == "active"
    rows = {row["control"]: row for row in tenant["controls"]}
    assert rows[SMTP]["status"] == "pass" and rows[SMTP]["exception"] == ["copier"]
    assert rows["exo_pop_imap_disabled"]["exception"] is None

    lines = list(csv.DictReader(io.StringIO(report(app, tenant_id, "csv"))))
    assert tuple(lines[0]) == CSV_COLUMNS
    assert {row["control"]: row["exception"] for row in lines}[SMTP] == "copier"

    page = report(app, tenant_id, "html")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-exception-id="copier"' in page and "a &amp; b" in page and "exception copier" in page


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_the_dashboard_tenant_page_lists_exceptions_and_marks_a_covered_pass(app, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    from shared.cli.serve import DashboardServer

    tenant_id = onboard(app, name="Dashboard exceptions", approvedExclusions={"users": ["break-glass@contoso.com"]})
    call(app, "update_tenant", tenant_id, body={"exceptionReminderDays": 30})
    assert call(app, "add_exception", tenant_id, body=exception(id="copier", owner="<img src=x onerror=alert(1)>"))[0] \
        == 201
    seed_covered_result(app["connection"], tenant_id, "copier")
    problems: list[str] = []
    env = {**os.environ, "AUTHWATCH_STORAGE_CONNECTION_STRING": app["connection"]}
    with DashboardServer(env, port=0, source="exceptions test") as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(base_url=server.url)
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"/dashboard#/tenants/{tenant_id}")
            row = page.locator('#exceptions tr[data-exception-id="copier"]')
            row.wait_for()
            text = row.inner_text()
            assert "<img src=x onerror=alert(1)>" in text  # shown as text, never as markup
            assert "expiring soon" in text and row.locator("td").nth(1).get_attribute("title") == SMTP
            assert page.locator('#exceptions tr[data-exception-id="legacy-approvedExclusions"]').inner_text() \
                .count("legacy") >= 1
            badge = page.locator(f"#control-{SMTP} header .badge")
            assert badge.text_content() == "PASS (exception copier)"  # folded under "Passing"
            assert page.locator("#control-exo_pop_imap_disabled header .badge").text_content() == "FAIL"
        finally:
            browser.close()
    assert problems == []

"""The Functions app, built the way the host builds it (get_functions) and called with real azure.functions objects."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import azure.functions as func
import pytest

from shared.model import ControlResult, Severity, Status
from shared.storage.tenant_store import TenantStore


@pytest.fixture(scope="module")
def built_app():
    """The host indexes the app once; get_functions() may only run once per FunctionApp."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@pytest.fixture
def app_functions(built_app, monkeypatch, storage_connection_string):
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    return built_app


def call(function, *, route_params: dict[str, str]) -> func.HttpResponse:
    tenant = route_params.get("tenantId", "")
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/tenants/{tenant}/results", body=b"",
                               route_params=route_params)
    return asyncio.run(function.get_user_function()(request))


def test_results_route_is_registered_with_function_auth(app_functions):
    bindings = app_functions["tenant_results"].get_bindings()
    trigger = next(b for b in bindings if b.type == "httpTrigger")
    assert trigger.route == "tenants/{tenantId}/results"
    assert str(trigger.auth_level.value) == "function"


def test_results_route_returns_stored_results(app_functions, storage_connection_string):
    tenant = str(uuid.uuid4())
    at = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)

    async def seed():
        async with TenantStore.from_connection_string(storage_connection_string) as store:
            await store.create()
            await store.commit(tenant, state={"tenantId": tenant}, expected_etag=None, evaluated_at=at, events=[],
                               results=[ControlResult("exo_smtp_auth_disabled", Status.FAIL, Severity.HIGH, "on")])

    asyncio.run(seed())
    response = call(app_functions["tenant_results"], route_params={"tenantId": tenant})
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["tenantId"] == tenant
    assert body["results"][0]["control"] == "exo_smtp_auth_disabled"
    assert body["results"][0]["status"] == "fail"
    assert body["results"][0]["evaluatedAt"] == "2026-11-23T08:00:00Z"


def test_unknown_tenant_is_404(app_functions):
    response = call(app_functions["tenant_results"], route_params={"tenantId": str(uuid.uuid4())})
    assert response.status_code == 404
    assert "no results" in json.loads(response.get_body())["error"]


@pytest.mark.parametrize("bad", ["not-a-guid", "x' or PartitionKey ne '", ""])
def test_tenant_id_must_be_a_guid_before_any_query(app_functions, bad):
    response = call(app_functions["tenant_results"], route_params={"tenantId": bad})
    assert response.status_code == 400
    assert "GUID" in json.loads(response.get_body())["error"]

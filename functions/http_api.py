"""HTTP API blueprint (function-level auth): decode the request, call one service function, answer JSON."""

from __future__ import annotations

import json
import logging
import uuid

import azure.functions as func

from shared.model import format_time
from shared.settings import Settings
from shared.storage.tenant_store import TenantStore

bp = func.Blueprint()
log = logging.getLogger("authwatch.http")


def _json(status: int, body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _tenant_id(raw: str | None) -> str | None:
    """Tenant ids are GUIDs; anything else never reaches a Table query (no OData injection)."""
    try:
        return str(uuid.UUID(raw or ""))
    except ValueError:
        return None


@bp.route(route="tenants/{tenantId}/results", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def tenant_results(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = _tenant_id(req.route_params.get("tenantId"))
    if tenant_id is None:
        return _json(400, {"error": "tenantId must be a GUID, e.g. 8c1d0f4e-1a2b-4c3d-8e9f-000000000001"})
    async with TenantStore.from_connection_string(Settings.from_env().storage_connection_string) as store:
        stored = (await store.load(tenant_id)).results
    log.info("results read", extra={"tenant_id": tenant_id, "count": len(stored)})
    if not stored:
        return _json(404, {"error": f"no results stored for tenant {tenant_id}"})
    return _json(200, {
        "tenantId": tenant_id,
        "results": [{**item.result.to_json(), "evaluatedAt": format_time(item.evaluated_at)} for item in stored],
    })

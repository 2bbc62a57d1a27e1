"""Service functions behind the exception routes of the HTTP API (functions/http_api.py):

    GET    tenants/{tenantId}/exceptions                         the tenant's exceptions (and legacy exclusions)
    POST   tenants/{tenantId}/exceptions                         add one: {id?, control, scope, owner, reason,
                                                                 createdBy, expiresAt}                → 201
    POST   tenants/{tenantId}/exceptions/{exceptionId}/extend    {expiresAt, by}                      → 200
    DELETE tenants/{tenantId}/exceptions/{exceptionId}           {by} (the body may be left out when the
                                                                 signed-in user's name is known)      → 200

Who makes a change: `createdBy` / `by` from the body, unless App Service Authentication (Easy Auth) is in front:
then its `X-MS-CLIENT-PRINCIPAL-NAME` header (the signed-in caller's name, e.g. their user principal name) wins.
App Service injects that header itself and refuses it from an external request, so when present it is the platform's
word: https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities. Without Easy Auth whoever
holds a function key can write any name, in the body as in that header: the key is the trust boundary either way.

The work is shared/tenants/exceptions_service.py's (the CLI calls the same); here only decoding and mapping its errors
(ExceptionError, RegistryError → BadRequest 400 naming the field; LookupError → 404).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Mapping, TypeVar

from shared.exceptions import ExceptionError
from shared.tenants import exceptions_service as service
from shared.tenants.config import RegistryError
from shared.views.api import BadRequest

PRINCIPAL_HEADER = "x-ms-client-principal-name"
T = TypeVar("T")


def principal(headers: Mapping[str, str] | None) -> str | None:
    """The signed-in user's name as App Service Authentication passes it, or None without Easy Auth."""
    if headers is None:
        return None
    value = headers.get(PRINCIPAL_HEADER) or headers.get("X-MS-CLIENT-PRINCIPAL-NAME")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _object(body: Any, *, optional: bool = False) -> dict[str, Any]:
    if body is None and optional:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


async def _mapped(work: Awaitable[T]) -> T:
    try:
        return await work
    except (ExceptionError, RegistryError) as error:
        raise BadRequest(str(error)) from None


async def list_exceptions(fleet: Any, tenant_id: str, *, now: datetime) -> dict[str, Any]:
    return await service.exceptions_of(fleet.registry, tenant_id, now=now)


async def add_exception(fleet: Any, tenant_id: str, body: Any, *, now: datetime,
                        headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = dict(_object(body))
    who = principal(headers)
    if who is not None:
        raw["createdBy"] = who
    return await _mapped(service.add_exception(fleet.registry, tenant_id, raw, now=now))


def _by(body: dict[str, Any], headers: Mapping[str, str] | None) -> Any:
    unknown = sorted(str(name) for name in set(body) - {"by", "expiresAt"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field (allowed: expiresAt, by)")
    return principal(headers) or body.get("by")


async def extend_exception(fleet: Any, tenant_id: str, exception_id: Any, body: Any, *, now: datetime,
                           headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = _object(body)
    by = _by(raw, headers)
    return await _mapped(service.extend_exception(fleet.registry, tenant_id, exception_id, raw.get("expiresAt"),
                                                  by=by, now=now))


async def remove_exception(fleet: Any, tenant_id: str, exception_id: Any, body: Any, *, now: datetime,
                           headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = _object(body, optional=True)
    if "expiresAt" in raw:
        raise BadRequest("expiresAt: unknown field (allowed: by)")
    by = _by(raw, headers)
    return await _mapped(service.remove_exception(fleet.registry, tenant_id, exception_id, by=by, now=now))

"""Graph reads through the real msgraph-sdk: its request builders, its request adapter and its middleware.

Sources are read as raw JSON bytes (`send_primitive_async(..., "bytes")`) rather than SDK models, because the
snapshot contract keeps Microsoft's own shapes and a model round trip would drop or reformat fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from shared.collect.errors import http_error, transport_error
from shared.model import SourceError


@dataclass(frozen=True)
class GraphSource:
    name: str  # snapshot key under "graph"
    builder: Callable[[Any], Any]  # GraphServiceClient -> request builder
    collection: bool  # True: follow @odata.nextLink and return the list of items


GRAPH_SOURCES: tuple[GraphSource, ...] = (
    GraphSource("organization", lambda client: client.organization, collection=True),
    GraphSource("securityDefaults",
                lambda client: client.policies.identity_security_defaults_enforcement_policy, collection=False),
    GraphSource("conditionalAccessPolicies",
                lambda client: client.identity.conditional_access.policies, collection=True),
)

# Collections are paged; a runaway nextLink loop must end.
MAX_PAGES = 500


def _error_map() -> dict[str, Any]:
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    return {"XXX": ODataError}


def _source_error(error: Exception) -> SourceError:
    if isinstance(error, APIError):
        detail = getattr(error, "error", None)
        code = getattr(detail, "code", None) or ""
        message = getattr(detail, "message", None) or error.message or str(error)
        return http_error(error.response_status_code, code, message)
    return transport_error(error)


async def _get_json(adapter: Any, info: RequestInformation) -> Any:
    raw = await adapter.send_primitive_async(info, "bytes", _error_map())
    return json.loads(raw) if raw else None


async def read_source(client: Any, source: GraphSource) -> tuple[Any, SourceError | None]:
    """Fetch one source; a failure is returned as a value so the other sources still get collected."""
    adapter = client.request_adapter
    try:
        info = source.builder(client).to_get_request_information()
        body = await _get_json(adapter, info)
        if not source.collection:
            return body, None
        items = list((body or {}).get("value") or [])
        for _ in range(MAX_PAGES):
            next_link = (body or {}).get("@odata.nextLink")
            if not next_link:
                break
            page = RequestInformation(Method.GET)
            page.url = next_link
            page.headers.try_add("Accept", "application/json")
            body = await _get_json(adapter, page)
            items.extend((body or {}).get("value") or [])
        if source.name == "organization":
            return (items[0] if items else {}), None
        return items, None
    except Exception as error:  # noqa: BLE001 - errors are values at the edge
        return None, _source_error(error)

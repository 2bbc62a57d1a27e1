"""Graph reads through the real msgraph-sdk: its request builders, its request adapter and its middleware.

Sources are read as raw JSON bytes (`send_primitive_async(..., "bytes")`) rather than SDK models, because the
snapshot contract keeps Microsoft's own shapes and a model round trip would drop or reformat fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from shared.collect.errors import http_error, transport_error
from shared.controls.signins import is_legacy_signin
from shared.model import SourceError, format_time

Query = dict[str, Any]  # OData query options for one request: filter, select, top


@dataclass(frozen=True)
class GraphSource:
    name: str  # snapshot key under "graph"
    builder: Callable[[Any], Any]  # GraphServiceClient -> request builder
    collection: bool  # True: follow @odata.nextLink and return the list of items
    query: Callable[[datetime], Query] | None = None  # built from the watermark ("since") of incremental sources
    keep: Callable[[Any], bool] | None = None  # items worth keeping in the snapshot


# Sign-ins: v1.0 filters clientAppUsed with eq only, so legacy clients are picked out here, not in $filter.
SIGNIN_FIELDS = ["id", "createdDateTime", "userId", "userPrincipalName", "userDisplayName", "appDisplayName",
                 "clientAppUsed", "ipAddress", "status", "conditionalAccessStatus"]

GRAPH_SOURCES: tuple[GraphSource, ...] = (
    GraphSource("organization", lambda client: client.organization, collection=True,
                query=lambda _since: {"select": ["id", "displayName", "verifiedDomains"]}),
    GraphSource("securityDefaults",
                lambda client: client.policies.identity_security_defaults_enforcement_policy, collection=False),
    GraphSource("conditionalAccessPolicies",
                lambda client: client.identity.conditional_access.policies, collection=True),
    GraphSource("sharepointSettings", lambda client: client.admin.sharepoint.settings, collection=False),
    GraphSource("signIns", lambda client: client.audit_logs.sign_ins, collection=True,
                query=lambda since: {"filter": f"createdDateTime ge {format_time(since)}", "top": 1000,
                                     "select": SIGNIN_FIELDS},
                keep=is_legacy_signin),
    GraphSource("directoryAudits", lambda client: client.audit_logs.directory_audits, collection=True,
                query=lambda since: {"filter": f"activityDateTime ge {format_time(since)} and "
                                               "loggedByService eq 'Conditional Access'", "top": 1000}),
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


def _first_request(client: Any, source: GraphSource, since: datetime) -> RequestInformation:
    builder = source.builder(client)
    if source.query is None:
        return builder.to_get_request_information()
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    # Every generated builder names its query-parameter class <Builder>GetQueryParameters.
    parameters_class = getattr(type(builder), f"{type(builder).__name__}GetQueryParameters")
    config = RequestConfiguration(query_parameters=parameters_class(**source.query(since)))
    return builder.to_get_request_information(config)


async def read_source(client: Any, source: GraphSource, since: datetime) -> tuple[Any, SourceError | None]:
    """Fetch one source; a failure is returned as a value so the other sources still get collected."""
    adapter = client.request_adapter
    try:
        body = await _get_json(adapter, _first_request(client, source, since))
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
        if source.keep:
            items = [item for item in items if source.keep(item)]
        if source.name == "organization":
            return (items[0] if items else {}), None
        return items, None
    except Exception as error:  # noqa: BLE001 - errors are values at the edge
        return None, _source_error(error)

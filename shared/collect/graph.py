"""Graph reads through the real msgraph-sdk: its request builders, its request adapter and its middleware.

Sources are read as raw JSON bytes (`send_primitive_async(..., "bytes")`) rather than SDK models, because the
snapshot contract keeps Microsoft's own shapes and a model round trip would drop or reformat fields.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from shared.collect.batch import batch_items, retry_after_s
from shared.collect.deadline import current
from shared.collect.errors import DeadlineExceeded, IncompleteRead, graph_http_error, transport_error
from shared.controls.signins import is_legacy_signin
from shared.model import SourceError, format_time, parse_time_or_none

Query = dict[str, Any]  # OData query options for one request: filter, select, top


@dataclass(frozen=True)
class GraphSource:
    name: str  # snapshot key under "graph"
    builder: Callable[[Any], Any]  # GraphServiceClient -> request builder
    collection: bool  # True: follow @odata.nextLink and return the list of items
    # Built from the watermark ("since") of incremental sources and, when a stretch is read again, its end ("until").
    query: Callable[[datetime, datetime | None], Query] | None = None
    keep: Callable[[Any], bool] | None = None  # items worth keeping in the snapshot
    batch_url: str | None = None  # relative URL when the source rides in the one $batch of a collection
    fields: tuple[str, ...] = ()  # keep only these properties of each item (projected here, not with $select)


# Sign-ins: v1.0 filters clientAppUsed with eq only, so legacy clients are picked out here, not in $filter.
# List signIns takes only $top, $skiptoken and $filter; a $select is refused with 400 "Query option 'Select' is not
# allowed" (https://learn.microsoft.com/en-us/graph/api/signin-list, observed:
# https://learn.microsoft.com/en-us/answers/questions/1116053/query-option-select-is-not-allowed-to-allow-it-set),
# so the fields authwatch keeps are picked out after the read.
SIGNIN_PAGE_SIZE = 1000  # the maximum $top of List signIns (signin-list above; platform-facts: page size ≤ 1000)
SIGNIN_FIELDS = ["id", "createdDateTime", "userId", "userPrincipalName", "userDisplayName", "appDisplayName",
                 "clientAppUsed", "ipAddress", "status", "conditionalAccessStatus"]

GRAPH_SOURCES: tuple[GraphSource, ...] = (
    GraphSource("organization", lambda client: client.organization, collection=True,
                query=lambda _since, _until: {"select": ["id", "displayName", "verifiedDomains"]},
                batch_url="/organization?$select=id,displayName,verifiedDomains"),
    GraphSource("securityDefaults",
                lambda client: client.policies.identity_security_defaults_enforcement_policy, collection=False,
                batch_url="/policies/identitySecurityDefaultsEnforcementPolicy"),
    GraphSource("conditionalAccessPolicies",
                lambda client: client.identity.conditional_access.policies, collection=True,
                batch_url="/identity/conditionalAccess/policies"),
    GraphSource("sharepointSettings", lambda client: client.admin.sharepoint.settings, collection=False,
                batch_url="/admin/sharepoint/settings"),
    GraphSource("signIns", lambda client: client.audit_logs.sign_ins, collection=True,
                query=lambda since, until: {"filter": f"createdDateTime ge {format_time(since)}" + (
                    f" and createdDateTime le {format_time(until)}" if until else ""), "top": SIGNIN_PAGE_SIZE},
                keep=is_legacy_signin, fields=tuple(SIGNIN_FIELDS)),
    GraphSource("directoryAudits", lambda client: client.audit_logs.directory_audits, collection=True,
                query=lambda since, _until: {"filter": f"activityDateTime ge {format_time(since)} and "
                                               "loggedByService eq 'Conditional Access'", "top": 1000}),
)

# Collections are paged; a runaway nextLink loop must end.
MAX_PAGES = 500
# Sign-ins ride the reports budget, 5 requests per 10 s per tenant (platform-facts; Graph throttling guidance,
# https://learn.microsoft.com/en-us/graph/throttling-limits#identity-and-access-reports-service-limits): 100 pages
# take at least 200 s, which leaves the rest of the cycle room inside the 10-minute functionTimeout (host.json).
# A busy tenant's first 48-hour look-back (or a long outage) needs more: each cycle reads the newest pages first
# and the stretch it did not reach is read by the next cycles (read_signins).
SIGNIN_PAGES_PER_CYCLE = 100


def _error_map() -> dict[str, Any]:
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    return {"4XX": ODataError, "5XX": ODataError}  # Graph's error body, whatever the status


def _source_error(error: Exception) -> SourceError:
    if isinstance(error, APIError):
        detail = getattr(error, "error", None)
        code = getattr(detail, "code", None) or ""
        message = getattr(detail, "message", None) or error.message or str(error)
        return graph_http_error(error.response_status_code, code, message)
    return transport_error(error)


async def _get_json(adapter: Any, info: RequestInformation) -> Any:
    raw = await adapter.send_primitive_async(info, "bytes", _error_map())
    return json.loads(raw) if raw else None


def _first_request(client: Any, source: GraphSource, since: datetime,
                   until: datetime | None = None) -> RequestInformation:
    builder = source.builder(client)
    if source.query is None:
        return builder.to_get_request_information()
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    # Every generated builder names its query-parameter class <Builder>GetQueryParameters.
    parameters_class = getattr(type(builder), f"{type(builder).__name__}GetQueryParameters")
    config = RequestConfiguration(query_parameters=parameters_class(**source.query(since, until)))
    return builder.to_get_request_information(config)


SOURCES_BY_NAME = {source.name: source for source in GRAPH_SOURCES}
BATCHED = tuple(source for source in GRAPH_SOURCES if source.batch_url)
REPORTS = ("signIns", "directoryAudits")  # the reports service: its own, tighter throttling budget


def _shape(source: GraphSource, items: list[Any]) -> Any:
    if source.keep:
        items = [item for item in items if source.keep(item)]
    if source.fields:
        items = [{field: item.get(field) for field in source.fields} if isinstance(item, dict) else item
                 for item in items]
    if source.name == "organization":
        return items[0] if items else {}
    return items


def _page_items(body: Any, source: str) -> list[Any]:
    """The `value` of one page of a collection answer; anything else is no collection answer at all."""
    value = body.get("value", []) if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise IncompleteRead(source, "MalformedAnswer", "Graph answered a page that is not a collection (no JSON "
                                                         "object with a 'value' list)")
    return value


async def _pages(adapter: Any, body: Any, before_request: Callable[[], Awaitable[None]] | None,
                 source: str = "graph", max_pages: int | None = None) -> list[Any]:
    """The items of a collection answer, following @odata.nextLink through the SDK adapter. Ends with
    IncompleteRead, never silently, when the cap is reached with more to read, a nextLink repeats, a page is no
    collection, or the deadline comes first (what was read so far goes with it). The token goes only to Graph's own
    host: the SDK's authentication provider is built with allowed_hosts (snapshot.graph_client)."""
    items = list(_page_items(body, source))
    cap = MAX_PAGES if max_pages is None else max_pages
    followed: set[str] = set()
    while True:  # bounded: each turn follows a new link, and at most MAX_PAGES of them
        next_link = body.get("@odata.nextLink")
        if not next_link:
            return items
        if len(followed) >= cap:
            raise IncompleteRead(source, "PageLimitReached", f"stopped at the page cap ({cap} pages)", items)
        if next_link in followed:
            raise IncompleteRead(source, "NextLinkLoop", "Graph returned a nextLink already followed (a paging loop)")
        followed.add(next_link)
        page = RequestInformation(Method.GET)
        page.url = next_link
        page.headers.try_add("Accept", "application/json")
        try:
            if before_request:
                await before_request()
            body = await _get_json(adapter, page)
        except DeadlineExceeded as late:
            raise IncompleteRead(source, late.code, str(late), items) from late
        items.extend(_page_items(body, source))


async def read_batch(client: Any, http: Any, graph_url: str, token: str) -> dict[str, tuple[Any, SourceError | None]]:
    """The one-shot sources in ONE `$batch` round trip (built by hand: msgraph-core's batch helpers rewrite ids and
    lose bodies in this version). Batching saves round trips, not throttling budget: each item still counts, so the
    HTTP pipeline's budget step takes the Conditional Access slot for its item (budget_middleware.py). An item that
    fails for a transient reason (429, 5xx) is fetched again on its own, after its Retry-After, through the SDK."""
    requests = [{"id": str(index), "method": "GET", "url": source.batch_url}
                for index, source in enumerate(BATCHED)]
    answers: dict[str, tuple[Any, SourceError | None]] = {}
    retry: list[GraphSource] = []
    try:
        response = await http.post(f"{graph_url.rstrip('/')}/$batch", json={"requests": requests},
                                   headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"$batch answered {response.status_code}")
        payload = response.json()
        items = batch_items(payload, [request["id"] for request in requests])
    except DeadlineExceeded as late:  # no time left to read them one by one either
        return {source.name: (None, transport_error(late)) for source in BATCHED}
    except Exception:  # noqa: BLE001 - the batch as a whole failed: every source on its own, the SDK way
        return {source.name: await read_source(client, source, datetime.min)
                for source in BATCHED}
    for index, source in enumerate(BATCHED):
        item = items[str(index)]
        if isinstance(item, SourceError):
            answers[source.name] = (None, item)
            continue
        status, body = item if item is not None else (0, None)
        if status == 200:
            try:
                value = (_shape(source, await _pages(client.request_adapter, body, None,
                                                          f"graph.{source.name}"))
                         if source.collection else body)
                answers[source.name] = (value, None)
            except Exception as error:  # noqa: BLE001
                answers[source.name] = (None, _source_error(error))
        elif status == 429 or status >= 500 or status == 0:
            retry.append(source)
        else:
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            answers[source.name] = (None, graph_http_error(status, str(error.get("code") or ""),
                                                           str(error.get("message") or "")))
    if retry:
        pause = retry_after_s(payload, [str(BATCHED.index(source)) for source in retry])
        deadline = current()
        if pause and deadline is not None and not deadline.allows(pause):
            late = DeadlineExceeded(f"Microsoft answered the $batch item 429/503 with Retry-After {pause:g}: waiting "
                                    f"would end past {deadline.describe()}, so it was not read again", status=429)
            return {**answers, **{source.name: (None, transport_error(late)) for source in retry}}
        await asyncio.sleep(pause)  # Microsoft's Retry-After for the throttled items, before they are read again
    for source in retry:
        answers[source.name] = await read_source(client, source, datetime.min)
    return answers


async def read_source(client: Any, source: GraphSource, since: datetime,
                      before_request: Callable[[], Awaitable[None]] | None = None) -> tuple[Any, SourceError | None]:
    """Fetch one source; a failure is returned as a value so the other sources still get collected.
    `before_request` runs before every request (first page and next pages): the throttling budget."""
    adapter = client.request_adapter
    try:
        if before_request:
            await before_request()
        body = await _get_json(adapter, _first_request(client, source, since))
        if not source.collection:
            return body, None
        return _shape(source, await _pages(adapter, body, before_request, f"graph.{source.name}")), None
    except Exception as error:  # noqa: BLE001 - errors are values at the edge
        return None, _source_error(error)


@dataclass
class _Stretch:
    """One read of the sign-ins between two times, newest first, within the pages left this cycle."""

    items: list[Any]
    error: SourceError | None = None  # a failure that read nothing usable
    unread: tuple[datetime, datetime] | None = None  # the older part the page budget (or the deadline) did not reach
    late: str | None = None  # why the deadline cut the read short, when it did


async def _read_stretch(client: Any, since: datetime, until: datetime | None, pages: int,
                        before_request: Callable[[], Awaitable[None]] | None) -> tuple[_Stretch, int]:
    source = SOURCES_BY_NAME["signIns"]
    used = 0

    async def counted() -> None:
        nonlocal used
        used += 1
        if before_request:
            await before_request()

    try:
        await counted()
        body = await _get_json(client.request_adapter, _first_request(client, source, since, until))
        return _Stretch(_shape(source, await _pages(client.request_adapter, body, counted, "graph.signIns",
                                                    pages - 1))), used
    except IncompleteRead as cut:
        oldest = min((t for t in (parse_time_or_none(item.get("createdDateTime")) for item in cut.items
                                  if isinstance(item, dict)) if t is not None), default=None)
        if cut.code not in ("PageLimitReached", "DeadlineExceeded") or oldest is None:
            return _Stretch([], _source_error(cut)), used
        # Newest first: everything from `oldest` on was read (ties at `oldest` are read again and merged by id).
        late = str(cut.__cause__ or cut) if cut.code == "DeadlineExceeded" else None
        return _Stretch(_shape(source, cut.items), unread=(since, oldest), late=late), used
    except Exception as error:  # noqa: BLE001 - errors are values at the edge
        return _Stretch([], _source_error(error)), used


async def read_signins(client: Any, since: datetime, backlog: tuple[datetime, datetime] | None = None,
                       before_request: Callable[[], Awaitable[None]] | None = None,
                       pages: int | None = None) -> tuple[Any, SourceError | None]:
    """The sign-ins since the watermark, then the stretch an earlier cycle did not reach (`backlog`), in at most
    SIGNIN_PAGES_PER_CYCLE pages, newest first. What is read is kept; the stretch still unread comes back as the
    source's error (PageLimitReached with unreadFrom/unreadUntil), so the verdict is not PASS and the next cycle
    carries on from there. A failure that read nothing is the source's error, as for any source."""
    left = SIGNIN_PAGES_PER_CYCLE if pages is None else pages
    # The owed stretch is read on its own below, late arrivals included: the new read starts where it ends.
    fresh, used = await _read_stretch(client, max(since, backlog[1]) if backlog else since, None, left,
                                      before_request)
    if fresh.error:
        return None, fresh.error
    left -= used
    unread = [fresh.unread] if fresh.unread else []
    items = list(fresh.items)
    late = fresh.late
    if backlog and left > 0 and not fresh.unread:
        older, _ = await _read_stretch(client, backlog[0], backlog[1], left, before_request)
        items.extend(older.items)
        if older.unread or older.error:  # cut short again, or failed: what is left of the backlog stays owed
            unread.append(older.unread or backlog)
        late = late or older.late or (older.error.message if older.error and older.error.code == "DeadlineExceeded"
                                      else None)
    elif backlog:
        unread.append(backlog)
    merged = list({str(item.get("id") or id(item)): item for item in items if isinstance(item, dict)}.values())
    if not unread:
        return merged, None
    start, end = min(s[0] for s in unread), max(s[1] for s in unread)
    if late:  # the deadline, not the page budget, stopped the read: say so (the stretch is owed all the same)
        return merged, SourceError(
            status=None, code="DeadlineExceeded",
            message=f"sign-ins from {format_time(start)} to {format_time(end)} are not read yet: {late}; the next "
                    "cycles read them", unread_from=format_time(start), unread_until=format_time(end))
    return merged, SourceError(
        status=None, code="PageLimitReached",
        message=f"sign-ins from {format_time(start)} to {format_time(end)} are not read yet: a cycle reads at most "
                f"{SIGNIN_PAGES_PER_CYCLE} pages to stay inside the function timeout; the next cycles read them",
        unread_from=format_time(start), unread_until=format_time(end))

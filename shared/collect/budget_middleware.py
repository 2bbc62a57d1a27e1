"""The throttling budget, taken where a request leaves: the last step of the HTTP pipeline, right before the transport.

Every attempt passes here, the SDK's retries included (the retry handler sits further out in the pipeline and sends
each attempt through the rest of it), so a retry is counted like any request and waits for its slot as well as for
its Retry-After. The slot is held until the answer's headers have arrived, then counts for the window
(SlidingWindowLimiter). A 429 that still happens shrinks the limiter it came from for a window.

Which limit a request draws on is read from its URL, as Microsoft counts it
(https://learn.microsoft.com/en-us/graph/throttling-limits): `/identity/conditionalAccess/…` the Conditional Access
limit per tenant; `/auditLogs/signIns` and `/auditLogs/directoryAudits` the reports limits (per app per tenant and per
app). A `$batch` is counted by its items ("JSON batching … each request in the batch is evaluated against throttling
limits", https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching). Which tenant, app and budget
apply is the collection's (a context variable set by collect_tenant): the pooled clients are shared by every tenant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from kiota_http.middleware.middleware import BaseMiddleware

from shared.collect.budget import RequestBudget
from shared.collect.deadline import current

CONDITIONAL_ACCESS = "/identity/conditionalaccess/"
REPORTS = ("/auditlogs/signins", "/auditlogs/directoryaudits")


@dataclass(frozen=True)
class Collection:
    budget: RequestBudget
    tenant_id: str
    app_id: str


_COLLECTION: ContextVar[Collection | None] = ContextVar("authwatch_collection_budget", default=None)


@contextmanager
def budgeted(budget: RequestBudget | None, tenant_id: str, app_id: str) -> Iterator[None]:
    """Run the body (and the tasks it creates) with `budget` for this tenant and app; None: no budget."""
    token = _COLLECTION.set(Collection(budget, tenant_id, app_id) if budget is not None else None)
    try:
        yield
    finally:
        _COLLECTION.reset(token)


def classify(path: str) -> str | None:
    """'ca', 'reports' or None (not limited by a budget authwatch keeps) for a Graph path."""
    lowered = path.lower()
    if CONDITIONAL_ACCESS in lowered:
        return "ca"
    if any(lowered.rstrip("/").endswith(report) or f"{report}?" in lowered or f"{report}/" in lowered
           for report in REPORTS):
        return "reports"
    return None


def _batch_classes(request: httpx.Request) -> list[str]:
    try:
        items = json.loads(request.content or b"{}").get("requests", [])
    except (ValueError, AttributeError, httpx.RequestNotRead):
        return []
    return [kind for item in items if isinstance(item, dict) and isinstance(item.get("url"), str)
            for kind in [classify(item["url"])] if kind]


def classes_of(request: httpx.Request) -> list[str]:
    path = urlsplit(str(request.url)).path
    if request.method == "POST" and path.rstrip("/").endswith("/$batch"):
        return _batch_classes(request)
    kind = classify(path)
    return [kind] if kind else []


class BudgetMiddleware(BaseMiddleware):
    """Takes the request's budget slots right before it leaves and releases them when its answer is in."""

    async def send(self, request: httpx.Request, transport: httpx.AsyncBaseTransport) -> httpx.Response:
        collection = _COLLECTION.get()
        kinds = classes_of(request) if collection is not None else []
        if not kinds or collection is None:
            return await super().send(request, transport)
        deadline = current()
        limiters = []
        for kind in kinds:
            if kind == "ca":
                limiters.append(collection.budget.conditional_access_limiter(collection.tenant_id))
            else:
                limiters.extend(collection.budget.reports_limiters(collection.tenant_id, collection.app_id))
        async with AsyncExitStack() as held:
            # The tenant's own slot first: waiting for it must not hold a fleet-wide slot idle.
            for limiter in limiters:
                await held.enter_async_context(limiter.slot(deadline))
            response = await super().send(request, transport)
        if response.status_code == 429:
            for limiter in limiters:
                limiter.throttled()
        return response

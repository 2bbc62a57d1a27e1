"""Collect one tenant into a TenantSnapshot: every source concurrently, each failure recorded, nothing raised."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from shared.collect import exchange, graph
from shared.collect.budget import RequestBudget
from shared.collect.budget_middleware import budgeted
from shared.collect.connection import EXCHANGE_SCOPE, GRAPH_SCOPE, ConnectionPools, TenantAccess
from shared.collect.deadline import DEFAULT_TENANT_DEADLINE_S, BoundedCredential, Deadline, applied
from shared.collect.endpoints import MicrosoftEndpoints
from shared.collect.errors import token_error, transport_error
from shared.model import SourceError, TenantSnapshot, parse_time_or_none

log = logging.getLogger("authwatch")

# How long cancelled reads get to unwind after the deadline (closing a response, a connection): cancellation is
# immediate in practice; this only keeps a misbehaving library from holding the collection.
CANCEL_GRACE_S = 2.0

# First look at a tenant: two enforcement windows' worth of sign-ins, so a gap after a recent block shows.
DEFAULT_LOOKBACK = timedelta(hours=48)


def graph_client(credential: Any, endpoints: MicrosoftEndpoints, http: httpx.AsyncClient) -> Any:
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphServiceClient
    from msgraph.graph_request_adapter import GraphRequestAdapter

    host = httpx.URL(endpoints.graph).host
    # CAE off: the up-front token request has no CAE claim either, so both share one cached token (2 token
    # requests per tenant per cycle instead of one per concurrent Graph read).
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host],
                                               is_cae_enabled=False)
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = endpoints.graph
    return GraphServiceClient(request_adapter=adapter)


async def fetch_token(credential: Any, scope: str) -> tuple[str | None, SourceError | None]:
    """The token for `scope`; `credential` is a BoundedCredential in a collection, so this ends within the client
    timeout (TokenTimeout) and the deadline (DeadlineExceeded)."""
    try:
        return (await credential.get_token(scope)).token, None
    except Exception as error:  # noqa: BLE001 - a tenant that refuses us is a result, not a crash
        return None, token_error(error)


@dataclass(frozen=True)
class CollectionHints:
    """What the stored state already knows, so a collection asks only for what can matter (platform limits).

    Conditional Access audits are read only when something changed that needs attributing: a policy created or
    modified since the watermark, a legacy-auth block policy gone, or security defaults flipped. None of these
    known (first look): audits are read."""

    known_block_policy_ids: frozenset[str] | None = None
    security_defaults: bool | None = None


def _audits_needed(graph_data: dict[str, Any], hints: CollectionHints | None, since: datetime) -> bool:
    if hints is None or hints.known_block_policy_ids is None:
        return True
    policies = graph_data.get("conditionalAccessPolicies")
    if not isinstance(policies, list):
        return True
    for policy in policies:
        changed = parse_time_or_none(policy.get("modifiedDateTime")) if isinstance(policy, dict) else None
        created = parse_time_or_none(policy.get("createdDateTime")) if isinstance(policy, dict) else None
        if any(moment is not None and moment >= since for moment in (changed, created)):
            return True
    present = {str(policy.get("id")) for policy in policies if isinstance(policy, dict)}
    if not hints.known_block_policy_ids <= present:
        return True  # a blocking policy was deleted: who did it is in the audit log
    defaults = graph_data.get("securityDefaults")
    now_on = defaults.get("isEnabled") if isinstance(defaults, dict) else None
    return hints.security_defaults is not None and now_on is not None and now_on != hints.security_defaults


async def _collect_graph(credential: Any, access: TenantAccess, endpoints: MicrosoftEndpoints,
                         http: httpx.AsyncClient, since: datetime, hints: CollectionHints | None,
                         graph_data: dict[str, Any], errors: dict[str, SourceError],
                         backlog: tuple[datetime, datetime] | None = None) -> None:
    # Ask for the token once up front: if the tenant refuses us, every Graph source fails the same way.
    token, failure = await fetch_token(credential, GRAPH_SCOPE)
    if failure or token is None:
        errors.update({f"graph.{source.name}": failure for source in graph.GRAPH_SOURCES if failure})
        return
    client = graph_client(credential, endpoints, http)
    # The throttling budget is taken by the HTTP pipeline as each request leaves (budget_middleware.py).

    def keep(name: str, value: Any, error: SourceError | None) -> None:
        if error:
            errors[f"graph.{name}"] = error
        if not error or error.partial:  # a read cut short keeps what it read, next to the stretch it did not
            graph_data[name] = value

    def read(name: str) -> Any:
        return graph.read_source(client, graph.SOURCES_BY_NAME[name], since)

    # Sign-ins do not depend on the configuration, so they queue for the fleet's reports budget (the binding limit)
    # while the $batch is in flight; audits do, since they are read only when a change needs attributing.
    sign_ins = asyncio.ensure_future(graph.read_signins(client, since, backlog))
    try:
        for name, (value, error) in (await graph.read_batch(client, http, endpoints.graph, token)).items():
            keep(name, value, error)
        if _audits_needed(graph_data, hints, since):
            keep("directoryAudits", *(await read("directoryAudits")))
        keep("signIns", *(await sign_ins))
    finally:
        sign_ins.cancel()  # a no-op once done; stops an orphaned read if the batch raised


async def _collect_exchange(credential: Any, access: TenantAccess, endpoints: MicrosoftEndpoints,
                            http: httpx.AsyncClient, exchange_data: dict[str, Any],
                            errors: dict[str, SourceError]) -> None:
    token, failure = await fetch_token(credential, EXCHANGE_SCOPE)
    if failure or token is None:
        errors.update({f"exchange.{source.name}": failure for source in exchange.EXCHANGE_SOURCES if failure})
        return

    async def read(source: exchange.ExchangeSource) -> None:
        # Kept as each answer arrives: a cmdlet still outstanding at the deadline costs only its own source.
        value, error = await exchange.read_source(http, endpoints.exchange, access.tenant_id, token, source)
        if error:
            errors[f"exchange.{source.name}"] = error
        else:
            exchange_data[source.name] = value

    await asyncio.gather(*(read(source) for source in exchange.EXCHANGE_SOURCES))


async def collect_tenant(access: TenantAccess, endpoints: MicrosoftEndpoints, *, now: datetime,
                         since: datetime | None = None, http: httpx.AsyncClient | None = None,
                         budget: RequestBudget | None = None, hints: CollectionHints | None = None,
                         pools: ConnectionPools | None = None,
                         backlog: tuple[datetime, datetime] | None = None,
                         deadline: Deadline | None = None) -> TenantSnapshot:
    """One live snapshot of a tenant. `pools` (or just `http`) lets a fleet share its connection pools; `now`
    stamps the snapshot; sign-ins and audits are read from `since` (the watermark; default: the last
    DEFAULT_LOOKBACK); `backlog` is a stretch of sign-ins an earlier cycle did not reach (read after the new ones).

    Returns by `deadline` (default: DEFAULT_TENANT_DEADLINE_S from now) whatever Microsoft does: no Retry-After,
    budget or token wait is started that would end past it, and what is still outstanding when it passes is given
    up. A source not read in time is its DeadlineExceeded error; the others keep what they read."""
    since = since or now - DEFAULT_LOOKBACK
    deadline = deadline or Deadline.after(DEFAULT_TENANT_DEADLINE_S)
    own_http = http is None and pools is None
    if http is not None:
        exchange_http = http
    elif pools is not None:
        http, exchange_http = pools.http(access.tenant_id), pools.exchange_http(access.tenant_id)
    else:
        http, exchange_http = _new_http(endpoints)
    # The pools lend the tenant's kept credential (its cached tokens serve every cycle within their lifetime).
    credential = BoundedCredential(pools.credential(access) if pools else access.credential(endpoints),
                                   endpoints.timeout_s, deadline)
    graph_data: dict[str, Any] = {}
    exchange_data: dict[str, Any] = {}
    errors: dict[str, SourceError] = {}
    try:
        # The tasks below copy the context: their retries see this deadline, their requests this budget.
        with applied(deadline), budgeted(budget, access.tenant_id, access.client_id):
            sides = {
                "graph": asyncio.ensure_future(_collect_graph(credential, access, endpoints, http, since, hints,
                                                              graph_data, errors, backlog)),
                "exchange": asyncio.ensure_future(_collect_exchange(credential, access, endpoints,
                                                                    exchange_http, exchange_data, errors)),
            }
        try:
            await asyncio.wait(sides.values(), timeout=deadline.remaining())
        finally:
            late = [task for task in sides.values() if not task.done()]
            for task in late:
                task.cancel()
            if late:  # let them unwind (close their responses); cancelling is quick, but never wait unbounded
                await asyncio.wait(late, timeout=CANCEL_GRACE_S)
        for side, task in sides.items():
            _settle(side, task, graph_data if side == "graph" else exchange_data, errors, deadline)
    finally:
        await credential.close()
        if own_http:
            await exchange_http.aclose()
            await http.aclose()
    return TenantSnapshot(
        tenant_id=access.tenant_id,
        collected_at=now,
        settings=dict(access.settings),
        graph=graph_data,
        exchange=exchange_data,
        errors=dict(sorted(errors.items())),
    )


def _settle(side: str, task: asyncio.Future[None], data: dict[str, Any], errors: dict[str, SourceError],
            deadline: Deadline) -> None:
    """Every source of a side that was neither read nor failed gets an error: the side ran out of time, or raised
    (a bug, an answer no code path expected) — recorded, never lost with the other side's data, never a PASS."""
    if task.done() and not task.cancelled() and task.exception() is None:
        return
    if task.done() and not task.cancelled():
        failure = transport_error(task.exception())  # type: ignore[arg-type]
        log.error("collection side failed", extra={"side": side, "error": failure.code},
                  exc_info=task.exception())
    else:
        failure = SourceError(status=None, code="DeadlineExceeded",
                              message=f"not read by the collection deadline ({deadline.seconds:g} s): Microsoft's "
                                      "answer (or a wait for it) was still outstanding, so it was given up")
    names = [s.name for s in graph.GRAPH_SOURCES] if side == "graph" else [s.name for s in exchange.EXCHANGE_SOURCES]
    for name in names:
        key = f"{side}.{name}"
        if key not in errors and name not in data:
            errors[key] = failure


def _new_http(endpoints: MicrosoftEndpoints) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    from shared.collect.connection import http_clients

    return http_clients(endpoints)

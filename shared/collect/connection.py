"""Where Microsoft lives and how authwatch signs in to one tenant: the real azure-identity and httpx stack.

Production talks to login.microsoftonline.com, graph.microsoft.com and outlook.office365.com; the simulator replaces
all three with one https://127.0.0.1 address and a throw-away CA, which is why every endpoint is a setting.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import os
import zlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from shared.collect.asyncio_backend import asyncio_transport
from shared.collect.budget_middleware import BudgetMiddleware
from shared.collect.credentials import CredentialError, CredentialSpec, UnavailableCredential, build_credential
from shared.collect.deadline import DeadlineRetryHandler
from shared.collect.endpoints import MicrosoftEndpoints

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
# Each tenant's tokens are kept by the process's pools (per event loop, see ConnectionPools.credential) for the next
# cycles: an Entra access token lives 60-90 minutes (75 on average) and is used until shortly before it expires, so a
# tenant evaluated every 15 minutes asks Entra for its two tokens (Graph, Exchange) about once in five cycles instead
# of every cycle. At most this many tenants' tokens are kept.
#   https://learn.microsoft.com/entra/identity-platform/access-tokens#token-lifetime
#   https://learn.microsoft.com/python/api/overview/azure/identity-readme#token-caching
MAX_KEPT_CREDENTIALS = 2_000
# How long an idle pooled connection is kept. httpx's default (5 s) is shorter than the gap between one shard's
# tenants in a budget-paced cycle, so most tenants opened a new TLS connection (~1 handshake per tenant, ~7 % of a
# steady cycle's CPU at 1,000 tenants). 30 s stays under the idle timeouts of the front ends on the way to Microsoft
# (Azure Load Balancer's default is 4 minutes; Microsoft documents none for Graph or Exchange), and a connection the
# server closes sooner is not reused: httpcore tests an idle connection for a server-side close before each use.
#   https://learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout
#   https://www.python-httpx.org/advanced/resource-limits/
KEEPALIVE_EXPIRY_S = 30.0


@dataclass(frozen=True)
class TenantAccess:
    """One customer tenant and how authwatch signs in to read it.

    Either the legacy explicit `client_secret` (the demo, tests, `authwatch collect`) or a `credential_spec` from the
    tenant registry, resolved against `env` (the app settings) when `credential()` is called. The secret, the env
    mapping and the assertion provider are kept out of repr and comparisons.
    """

    tenant_id: str
    client_id: str = ""
    client_secret: str | None = field(default=None, repr=False)  # never printed: repr hides it
    display_name: str = ""
    settings: dict = field(default_factory=dict)
    credential_spec: CredentialSpec | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    assertion_provider: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.credential_spec is not None:
            if self.client_secret is not None:
                raise ValueError(f"tenant {self.tenant_id}: give either client_secret or credential_spec, not both")
            if not self.client_id:
                object.__setattr__(self, "client_id", self.credential_spec.client_id)
            elif self.client_id.lower() != self.credential_spec.client_id.lower():
                raise ValueError(f"tenant {self.tenant_id}: client_id differs from credential_spec.client_id")

    def credential_key(self) -> tuple[Any, ...] | None:
        """What this tenant's credential is made of, so a kept one is reused only while that stays the same: the
        tenant, the spec (or client id) and a digest of the material its setting resolves to (never the material).
        None when that cannot be told (an assertion provider from the caller): then it is built for each use."""
        if self.assertion_provider is not None:
            return None
        spec = self.credential_spec
        if spec is None:
            return (self.tenant_id, self.client_id, _digest(self.client_secret)) if self.client_secret else None
        setting = spec.secret_setting or spec.certificate_setting
        value = self.env.get(setting) if setting else None
        if value and spec.mode == "certificate" and len(value) < 1024 and os.path.isfile(value):
            value += f"@{os.stat(value).st_mtime_ns}"  # a certificate file replaced in place is a new credential
        return (self.tenant_id, spec, _digest(value))

    def credential(self, endpoints: MicrosoftEndpoints, transport: Any = None) -> AsyncTokenCredential:
        """The async credential to use (and close) for one collection.

        Never raises for a credential that cannot be built (missing app setting, unreadable certificate, no
        credential at all): it returns a stand-in whose get_token raises `CredentialMisconfigured` with the reason,
        so `collect_tenant` records it as a token failure of every source. `transport` (from `ConnectionPools`)
        lets token requests share one connection pool instead of a new session per tenant.
        """
        if self.credential_spec is not None:
            try:
                return build_credential(self.tenant_id, self.credential_spec, endpoints, self.env,
                                        assertion_provider=self.assertion_provider, transport=transport)
            except CredentialError as error:
                return UnavailableCredential(f"credential ({self.credential_spec.mode}): {error}")
        if not self.client_secret:
            return UnavailableCredential("no credential configured for this tenant (no client secret, no "
                                         "credential spec)")
        from azure.identity.aio import ClientSecretCredential  # here: azure-identity is not needed to import the app

        options: dict[str, Any] = {"transport": transport} if transport is not None else (
            {"connection_verify": endpoints.ca_bundle} if endpoints.ca_bundle else {})
        return ClientSecretCredential(
            self.tenant_id, self.client_id, self.client_secret, authority=endpoints.authority, **options
        )


def _digest(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


# azure-identity asks Entra again when a cached token has less than this left (its default refresh offset).
#   https://learn.microsoft.com/python/api/azure-core/azure.core.credentials.accesstokeninfo (refresh_on)
REFRESH_BEFORE_S = 300


class _KeptTokens:
    """A tenant's tokens kept across cycles, with no credential object kept alive between them.

    A kept azure-identity credential cost ~36 KB of memory before its first token (its pipeline, its MSAL client):
    36 MB per 1,000 tenants, most of a worker's growth. Here only the tokens stay (a few KB); the credential is
    built, asked and closed when a token is missing or within REFRESH_BEFORE_S of expiring, about once in five
    cycles. A request with `claims` (a Continuous Access Evaluation challenge) always goes to Entra."""

    def __init__(self, access: TenantAccess, key: tuple[Any, ...], pools: ConnectionPools) -> None:
        self._access, self._key, self._pools = access, key, pools

    async def _token(self, method: str, scopes: tuple[str, ...], kwargs: dict[str, Any]) -> Any:
        kept = self._pools._current().tokens
        entry = (self._key, method, scopes, kwargs.get("enable_cae", False))
        token = kept.get(self._access.tenant_id, {}).get(entry) if not kwargs.get("claims") else None
        if token is not None and token.expires_on - time.time() > REFRESH_BEFORE_S:
            kept.move_to_end(self._access.tenant_id)
            return token
        credential = self._access.credential(self._pools.endpoints, transport=self._pools.token_transport())
        try:
            token = await getattr(credential, method)(*scopes, **kwargs)
        finally:
            await credential.close()  # its transport is the shared session, which stays open
        tenant = {k: v for k, v in kept.pop(self._access.tenant_id, {}).items() if k[0] == self._key}
        tenant[entry] = token  # a changed spec or secret leaves the old key's tokens behind, unused: dropped here
        kept[self._access.tenant_id] = tenant
        while len(kept) > MAX_KEPT_CREDENTIALS:
            kept.popitem(last=False)
        return token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await self._token("get_token", scopes, kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return await self._token("get_token_info", scopes, {"options": options} if options else {})

    async def close(self) -> None:
        return None


def http_clients(endpoints: MicrosoftEndpoints,
                 limits: httpx.Limits | None = None) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """Two pooled HTTP clients over one set of connections: Graph's and Exchange's.

    Graph's has msgraph's default middleware, whose retry (honouring Retry-After) is the deadline-aware one: a wait
    past the collection's deadline is not slept (see deadline.py), and the throttling budget's middleware last, so
    every attempt takes its slot as it leaves. Exchange's keeps only what an InvokeCommand call needs from that
    chain: redirects (Authorization dropped on a host change), the deadline-aware retry, the budget. The rest is the
    Graph SDK's (decoding `%24select` in names its URL templates encode, the `/me` placeholder, SDK version headers,
    inspection options) and cost ~8 % of a steady cycle's CPU for the six cmdlets a tenant runs.
    """
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import RedirectHandler

    transport = _transport(endpoints, limits)
    exchange = KiotaClientFactory.create_with_custom_middleware(
        [RedirectHandler(), DeadlineRetryHandler(), BudgetMiddleware()],
        client=httpx.AsyncClient(transport=_Shared(transport), timeout=endpoints.timeout_s))
    return _graph_client(endpoints, transport), exchange


def _transport(endpoints: MicrosoftEndpoints, limits: httpx.Limits | None) -> httpx.AsyncHTTPTransport:
    return asyncio_transport(endpoints.ssl_context(),
                             limits or httpx.Limits(max_connections=100, max_keepalive_connections=20))


def _graph_client(endpoints: MicrosoftEndpoints, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import RetryHandler
    from msgraph_core import GraphClientFactory
    from msgraph_core.middleware import GraphTelemetryHandler

    # What GraphClientFactory.create_with_default_middleware builds, with the retry handler swapped.
    middleware = [DeadlineRetryHandler() if isinstance(handler, RetryHandler) else handler
                  for handler in KiotaClientFactory.get_default_middleware(None)]
    middleware.append(GraphTelemetryHandler())
    middleware.append(BudgetMiddleware())  # last: the throttling budget is taken as each attempt leaves
    return GraphClientFactory.create_with_custom_middleware(
        middleware, client=httpx.AsyncClient(transport=transport, timeout=endpoints.timeout_s))


def http_client(endpoints: MicrosoftEndpoints, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """One pooled HTTP client with Graph's middleware (for Graph and Exchange alike: a caller's own client)."""
    return _graph_client(endpoints, _transport(endpoints, limits))


class _Shared(httpx.AsyncBaseTransport):
    """The Graph client's transport lent to the Exchange client: closing the Graph client closes it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class _LoopPools:
    """The pools made on one event loop (their sockets belong to it)."""

    def __init__(self) -> None:
        self.http: dict[int, tuple[httpx.AsyncClient, httpx.AsyncClient]] = {}  # shard → (Graph, Exchange)
        self.token_session: Any = None
        # tenant id → {(credential_key, method, scopes, cae): token}, least recently used first
        self.tokens: OrderedDict[str, dict[tuple[Any, ...], Any]] = OrderedDict()

    async def aclose(self) -> None:
        for graph, exchange in self.http.values():
            await exchange.aclose()
            await graph.aclose()
        if self.token_session is not None:
            await self.token_session.close()
        self.http, self.token_session = {}, None
        self.tokens.clear()

    async def close_with_loop(self) -> AsyncGenerator[None, None]:
        # asyncio.run() (a CLI, a test) finalises every suspended async generator before it closes the loop: this
        # one's finally closes the pools there instead of leaving unclosed sockets behind.
        try:
            yield
        finally:
            await self.aclose()


class ConnectionPools:
    """The process's connection pools to Microsoft, shared by every tenant's collection: a few httpx clients for
    Graph and Exchange (a tenant always uses the same one), one aiohttp session for Entra token requests
    (azure-identity's transport).

    Fresh pools per tenant cost a TLS context, a handful of TLS handshakes and pipeline setup each: most of a quiet
    cycle's CPU. One big httpx pool is no better: httpcore scans every queued request against every connection on
    each state change, so its cost grows with the square of the requests in flight. Several small pools keep both
    costs down. Pools are bound to the event loop that made them: each loop gets its own, closed by `aclose()` or
    when that loop is shut down by asyncio.run().
    """

    # Same 128 connections in smaller pools: on every request start and end httpcore also checks each idle
    # connection of the pool for a server-side close (a socket readability test through anyio's extra attributes,
    # the largest single cost in a steady cycle's profile). With 4 connections per pool a tenant's reads mostly fit
    # (the rest wait briefly behind its own). benchmarks.fleet, 200 tenants, steady cycle, monitor CPU per tenant:
    # 8 x 16 → 46-48 ms, 16 x 8 → 39-41 ms, 32 x 4 → 36-37.5 ms; first-cycle wall and ratio unchanged (1.17).
    SHARDS = 32
    CONNECTIONS_PER_SHARD = 4

    def __init__(self, endpoints: MicrosoftEndpoints) -> None:
        self.endpoints = endpoints
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools = _LoopPools()
        self._closer: AsyncGenerator[None, None] | None = None
        self._started: asyncio.Future[None] | None = None

    @classmethod
    def for_process(cls, endpoints: MicrosoftEndpoints) -> ConnectionPools:
        """The host process's pools for these endpoints. Queue-worker invocations share them, so a warm Functions
        instance does not repeat TLS handshakes and token-session setup for every tenant it evaluates."""
        return _PROCESS_POOLS.setdefault(endpoints, cls(endpoints))

    def _current(self) -> _LoopPools:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._pools = loop, _LoopPools()
            # Started here so the loop registers it; kept referenced because the loop only holds it weakly.
            self._closer = self._pools.close_with_loop()
            self._started = asyncio.ensure_future(anext(self._closer))
        return self._pools

    def http(self, tenant_id: str = "") -> httpx.AsyncClient:
        """The Graph client of the tenant's shard."""
        return self._shard(tenant_id)[0]

    def exchange_http(self, tenant_id: str = "") -> httpx.AsyncClient:
        """The Exchange client of the tenant's shard (same connections as its Graph client, leaner middleware)."""
        return self._shard(tenant_id)[1]

    def _shard(self, tenant_id: str) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        pools = self._current()
        shard = zlib.crc32(tenant_id.encode()) % self.SHARDS
        if shard not in pools.http:
            limits = httpx.Limits(max_connections=self.CONNECTIONS_PER_SHARD,
                                  max_keepalive_connections=self.CONNECTIONS_PER_SHARD,
                                  keepalive_expiry=KEEPALIVE_EXPIRY_S)
            pools.http[shard] = http_clients(self.endpoints, limits)
        return pools.http[shard]

    def token_transport(self) -> Any:
        """An azure-core transport over the shared session that a credential's close() leaves open."""
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        pools = self._current()
        if pools.token_session is None:
            # The connector carries the CA to trust, so the transport verifies with it (connection_verify=True).
            connector = aiohttp.TCPConnector(ssl=self.endpoints.ssl_context(), limit=64)
            # As azure-core makes its own sessions: no cookies, proxies from the environment, no auto-decompression.
            pools.token_session = aiohttp.ClientSession(connector=connector, trust_env=True,
                                                        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        return AioHttpTransport(session=pools.token_session, session_owner=False)

    def credential(self, access: TenantAccess) -> Any:
        """The tenant's credential for one collection, over the shared token session; close it after use.

        Its tokens are kept per event loop while `access.credential_key()` stays the same, so they serve later cycles
        (at most MAX_KEPT_CREDENTIALS tenants, least recently used dropped); a changed spec or secret asks Entra
        again. A credential that cannot be told apart, or could not be built, keeps nothing."""
        key = access.credential_key()
        if key is None:
            return access.credential(self.endpoints, transport=self.token_transport())
        # A misconfigured one (missing setting, unreadable certificate) is an UnavailableCredential, built again at
        # each token request: its error, every time, and nothing kept.
        return _KeptTokens(access, key, self)

    async def aclose(self) -> None:
        """Close this loop's pools now (a monitor that owns its pools, a benchmark between runs)."""
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            if self._closer is not None and self._started is not None:
                await self._started
                await self._closer.aclose()  # it would otherwise run its finally again when collected
            await self._pools.aclose()
        self._loop, self._pools, self._closer, self._started = None, _LoopPools(), None, None


_PROCESS_POOLS: dict[MicrosoftEndpoints, ConnectionPools] = {}

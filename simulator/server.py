"""The HTTPS server (aiohttp on its own event loop thread) and the public ``Simulator`` facade.

One process-local server plays login.microsoftonline.com, graph.microsoft.com and
outlook.office365.com for every tenant of the scenario, on 127.0.0.1 with a throw-away CA from
``trustme``. Running the loop in a daemon thread lets synchronous tests and async code under test
(with their own loops) talk to it over real TLS.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import trustme
from aiohttp import web

from . import delegated, partner_center, partner_graph
from .exchange import ExoRequest, invoke_command
from .graph import GraphCall, GraphContext, dispatch, graph_error, route
from .state import Fault, SimResponse, SimState
from .tokens import GRAPH_AUD, TokenError, TokenIssuer, openid_configuration, token_endpoint

log = logging.getLogger("simulator")


def _to_web(resp: SimResponse, extra: dict[str, str] | None = None) -> web.Response:
    headers = {**resp.headers, **(extra or {})}
    content_type = headers.pop("Content-Type", "application/json")
    if resp.raw is not None:
        return web.Response(status=resp.status, body=resp.raw, headers={**headers, "Content-Type": content_type})
    if resp.body is None:
        return web.Response(status=resp.status, headers=headers)
    body = json.dumps(resp.body).encode("utf-8")
    return web.Response(status=resp.status, body=body, headers={**headers, "Content-Type": content_type})


class _App:
    """aiohttp handlers: translate HTTP to the transport-independent handlers and record stats."""

    def __init__(self, state: SimState, issuer: TokenIssuer, base_url: str) -> None:
        self.state = state
        self.issuer = issuer
        self.base_url = base_url
        self.graph = GraphContext(state, base_url)
        self.debug = log.isEnabledFor(logging.DEBUG)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[self.latency])
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_post("/{tenant}/oauth2/v2.0/devicecode", self.devicecode)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid)
        app.router.add_post("/adminapi/beta/{tenant}/InvokeCommand", self.exchange)
        app.router.add_route("*", "/v1.0", self.graph_request)
        app.router.add_route("*", "/v1.0/{tail:.*}", self.graph_request)
        app.router.add_route("*", "/v1/customers/{tail:.*}", self.partner_center)  # Partner Center's paths
        app.router.add_route("*", "/{tail:.*}", self.fallback)
        return app

    def _record(self, key: str, tenant: str | None, request: web.Request, status: int,
                throttled: bool = False) -> None:
        self.state.record(key, tenant, request.method, request.path, request.query_string, status, throttled)
        if self.debug:  # checked once at start-up: no logging work on the hot path unless -v
            log.debug("%s %s -> %s (%s, tenant=%s)", request.method, request.path, status, key, tenant)

    @web.middleware
    async def latency(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """The scenario's ``latencyMs``, once per HTTP request (a $batch is one round trip), before the
        request is served; asyncio.sleep, so concurrent requests overlap as they do against the cloud."""
        delay = self.state.latency
        if delay > 0:
            await asyncio.sleep(delay)
        return await handler(request)

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        tenant_ref = request.match_info["tenant"]
        # The operator's delegated grants (device code, refresh token: simulator/delegated.py) or client credentials.
        serve = delegated.token if delegated.handles(form) else token_endpoint
        tid, resp = serve(self.state, self.issuer, tenant_ref, form, self.base_url,
                          request.headers.get("client-request-id"))
        fault = self.state.take_fault(tid, "token") or self.state.take_partner_fault(tid, "token")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                resp = _token_fault(fault, resp)
        self._record("token", tid, request, resp.status)
        return _to_web(resp)

    async def devicecode(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        tid, resp = delegated.device_code(self.state, self.issuer, request.match_info["tenant"], form, self.base_url,
                                          request.headers.get("client-request-id"))
        self._record("devicecode", tid, request, resp.status)
        return _to_web(resp)

    async def partner_center(self, request: web.Request) -> web.Response:
        key, tid, resp = await partner_center.handle(self.state, self.issuer, request.method, request.path,
                                                     request.headers.get("Authorization"), await request.read())
        self._record(key, tid, request, resp.status)
        return _to_web(resp)

    async def openid(self, request: web.Request) -> web.Response:
        with self.state.lock:
            tenant = self.state.tenant(request.match_info["tenant"])
        self._record("openid", tenant["tenantId"] if tenant else None, request, 200)
        return web.json_response(openid_configuration(self.base_url, request.match_info["tenant"]))

    async def graph_request(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info.get("tail", "")
        crid = request.headers.get("client-request-id")
        key = route(request.method, path)[0]
        onboarding = partner_graph.route_key(request.method, path)  # the MSP's GDAP endpoints (partner_graph.py)
        key = onboarding or key
        echo = {"request-id": _uuid(), "client-request-id": crid or _uuid()}
        try:
            claims = self.issuer.verify(request.headers.get("Authorization"), GRAPH_AUD)
        except TokenError as exc:
            resp = graph_error(401, "InvalidAuthenticationToken", str(exc), crid)
            resp.headers["WWW-Authenticate"] = 'Bearer realm="", authorization_uri="", client_id=""'
            self._record(key, None, request, 401)
            return _to_web(resp, echo)
        tid = str(claims.get("tid"))
        user = claims.get("idtyp") == "user"  # the MSP operator's delegated token: partner_graph checks it
        with self.state.lock:
            tenant = self.state.tenant(tid)
            revoked = not user and (tenant is None or tenant["consent"] is False)
        if revoked:
            # Consent revocation takes effect immediately here (real Entra lets issued tokens live on),
            # so tests can flip `consent` and see the very next call fail.
            resp = graph_error(401, "InvalidAuthenticationToken",
                               "Access token validation failure: the application has no service principal in this "
                               "tenant.", crid)
            self._record(key, tid if tenant else None, request, 401)
            return _to_web(resp, echo)
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    resp = graph_error(400, "BadRequest", "Unable to read JSON request payload.", crid)
                    self._record(key, tid, request, 400)
                    return _to_web(resp, echo)
        call = GraphCall(tid, request.method, path, dict(request.query), body, client_request_id=crid,
                         app_id=claims.get("appid"))
        if user or onboarding:
            key, resp = await partner_graph.dispatch(self.graph, call, claims)
        else:
            key, resp = await dispatch(self.graph, call)
        self._record(key, tid, request, resp.status, resp.throttled)
        return _to_web(resp, echo)

    async def exchange(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = ExoRequest(request.match_info["tenant"], request.headers.get("Authorization"), body,
                         dict(request.query), request.headers.get("Prefer"))
        key, tid, resp = await invoke_command(self.state, self.issuer, self.base_url, req)
        self._record(key, tid, request, resp.status, resp.throttled)
        return _to_web(resp)

    async def fallback(self, request: web.Request) -> web.Response:
        resp = graph_error(404, "Request_ResourceNotFound", f"The simulator does not serve '{request.path}'.")
        self._record("unknown", None, request, 404)
        return _to_web(resp)


def _token_fault(fault: Fault, normal: SimResponse) -> SimResponse:
    if fault.raw_body is not None:
        resp = SimResponse(fault.status, None, {"Content-Type": "application/json"}, raw=fault.raw_body.encode())
    elif fault.has_body:
        resp = SimResponse(fault.status, fault.body, {"Content-Type": "application/json"})
    else:
        # AADSTS90033: "A transient error has occurred. Please try again."
        body = {"error": "temporarily_unavailable",
                "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
                "error_codes": [90033], "timestamp": "", "trace_id": _uuid(), "correlation_id": _uuid(),
                "error_uri": ""}
        resp = SimResponse(fault.status, body, dict(normal.headers))
    if fault.retry_after is not None:
        ra = fault.retry_after
        resp.headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
    return resp


def _uuid() -> str:
    return str(uuid.uuid4())


class Simulator:
    """Local Microsoft cloud for many tenants. See simulator/README.md.

    >>> with Simulator({"app": {...}, "tenants": [...]}) as sim:
    ...     sim.url, sim.graph_url, sim.ca_path
    """

    def __init__(self, scenario: dict[str, Any] | str | Path, port: int = 0) -> None:
        self._state = SimState(scenario)  # validates now, so a bad scenario fails before any I/O
        self._port = port
        self._issuer = TokenIssuer()
        self._tmp: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.ca_path = ""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._thread is not None:
            return self
        ca = trustme.CA(organization_name="authwatch simulator")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.mkdtemp(prefix="authwatch-sim-")
        ca_file = Path(self._tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self.ca_path = str(ca_file)
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ssl_ctx)

        # Bind here (not in the thread) so the port is known and bind errors surface in the caller.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self.url = f"https://127.0.0.1:{sock.getsockname()[1]}"

        ready = threading.Event()
        errors: list[BaseException] = []
        app = _App(self._state, self._issuer, self.url).build()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock, ssl_context=ssl_ctx, backlog=1024).start())
                self._runner = runner
            except BaseException as exc:  # report to start() instead of dying silently in the thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="authwatch-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread = None
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise errors[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ssl_context(self) -> ssl.SSLContext:
        """A client-side SSLContext trusting only the simulator's CA (for httpx ``verify=``)."""
        return ssl.create_default_context(cafile=self.ca_path)

    # -- properties -----------------------------------------------------------------------------
    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def request_counts(self) -> collections.Counter[str]:
        with self._state.lock:
            return collections.Counter(self._state.counts)

    @property
    def throttled_counts(self) -> collections.Counter[str]:
        """429s produced by the scenario's ``limits`` (not by injected faults), by endpoint key (snapshot)."""
        with self._state.lock:
            return collections.Counter(self._state.throttled_counts)

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        return self._state.log_entries()

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        """Messages accepted by ``POST /v1.0/users/{id}/sendMail`` (newest last)."""
        with self._state.lock:
            return json.loads(json.dumps(self._state.sent_mail))

    @property
    def scenario(self) -> dict[str, Any]:
        """A deep copy of the current (normalised) scenario, including fault countdowns."""
        with self._state.lock:
            return json.loads(json.dumps(self._state.scenario))

    # -- mutation -------------------------------------------------------------------------------
    def update_tenant(self, tenant_id: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        """Mutate one tenant atomically; the next request sees the change. Raises KeyError/ValueError."""
        self._state.update_tenant(tenant_id, fn)

    def set_scenario(self, scenario: dict[str, Any] | str | Path) -> None:
        self._state.set_scenario(scenario)

    def reset_stats(self) -> None:
        """Clear request_counts, throttled_counts, requests_log and sent_mail (e.g. between phases of a test).
        The throttling windows are service state, not statistics: see reset_limits()."""
        self._state.reset_stats()

    def reset_limits(self) -> None:
        """Forget every throttling window (as if no request had been made for a long time)."""
        self._state.reset_limits()

"""`authwatch serve [--port N] [--demo]`: the dashboard and the read API on 127.0.0.1, without Azure Functions.

The pages are the ones the function app serves (shared/views/web); the JSON routes call the same service functions as
functions/http_api.py (shared/views/api.py), so local and deployed answers are the same, not a second implementation.

Storage comes from AUTHWATCH_STORAGE_CONNECTION_STRING (or AzureWebJobsStorage). `--demo` starts Azurite and the
simulator instead and serves the demo fleet after its two cycles (shared/cli/demo_data.py tells that story).

Any web page open in the operator's browser can send requests to 127.0.0.1, so (shared/views/guard.py): only Host
headers naming the bound address are answered (no DNS rebinding); the actions (baseline accept, alert ack/snooze)
refuse another origin, need a JSON body and the run's token in `X-Authwatch-Token`. The token is made at start,
rendered into the dashboard page (which sends it with its own fetches) and printed for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

from shared.cli.demo_data import running_demo
from shared.cli.errors import UsageError
from shared.model import format_time

log = logging.getLogger("authwatch.serve")

DEFAULT_PORT = 8710
HOST = "127.0.0.1"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve", help="serve the dashboard and the read API on 127.0.0.1",
        description="Serve the dashboard (fleet and tenant views) and the JSON API locally, from the storage account "
                    "in AUTHWATCH_STORAGE_CONNECTION_STRING, or from the demo fleet with --demo.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N",
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--demo", action="store_true",
                        help="start Azurite and the simulator and evaluate the demo fleet first (no Azure needed)")
    parser.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    parser.set_defaults(run=run)


# --- the local server ---------------------------------------------------------------------------------------------

class DashboardServer:
    """The dashboard page and the read API on 127.0.0.1 (aiohttp). Each JSON route decodes its request and calls one
    function of shared/views/api.py, mapping errors as the function app does (BadRequest → 400, LookupError → 404).

    `clock` is the API's notion of now (the demo's simulated clock with --demo). Run it in the foreground with
    `serve_forever()`, or in a background thread with start()/stop() (tests)."""

    def __init__(self, env: Mapping[str, str], *, port: int = DEFAULT_PORT,
                 clock: Callable[[], datetime] | None = None, source: str = "") -> None:
        self.env = dict(env)
        self.port = port
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.source = source
        self.token = secrets.token_urlsafe(32)  # this run's: state-changing routes need it (shared/views/guard.py)
        self.fleet: Any = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- lifecycle
    async def start_async(self) -> str:
        from aiohttp import web

        from shared.bootstrap import build_fleet
        from shared.settings import SettingsError

        try:
            self.fleet = build_fleet(self.env)
        except SettingsError as error:
            raise UsageError(f"{error}: set it to your storage account's connection string (the one the function app "
                             "uses), or try `authwatch serve --demo`") from None
        try:
            await asyncio.wait_for(self.fleet.create(), timeout=30)
        except Exception as error:  # noqa: BLE001 - any failure here means the same thing to the user
            await self.fleet.close()
            raise UsageError(f"cannot reach the storage account ({type(error).__name__}: {_first_line(error)}); "
                             "check AUTHWATCH_STORAGE_CONNECTION_STRING, or try `authwatch serve --demo`") from None
        from shared.views.api import MAX_BODY_BYTES  # the function app's limit too

        application = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard()])
        self._routes(application)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port)
        try:
            await site.start()
        except OSError as error:
            await self.stop_async()
            raise UsageError(f"cannot listen on {HOST}:{self.port} ({error.strerror or error}); pick another port "
                             "with --port N (0 picks a free one)") from None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the real port for --port 0
        return self.url

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.fleet is not None:
            await self.fleet.close()
            self.fleet = None

    async def serve_forever(self, ready: Callable[[str], None] = lambda url: None) -> None:
        ready(await self.start_async())
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop_async()

    def start(self, timeout: float = 60) -> DashboardServer:
        """Serve from a background thread (its own event loop); returns once the server answers."""
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as error:  # noqa: BLE001 - handed to the caller of start()
                self._failure = error
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=main, name="authwatch-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("authwatch serve did not start in time")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a browser may not do (shared/views/guard.py)
    def _guard(self) -> Callable:
        from aiohttp import web

        from shared.views import guard

        @web.middleware
        async def check(request: web.Request, handler: Callable) -> web.StreamResponse:
            try:
                guard.check_host(request.headers.get("Host"), guard.allowed_hosts(HOST, self.port))
                if request.method in guard.STATE_CHANGING:
                    guard.check_same_origin(request.headers, [request.headers.get("Host")])
                    try:
                        body = await request.read()
                    except web.HTTPRequestEntityTooLarge:
                        from shared.views.api import MAX_BODY_BYTES

                        raise guard.Refused(413, f"the request body is over {MAX_BODY_BYTES} bytes") from None
                    guard.check_json(request.headers.get("Content-Type"), body)
                    guard.check_token(request.headers.get(guard.TOKEN_HEADER), self.token)
            except guard.Refused as refused:
                log.warning("refused %s %s: %s", request.method, request.path, refused.message,
                            extra={"path": request.path, "status": refused.status})
                return web.json_response({"error": refused.message}, status=refused.status)
            return await handler(request)

        return check

    # -- routes
    def _routes(self, application: Any) -> None:
        from aiohttp import web

        from shared.views import api, tenants_admin
        from shared.views.report_route import Download, report_download

        async def page(request: web.Request) -> web.Response:
            from shared.views.web import render_page

            body, headers = render_page("/api/", source=self.source, token=self.token)
            return web.Response(text=body, headers={k: v for k, v in headers.items() if k != "Content-Type"},
                                content_type="text/html", charset="utf-8")

        async def home(request: web.Request) -> web.Response:
            raise web.HTTPFound("/dashboard")

        def tenant(request: web.Request) -> str:
            return api.tenant_id_from(request.match_info.get("tenantId"))

        async def list_tenants(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, {"tenants": await tenants_admin.list_tenants(self.fleet, now=datetime.now(timezone.utc))}

        async def get_tenant(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.tenant_detail(self.fleet, tenant(request), now=now,
                                                history_limit=_limit(request.query, "history", 50))

        async def tenant_results(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.tenant_results(self.fleet, tenant(request))

        async def tenant_history(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, {"events": await api.tenant_history(self.fleet, tenant(request),
                                                            limit=_limit(request.query, "limit", 50))}

        async def tenant_timeline(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.tenant_timeline(self.fleet, tenant(request), now=now,
                                                  limit=_limit(request.query, "limit", 100))

        async def tenant_exceptions(request: web.Request, now: datetime) -> tuple[int, Any]:
            from shared.views.exceptions_api import list_exceptions

            return 200, await list_exceptions(self.fleet, tenant(request), now=now)

        async def accept_baseline(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.accept_tenant_baseline(self.fleet, tenant(request))

        async def acknowledge_alert(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.acknowledge_alert(self.fleet, tenant(request), request.match_info["alertId"],
                                                    await _body(request), now=now)

        async def snooze_alert(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await api.snooze_alert(self.fleet, tenant(request), request.match_info["alertId"],
                                               await _body(request), now=now)

        async def report(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 200, await report_download(self.fleet, request.query, now=now)

        async def onboarding(request: web.Request, now: datetime) -> tuple[int, Any]:
            from shared.views.onboarding_view import onboarding_overview

            return 200, await onboarding_overview(self.fleet)

        async def unknown(request: web.Request, now: datetime) -> tuple[int, Any]:
            return 404, {"error": f"no route {request.method} {request.path} in `authwatch serve` (it answers the "
                                  "dashboard's read routes, baseline accept and alert ack/snooze; adding tenants, "
                                  "evaluate-now and changing exceptions need the function app or `authwatch "
                                  "exceptions`)"}

        def json_route(handler: Callable[[web.Request, datetime], Awaitable[tuple[int, Any]]]) -> Callable:
            async def respond(request: web.Request) -> web.Response:
                started = time.monotonic()
                status = 500
                try:
                    status, body = await handler(request, self.clock())
                except api.BadRequest as error:
                    status, body = 400, {"error": str(error)}
                except LookupError as error:
                    status, body = 404, {"error": str(error).strip("'\"")}
                except Exception as error:  # noqa: BLE001 - answered as JSON, logged with its traceback
                    log.exception("request failed", extra={"path": request.path})
                    body = {"error": f"internal error: {type(error).__name__}: {_first_line(error)} (the terminal "
                                     "running `authwatch serve` has the details)"}
                log.info("request", extra={"path": request.path, "status": status,
                                           "duration_ms": round((time.monotonic() - started) * 1000)})
                if isinstance(body, Download):
                    return web.Response(text=body.content, status=status, content_type=body.media_type.split(";")[0],
                                        charset="utf-8", headers={"Content-Disposition": body.disposition})
                return web.json_response(body, status=status)
            return respond

        base = "/api/tenants/{tenantId}"
        application.router.add_get("/", home)
        application.router.add_get("/dashboard", page)
        application.router.add_get("/api/dashboard", page)
        application.router.add_get("/api/tenants", json_route(list_tenants))
        application.router.add_get(base, json_route(get_tenant))
        application.router.add_get(base + "/results", json_route(tenant_results))
        application.router.add_get(base + "/history", json_route(tenant_history))
        application.router.add_get(base + "/timeline", json_route(tenant_timeline))
        application.router.add_get(base + "/exceptions", json_route(tenant_exceptions))
        application.router.add_get("/api/report", json_route(report))
        application.router.add_get("/api/onboarding", json_route(onboarding))
        application.router.add_post(base + "/baseline/accept", json_route(accept_baseline))
        application.router.add_post(base + "/alerts/{alertId}/ack", json_route(acknowledge_alert))
        application.router.add_post(base + "/alerts/{alertId}/snooze", json_route(snooze_alert))
        application.router.add_route("*", "/api/{tail:.*}", json_route(unknown))


def _limit(query: Mapping[str, str], name: str, default: int) -> int:
    """The same bounds as the function app's query parameters (shared.views.api.parse_limit)."""
    from shared.views.api import parse_limit

    return parse_limit(query.get(name), name, default)


async def _body(request: Any) -> Any:
    from shared.views.api import parse_body

    return parse_body(await request.read())


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


# --- the command --------------------------------------------------------------------------------------------------

def quiet_logs(verbose: bool) -> None:
    """build_fleet() turns authwatch's INFO logs on (right for Functions); a terminal wants them only with -v."""
    from shared.logs import configure_observability

    configure_observability()
    if not verbose:
        logging.getLogger("authwatch").setLevel(logging.WARNING)


def check_port_free(port: int) -> None:
    """UsageError (exit 2) naming the port when something already listens on 127.0.0.1:port (0 is always free)."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As aiohttp binds (SO_REUSEADDR): a port left in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise UsageError(f"port {port} on {HOST} is already in use ({error.strerror or error}): stop what runs "
                             f"there, or pick another port with --port N (--port 0 picks a free one)") from None


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    check_port_free(args.port)  # before Azurite, the simulator and the demo's cycles: fail in a second, not a minute
    quiet_logs(getattr(args, "verbose", False))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a service manager's stop cleans up like Ctrl-C
    with ExitStack() as stack:
        if args.demo:
            demo = stack.enter_context(running_demo())
            server = DashboardServer(demo.env, port=args.port, clock=demo.clock,
                                     source=f"demo fleet · simulated clock from {format_time(demo.evaluated_at)}")
        else:
            server = DashboardServer(os.environ, port=args.port, source="storage: AUTHWATCH_STORAGE_CONNECTION_STRING")

        def ready(url: str) -> None:
            print(f"• Dashboard: {url}/dashboard", flush=True)
            print(f"  JSON API:  {url}/api/tenants  ·  reports: authwatch report -o html|csv|json|ocsf", flush=True)
            print(f"  Actions (POST, JSON body) need the header X-Authwatch-Token: {server.token} (this run's; the "
                  "dashboard sends it itself)", flush=True)
            if args.demo:
                print(f"  Reports of this data: AUTHWATCH_STORAGE_CONNECTION_STRING='{demo.connection_string}' "
                      f"authwatch report --at {format_time(demo.evaluated_at)}", flush=True)
            print("  Press Ctrl-C to stop.", flush=True)
            if args.open:
                import webbrowser

                webbrowser.open(f"{url}/dashboard")

        try:
            asyncio.run(server.serve_forever(ready))
        except KeyboardInterrupt:
            print("\n• Stopped.", flush=True)
    return 0


"""`authwatch serve` over the demo fleet (its own Azurite + the simulator): the JSON routes answer what shared/views/api.py
answers, errors map as in the function app, the page is served with its CSP; `authwatch report` writes HTML, CSV and
JSON from the same storage, parsed back here; the function app's dashboard blueprint serves the same page."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from shared.bootstrap import build_fleet
from shared.cli.demo_data import running_demo
from shared.cli.serve import DashboardServer
from shared.controls import controls
from shared.views import reports, tenants_admin
from simulator.demo_fleet import demo_fleet

pytestmark = pytest.mark.integration

FABRIKAM = "8c1d0f4e-1a2b-4c3d-8e9f-000000000002"
TAILSPIN = "8c1d0f4e-1a2b-4c3d-8e9f-000000000004"
NAMES = {tenant["tenantId"]: tenant["displayName"] for tenant in demo_fleet()["tenants"]}


@pytest.fixture(scope="module")
def demo() -> Iterator[Any]:
    with running_demo(say=lambda message: None, storage_from_env=False) as data:
        yield data


@pytest.fixture(scope="module")
def server(demo) -> Iterator[DashboardServer]:
    with DashboardServer(demo.env, port=0, clock=demo.clock, source="demo") as running:
        yield running


def get(url: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _headers, raw = get(url, method, None if body is None else json.dumps(body).encode(), headers)
    return status, json.loads(raw)


def page_token(url: str) -> str:
    """The run's token, as the dashboard page gets it: in its configuration block."""
    page = get(f"{url}/dashboard")[2].decode()
    config = re.search(r'<script id="authwatch-config" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(config.group(1))["token"]


def action(server: DashboardServer, **extra: str) -> dict[str, str]:
    """The headers the dashboard's own fetch sends for an action."""
    return {"Content-Type": "application/json", "X-Authwatch-Token": page_token(server.url),
            "Origin": server.url, "Sec-Fetch-Site": "same-origin", **extra}


def test_json_routes_answer_what_the_service_functions_answer(server, demo):
    status, body = get_json(f"{server.url}/api/tenants")
    assert status == 200

    async def direct() -> list[dict]:
        fleet = build_fleet(demo.env)
        try:
            # The function app's GET /api/tenants: the fleet rows (open alerts, credential mode, onboarding, …).
            return await tenants_admin.list_tenants(fleet, now=datetime.now(timezone.utc))
        finally:
            await fleet.close()

    assert body["tenants"] == asyncio.run(direct())
    assert {t["tenantId"]: t["displayName"] for t in body["tenants"]} == NAMES

    status, fabrikam = get_json(f"{server.url}/api/tenants/{FABRIKAM}")
    assert status == 200 and fabrikam["status"] == "failing"
    drift = next(e for e in fabrikam["history"] if e["type"] == "drift.weakened")
    assert drift["details"]["changedBy"] == "admin@fabrikam.example"
    assert drift["details"]["changes"][0]["after"] == "enabledForReportingButNotEnforced"
    status, tailspin = get_json(f"{server.url}/api/tenants/{TAILSPIN}?history=5")
    window = tailspin["enforcementWindow"]
    assert window["open"] and 0 < window["secondsLeft"] < 11 * 3600  # the demo clock runs from 09:00
    assert len(tailspin["history"]) <= 5
    status, results = get_json(f"{server.url}/api/tenants/{TAILSPIN}/results")
    assert status == 200 and {r["control"] for r in results["results"]} == {c.id for c in controls()}
    status, history = get_json(f"{server.url}/api/tenants/{FABRIKAM}/history?limit=2")
    assert status == 200 and len(history["events"]) == 2
    # The tenant's exceptions (changing them is `authwatch exceptions` or the function app's routes).
    status, excepted = get_json(f"{server.url}/api/tenants/{FABRIKAM}/exceptions")
    assert status == 200 and excepted["tenantId"] == FABRIKAM and isinstance(excepted["exceptions"], list)


@pytest.mark.parametrize(("path", "status", "phrase"), [
    ("/api/tenants/not-a-guid", 400, "GUID"),
    (f"/api/tenants/{'0' * 8}-0000-0000-0000-{'0' * 12}", 404, "no tenant"),
    (f"/api/tenants/{FABRIKAM}?history=0", 400, "history"),
    (f"/api/tenants/{FABRIKAM}/history?limit=x", 400, "limit"),
    ("/api/nothing-here", 404, "no route"),
])
def test_errors_are_json_and_say_what_is_wrong(server, path, status, phrase):
    got, body = get_json(server.url + path)
    assert got == status and phrase in body["error"]


def test_the_report_is_served_as_a_download_from_the_same_filters(server):
    status, headers, body = get(f"{server.url}/api/report?format=html&failingOnly=true")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Disposition"] == 'inline; filename="authwatch-report.html"' and b"Fabrikam" in body
    status, headers, body = get(f"{server.url}/api/report?format=ocsf&control=exo_smtp_auth_disabled")
    findings = json.loads(body)
    assert status == 200 and findings and {f["class_uid"] for f in findings} == {2003}
    assert get_json(f"{server.url}/api/report?control=nope")[0] == 400


def test_alert_actions_go_through_the_service_functions(server):
    _status, fabrikam = get_json(f"{server.url}/api/tenants/{FABRIKAM}")
    alert = fabrikam["openAlerts"][-1]
    status, body = get_json(f"{server.url}/api/tenants/{FABRIKAM}/alerts/{alert['id']}/ack", "POST",
                            {"by": "oncall@msp.example"}, action(server))
    assert status == 200 and body["acknowledgedBy"] == "oncall@msp.example"
    status, body = get_json(f"{server.url}/api/tenants/{FABRIKAM}/alerts/{alert['id']}/snooze", "POST",
                            {"until": "yesterday"}, action(server))
    assert status == 400 and "until" in body["error"]


# --- cross-site requests and DNS rebinding (issue 22, item 2) -------------------------------------------------------

def stored_baseline(demo, tenant_id: str) -> Any:
    async def load() -> Any:
        fleet = build_fleet(demo.env)
        try:
            return (await fleet.monitor.store.load(tenant_id)).baseline
        finally:
            await fleet.close()

    return asyncio.run(load())


ACCEPT = f"/api/tenants/{FABRIKAM}/baseline/accept"


@pytest.mark.parametrize(("headers", "body"), [
    ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, b"{}"),  # fetch(…, {mode: "no-cors"})
    ({"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"}, b"a=b"),  # a form, sandboxed
    ({"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}, b""),
    ({"Origin": "http://127.0.0.1:1"}, b""),  # another local port (same site, other origin), no body
    ({"Content-Type": "application/json"}, b"{}"),  # JSON but not the page's: no token
    ({"Content-Type": "application/json", "X-Authwatch-Token": "guessed"}, b"{}"),
], ids=["text-plain", "form", "sec-fetch-site", "other-port", "no-token", "wrong-token"])
def test_a_cross_site_post_cannot_accept_a_weakened_baseline(server, demo, headers, body):
    before = stored_baseline(demo, FABRIKAM)
    assert before is not None
    status, _headers, raw = get(server.url + ACCEPT, "POST", body, headers)
    assert status in (403, 415), raw
    assert json.loads(raw)["error"]
    assert stored_baseline(demo, FABRIKAM) == before  # the drift stays visible


@pytest.mark.parametrize("route", ["baseline/accept", "alerts/{alert}/ack", "alerts/{alert}/snooze"])
def test_every_action_needs_the_token_same_origin_and_json(server, route):
    _status, fabrikam = get_json(f"{server.url}/api/tenants/{FABRIKAM}")
    url = f"{server.url}/api/tenants/{FABRIKAM}/" + route.format(alert=fabrikam["openAlerts"][0]["id"])
    body = json.dumps({"until": "2099-01-01T00:00:00Z"}).encode()
    good = action(server)
    assert get(url, "POST", body, {**good, "X-Authwatch-Token": ""})[0] == 403
    assert get(url, "POST", body, {**good, "Origin": "http://evil.example"})[0] == 403
    assert get(url, "POST", body, {**good, "Origin": "http://localhost:" + str(server.port)})[0] == 403  # not this
    assert get(url, "POST", body, {**good, "Sec-Fetch-Site": "same-site"})[0] == 403
    assert get(url, "POST", body, {**good, "Content-Type": "text/plain"})[0] == 415


def test_the_dashboard_page_carries_the_run_token_and_its_fetches_work(server, demo):
    token = page_token(server.url)
    assert len(token) >= 32 and page_token(server.url) == token  # one token per run
    with DashboardServer(demo.env, port=0, clock=demo.clock) as other:
        assert page_token(other.url) != token  # another run, another token
        assert get(other.url + f"/api/tenants/{TAILSPIN}/baseline/accept", "POST", b"",
                   {**action(server), "Origin": other.url})[0] == 403  # this run's token only
    status, body = get_json(server.url + f"/api/tenants/{TAILSPIN}/baseline/accept", "POST", None,
                            {"Content-Type": "application/json", "X-Authwatch-Token": token})  # a script: no Origin
    assert status == 200 and body["accepted"] is True
    local = server.url.replace("127.0.0.1", "localhost")  # the page opened as localhost works the same
    status, _h, raw = get(local + f"/api/tenants/{TAILSPIN}/baseline/accept", "POST", b"{}",
                          {"Content-Type": "application/json", "X-Authwatch-Token": token, "Origin": local,
                           "Sec-Fetch-Site": "same-origin"})
    assert status == 200, raw


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1",
                                  "localhost"])
def test_dns_rebinding_reads_nothing(server, host):
    """A name the attacker controls, re-pointed at 127.0.0.1, reaches the server with its own Host header."""
    headers = {"Host": host.format(port=server.port)}
    for path in ("/api/tenants", f"/api/tenants/{FABRIKAM}", "/dashboard", "/"):
        status, _headers, raw = get(server.url + path, headers=headers)
        assert status == 403 and b"Host" in raw and b"Fabrikam" not in raw, (path, status, raw[:200])


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
def test_the_bound_address_is_served_by_every_name(server, host):
    status, _headers, _raw = get(server.url + "/api/tenants", headers={"Host": host.format(port=server.port)})
    assert status == 200


def test_the_dashboard_page_is_served_self_contained(server):
    status, headers, raw = get(f"{server.url}/dashboard")
    page = raw.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'sha256-" in headers["Content-Security-Policy"]
    assert '"apiBase": "/api/"' in page and "entra_legacy_auth_blocked" in page
    assert not any(marker in page for marker in ("/*{{", "{{CONFIG}}", "<script src", "<link rel=\"stylesheet\""))
    assert get(f"{server.url}/api/dashboard")[0] == 200
    status, headers, _ = get(server.url + "/")
    assert status == 200  # redirected to the dashboard


def test_serve_without_storage_says_what_to_do():
    env = {key: value for key, value in os.environ.items()
           if key not in ("AUTHWATCH_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")}
    done = subprocess.run([sys.executable, "-m", "shared.cli", "serve", "--port", "0"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "AUTHWATCH_STORAGE_CONNECTION_STRING" in done.stderr and "serve --demo" in done.stderr


# --- authwatch report, from the same storage -----------------------------------------------------------------------

def report(demo, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTHWATCH_STORAGE_CONNECTION_STRING": demo.connection_string}
    return subprocess.run([sys.executable, "-m", "shared.cli", "report", "--at", "2026-11-23T09:00:00Z", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_report_formats_are_written_and_parse_back(demo, tmp_path):
    done = report(demo, tmp_path, "--format", "json", "--out", "fleet.json")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "fleet.json").read_text())
    reports.validate(document)
    assert {t["displayName"] for t in document["tenants"]} == set(NAMES.values())
    by_name = {t["displayName"]: t for t in document["tenants"]}
    assert {c["status"] for c in by_name["Contoso"]["controls"]} == {"pass"}
    assert by_name["Fabrikam"]["drift"][0]["changedBy"] == "admin@fabrikam.example"
    assert by_name["Tailspin Toys"]["enforcementWindow"]["secondsLeft"] == 11 * 3600
    assert [t["openAlerts"] != [] for t in document["tenants"]] == sorted(
        (t["openAlerts"] != [] for t in document["tenants"]), reverse=True)  # open alerts first

    done = report(demo, tmp_path, "--format", "csv")  # standard output, for scripts
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert tuple(rows[0]) == reports.CSV_COLUMNS and len(rows) == len(NAMES) * len(controls())
    cell = next(r for r in rows if r["tenant_name"] == "Fabrikam" and r["control"] == "entra_legacy_auth_blocked")
    assert cell["status"] == "fail"

    done = report(demo, tmp_path, "--format", "html")  # people get a file
    assert done.returncode == 0, done.stderr and "authwatch-report.html" in done.stdout
    page = (tmp_path / "authwatch-report.html").read_text()
    assert all(f'data-tenant-id="{tenant_id}"' in page and name in page for tenant_id, name in NAMES.items())
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_one_tenant_report(demo, tmp_path):
    done = report(demo, tmp_path, "--format", "json", "--tenant", TAILSPIN.upper(), "--out", "-")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    reports.validate(document)
    assert document["scope"] == {"kind": "tenant", "tenantId": TAILSPIN}
    assert [t["displayName"] for t in document["tenants"]] == ["Tailspin Toys"]


@pytest.mark.parametrize(("args", "phrase"), [
    (("--tenant", "nope"), "GUID"),
    (("--tenant", "8c1d0f4e-1a2b-4c3d-8e9f-0000000000ff"), "no tenant"),
    (("--at", "tomorrow"), "ISO 8601"),
    (("--out", "/nonexistent-dir/x.html"), "--out"),
])
def test_report_errors_say_what_to_do_next(demo, tmp_path, args, phrase):
    done = report(demo, tmp_path, *args)
    assert done.returncode == 2 and phrase in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_report_without_storage_says_what_to_set(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("AUTHWATCH_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")}
    done = subprocess.run([sys.executable, "-m", "shared.cli", "report", "--format", "csv"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "AUTHWATCH_STORAGE_CONNECTION_STRING" in done.stderr


# --- the function app's dashboard blueprint ------------------------------------------------------------------------

def test_function_app_blueprint_serves_the_same_page_with_function_auth(monkeypatch):
    import azure.functions as func

    from functions.dashboard import bp

    app = func.FunctionApp()
    app.register_functions(bp)
    (function,) = app.get_functions()
    trigger = next(b.get_dict_repr() for b in function.get_bindings() if str(b.type).endswith("Trigger"))
    assert trigger["route"] == "dashboard" and str(trigger["authLevel"].value) == "function"
    monkeypatch.setenv("AUTHWATCH_DASHBOARD_API_BASE", "https://authwatch.example/api")
    response = function.get_user_function()(func.HttpRequest(method="GET", url="http://localhost/api/dashboard",
                                                              body=b"", params={"code": "key"}))
    page = response.get_body().decode()
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert '"apiBase": "https://authwatch.example/api/"' in page
    assert '"token"' not in page  # deployed, the function key from the page's URL authenticates its calls
    assert "connect-src 'self' https://authwatch.example" in response.headers["Content-Security-Policy"]


def test_demo_can_leave_an_html_report_behind(demo, tmp_path):
    from shared.cli.demo_data import DEMO_NOW, write_demo_report

    path = write_demo_report(demo.connection_string, demo.simulator, str(tmp_path / "out" / "report.html"),
                             now=DEMO_NOW)
    page = Path(path).read_text()
    assert all(f'data-tenant-id="{tenant_id}"' in page for tenant_id in NAMES)


def test_a_busy_port_is_refused_with_a_way_out(demo, server):
    from shared.cli.errors import UsageError

    with pytest.raises(UsageError, match="--port"):
        DashboardServer(demo.env, port=server.port).start()


def test_serve_demo_command_starts_everything_and_stops_cleanly():
    import re
    import signal
    import socket

    env = {key: value for key, value in os.environ.items() if key != "AUTHWATCH_STORAGE_CONNECTION_STRING"}
    process = subprocess.Popen([sys.executable, "-m", "shared.cli", "serve", "--demo", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        out = "".join(lines)
        url = re.search(r"Dashboard: (\S+)", out).group(1)
        table_port = int(re.search(r"TableEndpoint=http://127\.0\.0\.1:(\d+)/", out).group(1))
        assert "admin@fabrikam.example" in out and "authwatch report --at 2026-11-23T09:00:00Z" in out
        assert re.search(r"X-Authwatch-Token: [\w-]{32,}", out)  # for scripts that take an action
        assert get(url)[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)  # what a service manager sends: cleaned up like Ctrl-C
        rest, errors = process.communicate(timeout=60)
    assert process.returncode == 0 and "Stopped" in rest and "Traceback" not in errors
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", table_port)) != 0  # its Azurite is gone

"""GET /api/tenants/{tenantId}/timeline through the function app's blueprint and `authwatch serve`, and `authwatch
timeline` (issue 18, item 2), over one tenant seeded into Azurite through the project's storage classes: a drift with
who and when, the Conditional Access window of today's state, an Exchange window in the state's `windows` list, a
confirmation, and a Microsoft-managed policy's switch-on date in control 1's evidence."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator

import azure.functions as func
import pytest

from shared.cli import main
from shared.cli.serve import DashboardServer

pytestmark = pytest.mark.integration

TENANT = "8c1d0f4e-1a2b-4c3d-8e9f-00000000a118"
NAME = "Timeline Traders"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def _seed(connection_string: str) -> None:
    from shared.bootstrap import build_fleet
    from shared.model import ControlResult, Severity, Status
    from shared.state.compare import STATE_VERSION
    from shared.state.events import Event
    from shared.tenants.config import TenantConfig

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    block_window = {"windowStartedAt": "2026-11-21T08:00:00Z", "windowClosesAt": "2026-11-22T08:00:00Z",
                    "windowHours": 24.0}
    events = [
        Event(at("2026-11-21T08:00:00Z"), TENANT, "enforcement.window_started", "entra_legacy_signins_blocked", "low",
              "Legacy authentication is now blocked in configuration.", block_window),
        Event(at("2026-11-22T09:00:00Z"), TENANT, "enforcement.confirmed", "entra_legacy_signins_blocked", "low",
              "Enforcement confirmed: no successful legacy sign-in since the window closed at 2026-11-22T08:00:00Z.",
              block_window),
        Event(at("2026-11-23T09:00:00Z"), TENANT, "drift.weakened", "exo_smtp_auth_disabled", "high",
              "Protection weakened by it@traders.example: SMTP AUTH: SmtpClientAuthenticationDisabled: True → False.",
              {"section": "transport", "item": "transport.SmtpClientAuthenticationDisabled",
               "changes": [{"field": "SmtpClientAuthenticationDisabled", "before": True, "after": False,
                            "effect": "weakened", "note": ""}],
               "matchesBaseline": False, "changedBy": "it@traders.example", "changedAt": "2026-11-23T08:45:00Z"},
              subject="transport.SmtpClientAuthenticationDisabled"),
        Event(at("2026-11-23T09:00:00Z"), TENANT, "control.failed", "exo_smtp_auth_disabled", "high",
              "SMTP AUTH is enabled for the organisation.", {}),
    ]
    state = {"version": STATE_VERSION, "tenantId": TENANT, "lastCollectedAt": "2026-11-23T09:00:00Z",
             "lastSuccessAt": "2026-11-23T09:00:00Z", "unreachable": False, "consecutiveFailures": 0,
             "controls": {}, "config": {},
             "enforcement": {"startedAt": "2026-11-21T08:00:00Z", "hours": 24.0, "origin": "observation time",
                             "confirmed": True, "gapReported": False},
             "windows": [{"protection": "authPolicy:Printers", "control": "exo_basic_auth_policy",
                          "startedAt": "2026-11-23T09:00:00Z", "closesAt": "2026-11-24T09:00:00Z", "hours": 24,
                          "origin": "observation time", "scope": {"count": 2, "sample": ["scan@traders.example"]},
                          "confirmed": False, "gapReported": False}]}
    results = [ControlResult("entra_legacy_auth_blocked", Status.PASS, Severity.HIGH, "blocked", evidence={
        "candidates": [{"id": "m1", "displayName": "Microsoft-managed: Block legacy authentication",
                        "state": "enabledForReportingButNotEnforced", "microsoftManaged": True,
                        "microsoftEnablesFrom": "2026-12-16T00:00:00Z"}]})]

    async def go() -> None:
        fleet = build_fleet({"AUTHWATCH_STORAGE_CONNECTION_STRING": connection_string})
        await fleet.create()
        try:
            if await fleet.registry.get(TENANT) is None:
                await fleet.registry.add(TenantConfig.from_json({
                    "tenantId": TENANT, "displayName": NAME,
                    "credential": {"mode": "secret", "clientId": "11111111-1111-4111-8111-111111111111",
                                   "secretSetting": "AUTHWATCH_DEMO_SECRET"}}), now=NOW)
                await fleet.monitor.store.commit(TENANT, state=state, expected_etag=None, results=results,
                                                 evaluated_at=NOW, events=[e.to_record() for e in events])
        finally:
            await fleet.close()

    with ThreadPoolExecutor(max_workers=1) as worker:  # its own event loop, whoever calls
        worker.submit(asyncio.run, go()).result()


@pytest.fixture
def storage(storage_connection_string, monkeypatch) -> str:
    _seed(storage_connection_string)
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    return storage_connection_string


def check(answer: dict[str, Any]) -> None:
    """What every entry point must answer for the seeded tenant."""
    entries = answer["entries"]
    assert answer["tenantId"] == TENANT
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)  # newest first
    change = next(e for e in entries if e["kind"] == "change")
    assert (change["at"], change["by"], change["inForce"]) == ("2026-11-23T08:45:00Z", "it@traders.example", "at once")
    assert change["changes"][0]["before"] is True and change["changes"][0]["after"] is False
    assert not any(e.get("title", "").startswith("SMTP AUTH is enabled") for e in entries)  # control.failed: not a change
    block = [e for e in entries if e["kind"] == "in_force" and e["protection"] is None]
    assert [(e["at"], e["status"]) for e in block] == [("2026-11-22T08:00:00Z", "confirmed")]  # event + state: once
    assert any(e["kind"] == "confirmed" and e["at"] == "2026-11-22T09:00:00Z" for e in entries)
    printers = next(e for e in entries if e["kind"] == "in_force" and e["protection"] == "authPolicy:Printers")
    still_open = answer["at"] < "2026-11-24T09:00:00Z"  # the function app judges by the real clock
    assert printers["status"] == ("open" if still_open else "awaiting evidence")
    assert printers["at"] == "2026-11-24T09:00:00Z" and printers["scope"]["count"] == 2
    platform = {e["source"]["id"]: e for e in entries if e["kind"] == "platform"}
    assert platform["MC786329"]["at"] == "2026-12-31T00:00:00Z" and platform["MC786329"]["status"] == "upcoming"
    assert platform["MC1184649"]["at"] == "2026-05-01T00:00:00Z"
    managed = next(e for e in entries if e["kind"] == "managed_policy")
    assert managed["at"] == "2026-12-16T00:00:00Z" and "Microsoft-managed" in managed["title"]


# --- the function app ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_functions() -> dict[str, Any]:
    """The HTTP blueprint indexed as the host indexes it, in an app of its own (function_app.app may be indexed once,
    by tests/e2e/test_function_app.py, which checks the route is registered there)."""
    from functions.http_api import bp

    app = func.FunctionApp()
    app.register_functions(bp)
    return {f.get_function_name(): f for f in app.get_functions()}


def call(function, route: dict[str, str], params: dict[str, str] | None = None) -> tuple[int, Any]:
    request = func.HttpRequest(method="GET", url="http://localhost/api/tenants/x/timeline", body=b"",
                               route_params=route, params=params or {})
    response = asyncio.run(function.get_user_function()(request))
    return response.status_code, json.loads(response.get_body())


def test_the_function_app_answers_the_timeline(api_functions, storage):
    function = api_functions["tenant_timeline"]
    binding = next(b.get_dict_repr() for b in function.get_bindings() if str(b.get_dict_repr()["type"]) ==
                   "httpTrigger")
    assert binding["route"] == "tenants/{tenantId}/timeline" and str(binding["authLevel"].value) == "function"
    status, answer = call(function, {"tenantId": TENANT})
    assert status == 200, answer
    check(answer)
    status, short = call(function, {"tenantId": TENANT}, {"limit": "3"})
    assert status == 200 and len(short["entries"]) == 3 and short["omitted"] == len(answer["entries"]) - 3
    assert short["entries"] == answer["entries"][:3]


@pytest.mark.parametrize(("route", "params", "status", "phrase"), [
    ({"tenantId": "not-a-guid"}, {}, 400, "GUID"),
    ({"tenantId": str(uuid.UUID(int=7))}, {}, 404, "no tenant"),
    ({"tenantId": TENANT}, {"limit": "0"}, 400, "limit"),
    ({"tenantId": TENANT}, {"limit": "501"}, 400, "limit"),
])
def test_the_function_app_refuses_bad_timeline_requests(api_functions, storage, route, params, status, phrase):
    got, answer = call(api_functions["tenant_timeline"], route, params)
    assert got == status and phrase in answer["error"]


# --- authwatch serve -----------------------------------------------------------------------------------------------

@pytest.fixture
def server(storage) -> Iterator[DashboardServer]:
    with DashboardServer({"AUTHWATCH_STORAGE_CONNECTION_STRING": storage}, port=0, clock=lambda: NOW,
                         source="timeline test") as running:
        yield running


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_the_same_timeline(server, api_functions):
    status, answer = get_json(f"{server.url}/api/tenants/{TENANT}/timeline")
    assert status == 200
    check(answer)
    assert answer["at"] == "2026-11-23T10:00:00Z"  # the server's clock
    # The same service function as the function app: the same entries (what is judged by the clock aside: the
    # function app's is the real one).
    deployed = call(api_functions["tenant_timeline"], {"tenantId": TENANT})[1]

    def unjudged(entries: list[dict]) -> list[tuple]:
        return [(e["at"], e["kind"], e["protection"], e["eventId"], e["by"], e["inForceBy"]) for e in entries]

    assert unjudged(answer["entries"]) == unjudged(deployed["entries"])
    assert get_json(f"{server.url}/api/tenants/{TENANT}/timeline?limit=x")[0] == 400
    status, missing = get_json(f"{server.url}/api/tenants/{uuid.UUID(int=7)}/timeline")
    assert status == 404 and "no tenant" in missing["error"]


# --- authwatch timeline ----------------------------------------------------------------------------------------------

def test_the_cli_prints_the_timeline_as_json_and_as_a_table(storage, capsys):
    assert main(["timeline", "--tenant", NAME, "-o", "json", "--at", "2026-11-23T10:00:00Z"]) == 0
    answer = json.loads(capsys.readouterr().out)
    check(answer)
    assert answer["displayName"] == NAME

    assert main(["timeline", "--tenant", TENANT, "--at", "2026-11-23T10:00:00Z", "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Timeline of {NAME} ({TENANT})")
    lines = out.splitlines()
    change = next(line for line in lines if line.startswith("2026-11-23T08:45:00Z"))
    flat = " ".join(out.split())  # the last column wraps to the terminal
    assert "it@traders.example" in change and "SmtpClientAuthenticationDisabled: True → False" in flat
    assert "in force: at once" in flat and "MC786329: https://" in flat
    assert lines.index(next(line for line in lines if line.startswith("2026-12-31"))) < lines.index(change)


def test_the_cli_says_what_is_wrong(storage, capsys, monkeypatch):
    assert main(["timeline", "--tenant", "Nobody Ltd"]) == 2
    assert "not a registered tenant" in capsys.readouterr().err
    assert main(["timeline", "--tenant", TENANT, "--limit", "0"]) == 2
    assert "--limit must be a whole number" in capsys.readouterr().err
    monkeypatch.delenv("AUTHWATCH_STORAGE_CONNECTION_STRING")
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    assert main(["timeline", "--tenant", TENANT]) == 2
    assert "AUTHWATCH_STORAGE_CONNECTION_STRING" in capsys.readouterr().err


def test_the_cli_demo_shows_fabrikams_drift_next_to_the_platform_dates(monkeypatch, capsys):
    monkeypatch.delenv("AUTHWATCH_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    assert main(["timeline", "--demo", "--tenant", "Fabrikam", "-o", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    change = next(e for e in answer["entries"] if e["kind"] == "change")
    assert change["by"] == "admin@fabrikam.example" and change["at"] == "2026-11-23T08:20:00Z"
    assert {e["source"]["id"] for e in answer["entries"] if e["kind"] == "platform"} == {"MC786329", "MC1184649"}

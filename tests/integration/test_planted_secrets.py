"""Planted secrets: known, distinctive secret values go into a realistic run of the Functions app, and none of them
(nor its base64, base64url or URL-encoded form) may come out anywhere a person or another system can read.

Planted: the app's client secret (in the app setting a tenant's credential spec names), a stale client secret (a
tenant whose secret is WRONG, so the token endpoint's error path runs), the e-mail channel's client secret, the
webhook signing secret, the secret parts of the Slack, Teams and generic webhook URLs, every access token the
simulator issues (recorded by wrapping the running simulator's token issuer from the test: simulator/ is unchanged)
and the storage account key.

The run goes through the app's entry points with real azure.functions objects: onboarding over HTTP, the timer's
fan-out, the `evaluations` worker, alert delivery to local receivers (Teams, a dead Slack, a signed webhook whose
receiver verifies with the documented helper, Graph sendMail), the poison handlers, the digest timer, a second cycle
after a change, and the HTTP API.

Searched: every log record at DEBUG for every logger (message, args, `extra=` fields, tracebacks) and stderr, every
entity of every authwatch table, every message met on authwatch's queues (poison queues included), every request
the receivers got and every mail the simulator accepted, every HTTP response and every exception the entry points
raised. The planted values are unique to this run, so rows and messages of other tests sharing Azurite cannot match
them: all authwatch rows are searched, and the test checks separately that its own rows were among them. A failure
lists each leak: which secret, in which form, where, with the text around it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.functions.timer import TimerRequest

from shared.alerts import AlertDeliveryFailed, verify_signature
from shared.logs import StructuredFormatter, configure_observability
from tests.builders import block_policy
from tests.integration.conftest import endpoints_for
from tests.integration.test_alert_receiver import commit_cycle, receivers, smtp_failed  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

APP_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
MAIL_APP_ID = "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f60"
QUEUES = ("evaluations", "evaluations-poison", "alerts", "alerts-poison")
_STANDARD_RECORD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


# --- the app, as the host indexes it ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fns():
    """FunctionApp.get_functions() refuses to run twice in a process (other test modules index the same app): reset
    its guard before and after, as tests/e2e/test_alert_function_app.py does."""
    import function_app

    function_app.app.functions_bindings = None
    try:
        return {f.get_function_name(): f for f in function_app.app.get_functions()}
    finally:
        function_app.app.functions_bindings = None


# --- a receiver written the way shared/alerts/README.md tells receivers to, with the documented helper only -------

@dataclass(frozen=True)
class Checked:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    accepted: bool


class VerifyingReceiver:
    """Checks `X-Authwatch-Signature` over the raw body with `shared.alerts.verify_signature` (300 s tolerance) and
    answers 204, or 401 when it does not verify. `clock_offset` moves its clock (a replay arriving later)."""

    def __init__(self, secret: str, *, path: str = "/hook") -> None:
        self.secret = secret
        self.path = path
        self.clock_offset = 0.0
        self.requests: list[Checked] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                header = self.headers.get("X-Authwatch-Signature", "")
                accepted = verify_signature(body, header, receiver.secret, now=time.time() + receiver.clock_offset,
                                            tolerance_s=300)
                with receiver._lock:
                    receiver.requests.append(Checked(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                     body, accepted))
                self.send_response(204 if accepted else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def verifying_receiver():
    started: list[VerifyingReceiver] = []

    def start(secret: str, **kwargs: Any) -> VerifyingReceiver:
        started.append(VerifyingReceiver(secret, **kwargs))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


# --- where secrets could end up, and how they are looked for ----------------------------------------------------------

class Evidence:
    """(where, text) pairs: everything the run produced that someone could read."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, content: Any) -> None:
        if isinstance(content, (bytes, bytearray)):
            content = bytes(content).decode("utf-8", "replace")
        self.items.append((where, content if isinstance(content, str) else repr(content)))

    def error(self, where: str, error: BaseException) -> None:
        self.add(where, f"{error}\n{error!r}\n" + "".join(traceback.format_exception(error)))


def encoded_forms(value: str) -> dict[str, str]:
    """The value as is, base64 and base64url at each of the three byte alignments (so it is found inside a longer
    encoded text too), URL-encoded (fully, as a path, as a form) and JSON-escaped."""
    raw = value.encode("utf-8")
    forms = {"as is": value}
    for shift, skip in ((0, 0), (1, 2), (2, 3)):  # characters that still depend on the filler bytes
        padded = b"\0" * shift + raw
        whole = 4 * (len(padded) // 3)  # leave out the last partial group (and its padding)
        forms[f"base64 (offset {shift})"] = base64.b64encode(padded).decode()[skip:whole]
        forms[f"base64url (offset {shift})"] = base64.urlsafe_b64encode(padded).decode()[skip:whole]
    forms["URL-encoded"] = urllib.parse.quote(value, safe="")
    forms["URL-encoded (path: '/' kept)"] = urllib.parse.quote(value)
    forms["form-encoded"] = urllib.parse.quote_plus(value)
    forms["JSON-escaped"] = json.dumps(value)[1:-1].replace("/", "\\/")
    unique: dict[str, str] = {}
    for name, needle in forms.items():
        if len(needle) >= 12 and needle not in unique.values():
            unique[name] = needle
    return unique


def find_leaks(planted: dict[str, str], evidence: Evidence) -> list[str]:
    found = []
    for secret_name, value in planted.items():
        for form, needle in encoded_forms(value).items():
            for where, text in evidence.items:
                at = text.find(needle)
                if at < 0:
                    continue
                context = text[max(0, at - 100): at + len(needle) + 100].replace(needle, f"«{secret_name}»")
                context = context.replace("\r", "").replace("\n", "⏎")
                found.append(f"- {secret_name} [{form}] in {where} (×{text.count(needle)}): …{context}…")
    return found


def log_evidence(evidence: Evidence, records: list[logging.LogRecord], stderr: str, stdout: str) -> None:
    for index, record in enumerate(records):
        try:
            message = record.getMessage()
        except Exception as error:  # noqa: BLE001 - a malformed record is still evidence
            message = f"{record.msg!r} % {record.args!r} ({type(error).__name__})"
        extras = {key: value for key, value in vars(record).items() if key not in _STANDARD_RECORD}
        text = f"{message}\nargs={record.args!r}\nextra={extras!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        if record.exc_text:
            text += "\n" + record.exc_text
        evidence.add(f"log record #{index} ({record.name} {record.levelname}: {str(record.msg)[:60]!r})", text)
    evidence.add("stderr", stderr)
    evidence.add("stdout", stdout)


class AllLoggersAtDebug:
    """Every logger at DEBUG (those authwatch quiets too: configure_observability runs first, so it cannot quiet
    them again later), with a structured stderr handler on the root like a host's console; undone on exit."""

    def __enter__(self) -> AllLoggersAtDebug:
        configure_observability()
        self._levels = {}
        for name in ["", *logging.root.manager.loggerDict]:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)  # loggers made later inherit DEBUG from the root
        self._handler = logging.StreamHandler(sys.stderr)
        self._handler.setLevel(logging.DEBUG)
        self._handler.setFormatter(StructuredFormatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger().removeHandler(self._handler)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


# --- storage: authwatch's queues and tables, read as they are ---------------------------------------------------------

def _decoded(raw: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except ValueError:
        return raw


async def take_queued(connection: str, name: str, mine: set[str], evidence: Evidence) -> list[dict[str, Any]]:
    """Every message on queue `name` is added to the evidence (raw base64 text and decoded); this test's own (by
    tenant id) are deleted and returned, the others are made visible again at once for the tests they belong to."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue.aio import QueueClient

    taken: list[dict[str, Any]] = []
    others = []
    async with QueueClient.from_connection_string(connection, name) as queue:  # no decode policy: the raw text
        try:
            await queue.create_queue()
        except ResourceExistsError:
            pass
        while True:
            batch = [message async for message in queue.receive_messages(messages_per_page=32, max_messages=32,
                                                                          visibility_timeout=60)]
            if not batch:
                break
            for message in batch:
                text = _decoded(message.content)
                try:
                    document = json.loads(text)
                except ValueError:
                    document = None
                tenant = str(document.get("tenantId", "")).lower() if isinstance(document, dict) else ""
                owner = "this test's" if tenant in mine or any(t in text for t in mine) else "another test's"
                evidence.add(f"queue {name}: {owner} message {message.id} (raw)", message.content)
                evidence.add(f"queue {name}: {owner} message {message.id} (decoded)", text)
                if owner == "this test's":
                    if isinstance(document, dict):
                        taken.append(document)
                    await queue.delete_message(message)
                else:
                    others.append(message)
        for message in others:
            await queue.update_message(message, visibility_timeout=0)
    return taken


async def table_rows(connection: str) -> list[tuple[str, dict[str, Any]]]:
    """Every entity of every authwatch table (Authwatch*)."""
    from azure.data.tables.aio import TableServiceClient

    rows = []
    async with TableServiceClient.from_connection_string(connection) as service:
        names = sorted([table.name async for table in service.list_tables()])
        for name in names:
            if not name.lower().startswith("authwatch"):
                continue
            async for entity in service.get_table_client(name).list_entities():
                rows.append((name, dict(entity)))
    return rows


def account_key(connection: str) -> str | None:
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    return parts.get("AccountKey")


# --- the scenario ----------------------------------------------------------------------------------------------------

def simulated_cloud(tenants: dict[str, str], client_secret: str, operator: str, mail_secret: str) -> dict:
    def tenant(tenant_id: str, name: str, smtp_disabled: Any = True) -> dict:
        return {"tenantId": tenant_id, "displayName": name,
                "graph": {"conditionalAccessPolicies": [block_policy(modifiedDateTime="2025-01-01T00:00:00Z")],
                          "sharepointSettings": {"isLegacyAuthProtocolsEnabled": False}},
                "exchange": {"transportConfig": {"SmtpClientAuthenticationDisabled": smtp_disabled}}}

    woodgrove = tenant(tenants["woodgrove"], "Woodgrove")
    # The app's secret was rotated; the setting Woodgrove's credential names still holds the old one.
    woodgrove["app"] = {"clientId": APP_ID, "clientSecret": "rotated-" + secrets.token_hex(16)}
    mail = tenant(operator, "Operator")
    mail["app"] = {"clientId": MAIL_APP_ID, "clientSecret": mail_secret}
    mail["mailSenders"] = ["authwatch@operator.example"]  # Exchange RBAC for Applications, as infra/README.md sets up
    return {"app": {"clientId": APP_ID, "clientSecret": client_secret},
            "tenants": [tenant(tenants["contoso"], "Contoso"), tenant(tenants["fabrikam"], "Fabrikam", "False"),
                        woodgrove, mail]}


def queue_message(document: dict, *, message_id: str | None = None, dequeue_count: int = 1) -> func.QueueMessage:
    from azure.functions.queue import QueueMessage  # the host's class, which carries dequeue_count

    return QueueMessage(id=message_id or uuid.uuid4().hex, body=json.dumps(document).encode(),
                        dequeue_count=dequeue_count)


def test_planted_secrets_never_leave_through_logs_tables_queues_payloads_or_responses(
        fns, monkeypatch, simulator_for, receivers, verifying_receiver,  # noqa: F811 - receivers is a fixture
        storage_connection_string, caplog, capfd):
    run = secrets.token_hex(6)
    tenants = {name: str(uuid.uuid4()) for name in ("contoso", "fabrikam", "woodgrove")}
    mine = set(tenants.values())
    operator = str(uuid.uuid4())
    planted = {
        "client secret": f"aw8Q~PLANTED.client-secret_{secrets.token_hex(12)}+/",
        "stale client secret": f"aw8Q~PLANTED.stale-secret_{secrets.token_hex(12)}+/",
        "mail client secret": f"aw8Q~PLANTED.mail-secret_{secrets.token_hex(12)}+/",
        "webhook signing secret": f"whsec_PLANTED-signing-{secrets.token_hex(16)}",
        "Slack URL token": f"PLANTEDslackToken{secrets.token_hex(12)}",
        "Teams URL sig": f"PLANTEDteamsSig{secrets.token_hex(16)}",
        "webhook URL token": f"PLANTEDhookToken{secrets.token_hex(12)}",
    }
    key = account_key(storage_connection_string)
    if key:
        planted["storage account key"] = key

    sim = simulator_for(simulated_cloud(tenants, planted["client secret"], operator, planted["mail client secret"]))
    minted: list[str] = []
    mint = sim._issuer.mint  # the running simulator's issuer: record every access token it hands out

    def recording_mint(*args: Any, **kwargs: Any) -> str:
        token = mint(*args, **kwargs)
        minted.append(token)
        return token

    monkeypatch.setattr(sim._issuer, "mint", recording_mint)

    teams = receivers(path=f"/workflows/{uuid.uuid4().hex}/triggers/manual/paths/invoke?api-version=2016-06-01"
                           f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={planted['Teams URL sig']}")
    slack = receivers(default=503, path=f"/services/T0{run}/B0{run}/{planted['Slack URL token']}")  # down all along
    siem = verifying_receiver(planted["webhook signing secret"], path=f"/authwatch/{planted['webhook URL token']}")
    s = run.upper()
    channels = {f"soc-{run}": {"type": "teams", "urlSetting": f"AUTHWATCH_TEAMS_URL_{s}"},
                f"ops-{run}": {"type": "slack", "urlSetting": f"AUTHWATCH_SLACK_URL_{s}"},
                f"siem-{run}": {"type": "webhook", "urlSetting": f"AUTHWATCH_SIEM_URL_{s}",
                                "secretSetting": f"AUTHWATCH_SIEM_SECRET_{s}"},
                f"mail-{run}": {"type": "email", "tenantId": operator, "from": "authwatch@operator.example",
                                "to": ["soc@operator.example"],
                                "credential": {"mode": "secret", "clientId": MAIL_APP_ID,
                                               "secretSetting": f"AUTHWATCH_MAIL_SECRET_{s}"}}}
    endpoints = endpoints_for(sim)
    settings = {
        "AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string,
        "AUTHWATCH_AUTHORITY_HOST": endpoints.authority, "AUTHWATCH_GRAPH_URL": endpoints.graph,
        "AUTHWATCH_EXCHANGE_URL": endpoints.exchange, "AUTHWATCH_CA_BUNDLE": sim.ca_path,
        f"AUTHWATCH_SECRET_{s}": planted["client secret"],
        f"AUTHWATCH_SECRET_STALE_{s}": planted["stale client secret"],
        f"AUTHWATCH_MAIL_SECRET_{s}": planted["mail client secret"],
        f"AUTHWATCH_TEAMS_URL_{s}": teams.url, f"AUTHWATCH_SLACK_URL_{s}": slack.url,
        f"AUTHWATCH_SIEM_URL_{s}": siem.url, f"AUTHWATCH_SIEM_SECRET_{s}": planted["webhook signing secret"],
        "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "1", "AUTHWATCH_ALERT_BACKOFF_SECONDS": "0.01",
        "AUTHWATCH_ALERT_RETRIES": "1", "AUTHWATCH_DASHBOARD_URL": "https://authwatch.example/api/dashboard",
        "AUTHWATCH_ALERT_CHANNELS": json.dumps(channels),
        # Routes name this test's tenants only: the registry and the deliveries table are shared by the session.
        "AUTHWATCH_ALERT_ROUTES": json.dumps({"routes": [
            {"name": f"planted-{run}", "tenants": sorted(mine), "channels": sorted(channels)}]}),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    evidence = Evidence()
    raised: list[str] = []

    def call(name: str, argument: Any) -> None:
        try:
            asyncio.run(fns[name].get_user_function()(argument))
        except BaseException as error:
            evidence.error(f"exception raised by {name}", error)
            raised.append(f"{name}: {type(error).__name__}")
            raise

    def http(name: str, method: str, *, body: Any = None, route: dict | None = None,
             params: dict | None = None) -> tuple[int, Any]:
        request = func.HttpRequest(method=method, url=f"http://localhost/api/{name}", route_params=route or {},
                                   params=params or {}, body=json.dumps(body).encode() if body is not None else b"",
                                   headers={"content-type": "application/json"})
        response = fns[name].get_user_function()(request)
        if asyncio.iscoroutine(response):  # the dashboard's function is plain, the API's are async
            response = asyncio.run(response)
        text = response.get_body().decode("utf-8", "replace")
        evidence.add(f"HTTP response of {name} {route or ''} ({response.status_code})",
                     f"{dict(response.headers)!r}\n{text}")
        return response.status_code, (json.loads(text) if response.mimetype == "application/json" else text)

    def queued(name: str) -> list[dict[str, Any]]:
        return asyncio.run(take_queued(storage_connection_string, name, mine, evidence))

    def deliver_all(alerts: list[dict[str, Any]]) -> None:
        """As the host would: one message per alert; a failed attempt is retried, the last one (dequeue count 5 =
        host.json maxDequeueCount) records the failure instead of raising."""
        for document in alerts:
            message_id = uuid.uuid4().hex
            try:
                call("deliver_alert", queue_message(document, message_id=message_id))
            except AlertDeliveryFailed:
                call("deliver_alert", queue_message(document, message_id=message_id, dequeue_count=5))

    caplog.set_level(logging.DEBUG)
    try:
        with AllLoggersAtDebug():
            # Onboarding over HTTP: Contoso and Fabrikam name the current secret's setting, Woodgrove a stale one.
            for name, tenant_id in tenants.items():
                setting = f"AUTHWATCH_SECRET_STALE_{s}" if name == "woodgrove" else f"AUTHWATCH_SECRET_{s}"
                status, _ = http("onboard_tenant", "POST", body={
                    "tenantId": tenant_id, "displayName": name.title(), "tags": ["planted"],
                    "credential": {"mode": "secret", "clientId": APP_ID, "secretSetting": setting}})
                assert status == 201, name

            # The timer fans out; the worker evaluates each tenant.
            call("fan_out", TimerRequest())
            evaluations = queued("evaluations")
            assert sorted(m["tenantId"] for m in evaluations) == sorted(mine)
            for document in evaluations:
                call("evaluate_tenant", queue_message(document))
            alerts = queued("alerts")
            kinds = {(a["tenantId"], a["type"]) for a in alerts}
            assert (tenants["fabrikam"], "control.failed") in kinds, kinds
            assert (tenants["woodgrove"], "tenant.unreachable") in kinds, kinds

            deliver_all(alerts)

            # The host gave up on one evaluation and on one alert message: both poison handlers record them.
            poisoned = next(m for m in evaluations if m["tenantId"] == tenants["contoso"])
            asyncio.run(_send(storage_connection_string, "evaluations-poison", poisoned))
            [poison] = queued("evaluations-poison")
            call("evaluation_poison", queue_message(poison, dequeue_count=1))
            stray = {**next(a for a in alerts if a["tenantId"] == tenants["fabrikam"]), "id": uuid.uuid4().hex,
                     "at": "2026-01-01T00:00:00Z"}
            asyncio.run(_send(storage_connection_string, "alerts-poison", stray))
            [poison] = queued("alerts-poison")
            call("alert_poison", queue_message(poison, dequeue_count=1))

            call("alert_digest", TimerRequest())

            # Someone turns SharePoint's legacy protocols on at Fabrikam; "evaluate now" runs a second cycle.
            time.sleep(1.1)  # a new collectedAt (second precision)
            sim.update_tenant(tenants["fabrikam"], lambda t: t["graph"]["sharepointSettings"].update(
                isLegacyAuthProtocolsEnabled=True))
            assert http("evaluate_now", "POST", route={"tenantId": tenants["fabrikam"]})[0] == 202
            [again] = queued("evaluations")
            call("evaluate_tenant", queue_message(again))
            second = queued("alerts")
            assert {a["type"] for a in second} >= {"basic_auth.reenabled"}, second
            deliver_all(second)

            # The HTTP API, as the dashboard reads it.
            status, listing = http("list_tenants", "GET")
            by_id = {t["tenantId"]: t for t in listing["tenants"]}
            assert by_id[tenants["woodgrove"]]["status"] == "unreachable"
            for tenant_id in mine:
                route = {"tenantId": tenant_id}
                assert http("get_tenant", "GET", route=route)[0] == 200
                http("tenant_results", "GET", route=route)
                assert http("tenant_history", "GET", route=route, params={"limit": "50"})[0] == 200
                assert http("tenant_failed_deliveries", "GET", route=route)[0] == 200
            status, detail = http("get_tenant", "GET", route={"tenantId": tenants["fabrikam"]})
            alert_id = detail["openAlerts"][0]["id"]
            assert http("acknowledge_alert", "POST", route={"tenantId": tenants["fabrikam"], "alertId": alert_id},
                        body={"by": "oncall@msp.example"})[0] == 200
            assert http("update_tenant", "PATCH", route={"tenantId": tenants["contoso"]},
                        body={"tags": ["planted", "gold"]})[0] == 200
            assert http("dashboard", "GET")[0] == 200
            for tenant_id in mine:  # leave no due tenant behind for other tests' timers
                assert http("disable_tenant", "POST", route={"tenantId": tenant_id})[0] == 200
            # Whatever is still queued on authwatch's queues (other tests' messages are only looked at).
            leftovers = {name: queued(name) for name in QUEUES}
    finally:
        for tenant_id in mine:
            try:
                http("disable_tenant", "POST", route={"tenantId": tenant_id})
            except Exception:  # noqa: BLE001 - best effort; the test's own failure is what matters
                pass

    # --- the run really exercised every secret ----------------------------------------------------------------------
    token_log = [entry for entry in sim.requests_log if entry["endpoint"] == "token"]
    assert {(e["tenant"], e["status"]) for e in token_log} >= {(tenants["contoso"], 200), (tenants["fabrikam"], 200),
                                                               (tenants["woodgrove"], 401), (operator, 200)}
    assert "AADSTS7000215" in by_id[tenants["woodgrove"]]["lastError"]  # the token endpoint's error, in words
    assert "poison" in by_id[tenants["contoso"]]["lastError"]
    assert len(minted) >= 5, minted  # Graph + Exchange for two tenants, twice, and Graph for the mail
    assert siem.requests and all(r.accepted for r in siem.requests), "the signed webhook did not verify"
    assert teams.requests and slack.requests and sim.sent_mail
    failed = asyncio.run(_failed(storage_connection_string, tenants["fabrikam"]))
    assert {f["channel"] for f in failed} >= {f"ops-{run}"}  # the dead Slack, recorded
    assert any("AlertDeliveryFailed" in entry for entry in raised)  # the retry path ran
    assert leftovers == {name: [] for name in QUEUES}, leftovers

    # --- gather everything readable -----------------------------------------------------------------------------------
    captured = capfd.readouterr()
    log_evidence(evidence, caplog.records, captured.err, captured.out)
    assert len(caplog.records) > 100 and any(r.levelno == logging.DEBUG for r in caplog.records)
    assert "tenant evaluated" in captured.err and "alert processed" in captured.err  # the console handler ran
    rows = asyncio.run(table_rows(storage_connection_string))
    own_tables = set()
    for table, entity in rows:
        text = json.dumps(entity, default=repr, ensure_ascii=False)
        owner = "this test's" if any(t in text for t in mine | {f"-{run}"}) else "another test's"
        if owner == "this test's":
            own_tables.add(table)
        evidence.add(f"table {table}: {owner} row {entity.get('PartitionKey')!r}/{entity.get('RowKey')!r}",
                     f"{text}\n{entity!r}")
    assert own_tables >= {"AuthwatchRegistry", "AuthwatchTenants", "AuthwatchDeliveries"}, own_tables
    for receiver_name, requests in (("Teams", teams.requests), ("Slack", slack.requests)):
        for index, request in enumerate(requests):  # the URL is where the secret belongs; headers and body are not
            evidence.add(f"{receiver_name} receiver request #{index}", f"{request.headers!r}\n{request.body!r}")
            evidence.add(f"{receiver_name} receiver request #{index} (body)", request.body)
    for index, request in enumerate(siem.requests):
        evidence.add(f"webhook receiver request #{index}", f"{request.headers!r}\n{request.body!r}")
        evidence.add(f"webhook receiver request #{index} (body)", request.body)
    for index, mail in enumerate(sim.sent_mail):
        evidence.add(f"e-mail #{index} (Graph sendMail)", json.dumps(mail, ensure_ascii=False))

    for index, token in enumerate(minted):
        planted[f"access token #{index}"] = token
        planted[f"access token #{index} signature"] = token.rsplit(".", 1)[1]

    leaks = find_leaks(planted, evidence)
    if leaks:
        pytest.fail(f"{len(leaks)} planted secret(s) leaked (searched {len(evidence.items)} texts):\n"
                    + "\n".join(leaks), pytrace=False)


async def _send(connection: str, name: str, document: dict[str, Any]) -> None:
    """Put a message on a queue as the Functions host does when it moves one to `<queue>-poison`."""
    from shared.storage.queues import JsonQueue

    async with JsonQueue.from_connection_string(connection, name) as queue:
        await queue.create()
        await queue.send(document)


async def _failed(connection: str, tenant_id: str) -> list[dict[str, Any]]:
    from shared.alerts import failed_deliveries

    return await failed_deliveries(connection, tenant_id)


# --- the receiver side of the signature -------------------------------------------------------------------------------

def test_a_receiver_using_only_the_documented_helper_accepts_a_delivered_alert_and_refuses_tampering_and_replays(
        fns, monkeypatch, verifying_receiver, storage_connection_string):
    """shared/alerts/README.md: `shared.alerts.verify_signature(body, header, secret, now=time.time(),
    tolerance_s=300)` over the raw body and the `X-Authwatch-Signature` header. A real alert delivered by the
    `deliver_alert` entry point is accepted; the same request with a changed body, a moved timestamp, or arriving
    after the tolerance is refused over HTTP; a receiver holding another secret refuses, which authwatch records as a
    failed delivery."""
    tenant = str(uuid.uuid4())
    secret = "whsec_" + secrets.token_urlsafe(32)
    receiver = verifying_receiver(secret)
    wrong = verifying_receiver("whsec_" + secrets.token_urlsafe(32))
    run = secrets.token_hex(4)
    for name, value in {
        "AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string, "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "1",
        "AUTHWATCH_ALERT_BACKOFF_SECONDS": "0.01", f"AUTHWATCH_HOOK_SECRET_{run}": secret,
        "AUTHWATCH_ALERT_CHANNELS": json.dumps({
            f"hook-{run}": {"type": "webhook", "url": receiver.url, "secretSetting": f"AUTHWATCH_HOOK_SECRET_{run}"},
            f"wrong-{run}": {"type": "webhook", "url": wrong.url, "secretSetting": f"AUTHWATCH_HOOK_SECRET_{run}"}}),
        "AUTHWATCH_ALERT_ROUTES": json.dumps({"routes": [
            {"name": "mine", "tenants": [tenant], "channels": [f"hook-{run}", f"wrong-{run}"]}]}),
    }.items():
        monkeypatch.setenv(name, value)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    [record] = asyncio.run(commit_cycle(storage_connection_string, tenant, now, [smtp_failed(tenant, now)]))
    asyncio.run(fns["deliver_alert"].get_user_function()(queue_message(record)))  # 401 is permanent: no raise

    [delivered] = receiver.requests
    assert delivered.accepted
    assert delivered.headers["x-authwatch-id"] == json.loads(delivered.body)["id"] == record["id"]
    header = delivered.headers["x-authwatch-signature"]
    assert header.startswith("t=") and ",v1=" in header

    def replay(body: bytes, signature: str) -> int:
        return httpx.post(receiver.url, content=body, headers={"Content-Type": "application/json",
                                                               "X-Authwatch-Signature": signature}).status_code

    tampered = delivered.body.replace(b'"high"', b'"low"')
    assert tampered != delivered.body
    assert replay(tampered, header) == 401
    moved = header.replace(header.split(",")[0], f"t={int(time.time()) + 5}")
    assert replay(delivered.body, moved) == 401
    assert replay(delivered.body, "") == 401
    receiver.clock_offset = 301  # the captured request arrives five minutes and a second later
    assert replay(delivered.body, header) == 401
    receiver.clock_offset = 0  # within the tolerance the exact request is accepted again: receivers dedupe on `id`
    assert replay(delivered.body, header) == 204
    assert [r.accepted for r in receiver.requests] == [True, False, False, False, False, True]

    [refused] = wrong.requests
    assert not refused.accepted
    [failure] = asyncio.run(_failed(storage_connection_string, tenant))
    assert failure["channel"] == f"wrong-{run}" and failure["error"] == "HTTP 401"

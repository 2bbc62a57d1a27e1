"""A real local alert receiver (threaded http.server on 127.0.0.1) for the alert tests, and the receiver guide of
shared/alerts/README.md exercised against what authwatch really sends."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import types
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.alerts.signing import SIGNATURE_HEADER, verify_signature


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers POSTs with scripted statuses (then `default`), recording every request. `url` is plain http on
    127.0.0.1, which authwatch accepts only with AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS=1."""

    def __init__(self, statuses: list[int] | tuple[int, ...] = (), *, default: int = 200,
                 path: str = "/hook") -> None:
        self.requests: list[Received] = []
        self._statuses = list(statuses)
        self._default = default
        self._path = path
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Received("POST", self.path, {k.lower(): v for k, v in
                                                                          self.headers.items()}, body))
                    status = receiver._statuses.pop(0) if receiver._statuses else receiver._default
                answer = b'{"ok": true}' if status < 300 else b'{"error": "scripted failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[Any]:
        return [request.json for request in self.requests]


@pytest.fixture
def receivers():
    """receivers(statuses..., default=200) starts one; all are stopped after the test."""
    started: list[Receiver] = []

    def start(statuses: tuple[int, ...] | list[int] = (), **kwargs: Any) -> Receiver:
        receiver = Receiver(statuses, **kwargs).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


# --- the receiver guide (shared/alerts/README.md): its code blocks, run as a receiver would run them -----------------

README = Path(__file__).resolve().parents[2] / "shared" / "alerts" / "README.md"


def readme_block(language: str) -> str:
    text = README.read_text(encoding="utf-8")
    if language == "python":
        text = text.split("<!-- verify-python -->", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert match, f"no {language} block in {README}"
    return match.group(1)


def readme_verify(body: bytes, header: str, secret: str, now: float, tolerance: int = 300) -> bool:
    """The README's stand-alone Python verification, executed as written, with its clock set to `now`."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("python"), str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    namespace["time"] = types.SimpleNamespace(time=lambda: now)
    return namespace["verify"](body, header, secret, tolerance)


def test_receiver_records_requests_and_answers_scripted_statuses(receivers):
    import httpx

    receiver = receivers([500], default=204)
    first = httpx.post(receiver.url, content=b'{"a": 1}')
    second = httpx.post(receiver.url, content=b'{"a": 2}')
    assert (first.status_code, second.status_code) == (500, 204)
    assert receiver.bodies() == [{"a": 1}, {"a": 2}]


def test_the_documented_scheme_verifies_a_real_signature_and_rejects_tampering():
    from shared.alerts.signing import sign

    secret = "whsec-test-0123456789abcdef"
    body = json.dumps({"id": "abc", "type": "control.failed"}).encode()
    now = int(time.time())
    header = sign(body, secret, timestamp=now)
    assert header.startswith(f"t={now},v1=")
    assert readme_verify(body, header, secret, now) and verify_signature(body, header, secret, now=now)
    tampered = body.replace(b"control.failed", b"control.recovered")
    assert not readme_verify(tampered, header, secret, now)
    assert not verify_signature(tampered, header, secret, now=now)
    assert not verify_signature(body, header, "another-secret-0123456789", now=now)
    assert not verify_signature(body, header, secret, now=now + 301)  # stale
    assert not readme_verify(body, header, secret, now + 301)
    assert verify_signature(body, header, secret, now=now + 299)
    assert not readme_verify(body, header.replace(f"t={now}", f"t={now + 1}"), secret, now)  # moved timestamp
    assert not readme_verify(body, "v1=" + header.split("v1=")[1], secret, now)  # no timestamp
    assert SIGNATURE_HEADER == "X-Authwatch-Signature"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_documented_node_receiver_verifies_too():
    from shared.alerts.signing import sign

    secret = "whsec-node-0123456789abcdef"
    body = json.dumps({"id": "abc", "summary": "SMTP AUTH on → off"}, ensure_ascii=False).encode()
    now = int(time.time())
    script = readme_block("js") + """
const [body, header, secret] = [Buffer.from(process.argv[1], "base64"), process.argv[2], process.argv[3]];
process.stdout.write(JSON.stringify([verify(body, header, secret),
                                     verify(Buffer.concat([body, Buffer.from(" ")]), header, secret)]));
"""
    import base64

    for header, expected in ((sign(body, secret, timestamp=now), [True, False]),
                             (sign(body, secret, timestamp=now - 400), [False, False])):
        result = subprocess.run(["node", "-e", script, base64.b64encode(body).decode(), header, secret],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected


# --- shared by the alert tests: settings, events as compare raises them, one committed cycle --------------------------

WEBHOOK_SECRET = "whsec-0a1b2c3d4e5f-never-logged"
APP_CLIENT = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"


def alert_env(connection: str, channels: dict[str, Any], routes: dict[str, Any] | None = None,
              **settings: str) -> dict[str, str]:
    """App settings for AlertService.from_env: loopback receivers allowed, fast backoff."""
    env = {"AUTHWATCH_STORAGE_CONNECTION_STRING": connection, "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": "1",
           "AUTHWATCH_ALERT_BACKOFF_SECONDS": "0.01", "AUTHWATCH_DASHBOARD_URL": "https://authwatch.example/app",
           "AUTHWATCH_ALERT_CHANNELS": json.dumps(channels)}
    if routes is not None:
        env["AUTHWATCH_ALERT_ROUTES"] = json.dumps(routes)
    env.update(settings)
    return env


def smtp_failed(tenant_id: str, at, before: str | None = "pass"):
    from shared.state.events import Event

    return Event(at, tenant_id, "control.failed", "exo_smtp_auth_disabled", "high",
                 "SMTP AUTH is enabled for the organisation (SmtpClientAuthenticationDisabled is False).",
                 {"before": before, "after": "fail", "evidence": {"SmtpClientAuthenticationDisabled": False},
                  "remediation": "Set-TransportConfig -SmtpClientAuthenticationDisabled $true"})


def smtp_recovered(tenant_id: str, at):
    from shared.state.events import Event

    return Event(at, tenant_id, "control.recovered", "exo_smtp_auth_disabled", "high",
                 "SMTP AUTH is disabled for the organisation.",
                 {"before": "fail", "after": "pass", "evidence": {"SmtpClientAuthenticationDisabled": True},
                  "remediation": "Set-TransportConfig -SmtpClientAuthenticationDisabled $true"})


def smtp_reenabled(tenant_id: str, at):
    from shared.state.events import Event

    return Event(at, tenant_id, "basic_auth.reenabled", "exo_smtp_auth_disabled", "high",
                 "Basic authentication re-enabled by admin@contoso.example: transport: SmtpClientAuthenticationDisabled "
                 "true → false.",
                 {"section": "transport", "item": "transport.SmtpClientAuthenticationDisabled",
                  "changes": [{"field": "SmtpClientAuthenticationDisabled", "before": True, "after": False,
                               "effect": "reenabled", "note": None}],
                  "matchesBaseline": False, "changedBy": "admin@contoso.example", "changedAt": "2026-11-23T07:52:10Z"},
                 subject="transport.SmtpClientAuthenticationDisabled")


def window_started(tenant_id: str, at):
    from datetime import timedelta

    from shared.model import format_time
    from shared.state.events import Event

    return Event(at, tenant_id, "enforcement.window_started", "entra_legacy_signins_blocked", "low",
                 "Legacy authentication is now blocked in configuration; enforcement can take up to 24 hours.",
                 {"windowStartedAt": format_time(at), "windowClosesAt": format_time(at + timedelta(hours=24)),
                  "windowHours": 24.0, "origin": "observation time", "secondsLeft": 86400})


def enforcement_gap(tenant_id: str, at):
    from shared.state.events import Event

    return Event(at, tenant_id, "enforcement.gap", "entra_legacy_signins_blocked", "high",
                 "2 successful legacy sign-ins after the enforcement window closed.",
                 {"windowStartedAt": "2026-11-22T06:00:00Z", "windowClosesAt": "2026-11-23T06:00:00Z",
                  "windowHours": 24.0, "gapCount": 2, "gaps": [],
                  "remediation": "Find the sign-ins in the Entra sign-in log (Client app: Other clients) and close "
                                 "the exclusion that lets them through."})


async def commit_cycle(connection: str, tenant_id: str, at, events: list) -> list[dict[str, Any]]:
    """Commit one cycle's events the way the service does (one transaction), returning the queued records."""
    from shared.model import format_time
    from shared.storage.tenant_store import TenantStore

    async with TenantStore.from_connection_string(connection) as store:
        await store.create()
        record = await store.load(tenant_id)
        records = [event.to_record() for event in events]
        await store.commit(tenant_id, state={"lastCollectedAt": format_time(at), "controls": {}},
                           expected_etag=record.state_etag, results=[], evaluated_at=at, events=records)
        return records


async def register(connection: str, tenant_id: str, name: str, *, tags: list[str] | None = None,
                   routing: dict | None = None) -> None:
    from shared.tenants.config import TenantConfig
    from shared.tenants.registry import TenantRegistry

    async with TenantRegistry.from_connection_string(connection) as registry:
        await registry.create()
        await registry.add(TenantConfig.from_json({
            "tenantId": tenant_id, "displayName": name, "tags": tags or [], "routing": routing,
            "credential": {"mode": "secret", "clientId": APP_CLIENT, "secretSetting": "AUTHWATCH_SECRET_X"}}))

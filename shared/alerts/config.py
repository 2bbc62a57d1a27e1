"""Alert settings, read from the app settings (Key Vault references resolve into them) and validated as a whole:
a bad channel, route or number is one clear error naming the setting, channel, route and field.

| setting | meaning | default |
|---|---|---|
| AUTHWATCH_ALERT_CHANNELS | JSON object: channel name → {"type": teams/slack/webhook/email, …} | none: alerts are only logged |
| AUTHWATCH_ALERT_ROUTES | JSON routing rules (shared/alerts/routing.py) | every channel, every non-informational event |
| AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS | 1: webhooks may target 127.0.0.1/localhost, also over http (tests, local receivers) | off |
| AUTHWATCH_DASHBOARD_URL | the dashboard page (https://<app>/api/dashboard, never with ?code=); alerts link to <url>#/tenants/<tenant id>, or to the URL with {tenantId} filled in | none (links.dashboard null) |
| AUTHWATCH_ALERT_RETRIES | retries inside one attempt, after the first try | 3 |
| AUTHWATCH_ALERT_BACKOFF_SECONDS | first backoff; doubles each retry (0.5, 1, 2) | 0.5 |
| AUTHWATCH_ALERT_TIMEOUT_SECONDS | per request | 10 |
| AUTHWATCH_ALERT_MAX_DEQUEUE | the queue attempt that is the last (keep equal to host.json maxDequeueCount) | 5 |
| AUTHWATCH_DIGEST_SCHEDULE | NCRONTAB of the reminder digest timer | "0 0 8 * * *" (08:00 UTC daily) |
| AUTHWATCH_DIGEST_MIN_SEVERITY | lowest severity the digest reminds of | high |
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.alerts.channels import Channel, build_channel
from shared.alerts.errors import AlertConfigError
from shared.alerts.http import RetryPolicy
from shared.alerts.routing import ROUTES_SETTING, SEVERITIES, Routing, TenantInfo, default_routing, parse_routing
from shared.alerts.safety import loopback_allowed

log = logging.getLogger("authwatch.alerts")

CHANNELS_SETTING = "AUTHWATCH_ALERT_CHANNELS"
DASHBOARD_SETTING = "AUTHWATCH_DASHBOARD_URL"
DIGEST_SCHEDULE_SETTING = "AUTHWATCH_DIGEST_SCHEDULE"
DEFAULT_DIGEST_SCHEDULE = "0 0 8 * * *"
MAX_CONFIG_CHARS = 64 * 1024


def _json(env: Mapping[str, str], name: str) -> Any:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_CONFIG_CHARS:
        raise AlertConfigError(f"{name}: too large ({len(raw):,} characters; at most {MAX_CONFIG_CHARS:,})")
    try:
        return json.loads(raw)
    except ValueError as error:
        # the position, never the text: the setting may hold a pasted secret
        raise AlertConfigError(f"{name}: not valid JSON (line {getattr(error, 'lineno', '?')}, column "
                               f"{getattr(error, 'colno', '?')})") from None


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, *,
            whole: bool = False) -> float:
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise AlertConfigError(f"{name}: expected {kind} from {low:g} to {high:g}, got {str(raw)[:20]!r}")
    return value


@dataclass
class AlertSettings:
    channels: dict[str, Channel] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_dequeue: int = 5
    allow_loopback: bool = False
    dashboard_url: str | None = None
    digest_min_severity: str = "high"
    # How long after its event an alert keeps being retried while its receiver fails transiently: past the queue's
    # own retries the message is parked (re-queued with a delay) instead of recorded as failed.
    outage_hours: float = 24.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        allow_loopback = loopback_allowed(env)
        raw_channels = _json(env, CHANNELS_SETTING)
        if raw_channels is None:
            raw_channels = {}
        if not isinstance(raw_channels, dict):
            raise AlertConfigError(f"{CHANNELS_SETTING}: expected an object mapping channel names to their "
                                   f"configuration, got {type(raw_channels).__name__}")
        channels = {name: build_channel(name, data, env, allow_loopback=allow_loopback)
                    for name, data in raw_channels.items()}
        raw_routes = _json(env, ROUTES_SETTING)
        if raw_routes is None:
            routing = default_routing(list(channels))
        else:
            routing, _ = parse_routing(raw_routes, channels=channels)
        dashboard = (env.get(DASHBOARD_SETTING) or "").strip() or None
        if dashboard and not dashboard.startswith(("https://", "http://")):
            raise AlertConfigError(f"{DASHBOARD_SETTING}: expected an http(s):// URL")
        if dashboard and re.search(r"[?&](code|sig|key)=", dashboard, re.IGNORECASE):
            raise AlertConfigError(f"{DASHBOARD_SETTING}: must not carry a key (code=, sig=, key=): the link goes "
                                   "into every alert")
        severity = (env.get("AUTHWATCH_DIGEST_MIN_SEVERITY") or "high").strip().lower()
        if severity not in SEVERITIES:
            raise AlertConfigError(f"AUTHWATCH_DIGEST_MIN_SEVERITY: expected one of {', '.join(SEVERITIES)}")
        policy = RetryPolicy(
            retries=int(_number(env, "AUTHWATCH_ALERT_RETRIES", 3, 0, 10, whole=True)),
            backoff_s=_number(env, "AUTHWATCH_ALERT_BACKOFF_SECONDS", 0.5, 0, 60),
            timeout_s=_number(env, "AUTHWATCH_ALERT_TIMEOUT_SECONDS", 10, 0.1, 120))
        return cls(channels=channels, routing=routing, policy=policy,
                   max_dequeue=int(_number(env, "AUTHWATCH_ALERT_MAX_DEQUEUE", 5, 1, 100, whole=True)),
                   allow_loopback=allow_loopback, dashboard_url=dashboard, digest_min_severity=severity,
                   outage_hours=_number(env, "AUTHWATCH_ALERT_OUTAGE_HOURS", 24, 0, 168))

    @property
    def configured(self) -> bool:
        return bool(self.channels)

    def tenant_routing(self, routing: Any, tenant_id: str) -> Routing:
        """The routing a tenant's registry `routing` asks for; AlertConfigError naming the tenant when invalid."""
        parsed, inherit = parse_routing(routing, channels=self.channels, where=f"tenant {tenant_id} routing",
                                        tenant_level=True)
        return parsed.combined_with(self.routing) if inherit else parsed

    def routing_for(self, tenant: TenantInfo) -> Routing:
        """The tenant's own routing when it has valid rules; otherwise (logged as an error) the global rules, so a
        broken registry entry never silences its alerts."""
        if tenant.routing is None:
            return self.routing
        try:
            return self.tenant_routing(tenant.routing, tenant.tenant_id)
        except AlertConfigError as error:
            log.error("invalid tenant routing; using the global rules",
                      extra={"tenant_id": tenant.tenant_id, "error": str(error)})
            return self.routing

    def dashboard_link(self, tenant_id: str) -> str | None:
        """The tenant's page: AUTHWATCH_DASHBOARD_URL with {tenantId} filled in, or, without the placeholder, the
        dashboard's own route for it (<url>#/tenants/<tenant id>)."""
        if not self.dashboard_url:
            return None
        if "{tenantId}" in self.dashboard_url:
            return self.dashboard_url.replace("{tenantId}", tenant_id)
        return f"{self.dashboard_url.split('#', 1)[0]}#/tenants/{tenant_id}"

    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for channel in self.channels.values() for secret in channel.secrets() if secret)

    def redact(self, text: str) -> str:
        from shared.tenants.config import clean_error

        cleaned = str(text)
        for secret in sorted(self.secrets(), key=len, reverse=True):
            cleaned = cleaned.replace(secret, "[redacted]")
        return clean_error(cleaned) or ""


def validate_tenant_routing(routing: Any, tenant_id: str, env: Mapping[str, str] | None = None) -> None:
    """For the API (onboarding, PATCH): refuse a tenant `routing` that would not load. AlertConfigError starting
    with "routing: " and naming the route and field; channel names are checked against AUTHWATCH_ALERT_CHANNELS
    (only its names: a broken channel elsewhere is not this request's fault)."""
    if routing is None:
        return
    env = os.environ if env is None else env
    try:
        raw = _json(env, CHANNELS_SETTING)
    except AlertConfigError:
        raw = None
    names = list(raw) if isinstance(raw, dict) else []
    parse_routing(routing, channels=names, where="routing", tenant_level=True)
